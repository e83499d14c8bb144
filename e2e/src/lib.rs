//! A whole OMS for tests: a real nats-server on a free port, the five services in this process
//! (each through its own `run`, on its own SQLite files in a temporary folder) and an HTTP
//! client for the edge. Services can be started late and stopped, nats-server killed and
//! restarted.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use async_nats::jetstream;
use oms_config::Config;
use oms_testkit::{NatsServer, TestBroker, eventually};
use oms_topology as topology;
use oms_topology::identity::Identity;

pub use oms_edge::auth::Role;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use oms_testkit as testing;

pub mod procs;

/// The services, by the name their config section has.
pub const SERVICES: [&str; 5] = ["edge", "customer", "inventory", "payment", "order"];

/// The services that keep SQL state.
pub const SQL_SERVICES: [&str; 3] = ["customer", "inventory", "order"];

/// Where a SQL service keeps its data in a test: a SQLite file in the test's folder, or, when
/// `OMS_TEST_POSTGRES` names a PostgreSQL server (`postgres://user@host:port`), a database of its
/// own there, unique to the test (`tag`); the service creates it on start.
pub fn database_url(data_dir: &std::path::Path, tag: &str, service: &str) -> String {
    match std::env::var("OMS_TEST_POSTGRES") {
        Ok(base) if !base.is_empty() => {
            format!("{}/{tag}_{service}", base.trim_end_matches('/'))
        }
        _ => format!(
            "sqlite://{}?mode=rwc",
            data_dir.join(format!("{service}.db")).display()
        ),
    }
}

/// A name unique to one test, usable in database names.
pub fn unique_tag() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
}

/// Generous: CI machines are slow and shared, and nothing here sleeps for a fixed time.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct Stack {
    pub nats: NatsServer,
    pub config: Config,
    pub http: reqwest::Client,
    edge_url: Option<String>,
    running: HashMap<&'static str, (CancellationToken, JoinHandle<anyhow::Result<()>>)>,
    _dir: TempDir,
}

impl Stack {
    /// All five services.
    pub async fn start() -> Stack {
        Self::start_with(&SERVICES).await
    }

    /// Only the named services; start the others later with [`Stack::start_service`].
    pub async fn start_with(services: &[&'static str]) -> Stack {
        Self::start_configured(services, |_| {}).await
    }

    /// The named services with `configure` applied to the test config, before the topology is
    /// provisioned (so stream and consumer settings take effect too).
    pub async fn start_configured(
        services: &[&'static str],
        configure: impl FnOnce(&mut Config),
    ) -> Stack {
        oms_host::telemetry::init("warn");
        let nats = NatsServer::start();
        let dir = tempfile::tempdir().expect("creating a temporary folder");
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..nats.config()
        };
        let tag = unique_tag();
        config.customer.database_url = database_url(dir.path(), &tag, "customer");
        config.inventory.database_url = database_url(dir.path(), &tag, "inventory");
        config.order.database_url = database_url(dir.path(), &tag, "order");
        // Quick retries keep tests short; the schedule itself is tested in shared.
        config.consumers.backoff = vec![Duration::from_millis(100), Duration::from_millis(500)];
        // The edge checks tokens as it would anywhere; tests place many orders quickly.
        config.auth.hs256_secret = random_secret();
        config.http.rate_per_second = TEST_RATE;
        config.http.rate_burst = TEST_RATE;
        configure(&mut config);
        nats.provision(&config).await;
        let mut stack = Stack {
            nats,
            http: operator_client(&config.auth),
            config,
            edge_url: None,
            running: HashMap::new(),
            _dir: dir,
        };
        for service in services {
            stack.start_service(service).await;
        }
        stack
    }

    /// Starts one service and waits until its `/readyz` answers 200.
    pub async fn start_service(&mut self, name: &'static str) {
        assert!(!self.running.contains_key(name), "{name} already runs");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a port");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let (config, token) = (self.config.clone(), CancellationToken::new());
        let shutdown = token.clone();
        let task = match name {
            "edge" => spawn(oms_edge::run(config, listener, shutdown)),
            "customer" => spawn(oms_customer::run(config, listener, shutdown)),
            "inventory" => spawn(oms_inventory::run(config, listener, shutdown)),
            "payment" => spawn(oms_payment::run(config, listener, shutdown)),
            "order" => spawn(oms_order::run(config, listener, shutdown)),
            other => panic!("no service {other}"),
        };
        self.running.insert(name, (token, task));
        let http = self.http.clone();
        let ready = format!("{url}/readyz");
        eventually(DEADLINE, &format!("{name} to be ready"), || {
            let (http, ready) = (http.clone(), ready.clone());
            async move {
                let r = http.get(&ready).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
        if name == "edge" {
            self.edge_url = Some(url);
        }
    }

    /// Stops one service gracefully and waits for it to finish.
    pub async fn stop_service(&mut self, name: &str) {
        let (token, task) = self.running.remove(name).expect("service runs");
        token.cancel();
        tokio::time::timeout(DEADLINE, task)
            .await
            .expect("service stops in time")
            .expect("service task does not panic")
            .expect("service ends without error");
    }

    pub fn edge(&self) -> &str {
        self.edge_url.as_deref().expect("the edge runs")
    }

    /// A token of `sub` as `role` for this stack's edge, valid for an hour.
    pub fn token(&self, sub: &str, role: Role) -> String {
        token(&self.config.auth, sub, role)
    }

    /// A customer's token: it may place and read only its own orders.
    pub fn customer_token(&self, customer_id: &str) -> String {
        self.token(customer_id, Role::Customer)
    }

    /// The token [`Stack::http`] sends: operator `tests`.
    pub fn operator_token(&self) -> String {
        self.token(TEST_OPERATOR, Role::Operator)
    }

    /// JetStream as the read-only observer: what a person with the nats CLI sees.
    pub async fn jetstream(&self) -> jetstream::Context {
        self.jetstream_as(Identity::Observer).await
    }

    /// JetStream as `identity`, e.g. to publish what only that service may publish.
    pub async fn jetstream_as(&self, identity: Identity) -> jetstream::Context {
        jetstream::new(self.nats.connect_as(identity).await)
    }

    /// Creates the topology again, as the provisioner (after a test removed part of it).
    pub async fn provision(&self) {
        self.nats.provision(&self.config).await;
    }

    /// `POST /orders` with a JSON body; returns the status and the parsed answer.
    pub async fn place(&self, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/orders", self.edge()))
            .json(body)
            .send()
            .await
            .expect("edge answers");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Places an order that must be accepted; returns its id.
    pub async fn place_ok(&self, body: &Value) -> String {
        let (status, answer) = self.place(body).await;
        assert_eq!(status, 202, "order accepted: {answer}");
        answer["orderId"].as_str().expect("an order id").to_string()
    }

    /// `GET path` on the edge: status and body text.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.edge()))
            .send()
            .await
            .expect("edge answers");
        (r.status().as_u16(), r.text().await.expect("a body"))
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).expect("JSON")
    }

    /// Waits until the order is CONFIRMED or REJECTED; returns it.
    pub async fn terminal(&self, order_id: &str) -> Value {
        let path = format!("/orders/{order_id}");
        eventually(DEADLINE, &format!("order {order_id} to end"), || {
            let path = path.clone();
            async move {
                let (status, body) = self.get(&path).await;
                // Never 404 after a 202; a 503 while a service reconnects is honest, try again.
                assert_ne!(status, 404, "an accepted order is always readable: {body}");
                if status != 200 {
                    return None;
                }
                let order: Value = serde_json::from_str(&body).ok()?;
                (order["status"] != "PENDING").then_some(order)
            }
        })
        .await
    }

    pub async fn available(&self, product: &str) -> i64 {
        self.get_json(&format!("/products/{product}")).await["available"]
            .as_i64()
            .expect("available is a number")
    }

    /// Waits until `product` has `expected` available.
    pub async fn expect_available(&self, product: &str, expected: i64) {
        eventually(
            DEADLINE,
            &format!("{product} to have {expected}"),
            || async move { (self.available(product).await == expected).then_some(()) },
        )
        .await
    }

    /// Waits until a durable consumer has nothing pending or unacked: its service is idle.
    pub async fn drained(&self, stream: &str, durable: &str) {
        let js = self.jetstream().await;
        eventually(DEADLINE, &format!("{durable} to drain"), || {
            let js = js.clone();
            async move {
                let mut consumer: jetstream::consumer::PullConsumer =
                    js.get_consumer_from_stream(durable, stream).await.ok()?;
                let info = consumer.info().await.ok()?;
                (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
            }
        })
        .await
    }

    /// Waits until `subject` holds a message in `stream`; returns its JSON and headers.
    pub async fn event(&self, stream: &str, subject: &str) -> (Value, async_nats::HeaderMap) {
        let js = self.jetstream().await;
        eventually(DEADLINE, &format!("an event on {subject}"), || {
            let js = js.clone();
            async move {
                let s = js.get_stream(stream).await.ok()?;
                let m = s.get_last_raw_message_by_subject(subject).await.ok()?;
                Some((serde_json::from_slice(&m.payload).ok()?, m.headers))
            }
        })
        .await
    }

    /// Number of messages on `subject` (wildcards allowed) in `stream`.
    pub async fn count(&self, stream: &str, subject: &str) -> u64 {
        count(&self.jetstream().await, stream, subject).await
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for (token, task) in self.running.values() {
            token.cancel();
            task.abort();
        }
    }
}

fn spawn<F>(run: F) -> JoinHandle<anyhow::Result<()>>
where
    F: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    tokio::spawn(run)
}

/// Requests per second (and burst) the harness lets each identity make: far more than tests do.
pub const TEST_RATE: u32 = 1_000_000;

/// The operator the harness's HTTP clients act as.
pub const TEST_OPERATOR: &str = "tests";

/// A fresh HS256 secret for one test's edge (256 bits of randomness as hex).
pub fn random_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// A token of `sub` as `role` signed with `auth.hs256_secret`, valid for an hour.
pub fn token(auth: &oms_config::AuthConfig, sub: &str, role: Role) -> String {
    oms_edge::auth::mint(
        auth,
        auth.hs256_secret.as_bytes(),
        sub,
        role,
        Duration::from_secs(3600),
    )
}

/// An HTTP client that sends an operator token with every request (a request's own
/// `Authorization` header wins), valid for a day: long enough for any test.
pub fn operator_client(auth: &oms_config::AuthConfig) -> reqwest::Client {
    let token = oms_edge::auth::mint(
        auth,
        auth.hs256_secret.as_bytes(),
        TEST_OPERATOR,
        Role::Operator,
        Duration::from_secs(24 * 3600),
    );
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}")
            .parse()
            .expect("a token is a valid header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("building an HTTP client")
}

/// The original system's example body.
pub fn original_body() -> Value {
    json!({"customerId": "OMS-Cust-001", "totalAmount": 2599.99, "productIds": ["item1", "item2"]})
}

/// A body in the `items` form.
pub fn items_body(customer: &str, amount: Value, items: &[(&str, u32)]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|(p, q)| json!({"productId": p, "quantity": q}))
        .collect();
    json!({"customerId": customer, "totalAmount": amount, "items": items})
}

/// All names a topology check looks for, re-exported for tests.
pub use topology::{CUSTOMERS, INVENTORY, ORDERS, PAYMENTS};

/// Number of messages on `subject` (wildcards allowed) in `stream`: the pending count of a
/// throwaway consumer (stream info lists at most a page of subjects).
pub async fn count(js: &jetstream::Context, stream: &str, subject: &str) -> u64 {
    use jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
    let stream = js.get_stream(stream).await.expect("stream exists");
    let mut consumer = stream
        .create_consumer(pull::Config {
            filter_subject: subject.to_string(),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(10),
            ..Default::default()
        })
        .await
        .expect("a counting consumer");
    // The observer may not delete it; it goes by itself once inactive.
    consumer.info().await.expect("consumer info").num_pending
}

/// POSTs `body` with `key` until it is accepted (the edge or NATS may be down for a while);
/// returns the order id. Retrying with the same key is what makes a lost answer harmless.
pub async fn place_until_accepted(
    http: &reqwest::Client,
    edge: &str,
    body: &Value,
    key: &str,
) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let answer = http
            .post(format!("{edge}/orders"))
            .header("idempotency-key", key)
            .timeout(Duration::from_secs(30))
            .json(body)
            .send()
            .await;
        if let Ok(r) = answer {
            let status = r.status().as_u16();
            let answer: Value = r.json().await.unwrap_or(Value::Null);
            match status {
                202 => return answer["orderId"].as_str().expect("an order id").to_string(),
                // In flight, the bus away, or over the rate limit: all say "retry".
                409 | 429 | 503 => {}
                other => panic!("unexpected {other}: {answer}"),
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "order {key} never accepted"
        );
        // Not a wait for an effect: a client's pause between retries.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the order is CONFIRMED or REJECTED (over HTTP); returns it.
pub async fn wait_terminal(http: &reqwest::Client, edge: &str, id: &str) -> Value {
    eventually(DEADLINE, &format!("order {id} to end"), || async move {
        let r = http.get(format!("{edge}/orders/{id}")).send().await.ok()?;
        assert_ne!(
            r.status().as_u16(),
            404,
            "an accepted order is always readable"
        );
        let order: Value = r.json().await.ok()?;
        (order["status"] == "CONFIRMED" || order["status"] == "REJECTED").then_some(order)
    })
    .await
}

/// The order ids that have a charge in the payment ledger.
pub async fn charged(js: &jetstream::Context) -> std::collections::HashSet<String> {
    use futures::StreamExt;
    let ledger = js
        .get_key_value("payment-ledger")
        .await
        .expect("the ledger bucket");
    ledger
        .keys()
        .await
        .expect("ledger keys")
        .map(|k| k.expect("a ledger key"))
        .collect()
        .await
}
