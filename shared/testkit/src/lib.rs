//! Test support: a real nats-server on a free port with a temporary store, killed on drop.
//! It runs the project's own `nats.conf` (or `nats-cluster.conf`) with identities made for it
//! by [`provision`], exactly as `scripts/run.sh` does: nobody is anonymous in a test either.
//!
//! The binary is `$OMS_NATS_SERVER`, else `.tools/venv/bin/nats-server` in the workspace (where
//! `scripts/test.sh` installs it), else `nats-server` on `PATH`. A missing binary fails the test
//! loudly: a test that cannot run must not pass.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use oms_bus as bus;
use oms_config::Config;
use oms_topology::identity::Identity;
use oms_topology::provision;

/// How long a test waits for a server to take the topology.
const PROVISION_WAIT: Duration = Duration::from_secs(30);

/// Makes the identities in `<dir>/creds` and `<dir>/nats-server.conf` including `base`.
fn server_config(dir: &Path, base: &str) -> PathBuf {
    let creds = dir.join("creds");
    provision::ensure_creds(&creds).expect("making the test identities");
    let out = dir.join(provision::SERVER_CONFIG_FILE);
    provision::write_server_config(&creds, &workspace_root().join(base), &out)
        .expect("writing the test server's config");
    out
}

/// What a test does with a broker it started, one node or a cluster: reach it as one of its
/// identities, and create the topology on it.
pub trait TestBroker {
    /// The client URL(s), as `nats.url` takes them.
    fn url(&self) -> String;
    /// The folder of the temporary store holding the seeds of its identities.
    fn store(&self) -> &Path;

    /// Where the seeds of its identities are.
    fn creds_dir(&self) -> PathBuf {
        self.store().join("creds")
    }

    /// A default config that reaches it with its identities.
    fn config(&self) -> Config {
        let mut config = Config::default();
        config.nats.url = self.url();
        config.nats.creds_dir = self.creds_dir();
        config
    }

    /// A client connected as `identity`.
    fn connect_as(&self, identity: Identity) -> impl Future<Output = async_nats::Client> {
        let config = self.config();
        async move { connect_as(&config, identity).await }
    }

    /// Creates the topology with `config`'s settings, as the provisioner.
    fn provision(&self, config: &Config) -> impl Future<Output = ()> {
        let config = config.clone();
        async move {
            bus::provision::topology(&config, PROVISION_WAIT)
                .await
                .expect("the provisioner creates the topology");
        }
    }
}

impl TestBroker for NatsServer {
    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn store(&self) -> &Path {
        self.store.path()
    }
}

impl TestBroker for NatsCluster {
    fn url(&self) -> String {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect();
        urls.join(",")
    }

    fn store(&self) -> &Path {
        self.store.path()
    }
}

/// A nats-server with JetStream, owned by one test.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: TempDir,
}

impl NatsServer {
    /// Starts a server on a free port; panics with a clear message if it cannot.
    pub fn start() -> Self {
        let store = tempfile::tempdir().expect("creating a temporary folder");
        let port = free_port();
        let child = spawn(store.path(), port);
        NatsServer {
            child: Some(child),
            port,
            store,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server hard (SIGKILL), keeping its store.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same store (after [`NatsServer::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        let child = spawn(self.store.path(), self.port);
        self.child = Some(child);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The nats-server binary tests use.
pub fn nats_server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("OMS_NATS_SERVER") {
        return path.into();
    }
    let local = workspace_root().join(".tools/venv/bin/nats-server");
    if local.exists() {
        return local;
    }
    PathBuf::from("nats-server")
}

fn workspace_root() -> PathBuf {
    // This crate lives in <root>/shared/testkit.
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .canonicalize()
        .expect("the workspace root exists")
}

// The child is handed to `NatsServer`, which kills and waits for it.
#[allow(clippy::zombie_processes)]
fn spawn(store: &Path, port: u16) -> Child {
    let config = server_config(store, "nats.conf");
    let ports_dir = store.join("ports");
    let _ = std::fs::remove_dir_all(&ports_dir);
    std::fs::create_dir_all(&ports_dir).expect("creating the ports folder");
    let binary = nats_server_binary();
    // The file's ports are the developer's (4222, 8222); a test takes free ones.
    let mut child = Command::new(&binary)
        .arg("-c")
        .arg(&config)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .args(["-m", &free_port().to_string(), "-js", "-sd"])
        .arg(store.join("js"))
        .arg("--ports_file_dir")
        .arg(&ports_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start nats-server ({}): {e}. Run ./scripts/test.sh, which installs it, \
                 or set OMS_NATS_SERVER to a nats-server >= 2.10",
                binary.display()
            )
        });
    // The server writes its ports into its own folder once it listens: the file says that
    // this server, not some other process, is the one on the port.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if read_port(&ports_dir) == Some(port)
            && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        {
            return child;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("nats-server on port {port} exited at start-up ({status})");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("nats-server did not start within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_port(dir: &Path) -> Option<u16> {
    let entry = std::fs::read_dir(dir).ok()?.flatten().next()?;
    let text = std::fs::read_to_string(entry.path()).ok()?;
    let ports: serde_json::Value = serde_json::from_str(&text).ok()?;
    let url = ports["nats"][0].as_str()?;
    url.rsplit(':').next()?.parse().ok()
}

/// A client of `config`'s server connected as `identity`, once the server has let it in.
pub async fn connect_as(config: &Config, identity: Identity) -> async_nats::Client {
    let client = bus::connect(config, identity)
        .await
        .unwrap_or_else(|e| panic!("connecting as {}: {e}", identity.name()));
    eventually(
        Duration::from_secs(20),
        &format!("{} to be connected", identity.name()),
        || {
            let client = client.clone();
            async move {
                (client.connection_state() == async_nats::connection::State::Connected)
                    .then_some(())
            }
        },
    )
    .await;
    client
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Three nats-servers on loopback forming one JetStream cluster, each started from the
/// repository's `nats-cluster.conf` (the template compose.yaml uses), each killed on drop.
pub struct NatsCluster {
    nodes: Vec<ClusterNode>,
    config: PathBuf,
    store: TempDir,
}

struct ClusterNode {
    name: String,
    env: Vec<(String, String)>,
    port: u16,
    child: Option<Child>,
}

impl NatsCluster {
    /// Starts the three nodes; returns once each accepts clients (the JetStream meta leader may
    /// still be in election: the services retry until it is there).
    pub fn start() -> Self {
        let store = tempfile::tempdir().expect("creating a temporary folder");
        let ports: Vec<(u16, u16, u16)> = (0..3)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, _, cluster)| format!("nats-route://127.0.0.1:{cluster}"))
            .collect();
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(i, (client, http, cluster))| {
                let name = format!("nats-{}", i + 1);
                let mut env = vec![
                    ("NATS_SERVER_NAME".to_string(), name.clone()),
                    ("NATS_HOST".to_string(), "127.0.0.1".to_string()),
                    ("NATS_PORT".to_string(), client.to_string()),
                    ("NATS_HTTP_PORT".to_string(), http.to_string()),
                    ("NATS_CLUSTER_PORT".to_string(), cluster.to_string()),
                    (
                        "NATS_STORE_DIR".to_string(),
                        store.path().join(&name).display().to_string(),
                    ),
                ];
                for (r, route) in routes.iter().enumerate() {
                    env.push((format!("NATS_ROUTE_{}", r + 1), route.clone()));
                }
                ClusterNode {
                    name,
                    env,
                    port: *client,
                    child: None,
                }
            })
            .collect();
        let config = server_config(store.path(), "nats-cluster.conf");
        let mut cluster = NatsCluster {
            nodes,
            config,
            store,
        };
        for i in 0..3 {
            cluster.start_node(i);
        }
        cluster
    }

    /// The client port of `node`.
    pub fn port(&self, node: usize) -> u16 {
        self.nodes[node].port
    }

    /// The node's server name (`nats-1`…), as stream info names leaders and replicas.
    pub fn name(&self, node: usize) -> &str {
        &self.nodes[node].name
    }

    /// Index of the node called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// SIGKILL one node, keeping its store.
    pub fn kill(&mut self, node: usize) {
        if let Some(mut child) = self.nodes[node].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed node again, same ports and store.
    pub fn start_node(&mut self, node: usize) {
        let config = self.config.clone();
        let binary = nats_server_binary();
        let n = &mut self.nodes[node];
        assert!(n.child.is_none(), "{} runs", n.name);
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&config)
            .envs(n.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({}): {e}", n.name, binary.display()));
        let child = n.child.insert(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", n.port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{} exited at start-up ({status})", n.name);
            }
            assert!(Instant::now() < deadline, "{} did not start", n.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// A port for a process a test starts: nobody listens on it now, and nobody else will take it
/// before that process binds it. A port from `bind(0)` would not do: it comes from the kernel's
/// ephemeral range, so between the probe and the bind an outgoing connection, a nats-server on
/// `-p -1` or another test's `bind(0)` can land on it — the process then fails to bind while
/// another test's process answers on the port. These ports come from below that range, each
/// handed out once per test binary (its tests run in parallel), from a start that depends on
/// the process id so that test binaries running side by side rarely meet.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let Some((first, span)) = ports_below_ephemeral() else {
        // An unusual ephemeral range leaves no room below it: take the kernel's pick.
        return std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
    };
    let offset = std::process::id().wrapping_mul(2_654_435_761) % span;
    for _ in 0..span {
        let candidate = first + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = u16::try_from(candidate).expect("below the ephemeral range");
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {first}..{}", first + span)
}

/// `(first, count)` of the ports from 10000 up to the kernel's ephemeral range.
fn ports_below_ephemeral() -> Option<(u32, u32)> {
    const FIRST: u32 = 10_000;
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let low: u32 = range.split_whitespace().next()?.parse().ok()?;
    (low > FIRST + 1_000).then(|| (FIRST, low - FIRST))
}
