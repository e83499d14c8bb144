//! The services as separate processes — the real binaries — for tests that kill them.
//!
//! Each service gets its own port and the SQLite files of one temporary folder; `kill` is a
//! SIGKILL (no chance to finish anything), `terminate` a SIGTERM (graceful), `start` brings a
//! service back on the same port and data.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tempfile::TempDir;

use crate::testing::{NatsCluster, NatsServer, TestBroker, eventually, free_port};
use crate::{DEADLINE, SERVICES, SQL_SERVICES, database_url, unique_tag};

/// The folder holding the `oms-*` binaries, built first if needed (a no-op after
/// `cargo test --workspace --all-targets`, which builds them). The build names the same targets
/// as that command: with `--bins` alone cargo would resolve the dependencies' features without
/// the dev-dependencies, rebuild the binaries differently, and the next `cargo test` back again.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // This test runs from <target>/<profile>/deps/.
        let exe = std::env::current_exe().expect("the test binary's path");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("<target>/<profile>")
            .to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "--workspace", "--all-targets"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        if dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("running cargo build");
        assert!(status.success(), "building the service binaries failed");
        dir
    })
}

/// `config` with the `OMS_*` settings of `env` applied, as a service reads them.
fn with_env(config: oms_config::Config, env: &[(String, String)]) -> oms_config::Config {
    use figment::providers::Serialized;
    let mut figment = figment::Figment::from(Serialized::defaults(config));
    for (key, value) in env {
        let Some(key) = key.strip_prefix("OMS_") else {
            continue;
        };
        let key = key.to_lowercase().replace("__", ".");
        let value: figment::value::Value = value.parse().expect("a config value");
        figment = figment.merge(Serialized::default(&key, value));
    }
    figment.extract().expect("the test settings are valid")
}

/// The broker the services talk to: one nats-server, or a three-node cluster.
pub enum Broker {
    Single(NatsServer),
    Cluster(NatsCluster),
}

impl Broker {
    pub fn url(&self) -> String {
        match self {
            Broker::Single(s) => s.url(),
            Broker::Cluster(c) => c.url(),
        }
    }

    /// A default config that reaches the broker with its identities.
    pub fn config(&self) -> oms_config::Config {
        match self {
            Broker::Single(s) => s.config(),
            Broker::Cluster(c) => c.config(),
        }
    }
}

/// nats-server plus the five services, each its own process.
pub struct Processes {
    pub broker: Broker,
    pub http: reqwest::Client,
    dir: TempDir,
    ports: HashMap<&'static str, u16>,
    children: HashMap<&'static str, Child>,
    env: Vec<(String, String)>,
    tag: String,
}

impl Processes {
    /// Starts nats-server and all five services; `env` adds `OMS_*` settings for all of them.
    pub async fn start(env: &[(&str, &str)]) -> Processes {
        Self::start_on(Broker::Single(NatsServer::start()), env).await
    }

    /// The five services on `broker`.
    pub async fn start_on(broker: Broker, env: &[(&str, &str)]) -> Processes {
        let bins = bin_dir();
        assert!(bins.join("oms-edge").exists(), "no binaries in {bins:?}");
        let mut ports = HashMap::new();
        for service in SERVICES {
            ports.insert(service, free_port());
        }
        let mut procs = Processes {
            broker,
            http: reqwest::Client::new(),
            dir: tempfile::tempdir().expect("a temporary folder"),
            ports,
            children: HashMap::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            tag: unique_tag(),
        };
        // Tokens signed with a secret of this run, and a rate limit tests never reach; before the
        // caller's settings, so those win.
        let secret = crate::random_secret();
        let rate = crate::TEST_RATE.to_string();
        let ours = [
            ("OMS_AUTH__HS256_SECRET", secret.as_str()),
            ("OMS_HTTP__RATE_PER_SECOND", rate.as_str()),
            ("OMS_HTTP__RATE_BURST", rate.as_str()),
        ];
        procs
            .env
            .splice(0..0, ours.map(|(k, v)| (k.to_string(), v.to_string())));
        procs.http = crate::operator_client(&procs.auth());
        let config = procs.broker.config();
        procs.env.push((
            "OMS_NATS__CREDS_DIR".into(),
            config.nats.creds_dir.display().to_string(),
        ));
        // The topology with the settings the services get (replicas, ack wait...).
        let provisioned = with_env(config, &procs.env);
        oms_bus::provision::topology(&provisioned, Duration::from_secs(60))
            .await
            .expect("the provisioner creates the topology");
        for service in SQL_SERVICES {
            let url = procs.database_url(service);
            procs
                .env
                .push((format!("OMS_{}__DATABASE_URL", service.to_uppercase()), url));
        }
        for service in SERVICES {
            procs.start_service(service).await;
        }
        procs
    }

    /// The single nats-server (panics on a cluster).
    pub fn nats(&mut self) -> &mut NatsServer {
        match &mut self.broker {
            Broker::Single(s) => s,
            Broker::Cluster(_) => panic!("the services run on a cluster"),
        }
    }

    /// The cluster (panics on a single server).
    pub fn cluster(&mut self) -> &mut NatsCluster {
        match &mut self.broker {
            Broker::Cluster(c) => c,
            Broker::Single(_) => panic!("the services run on a single server"),
        }
    }

    /// A JetStream context on the broker as the read-only observer, for tests to look inside.
    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        self.jetstream_as(oms_topology::identity::Identity::Observer)
            .await
    }

    /// A JetStream context on the broker as `identity`.
    pub async fn jetstream_as(
        &self,
        identity: oms_topology::identity::Identity,
    ) -> async_nats::jetstream::Context {
        let client = crate::testing::connect_as(&self.broker.config(), identity).await;
        async_nats::jetstream::new(client)
    }

    /// The auth settings the edge runs with (its secret), for tests to mint tokens.
    pub fn auth(&self) -> oms_config::AuthConfig {
        let mut auth = oms_config::AuthConfig::default();
        if let Some((_, secret)) = self
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == "OMS_AUTH__HS256_SECRET")
        {
            auth.hs256_secret = secret.clone();
        }
        auth
    }

    /// The SQL URL of `service` (SQLite file or PostgreSQL database), for tests to look inside.
    pub fn database_url(&self, service: &str) -> String {
        database_url(self.dir.path(), &self.tag, service)
    }

    pub fn url(&self, service: &str) -> String {
        format!("http://127.0.0.1:{}", self.ports[service])
    }

    pub fn edge(&self) -> String {
        self.url("edge")
    }

    /// Starts (or restarts) `service` and waits until it is ready.
    pub async fn start_service(&mut self, service: &'static str) {
        assert!(!self.children.contains_key(service), "{service} runs");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{service}.log")))
            .expect("a log file");
        let mut child = Command::new(bin_dir().join(format!("oms-{service}")))
            .env("OMS_CONFIG", "/nonexistent/oms.toml")
            .env("OMS_PROFILE", "default")
            .env("OMS_NATS__URL", self.broker.url())
            .env("OMS_DATA_DIR", self.dir.path())
            .env(
                format!("OMS_{}__HTTP_PORT", service.to_uppercase()),
                self.ports[service].to_string(),
            )
            .env("OMS_LOG", "warn")
            .env("RUST_BACKTRACE", "0")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting a service binary");
        // Ready means this process answers: if it exits instead (its port taken, a bad
        // setting), say so at once with its log rather than wait for the deadline.
        let ready = format!("{}/readyz", self.url(service));
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().expect("checking the process") {
                panic!(
                    "{service} exited at start-up ({status})\n{}",
                    self.log_tails(15)
                );
            }
            let answer = self.http.get(&ready).send().await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "timed out after {DEADLINE:?} waiting for {service} to be ready\n{}",
                    self.log_tails(15)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.children.insert(service, child);
    }

    /// The last `lines` lines each service logged (warnings and errors), for failure messages.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for service in SERVICES {
            let log = std::fs::read_to_string(self.dir.path().join(format!("{service}.log")))
                .unwrap_or_default();
            let all: Vec<&str> = log.lines().collect();
            out.push_str(&format!("--- {service} ({} lines)\n", all.len()));
            for line in &all[all.len().saturating_sub(lines)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// SIGKILL: the process gets no chance to finish anything.
    pub fn kill(&mut self, service: &str) {
        let mut child = self.children.remove(service).expect("service runs");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaping the process");
    }

    /// SIGTERM, then waits for the exit; returns the exit code and how long it took.
    pub async fn terminate(&mut self, service: &str) -> (Option<i32>, Duration) {
        let mut child = self.children.remove(service).expect("service runs");
        let started = std::time::Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -TERM failed");
        let code = eventually(DEADLINE, &format!("{service} to exit"), || {
            let exited = child.try_wait().expect("checking the process");
            async move { exited.map(|s| s.code()) }
        })
        .await;
        (code, started.elapsed())
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Orders placed in the background, 16 at a time, each with Idempotency-Key `<prefix><i>` and
/// retried until accepted, while a test kills things.
pub struct Load {
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<Vec<(usize, String)>>,
}

impl Load {
    pub fn start(
        procs: &Processes,
        count: usize,
        prefix: &'static str,
        order: fn(usize) -> serde_json::Value,
    ) -> Load {
        use futures::StreamExt;
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (edge, http, counter) = (procs.edge(), procs.http.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            futures::stream::iter(0..count)
                .map(|i| {
                    let (edge, http, counter) = (edge.clone(), http.clone(), counter.clone());
                    async move {
                        let key = format!("{prefix}{i}");
                        let id = crate::place_until_accepted(&http, &edge, &order(i), &key).await;
                        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        (i, id)
                    }
                })
                .buffer_unordered(16)
                .collect::<Vec<_>>()
                .await
        });
        Load { accepted, task }
    }

    /// Orders accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until `n` orders are accepted.
    pub async fn reached(&self, n: usize) {
        eventually(
            Duration::from_secs(180),
            &format!("{n} orders accepted"),
            || {
                let done = self.accepted() >= n;
                async move { done.then_some(()) }
            },
        )
        .await
    }

    /// Waits for every order to be accepted; returns (index, order id) pairs.
    pub async fn finish(self) -> Vec<(usize, String)> {
        self.task.await.expect("the load task does not panic")
    }
}

/// Waits until `count` orders are final in the order service's database; fails after `limit`
/// with the services' latest log lines. Returns how long it took.
pub async fn all_final(
    procs: &Processes,
    orders: &sqlx::AnyPool,
    count: usize,
    limit: Duration,
) -> Duration {
    use sqlx::Row;
    let started = std::time::Instant::now();
    loop {
        let done: i64 = sqlx::query("SELECT COUNT(*) AS n FROM orders WHERE status <> 'PENDING'")
            .fetch_one(orders)
            .await
            .expect("counting final orders")
            .get("n");
        if done as usize == count {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "only {done} of {count} orders final after {limit:?}\n{}",
            procs.log_tails(15)
        );
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
