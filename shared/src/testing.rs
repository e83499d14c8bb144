//! Test support: a real nats-server on a free port with a temporary store, killed on drop.
//!
//! The binary is `$OMS_NATS_SERVER`, else `.tools/venv/bin/nats-server` in the workspace (where
//! `scripts/test.sh` installs it), else `nats-server` on `PATH`. A missing binary fails the test
//! loudly: a test that cannot run must not pass.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

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
        let (child, port) = spawn(store.path(), None);
        NatsServer {
            child: Some(child),
            port,
            store,
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
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
        let (child, _) = spawn(self.store.path(), Some(self.port));
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
    // This crate lives in <root>/shared.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("shared/ has a parent")
        .to_path_buf()
}

// The child is handed to `NatsServer`, which kills and waits for it.
#[allow(clippy::zombie_processes)]
fn spawn(store: &Path, port: Option<u16>) -> (Child, u16) {
    let ports_dir = store.join("ports");
    let _ = std::fs::remove_dir_all(&ports_dir);
    std::fs::create_dir_all(&ports_dir).expect("creating the ports folder");
    let binary = nats_server_binary();
    let port_arg = port.map_or("-1".to_string(), |p| p.to_string());
    let mut child = Command::new(&binary)
        .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
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
    // The server writes its real ports into a file once it listens: no guessing, no race.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(port) = read_port(&ports_dir)
            && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        {
            return (child, port);
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
