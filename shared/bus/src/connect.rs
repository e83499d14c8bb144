//! Connecting to NATS as one of the installation's identities, and knowing when the part of the
//! topology that identity needs is in place.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use oms_config::{Config, NatsConfig};
use oms_topology::identity::Identity;
use oms_topology::{self as topology, provision};

use crate::BusError;

/// Connects to NATS as `identity`, with its nkey seed from `<creds_dir>/<identity>.nk` and its
/// own inbox prefix. The client keeps reconnecting forever, also when the server is not up yet
/// at start, so a service outlives a broker restart without help. What the server refuses
/// (a permission, the identity itself) is logged with the server's words.
pub async fn connect(config: &Config, identity: Identity) -> Result<async_nats::Client, BusError> {
    let cfg = &config.nats;
    let seed = provision::read_seed(&config.creds_dir(), identity)
        .map_err(|e| BusError::Credentials(e.to_string()))?;
    async_nats::ConnectOptions::with_nkey(seed)
        .name(cfg.client_name.as_deref().unwrap_or(identity.name()))
        .custom_inbox_prefix(identity.inbox_prefix())
        .request_timeout(Some(cfg.request_timeout))
        .retry_on_initial_connect()
        .event_callback(move |event| async move {
            match event {
                async_nats::Event::ServerError(e) => {
                    warn!(identity = identity.name(), error = %e, "the NATS server refused");
                }
                async_nats::Event::ClientError(e) => {
                    warn!(identity = identity.name(), error = %e, "NATS client error");
                }
                other => debug!(identity = identity.name(), event = %other, "NATS connection"),
            }
        })
        .connect(seeds(&cfg.url))
        .await
        .map_err(|e| BusError::Connect(e.to_string()))
}

/// `nats://a:4222,nats://b:4222` → the seed URLs of a cluster.
pub fn seeds(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// A JetStream context whose API calls and PubAcks wait at most the configured request timeout.
pub fn jetstream(client: async_nats::Client, cfg: &NatsConfig) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(cfg.request_timeout)
        .build(client)
}

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
    ) -> Result<Bus, BusError> {
        let identity = Identity::from_name(name)
            .ok_or_else(|| BusError::Credentials(format!("no identity called {name}")))?;
        let client = connect(config, identity).await?;
        let js = jetstream(client.clone(), &config.nats);
        let bus = Bus {
            client,
            js,
            topology_ready: Arc::default(),
        };
        let (task_bus, shutdown) = (bus.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut pauses = crate::backoff(Duration::from_millis(100), Duration::from_secs(2));
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
                let pause = pauses.next().unwrap_or(Duration::from_secs(2));
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
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
        let mut pauses = crate::backoff(Duration::from_millis(200), Duration::from_secs(2));
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
                _ = tokio::time::sleep(pauses.next().unwrap_or(Duration::from_secs(2))) => {}
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
