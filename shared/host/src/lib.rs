//! The host every service runs in: [`main`] (config, logging, port, signals), the [`Service`]
//! builder (connect as the service's identity, open its database, run its consumers under
//! supervision, serve its read API), [`Health`] behind `/healthz` and `/readyz`, and an orderly
//! shutdown. A service's own code names only what is its own.

pub mod metrics;
mod service;
pub mod telemetry;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use warp::Filter;
use warp::http::StatusCode;

use oms_bus::Bus;
use oms_config::Config;

pub use service::Service;

/// How long a service may take to finish what it has in hand after SIGTERM or Ctrl-C.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Whether a service is ready: started, connected to NATS with its part of the topology in
/// place, and none of its tasks down.
#[derive(Clone)]
pub struct Health {
    bus: Bus,
    state: Arc<HealthState>,
}

#[derive(Default)]
struct HealthState {
    started: AtomicBool,
    down: Mutex<BTreeSet<String>>,
}

impl Health {
    /// Not ready until [`Health::started`].
    pub fn new(bus: Bus) -> Self {
        Health {
            bus,
            state: Arc::default(),
        }
    }

    /// Everything the service runs has been started.
    pub fn started(&self) {
        self.state.started.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.state.started.load(Ordering::Acquire) && self.bus.is_ready() && self.down().is_empty()
    }

    /// The tasks that are down, by name.
    pub fn down(&self) -> Vec<String> {
        let down = self.state.down.lock().expect("not poisoned");
        down.iter().cloned().collect()
    }

    fn task_down(&self, what: &str) {
        let mut down = self.state.down.lock().expect("not poisoned");
        down.insert(what.to_string());
    }

    fn task_up(&self, what: &str) {
        let mut down = self.state.down.lock().expect("not poisoned");
        down.remove(what);
    }
}

/// `GET /healthz` (alive) and `GET /readyz` ([`Health::is_ready`]; when not, which tasks are
/// down).
pub fn health_routes(
    health: Health,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::json(&serde_json::json!({"status": "ok"})));
    let readyz = warp::path!("readyz").and(warp::get()).map(move || {
        let (body, code) = match health.is_ready() {
            true => (serde_json::json!({"status": "ready"}), StatusCode::OK),
            false => match health.down() {
                down if down.is_empty() => (
                    serde_json::json!({"status": "not ready"}),
                    StatusCode::SERVICE_UNAVAILABLE,
                ),
                down => (
                    serde_json::json!({"status": "not ready", "down": down}),
                    StatusCode::SERVICE_UNAVAILABLE,
                ),
            },
        };
        warp::reply::with_status(warp::reply::json(&body), code)
    });
    healthz.or(readyz)
}

/// Serves `routes` on `listener` until `shutdown`, then lets requests in flight finish.
pub async fn serve_http<F>(listener: TcpListener, routes: F, shutdown: CancellationToken)
where
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    warp::serve(routes)
        .incoming(listener)
        .graceful(shutdown.cancelled_owned())
        .run()
        .await;
}

/// The whole of a service's `main`: load the config, start logging, bind the service's port
/// (`port` picks it from the config), and `run` until Ctrl-C or SIGTERM. Shutdown is given
/// [`SHUTDOWN_GRACE`]; what has not finished by then is redelivered after the ack wait.
///
/// The services run it on tokio's current-thread runtime: their tasks mostly wait for NATS, the
/// database and each other, and on one thread waking a task never wakes a second thread
/// (measured in `docs/performance.md`, "One thread per service").
pub async fn main<F, Fut>(port: fn(&Config) -> u16, run: F) -> anyhow::Result<()>
where
    F: FnOnce(Config, TcpListener, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let config = Config::load()?;
    telemetry::init(&config.log);
    let listener = TcpListener::bind((config.http.bind, port(&config))).await?;
    let shutdown = shutdown_on_signals();
    let deadline = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        }
    };
    let ended = tokio::select! {
        result = run(config, listener, shutdown) => result,
        _ = deadline => {
            warn!("shutdown took longer than {SHUTDOWN_GRACE:?}, exiting anyway");
            Ok(())
        }
    };
    // Blocking: the exporter's last request.
    tokio::task::spawn_blocking(telemetry::flush).await?;
    ended
}

/// Resolves on Ctrl-C or SIGTERM: what `main` passes to `run` as its shutdown.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing a SIGTERM handler cannot fail on unix");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        info!("shutting down");
        trigger.cancel();
    });
    token
}
