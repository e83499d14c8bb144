//! A real headless Chromium for the board's tests, driven through chromedriver's W3C WebDriver
//! HTTP API (JSON over HTTP: reqwest and serde_json, nothing more).
//!
//! The binaries are `$OMS_CHROMIUM` and `$OMS_CHROMEDRIVER` (`scripts/test.sh` installs
//! Debian's `chromium` and `chromium-driver` when missing and sets both), else `chromium` and
//! `chromedriver` in `/usr/bin`. A missing one fails the test, saying how to get it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::testing::{eventually, free_port};

/// The key under which WebDriver names an element.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process with one browser session; both end on drop.
pub struct Browser {
    _driver: Driver,
    port: u16,
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`
    session: String,
    _profile: TempDir,
}

/// A binary named by `var`, else `/usr/bin/<name>`; panics with how to install it.
fn binary(var: &str, name: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin").join(name));
    assert!(
        path.is_file(),
        "{} is missing: the board's browser tests need Debian's chromium and chromium-driver. \
         Run ./scripts/test.sh (it installs them as root), or `apt-get install chromium \
         chromium-driver`, or set {var}",
        path.display()
    );
    path
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless Chromium with a fresh profile
    /// and a window of `width`×`height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        let chromium = binary("OMS_CHROMIUM", "chromium");
        let chromedriver = binary("OMS_CHROMEDRIVER", "chromedriver");
        let port = free_port();
        let driver = Driver(
            Command::new(&chromedriver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display())),
        );
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        eventually(crate::DEADLINE, "chromedriver to be ready", || {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let status: Value = http
                    .get(format!("{base}/status"))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                (status["value"]["ready"] == true).then_some(())
            }
        })
        .await;
        let profile = tempfile::tempdir().expect("a profile folder");
        // Without the background-networking switches the browser's own connections (updates,
        // sync, QUIC probes) get in the way on machines without the internet.
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("JSON");
        let id = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {answer}"))
            .to_string();
        Browser {
            _driver: driver,
            port,
            http,
            session: format!("{base}/session/{id}"),
            _profile: profile,
        }
    }

    /// One WebDriver command; its `value`, or a panic with the driver's error.
    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("JSON");
        if let Some(error) = answer["value"]["error"].as_str() {
            panic!(
                "WebDriver {path}: {error}: {}",
                answer["value"]["message"].as_str().unwrap_or_default()
            );
        }
        answer["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    pub async fn refresh(&self) {
        self.post("/refresh", json!({})).await;
    }

    /// The element `css` selects; panics when there is none.
    pub async fn find(&self, css: &str) -> String {
        let found = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string()
    }

    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.post(&format!("/element/{element}/click"), json!({}))
            .await;
    }

    /// Empties the field `css` and types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.post(&format!("/element/{element}/clear"), json!({}))
            .await;
        if !text.is_empty() {
            self.post(
                &format!("/element/{element}/value"),
                json!({ "text": text }),
            )
            .await;
        }
    }

    /// The visible text of `css`.
    pub async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        let text = self
            .command(
                reqwest::Method::GET,
                &format!("/element/{element}/text"),
                None,
            )
            .await;
        text.as_str().unwrap_or_default().to_string()
    }

    /// Runs `script` (a function body) in the page with `args`; what it returns.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    /// The page as a PNG.
    pub async fn screenshot(&self) -> Vec<u8> {
        let png = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64 text"))
            .expect("a PNG in base64")
    }

    /// What the page logged to its console since the last call (level, message).
    pub async fn console(&self) -> Vec<(String, String)> {
        let entries = self.post("/se/log", json!({"type": "browser"})).await;
        entries
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| {
                        (
                            e["level"].as_str().unwrap_or_default().to_string(),
                            e["message"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Deleting the session quits the browser (chromedriver's child); chromedriver goes
        // next, with the `Driver`. Plain blocking HTTP: a destructor cannot await.
        if let Some(path) = self
            .session
            .strip_prefix(&format!("http://127.0.0.1:{}", self.port))
        {
            let _ = delete(self.port, path);
        }
    }
}

/// The chromedriver process, ours alone: killed when dropped, also when no session was made.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn delete(port: u16, path: &str) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "DELETE {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(())
}
