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

use crate::testing::{NatsServer, eventually};
use crate::{DEADLINE, SERVICES};

/// The folder holding the `oms-*` binaries, built first if needed (a no-op after
/// `cargo test --workspace --all-targets`, which builds them).
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
            .args(["build", "--workspace", "--bins"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        if dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("running cargo build");
        assert!(status.success(), "building the service binaries failed");
        dir
    })
}

/// nats-server plus the five services, each its own process.
pub struct Processes {
    pub nats: NatsServer,
    pub http: reqwest::Client,
    dir: TempDir,
    ports: HashMap<&'static str, u16>,
    children: HashMap<&'static str, Child>,
    env: Vec<(String, String)>,
}

impl Processes {
    /// Starts nats-server and all five services; `env` adds `OMS_*` settings for all of them.
    pub async fn start(env: &[(&str, &str)]) -> Processes {
        let bins = bin_dir();
        assert!(bins.join("oms-edge").exists(), "no binaries in {bins:?}");
        let nats = NatsServer::start();
        let mut ports = HashMap::new();
        for service in SERVICES {
            ports.insert(service, free_port());
        }
        let mut procs = Processes {
            nats,
            http: reqwest::Client::new(),
            dir: tempfile::tempdir().expect("a temporary folder"),
            ports,
            children: HashMap::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        for service in SERVICES {
            procs.start_service(service).await;
        }
        procs
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
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
        let child = Command::new(bin_dir().join(format!("oms-{service}")))
            .env("OMS_CONFIG", "/nonexistent/oms.toml")
            .env("OMS_PROFILE", "default")
            .env("OMS_NATS__URL", self.nats.url())
            .env("OMS_DATA_DIR", self.dir.path())
            .env(
                format!("OMS_{}__HTTP_PORT", service.to_uppercase()),
                self.ports[service].to_string(),
            )
            .env("OMS_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting a service binary");
        self.children.insert(service, child);
        let ready = format!("{}/readyz", self.url(service));
        let http = self.http.clone();
        eventually(DEADLINE, &format!("{service} to be ready"), || {
            let (http, ready) = (http.clone(), ready.clone());
            async move {
                let r = http.get(&ready).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
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

/// A port nobody listens on right now (the OS picks it; it is free again once we drop it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}
