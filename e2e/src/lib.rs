//! A whole OMS for one test, behind one API, [`Stack`]: a real nats-server (or a three-node
//! cluster) with the project's identities, the five services, and an HTTP client for the edge.
//!
//! The services run in one of two [`Mode`]s: in this process, each through its own
//! `run(config, listener, shutdown)`, or as the real `oms-*` binaries in child processes, for
//! tests that kill them. Either way a service keeps its port for the whole test (a restart
//! comes back on the same one) and its data in the test's [`DataDir`].
//!
//! ```text
//! let stack = Stack::start().await;                   // all five in-process, one nats-server
//! let id = stack.place_ok(&original_body()).await;
//! assert_eq!(stack.terminal(&id).await["status"], "CONFIRMED");
//!
//! let mut stack = Stack::builder(Mode::Processes)
//!     .cluster()
//!     .configure(|config| config.streams.replicas = 3)
//!     .start()
//!     .await;
//! stack.kill_service("order").await;                  // SIGKILL
//! stack.start_service("order").await;
//! ```

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::{FutureExt, StreamExt};
use oms_config::Config;
use oms_testkit::{NatsCluster, NatsServer, TestBroker, eventually, free_port};
use oms_topology::identity::Identity;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use oms_edge::auth::Role;
pub use oms_testkit as testing;
/// The streams tests look into.
pub use oms_topology::{CUSTOMERS, INVENTORY, ORDERS, PAYMENTS};

pub mod browser;
pub mod load;
mod process;

/// The services, by the name of their config section; each one's binary is `oms-<name>`.
pub const SERVICES: [&str; 5] = ["edge", "customer", "inventory", "payment", "order"];

/// Generous: CI machines are slow and shared, and nothing here sleeps for a fixed time.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Requests per second (and burst) the edge lets each identity make: far more than tests do.
const TEST_RATE: u32 = 1_000_000;

/// The operator that [`Stack::http`] acts as.
const TEST_OPERATOR: &str = "tests";

/// How long the topology may take to be created: a new cluster may still be electing leaders.
const PROVISION_WAIT: Duration = Duration::from_secs(60);

/// Where the services run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Each service's `run` as a task of the test's runtime: starts in milliseconds. Consumers
    /// retry quickly (100 ms, then 500 ms) to keep the tests short; the schedule itself is
    /// tested in shared.
    InProcess,
    /// The built `oms-*` binaries as child processes, each logging to `<service>.log` in the
    /// [`DataDir`]: for tests that SIGKILL or SIGTERM them. Consumers keep the services' own
    /// retry schedule (1 s up to 30 s), as deployed: these tests are about surviving restarts.
    Processes,
}

/// How a [`Stack`] starts: [`Stack::builder`], the settings to change, then [`Builder::start`].
pub struct Builder {
    mode: Mode,
    services: Vec<&'static str>,
    cluster: bool,
    config: Config,
}

impl Builder {
    /// Starts only these services; [`Stack::start_service`] starts the others later.
    pub fn services(mut self, services: &[&'static str]) -> Builder {
        self.services = services.to_vec();
        self
    }

    /// A three-node JetStream cluster (`nats-cluster.conf`, as compose runs it) instead of one
    /// nats-server.
    pub fn cluster(mut self) -> Builder {
        self.cluster = true;
        self
    }

    /// Changes the test settings before anything starts, so that the topology is created with
    /// them too (replicas, limits, ack wait…).
    pub fn configure(mut self, change: impl FnOnce(&mut Config)) -> Builder {
        change(&mut self.config);
        self
    }

    /// Starts the broker, creates the topology and starts the services.
    pub async fn start(self) -> Stack {
        let Builder {
            mode,
            services,
            cluster,
            mut config,
        } = self;
        if mode == Mode::InProcess {
            oms_host::telemetry::init(&config.log);
        }
        // Starting a server waits for it with blocking sleeps: not on the runtime's threads.
        let broker = tokio::task::spawn_blocking(move || match cluster {
            true => Broker::Cluster(NatsCluster::start()),
            false => Broker::Single(NatsServer::start()),
        })
        .await
        .expect("starting the broker");
        let data = DataDir::temporary();
        config.data_dir = data.path().to_path_buf();
        config.nats.url = broker.url();
        config.nats.creds_dir = broker.creds_dir();
        // Each service keeps its port for the whole test: a restarted one is where clients and
        // running load look for it.
        for service in [
            &mut config.edge,
            &mut config.customer,
            &mut config.inventory,
            &mut config.payment,
            &mut config.order,
        ] {
            service.http_port = free_port();
        }
        config.customer.database_url = data.database_url("customer");
        config.inventory.database_url = data.database_url("inventory");
        config.order.database_url = data.database_url("order");
        let mut stack = Stack {
            http: operator_client(&config.auth),
            nats: broker,
            config,
            data,
            mode,
            running: HashMap::new(),
        };
        stack.provision().await;
        for service in services {
            stack.start_service(service).await;
        }
        stack
    }
}

/// The settings of every test stack, before [`Builder::configure`] changes some.
fn test_config(mode: Mode) -> Config {
    let mut config = Config {
        log: "warn".into(),
        ..Config::default()
    };
    // Tests reach the services on this machine only.
    config.http.bind = [127, 0, 0, 1].into();
    // The edge checks tokens as it would anywhere, with a secret of this test; tests place many
    // orders quickly.
    config.auth.hs256_secret = random_secret();
    config.http.rate_per_second = TEST_RATE;
    config.http.rate_burst = TEST_RATE;
    if mode == Mode::InProcess {
        config.consumers.backoff = vec![Duration::from_millis(100), Duration::from_millis(500)];
    }
    config
}

/// The broker of a stack: one nats-server, or a three-node cluster.
pub enum Broker {
    Single(NatsServer),
    Cluster(NatsCluster),
}

impl Broker {
    /// The single nats-server, e.g. to kill and restart it (panics on a cluster).
    pub fn server(&mut self) -> &mut NatsServer {
        match self {
            Broker::Single(server) => server,
            Broker::Cluster(_) => panic!("the services run on a cluster"),
        }
    }

    /// The cluster, e.g. to kill and restart a node (panics on a single server).
    pub fn cluster(&mut self) -> &mut NatsCluster {
        match self {
            Broker::Cluster(cluster) => cluster,
            Broker::Single(_) => panic!("the services run on a single server"),
        }
    }
}

impl TestBroker for Broker {
    fn url(&self) -> String {
        match self {
            Broker::Single(server) => server.url(),
            Broker::Cluster(cluster) => cluster.url(),
        }
    }

    fn store(&self) -> &Path {
        match self {
            Broker::Single(server) => server.store(),
            Broker::Cluster(cluster) => cluster.store(),
        }
    }
}

/// One test's own data: a temporary folder (the services' `data_dir`: their SQLite files and,
/// as processes, their config file and logs) and, when `OMS_TEST_POSTGRES` names a PostgreSQL
/// server (`postgres://user@host:port`), databases there with names unique to the test.
pub struct DataDir {
    dir: TempDir,
    tag: String,
}

impl DataDir {
    pub fn temporary() -> DataDir {
        DataDir {
            dir: tempfile::tempdir().expect("creating a temporary folder"),
            tag: format!("t{}", uuid::Uuid::new_v4().simple()),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The URL of the database `name` (a service's, or a test's own): `<name>.db` in the
    /// folder, or the PostgreSQL database `<tag>_<name>`, created on its first connection.
    pub fn database_url(&self, name: &str) -> String {
        match std::env::var("OMS_TEST_POSTGRES") {
            Ok(base) if !base.is_empty() => {
                format!("{}/{}_{name}", base.trim_end_matches('/'), self.tag)
            }
            _ => format!(
                "sqlite://{}?mode=rwc",
                self.path().join(format!("{name}.db")).display()
            ),
        }
    }
}

/// A running OMS for one test; everything it started ends with it.
pub struct Stack {
    /// The nats-server or cluster: to kill and restart, or to connect to as any identity.
    pub nats: Broker,
    /// The settings a service starts with: change them before [`Stack::start_service`] to
    /// start one differently.
    pub config: Config,
    /// Sends an operator token with every request (a request's own `Authorization` wins).
    pub http: reqwest::Client,
    /// The test's folder and databases: `data.database_url("order")` is the order service's.
    pub data: DataDir,
    mode: Mode,
    running: HashMap<&'static str, Running>,
}

/// A service that was started: a task of this process, or a child process.
enum Running {
    Task {
        shutdown: CancellationToken,
        task: JoinHandle<anyhow::Result<()>>,
    },
    Process(Child),
}

impl Running {
    /// `None` while it runs; once it has ended, `Ok` if cleanly (`run` returned `Ok`, exit
    /// status 0), else why not.
    fn ended(&mut self) -> Option<Result<(), String>> {
        match self {
            Running::Task { task, .. } => Some(match task.now_or_never()? {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("{e:#}")),
                Err(e) => Err(e.to_string()),
            }),
            Running::Process(child) => {
                let status = child.try_wait().expect("checking the process")?;
                Some(if status.success() {
                    Ok(())
                } else {
                    Err(status.to_string())
                })
            }
        }
    }
}

impl Stack {
    /// What most tests need: all five services in this process on one nats-server, with the
    /// test settings. Short for `Stack::builder(Mode::InProcess).start()`.
    pub async fn start() -> Stack {
        Stack::builder(Mode::InProcess).start().await
    }

    /// A stack in `mode`, to set up before [`Builder::start`]: all five services on one
    /// nats-server unless told otherwise.
    pub fn builder(mode: Mode) -> Builder {
        Builder {
            mode,
            services: SERVICES.to_vec(),
            cluster: false,
            config: test_config(mode),
        }
    }

    /// Starts `service` (again: same port, same data) and waits until its `/readyz` answers 200.
    pub async fn start_service(&mut self, service: &str) {
        let name = SERVICES
            .into_iter()
            .find(|s| *s == service)
            .unwrap_or_else(|| panic!("no service {service}"));
        assert!(!self.running.contains_key(name), "{name} already runs");
        let running = match self.mode {
            Mode::InProcess => self.spawn_task(name).await,
            Mode::Processes => Running::Process(process::spawn(&self.config, name)),
        };
        self.running.insert(name, running);
        // Ready means this instance answers. If it ends instead (its port taken, a bad setting),
        // say so at once and why; on a timeout, show what the services logged.
        let ready = format!("{}/readyz", self.url(name));
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(ended) = self.running.get_mut(name).and_then(Running::ended) {
                panic!(
                    "{name} ended at start-up: {ended:?}\n{}",
                    self.log_tails(15)
                );
            }
            let answer = self.http.get(&ready).send().await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {DEADLINE:?} waiting for {name} to be ready\n{}",
                self.log_tails(15)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn spawn_task(&self, name: &str) -> Running {
        let port = port(&self.config, name);
        let listener = TcpListener::bind((self.config.http.bind, port))
            .await
            .expect("binding the service's port");
        let (config, shutdown) = (self.config.clone(), CancellationToken::new());
        let stop = shutdown.clone();
        let task = match name {
            "edge" => tokio::spawn(oms_edge::run(config, listener, stop)),
            "customer" => tokio::spawn(oms_customer::run(config, listener, stop)),
            "inventory" => tokio::spawn(oms_inventory::run(config, listener, stop)),
            "payment" => tokio::spawn(oms_payment::run(config, listener, stop)),
            "order" => tokio::spawn(oms_order::run(config, listener, stop)),
            other => panic!("no service {other}"),
        };
        Running::Task { shutdown, task }
    }

    /// Stops `service` gracefully (SIGTERM to a process, its shutdown token to a task) and waits
    /// for it to end. Returns how it ended (`Ok` for exit status 0 or `run` returning `Ok`) and
    /// how long that took.
    #[must_use = "says whether the service ended cleanly"]
    pub async fn stop_service(&mut self, service: &str) -> (Result<(), String>, Duration) {
        let mut running = self.running.remove(service).expect("the service runs");
        let started = Instant::now();
        match &running {
            Running::Task { shutdown, .. } => shutdown.cancel(),
            Running::Process(child) => {
                let status = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status()
                    .expect("running kill");
                assert!(status.success(), "kill -TERM failed");
            }
        }
        let ended = eventually(DEADLINE, &format!("{service} to stop"), || {
            let ended = running.ended();
            async move { ended }
        })
        .await;
        (ended, started.elapsed())
    }

    /// Ends `service` at once, with no chance to finish anything: SIGKILL to a process. A task
    /// is aborted at its next `.await` (its destructors still run, unlike a killed process's).
    pub async fn kill_service(&mut self, service: &str) {
        match self.running.remove(service).expect("the service runs") {
            Running::Task { task, .. } => {
                task.abort();
                let _ = task.await;
            }
            Running::Process(mut child) => {
                child.kill().expect("SIGKILL");
                child.wait().expect("reaping the process");
            }
        }
    }

    /// Runs the command-line tool `oms-<tool>` (e.g. `view`) against this stack, to its end.
    pub fn run_tool(&self, tool: &str, args: &[&str]) -> std::process::Output {
        process::run_tool(&self.config, tool, args)
    }

    /// The last `lines` lines each service process logged (warnings and errors), for failure
    /// messages.
    pub fn log_tails(&self, lines: usize) -> String {
        match self.mode {
            Mode::InProcess => "(the services run in this process: they log to its output)".into(),
            Mode::Processes => process::log_tails(&self.config.data_dir, lines),
        }
    }

    /// The base URL of `service`'s HTTP listener (the API of the edge, health of all); the same
    /// across restarts.
    pub fn url(&self, service: &str) -> String {
        format!("http://127.0.0.1:{}", port(&self.config, service))
    }

    pub fn edge(&self) -> String {
        self.url("edge")
    }

    /// A token of `sub` as `role` for this stack's edge, valid for an hour.
    pub fn token(&self, sub: &str, role: Role) -> String {
        let auth = &self.config.auth;
        oms_edge::auth::mint(
            auth,
            auth.hs256_secret.as_bytes(),
            sub,
            role,
            Duration::from_secs(3600),
        )
    }

    /// A customer's token: it may place and read only its own orders.
    pub fn customer_token(&self, customer_id: &str) -> String {
        self.token(customer_id, Role::Customer)
    }

    /// A token of the operator that [`Stack::http`] acts as.
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

    /// Creates the topology (again, after a test removed part of it), as the provisioner.
    pub async fn provision(&self) {
        oms_bus::provision::topology(&self.config, PROVISION_WAIT)
            .await
            .expect("the provisioner creates the topology");
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

    /// `POST path` on the edge, as the holder of `token` (an operator if `None`), with a JSON
    /// body if given; returns the status and the parsed answer.
    pub async fn post_as(
        &self,
        token: Option<&str>,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.edge());
        let mut request = match token {
            Some(token) => reqwest::Client::new().post(url).bearer_auth(token),
            None => self.http.post(url),
        };
        if let Some(body) = body {
            request = request.json(body);
        }
        let r = request.send().await.expect("edge answers");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `PATCH path` on the edge as an operator, with a JSON body.
    pub async fn patch(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .patch(format!("{}{path}", self.edge()))
            .json(body)
            .send()
            .await
            .expect("edge answers");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `GET path` on the edge as the holder of `token`: status and parsed answer.
    pub async fn get_as(&self, token: &str, path: &str) -> (u16, Value) {
        let r = reqwest::Client::new()
            .get(format!("{}{path}", self.edge()))
            .bearer_auth(token)
            .send()
            .await
            .expect("edge answers");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Waits until the order's status is `status`; returns the order.
    pub async fn until_status(&self, order_id: &str, status: &str) -> Value {
        let path = format!("/orders/{order_id}");
        eventually(
            DEADLINE,
            &format!("order {order_id} to be {status}"),
            || {
                let path = path.clone();
                async move {
                    let (code, body) = self.get(&path).await;
                    let order: Value = serde_json::from_str(&body).ok()?;
                    (code == 200 && order["status"] == status).then_some(order)
                }
            },
        )
        .await
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

    /// How far `durable` on `stream` is, for a failure message.
    pub async fn consumer_state(&self, stream: &str, durable: &str) -> String {
        let js = self.jetstream().await;
        let consumer: Result<jetstream::consumer::PullConsumer, _> =
            js.get_consumer_from_stream(durable, stream).await;
        match consumer {
            Ok(mut consumer) => match consumer.info().await {
                Ok(i) => format!(
                    "{} pending, {} awaiting an ack, {} redelivered, {} pull requests waiting",
                    i.num_pending, i.num_ack_pending, i.num_redelivered, i.num_waiting
                ),
                Err(e) => format!("no info: {e}"),
            },
            Err(e) => format!("not found: {e}"),
        }
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

    /// Number of messages on `subject` (wildcards allowed) in `stream`, from the stream's info
    /// (paged: one page holds a limited number of subjects).
    pub async fn count(&self, stream: &str, subject: &str) -> u64 {
        let js = self.jetstream().await;
        let stream = js.get_stream(stream).await.expect("stream exists");
        let subjects = stream
            .info_with_subjects(subject)
            .await
            .expect("the stream's subjects");
        subjects
            .map(|s| s.expect("a page of subjects").1 as u64)
            .fold(0, |sum, n| async move { sum + n })
            .await
    }

    /// The audit of every order's money and stock, judging even the latest orders (the caller
    /// waits for the system to settle first).
    pub async fn audit(&self) -> oms_ops::audit::Report {
        let js = self.jetstream().await;
        let orders = oms_ops::audit::read(&js).await.expect("the audit reads");
        let now = time::OffsetDateTime::now_utc();
        oms_ops::audit::check(&orders, now, Duration::ZERO, self.config.orders.deadline)
    }

    /// The orders the ledger holds a charge of (not a void, not refunds).
    pub async fn charged(&self) -> HashSet<String> {
        self.ledger()
            .await
            .into_iter()
            .filter(|(_, money)| money.charged.is_some())
            .map(|(order, _)| order)
            .collect()
    }

    /// What the ledger says of each order it knows: charged, refunded, voided.
    pub async fn ledger(&self) -> HashMap<String, Settled> {
        let js = self.jetstream().await;
        oms_ops::audit::ledger(&js)
            .await
            .expect("the ledger reads")
            .into_iter()
            .map(|(order, money)| (order.to_string(), money))
            .collect()
    }
}

/// An order's money, as the ledger has it.
pub use oms_ops::audit::Ledger as Settled;

impl Drop for Stack {
    fn drop(&mut self) {
        for running in self.running.values_mut() {
            match running {
                Running::Task { shutdown, task } => {
                    shutdown.cancel();
                    task.abort();
                }
                Running::Process(child) => {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
    }
}

/// The port of `service` in `config`.
fn port(config: &Config, service: &str) -> u16 {
    match service {
        "edge" => config.edge.http_port,
        "customer" => config.customer.http_port,
        "inventory" => config.inventory.http_port,
        "payment" => config.payment.http_port,
        "order" => config.order.http_port,
        other => panic!("no service {other}"),
    }
}

/// A fresh HS256 secret for one test's edge (256 bits of randomness as hex).
pub fn random_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// An HTTP client that sends an operator token with every request (a request's own
/// `Authorization` header wins), valid for a day: long enough for any test.
fn operator_client(auth: &oms_config::AuthConfig) -> reqwest::Client {
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

/// The workspace's root folder.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ is in the workspace root")
}

/// A file of the workspace, by its path from the root.
pub fn workspace_file(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The original system's example body.
pub fn original_body() -> Value {
    json!({"customerId": "OMS-Cust-001", "totalAmount": 2599.99, "productIds": ["item1", "item2"]})
}

/// A body in the `items` form; `amount` null leaves `totalAmount` out (inventory prices the
/// order), else the amount must be what the items cost (see DESIGN's demo prices).
pub fn items_body(customer: &str, amount: Value, items: &[(&str, u32)]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|(p, q)| json!({"productId": p, "quantity": q}))
        .collect();
    let mut body = json!({"customerId": customer, "items": items});
    if !amount.is_null() {
        body["totalAmount"] = amount;
    }
    body
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

#[cfg(test)]
mod tests {
    use super::free_port;

    /// What the services' start-up relies on: no two tests get the same port, and no outgoing
    /// connection or `bind(0)` can land on one (they use the ephemeral range).
    #[test]
    fn free_ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .expect("Linux names its ephemeral range");
        let low: u16 = range.split_whitespace().next().unwrap().parse().unwrap();
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "a port handed out twice");
        for port in ports {
            assert!((10_000..low).contains(&port), "{port} not below {low}");
            std::net::TcpListener::bind(("0.0.0.0", port)).expect("the port is free");
        }
    }
}
