//! The service host: start-up, supervision and shutdown of a service, so that a service's `run()`
//! names only what is its own (its database and migrations, its consumers and handler, its API
//! endpoints).
//!
//! ```ignore
//! let mut service = Service::start(SERVICE, &config, listener, &shutdown).await?;
//! let pool = service.database(&store::MIGRATIONS).await?;
//! service.consume(&[topology::CUSTOMER], Customers { .. })?;
//! service.api(topology::api::CUSTOMERS_SERVICE, "Customers of the OMS").await?;
//! service.endpoint(topology::api::CUSTOMERS_GET, move |req: GetCustomer| ..).await?;
//! service.run().await
//! ```
//!
//! A consumer task that stops while the service is not shutting down (a panic, say) takes
//! `/readyz` down and is started again after a pause; an API endpoint that stops ends the
//! service with an error, for its supervisor (compose, systemd) to restart it.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::kv;
use async_nats::service::ServiceExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::AnyPool;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info};

use oms_bus::api::{self, ApiError};
use oms_bus::{Bus, Funnel, Handler, Pipeline, Step};
use oms_config::Config;
use oms_topology::ConsumerSpec;

use warp::Filter as _;

use crate::metrics::{self, Access};
use crate::{Health, health_routes, serve_http};

/// One running service: its bus, its tasks, its database, its health.
pub struct Service {
    name: &'static str,
    config: Config,
    shutdown: CancellationToken,
    bus: Bus,
    health: Health,
    tasks: TaskTracker,
    pools: Vec<AnyPool>,
    /// The durable consumers it reads, whose lag [`metrics::watch`] reports.
    consumers: Vec<ConsumerSpec>,
    api: Option<async_nats::service::Service>,
    /// Why the service ended itself, if it did.
    failed: Arc<Mutex<Option<anyhow::Error>>>,
}

impl Service {
    /// Connects to NATS as the identity called `name` and answers `/healthz` and `/readyz` on
    /// `listener` from now on; ready once [`Service::run`] is reached, the topology is in place
    /// and every task runs.
    pub async fn start(
        name: &'static str,
        config: &Config,
        listener: TcpListener,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Service> {
        crate::telemetry::traces(name, &config.telemetry)
            .with_context(|| format!("{name}: telemetry.otlp_endpoint"))?;
        let bus = Bus::start(config, name, shutdown)
            .await
            .with_context(|| format!("{name}: connecting to NATS"))?;
        let health = Health::new(bus.clone());
        let tasks = TaskTracker::new();
        metrics::recorder();
        let access = Access::for_service(config, listener.local_addr()?).await;
        let routes = health_routes(health.clone()).or(metrics::route(access));
        tasks.spawn(serve_http(listener, routes, shutdown.clone()));
        Ok(Service {
            name,
            config: config.clone(),
            shutdown: shutdown.clone(),
            bus,
            health,
            tasks,
            pools: Vec::new(),
            consumers: Vec::new(),
            api: None,
            failed: Arc::default(),
        })
    }

    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Opens the service's database (as configured, or the default for its name) and brings its
    /// schema up to date; it is closed when the service ends.
    pub async fn database(&mut self, migrations: &Migrator) -> anyhow::Result<AnyPool> {
        let url = self.config.database_url(self.name);
        let pool = oms_store::connect(&url)
            .await
            .with_context(|| format!("{}: opening its database", self.name))?;
        migrations
            .run(&pool)
            .await
            .with_context(|| format!("{}: migrating its database", self.name))?;
        self.pools.push(pool.clone());
        Ok(pool)
    }

    /// Opens KV `bucket`, waiting while NATS or the topology is away; `None` on shutdown.
    pub async fn bucket(&self, bucket: &str) -> Option<kv::Store> {
        self.bus.key_value(bucket, &self.shutdown).await
    }

    /// Runs the durable consumers `specs`, all feeding `step` through one [`Pipeline`], each
    /// supervised. A step that takes a batch together shares one pipeline among its consumers
    /// ([`Funnel`]), so that the service commits once per round for all of them.
    pub fn consume<S: Step>(&mut self, specs: &[ConsumerSpec], step: S) -> anyhow::Result<()> {
        for spec in specs {
            let refused = Pipeline::<S>::refuses(spec.events);
            anyhow::ensure!(
                refused.is_empty(),
                "{}: consumer {} delivers {refused:?}, which its step does not take",
                self.name,
                spec.durable
            );
        }
        self.consumers.extend_from_slice(specs);
        let pipeline = Pipeline::new(self.name, step, self.bus.js.clone());
        if S::EACH || specs.len() == 1 {
            self.supervise_consumers(specs, pipeline);
        } else {
            self.supervise_consumers(specs, Funnel::new(pipeline));
        }
        Ok(())
    }

    fn supervise_consumers<H: Handler>(&self, specs: &[ConsumerSpec], handler: H) {
        let handler = Arc::new(handler);
        for spec in specs {
            let (js, spec, config) = (self.bus.js.clone(), *spec, self.config.clone());
            let (handler, shutdown) = (handler.clone(), self.shutdown.clone());
            self.supervise(format!("consumer {}", spec.durable), move || {
                oms_bus::consume(
                    js.clone(),
                    spec,
                    config.clone(),
                    handler.clone(),
                    shutdown.clone(),
                )
            });
        }
    }

    /// Runs `task` until `shutdown` (it is given the token), restarted like a consumer if it
    /// ends before.
    pub fn background<F, Fut>(&self, what: &str, task: F)
    where
        F: Fn(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let shutdown = self.shutdown.clone();
        self.supervise(what.to_string(), move || task(shutdown.clone()));
    }

    /// Starts the service's read API (the NATS service API, so `nats micro ls` lists it).
    pub async fn api(&mut self, name: &str, description: &str) -> anyhow::Result<()> {
        let service = self
            .bus
            .client
            .service_builder()
            .description(description)
            .start(name, env!("CARGO_PKG_VERSION"))
            .await
            .map_err(|e| anyhow::anyhow!("{}: starting the service API {name}: {e}", self.name))?;
        self.api = Some(service);
        Ok(())
    }

    /// Answers requests on `subject` with `handler`, many at a time, until shutdown.
    pub async fn endpoint<Req, Resp, F, Fut>(
        &mut self,
        subject: &'static str,
        handler: F,
    ) -> anyhow::Result<()>
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, ApiError>> + Send + 'static,
    {
        let service = self
            .api
            .as_ref()
            .with_context(|| format!("{}: endpoint {subject} before its API", self.name))?;
        let endpoint = service
            .endpoint(subject)
            .await
            .map_err(|e| anyhow::anyhow!("{}: adding endpoint {subject}: {e}", self.name))?;
        let served = tokio::spawn(api::serve(endpoint, self.shutdown.clone(), handler));
        let (shutdown, failed, health) = (
            self.shutdown.clone(),
            self.failed.clone(),
            self.health.clone(),
        );
        self.tasks.spawn(async move {
            let ended = served.await;
            if shutdown.is_cancelled() {
                return;
            }
            // An endpoint cannot be taken up again once its subscription is gone.
            let why = match ended {
                Err(e) if e.is_panic() => format!("endpoint {subject} panicked"),
                _ => format!("endpoint {subject} stopped"),
            };
            error!("{why}; ending the service");
            health.task_down(&why);
            failed
                .lock()
                .expect("not poisoned")
                .get_or_insert(anyhow::anyhow!(why));
            shutdown.cancel();
        });
        Ok(())
    }

    /// Runs `task` until shutdown; when it ends before, `/readyz` says so until a fresh one has
    /// been started after a growing pause.
    fn supervise<F, Fut>(&self, what: String, task: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (shutdown, health) = (self.shutdown.clone(), self.health.clone());
        self.tasks.spawn(async move {
            // 100 ms, doubling up to 10 s.
            let mut pauses = oms_bus::backoff(Duration::from_millis(100), Duration::from_secs(10));
            loop {
                let ended = tokio::spawn(task()).await;
                if shutdown.is_cancelled() {
                    return;
                }
                match ended {
                    Err(e) if e.is_panic() => error!(task = %what, "panicked; restarting it"),
                    _ => error!(task = %what, "stopped; restarting it"),
                }
                health.task_down(&what);
                let pause = pauses.next().unwrap_or(Duration::from_secs(10));
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                health.task_up(&what);
            }
        });
    }

    /// Ready from now on; runs until shutdown, then waits for every task to finish what it has
    /// in hand and closes the database.
    pub async fn run(self) -> anyhow::Result<()> {
        if !self.consumers.is_empty() {
            let (js, name, consumers) = (self.bus.js.clone(), self.name, self.consumers.clone());
            self.background("metrics watch", move |shutdown| {
                metrics::watch(js.clone(), name, consumers.clone(), shutdown)
            });
        }
        self.health.started();
        info!("{} service started", self.name);
        self.tasks.close();
        self.tasks.wait().await;
        drop(self.api);
        for pool in self.pools {
            pool.close().await;
        }
        match self.failed.lock().expect("not poisoned").take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
