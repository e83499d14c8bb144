//! The broker's permission table, asked of real nats-servers started from the project's own
//! configs (`nats.conf`, and `nats-cluster.conf` as three nodes) with their generated
//! identities. Each cell is one protocol command on a connection of that identity, followed by
//! a PING: the server answers `-ERR 'Permissions Violation …'` before the PONG when it refuses,
//! so the server's own verdict is the proof, without waiting out a timeout.
//!
//! Two tables: every subject an identity's permissions allow (made concrete) must be allowed;
//! and the attacks — forging another service's events, touching another's consumers, buckets
//! or replies, changing the topology — must be refused to everyone whose part they are not.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine as _;
use oms_testkit::{NatsCluster, NatsServer, TestBroker};
use oms_topology::identity::{Identity, LOADGEN_STREAM};
use oms_topology::provision;

/// One raw client connection: what the server says to each command, nothing more.
struct Probe {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Probe {
    /// Connects with `seed` (an nkey seed), or anonymously; `Err` holds the server's refusal.
    fn connect(port: u16, seed: Option<&str>) -> Result<Probe, String> {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("the server listens");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a read timeout");
        let mut probe = Probe {
            reader: BufReader::new(stream.try_clone().expect("a second handle")),
            writer: stream,
        };
        let info = probe.line();
        let info: serde_json::Value =
            serde_json::from_str(info.strip_prefix("INFO ").expect("INFO first")).expect("JSON");
        let mut connect = serde_json::json!({
            "verbose": false, "pedantic": false, "protocol": 1, "headers": true,
            "lang": "probe", "version": "0",
        });
        if let Some(seed) = seed {
            let key = nkeys::KeyPair::from_seed(seed).expect("a seed");
            let nonce = info["nonce"]
                .as_str()
                .expect("the server asks for a signature");
            let sig = key.sign(nonce.as_bytes()).expect("signing");
            connect["nkey"] = key.public_key().into();
            connect["sig"] = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sig)
                .into();
        }
        probe.send(&format!("CONNECT {connect}\r\nPING\r\n"));
        match probe.until_pong() {
            None => Ok(probe),
            Some(error) => Err(error),
        }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .expect("the server answers");
        assert!(!line.is_empty(), "the server closed the connection");
        line.trim_end().to_string()
    }

    fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).expect("sending");
    }

    /// Reads up to the PONG; the first `-ERR`, if any (the server may close after it).
    fn until_pong(&mut self) -> Option<String> {
        let mut error = None;
        loop {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .expect("the server answers");
            if n == 0 {
                return Some(error.unwrap_or_else(|| "connection closed".into()));
            }
            let line = line.trim_end();
            if line == "PONG" {
                return error;
            }
            if line.starts_with("-ERR") && error.is_none() {
                error = Some(line.to_string());
            }
            if line.starts_with("MSG ") || line.starts_with("HMSG ") {
                // A delivery to one of our subscriptions: skip its payload line.
                let _ = self.line();
            }
        }
    }

    /// Does the server let this identity publish on `subject`? (An empty message.)
    fn may_publish(&mut self, subject: &str) -> bool {
        self.send(&format!("PUB {subject} 0\r\n\r\nPING\r\n"));
        match self.until_pong() {
            None => true,
            Some(e) if e.contains("Permissions Violation for Publish") => false,
            Some(e) => panic!("publish to {subject}: {e}"),
        }
    }

    /// Does the server let this identity subscribe to `subject`?
    fn may_subscribe(&mut self, subject: &str) -> bool {
        self.send(&format!("SUB {subject} 1\r\nUNSUB 1\r\nPING\r\n"));
        match self.until_pong() {
            None => true,
            Some(e) if e.contains("Permissions Violation for Subscription") => false,
            Some(e) => panic!("subscribe to {subject}: {e}"),
        }
    }
}

/// A pattern of the table made concrete: every wildcard a harmless token of its own.
fn concrete(pattern: &str) -> String {
    pattern
        .split('.')
        .map(|t| match t {
            "*" => "probe",
            ">" => "probe.deeper",
            t => t,
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn seed(creds: &std::path::Path, identity: Identity) -> String {
    provision::read_seed(creds, identity).expect("the identity's seed")
}

/// Publishing the subjects allowed below for real must not disturb anything: the test's server
/// has no services and holds only what the probes publish. JetStream API subjects are made to
/// name things that do not exist, so an allowed "delete" deletes nothing.
fn harmless(subject: String) -> String {
    subject
        .replace("STREAM.DELETE.probe", "STREAM.DELETE.NO_SUCH_STREAM")
        .replace("STREAM.PURGE.probe", "STREAM.PURGE.NO_SUCH_STREAM")
}

/// Every cell the table allows is allowed by the server.
fn allowed_cells_are_allowed(port: u16, creds: &std::path::Path) -> usize {
    let mut cells = 0;
    for identity in Identity::ALL {
        let mut probe = Probe::connect(port, Some(&seed(creds, identity)))
            .unwrap_or_else(|e| panic!("{identity:?} is let in: {e}"));
        let p = identity.permissions();
        for pattern in &p.publish {
            let subject = harmless(concrete(pattern));
            assert!(
                probe.may_publish(&subject),
                "{identity:?} may publish {subject}"
            );
            cells += 1;
        }
        for pattern in &p.subscribe {
            assert!(
                probe.may_subscribe(pattern),
                "{identity:?} may subscribe to {pattern}"
            );
            cells += 1;
        }
    }
    cells
}

/// Publishes only `owners` may make; everyone else is refused.
fn publish_attacks() -> Vec<(&'static str, Vec<Identity>)> {
    use Identity::*;
    // The operator replays dead letters to their original subjects, so it may write events.
    vec![
        ("orders.placed.x", vec![Edge, Operator]),
        ("orders.confirmed.x", vec![Order, Operator]),
        ("orders.rejected.x", vec![Order, Operator]),
        ("customers.validated.x", vec![Customer, Operator]),
        ("customers.rejected.x", vec![Customer, Operator]),
        ("inventory.reserved.x", vec![Inventory, Operator]),
        ("inventory.released.x", vec![Inventory, Operator]),
        ("payments.processed.x", vec![Payment, Operator]),
        ("payments.failed.x", vec![Payment, Operator]),
        ("dlq.payment.payments.processed.x", vec![Payment]),
        ("dlq.customer.orders.placed.x", vec![Customer]),
        ("$KV.payment-ledger.x", vec![Payment]),
        ("$KV.payment-join.x", vec![Payment]),
        ("$KV.idempotency.x", vec![Edge]),
        ("$JS.ACK.ORDERS.customer.1.1.1.1.1", vec![Customer]),
        ("$JS.ACK.PAYMENTS.order-payments.1.1.1.1.1", vec![Order]),
        ("$JS.API.CONSUMER.MSG.NEXT.ORDERS.customer", vec![Customer]),
        (
            "$JS.API.CONSUMER.MSG.NEXT.ORDERS.inventory",
            vec![Inventory],
        ),
        ("$JS.API.STREAM.DELETE.NO_SUCH_STREAM", vec![Provisioner]),
        ("$JS.API.STREAM.PURGE.NO_SUCH_STREAM", vec![Provisioner]),
        ("$JS.API.STREAM.CREATE.NO_SUCH_STREAM", vec![Provisioner]),
        ("$JS.API.STREAM.UPDATE.NO_SUCH_STREAM", vec![Provisioner]),
        (
            "$JS.API.CONSUMER.DELETE.NO_SUCH_STREAM.customer",
            vec![Provisioner],
        ),
        (
            "$JS.API.CONSUMER.DURABLE.CREATE.NO_SUCH_STREAM.customer",
            vec![Provisioner],
        ),
        (
            "$JS.API.CONSUMER.CREATE.NO_SUCH_STREAM.customer",
            vec![Provisioner],
        ),
        // Whoever only reads (the edge's event streams, the observer) reads by direct gets and
        // makes no consumer: even an "ephemeral" create (no name in the subject) may name a
        // durable in its body and rewrite it.
        ("$JS.API.DIRECT.GET.ORDERS", vec![Edge, Observer]),
        ("$JS.API.CONSUMER.CREATE.ORDERS", vec![Provisioner]),
        ("$JS.API.CONSUMER.CREATE.CUSTOMERS", vec![Provisioner]),
        ("$JS.API.CONSUMER.CREATE.PAYMENTS", vec![Provisioner]),
        ("$JS.API.CONSUMER.CREATE.DLQ", vec![Provisioner]),
        (
            "$JS.API.CONSUMER.CREATE.KV_payment-ledger",
            vec![Provisioner],
        ),
        ("$JS.API.CONSUMER.CREATE.ORDERS.customer", vec![Provisioner]),
        (
            "$JS.API.CONSUMER.CREATE.ORDERS.customer.orders.placed.x",
            vec![Provisioner],
        ),
        ("$JS.API.CONSUMER.MSG.NEXT.ORDERS.order-orders", vec![Order]),
        // The board's counters: what each durable has left, and the DLQ's size; no message.
        (
            "$JS.API.CONSUMER.INFO.ORDERS.customer",
            vec![Provisioner, Edge, Customer, Observer],
        ),
        (
            "$JS.API.CONSUMER.INFO.PAYMENTS.order-payments",
            vec![Provisioner, Edge, Order, Observer],
        ),
        // The DLQ's state (its depth, a metric), not its messages.
        (
            "$JS.API.STREAM.INFO.DLQ",
            vec![
                Provisioner,
                Edge,
                Customer,
                Inventory,
                Payment,
                Order,
                Operator,
                Observer,
            ],
        ),
        ("$JS.API.STREAM.INFO.CUSTOMERS", vec![Provisioner, Observer]),
        ("$JS.API.STREAM.MSG.GET.DLQ", vec![Operator, Observer]),
        ("$JS.API.DIRECT.GET.DLQ", vec![Operator, Observer]),
        ("$JS.API.DIRECT.GET.PAYMENTS", vec![Observer]),
        ("$JS.API.STREAM.MSG.DELETE.DLQ", vec![Operator]),
        ("$JS.API.STREAM.MSG.DELETE.ORDERS", vec![]),
        ("oms.api.orders.get", vec![Edge]),
        ("$SRV.PING", vec![Observer]),
    ]
}

/// Subscriptions only `owners` may have (a reply inbox, a service's endpoint, raw events).
fn subscribe_attacks() -> Vec<(&'static str, Vec<Identity>)> {
    use Identity::*;
    vec![
        ("_INBOX_payment.>", vec![Payment]),
        ("_INBOX_edge.x", vec![Edge]),
        ("_INBOX.>", vec![]),
        ("oms.api.orders.get", vec![Order]),
        ("oms.api.customers.get", vec![Customer]),
        ("oms.api.products.get", vec![Inventory]),
        ("payments.processed.x", vec![Observer, Loadgen]),
        // The edge is woken by the status events of ORDERS; nothing of another stream.
        ("orders.placed.x", vec![Observer, Edge]),
        ("orders.confirmed.x", vec![Edge, Observer, Loadgen]),
        ("orders.delivered.x", vec![Edge, Observer]),
        ("orders.cancel.x", vec![Observer]),
        ("customers.validated.x", vec![Observer, Loadgen]),
        ("dlq.order.orders.placed.x", vec![Observer]),
        ("$KV.payment-ledger.x", vec![]),
        (">", vec![]),
    ]
}

/// Every attack is refused to all but its owners (who are allowed it).
fn attacks_are_refused(port: u16, creds: &std::path::Path) -> usize {
    let mut cells = 0;
    for identity in Identity::ALL {
        let mut probe = Probe::connect(port, Some(&seed(creds, identity))).expect("let in");
        for (subject, owners) in publish_attacks() {
            let expected = owners.contains(&identity);
            assert_eq!(
                probe.may_publish(subject),
                expected,
                "{identity:?} publishing {subject}"
            );
            cells += 1;
        }
        for (subject, owners) in subscribe_attacks() {
            let expected = owners.contains(&identity);
            assert_eq!(
                probe.may_subscribe(subject),
                expected,
                "{identity:?} subscribing to {subject}"
            );
            cells += 1;
        }
    }
    cells
}

fn strangers_are_refused(port: u16) {
    let anonymous = Probe::connect(port, None)
        .err()
        .expect("anonymous is refused");
    assert!(anonymous.contains("Authorization Violation"), "{anonymous}");
    let stranger = nkeys::KeyPair::new_user().seed().unwrap();
    let error = Probe::connect(port, Some(&stranger))
        .err()
        .expect("an unknown key is refused");
    assert!(error.contains("Authorization Violation"), "{error}");
}

#[test]
fn a_single_node_grants_each_identity_its_part_and_nothing_else() {
    let nats = NatsServer::start();
    strangers_are_refused(nats.port());
    let allowed = allowed_cells_are_allowed(nats.port(), &nats.creds_dir());
    let attacks = attacks_are_refused(nats.port(), &nats.creds_dir());
    assert!(
        allowed > 100 && attacks > 300,
        "{allowed} + {attacks} cells"
    );
    assert!(
        Identity::Loadgen
            .permissions()
            .publish
            .iter()
            .all(|s| !s.starts_with("$JS.API.STREAM.") || s.ends_with(LOADGEN_STREAM)),
        "loadgen manages its scratch stream only"
    );
}

#[test]
fn every_node_of_the_cluster_grants_the_same() {
    let cluster = NatsCluster::start();
    for node in 0..3 {
        let port = cluster.port(node);
        strangers_are_refused(port);
        attacks_are_refused(port, &cluster.creds_dir());
    }
    allowed_cells_are_allowed(cluster.port(0), &cluster.creds_dir());
}
