//! Typed, layered configuration.
//!
//! Built-in defaults < `oms.toml` (profiles `default`, `dev`, `docker`, picked by `OMS_PROFILE`)
//! < environment variables `OMS_*`, with `__` for nesting (`OMS_NATS__URL`). The environment is
//! merged as a *global* provider so it wins over whatever profile table the file selects.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The whole configuration; every service reads the part it needs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Config {
    /// The profile this config was loaded with (`OMS_PROFILE`: `default`, `dev`, `docker`).
    #[serde(skip)]
    pub profile: String,
    /// Folder for SQLite files when a service has no explicit `database_url`.
    pub data_dir: PathBuf,
    /// `tracing` filter, e.g. `info` or `oms_inventory=debug,info`.
    pub log: String,
    pub nats: NatsConfig,
    pub streams: StreamsConfig,
    pub consumers: ConsumersConfig,
    /// Who may call the edge (JWT bearer tokens).
    pub auth: AuthConfig,
    /// Limits on the edge's HTTP clients.
    pub http: HttpConfig,
    /// Rules of an order's life.
    pub orders: OrdersConfig,
    /// Metrics and traces.
    pub telemetry: TelemetryConfig,
    pub edge: ServiceConfig,
    pub customer: ServiceConfig,
    pub inventory: ServiceConfig,
    pub payment: ServiceConfig,
    pub order: ServiceConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct NatsConfig {
    /// One URL or a comma-separated list of cluster seeds.
    pub url: String,
    /// How long a request (JetStream API, PubAck, service call) may take.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Name shown by `nats server report connections`; defaults to the service name.
    pub client_name: Option<String>,
    /// Folder of the broker credentials, one nkey seed per identity (`<identity>.nk`);
    /// empty means `<data_dir>/creds`.
    pub creds_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct OrdersConfig {
    /// An order still PENDING this long after it was placed is rejected with `TIMED_OUT`.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(60),
        }
    }
}

/// What the services tell about themselves: Prometheus metrics at `GET /metrics` and traces
/// over OTLP.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TelemetryConfig {
    /// Who may read `GET /metrics`: a caller with an operator token, and with `metrics_loopback`
    /// also any client on this machine without one.
    pub metrics_loopback: bool,
    /// An OTLP/HTTP collector (`http://host:4318`): every handled message becomes a span sent
    /// there. Empty: no traces, at no cost.
    pub otlp_endpoint: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            metrics_loopback: true,
            otlp_endpoint: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct StreamsConfig {
    /// Replicas of every stream and bucket: 1 on a single node, 3 in a cluster.
    pub replicas: usize,
    /// How long events stay readable in the streams.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Window in which a repeated `Nats-Msg-Id` is dropped by the server.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
    /// Bytes each event stream (and the DLQ) may hold; when full, new events are refused
    /// (discard new), never old ones dropped.
    pub max_bytes: i64,
    /// Bytes each key-value bucket may hold (discard new, like the streams).
    pub bucket_max_bytes: i64,
}

/// The edge's bearer tokens: HS256 with a shared secret, or RS256/ES256 with keys from a JWKS.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct AuthConfig {
    /// `false` is allowed only in the `dev` profile while the edge listens on loopback.
    pub enabled: bool,
    /// Expected `iss` claim.
    pub issuer: String,
    /// Expected `aud` claim.
    pub audience: String,
    /// HS256 secret; empty means the file `<creds_dir>/edge-jwt.secret` when it exists.
    pub hs256_secret: String,
    /// A JWKS file path or `http(s)://` URL with the RS256/ES256 public keys.
    pub jwks: String,
}

impl std::fmt::Debug for AuthConfig {
    // The secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("enabled", &self.enabled)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field(
                "hs256_secret",
                &if self.hs256_secret.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("jwks", &self.jwks)
            .finish()
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            issuer: "oms".into(),
            audience: "oms".into(),
            hs256_secret: String::new(),
            jwks: String::new(),
        }
    }
}

/// Limits that keep slow and greedy HTTP clients from crowding out the others (edge).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HttpConfig {
    /// Address the services listen on; `127.0.0.1` keeps them to this machine.
    pub bind: std::net::IpAddr,
    /// A request's headers must have arrived within this long: the first request's from the
    /// connection's start, a later one's from its first byte.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed, and so is one whose
    /// request body or answer moves no byte for this long.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Open connections at most; more wait in the listen queue.
    pub max_connections: usize,
    /// Open event streams (`GET /events`, `GET /orders/{id}/events`) at most; one more is
    /// answered 503. Each holds a connection and a subscription until its client goes.
    pub max_event_streams: usize,
    /// Sustained requests per second per identity (per address when anonymous).
    pub rate_per_second: u32,
    /// Requests an identity may make at once above the sustained rate.
    pub rate_burst: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            bind: std::net::IpAddr::from([0, 0, 0, 0]),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_event_streams: 1_000,
            rate_per_second: 100,
            rate_burst: 200,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ConsumersConfig {
    /// Redelivery after this long without an ack (a crashed or stuck handler).
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
    /// Deliveries before a message is given up and sent to the DLQ.
    pub max_deliver: i64,
    /// NAK delays for the 1st, 2nd, ... transient failure; the last one repeats.
    #[serde(with = "duration_list")]
    pub backoff: Vec<Duration>,
    /// Unacked messages the server lets one consumer have out.
    pub max_ack_pending: i64,
    /// Messages fetched per pull request, and at most handled as one batch (one transaction).
    pub batch: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct ServiceConfig {
    /// Port of the HTTP listener (the API for the edge, health for the others).
    pub http_port: u16,
    /// `sqlite://path` or `postgres://…`; empty means `sqlite://<data_dir>/<service>.db`.
    pub database_url: String,
}

impl Default for Config {
    fn default() -> Self {
        let service = |port| ServiceConfig {
            http_port: port,
            database_url: String::new(),
        };
        Self {
            profile: "default".into(),
            data_dir: PathBuf::from("data"),
            log: "info".into(),
            nats: NatsConfig::default(),
            streams: StreamsConfig::default(),
            consumers: ConsumersConfig::default(),
            auth: AuthConfig::default(),
            http: HttpConfig::default(),
            orders: OrdersConfig::default(),
            telemetry: TelemetryConfig::default(),
            edge: service(8090),
            customer: service(8091),
            inventory: service(8092),
            payment: service(8093),
            order: service(8094),
        }
    }
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            request_timeout: Duration::from_secs(5),
            client_name: None,
            creds_dir: PathBuf::new(),
        }
    }
}

impl Default for StreamsConfig {
    fn default() -> Self {
        Self {
            replicas: 1,
            max_age: Duration::from_secs(7 * 24 * 3600),
            duplicate_window: Duration::from_secs(120),
            max_bytes: 1 << 30,
            bucket_max_bytes: 256 << 20,
        }
    }
}

impl Default for ConsumersConfig {
    fn default() -> Self {
        Self {
            ack_wait: Duration::from_secs(30),
            max_deliver: 10,
            backoff: [1, 2, 5, 10, 30].map(Duration::from_secs).to_vec(),
            max_ack_pending: 10_000,
            batch: 200,
        }
    }
}

impl ConsumersConfig {
    /// NAK delay after the `delivered`-th delivery failed transiently.
    pub fn nak_delay(&self, delivered: i64) -> Duration {
        let index = usize::try_from(delivered.max(1) - 1).unwrap_or(usize::MAX);
        self.backoff
            .get(index)
            .or(self.backoff.last())
            .copied()
            .unwrap_or(Duration::from_secs(1))
    }
}

impl Config {
    /// Loads defaults, then the `oms.toml` named by `OMS_CONFIG` (if the file exists), then `OMS_*`.
    pub fn load() -> Result<Self, Box<figment::Error>> {
        let file = std::env::var("OMS_CONFIG").unwrap_or_else(|_| "oms.toml".into());
        let mut config: Config = Self::figment(Path::new(&file))
            .extract()
            .map_err(Box::new)?;
        config.profile = Self::profile_name();
        Ok(config)
    }

    fn profile_name() -> String {
        std::env::var("OMS_PROFILE").unwrap_or_else(|_| "default".into())
    }

    /// Where the broker credentials live (`nats.creds_dir`, else `<data_dir>/creds`).
    pub fn creds_dir(&self) -> PathBuf {
        if self.nats.creds_dir.as_os_str().is_empty() {
            self.data_dir.join("creds")
        } else {
            self.nats.creds_dir.clone()
        }
    }

    /// The provider stack, exposed so tests (with `figment::Jail`) and tools can inspect it.
    pub fn figment(file: &Path) -> Figment {
        let profile = Self::profile_name();
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(file).nested())
            .merge(
                Env::prefixed("OMS_")
                    .ignore(&["PROFILE", "CONFIG"])
                    .split("__")
                    .global(),
            )
            .select(profile)
    }

    /// The section of the service called `name`.
    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        match name {
            "edge" => Some(&self.edge),
            "customer" => Some(&self.customer),
            "inventory" => Some(&self.inventory),
            "payment" => Some(&self.payment),
            "order" => Some(&self.order),
            _ => None,
        }
    }

    /// The SQL URL of `service`: its `database_url`, or a SQLite file in `data_dir` when none
    /// is configured.
    pub fn database_url(&self, service: &str) -> String {
        let configured = self
            .service(service)
            .map_or("", |s| s.database_url.as_str());
        if configured.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join(format!("{service}.db")).display()
            )
        } else {
            configured.to_string()
        }
    }
}

/// `["1s", "2s"]` in files and env, `Vec<Duration>` in code.
mod duration_list {
    use std::time::Duration;

    use humantime_serde::Serde;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        let list: Vec<Serde<Duration>> = v.iter().copied().map(Serde::from).collect();
        list.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let list = Vec::<Serde<Duration>>::deserialize(d)?;
        Ok(list.into_iter().map(Serde::into_inner).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn defaults_match_the_design() {
        let c = Config::default();
        assert_eq!(c.edge.http_port, 8090);
        assert_eq!(c.order.http_port, 8094);
        assert_eq!(c.consumers.ack_wait, Duration::from_secs(30));
        assert_eq!(c.consumers.max_deliver, 10);
        assert_eq!(c.streams.duplicate_window, Duration::from_secs(120));
        assert_eq!(c.orders.deadline, Duration::from_secs(60));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API fixes the closure's error type
    fn profile_then_env_override() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "oms.toml",
                r#"
                [default]
                log = "warn"
                [docker.nats]
                url = "nats://nats-1:4222"
                [docker.streams]
                replicas = 3
                [docker.consumers]
                ack_wait = "10s"
                "#,
            )?;
            jail.set_env("OMS_PROFILE", "docker");
            jail.set_env("OMS_STREAMS__REPLICAS", "5");
            jail.set_env("OMS_EDGE__HTTP_PORT", "9000");
            jail.set_env("OMS_ORDERS__DEADLINE", "90s");
            let c: Config = Config::figment(Path::new("oms.toml")).extract()?;
            assert_eq!(c.log, "warn", "default profile table applies");
            assert_eq!(c.nats.url, "nats://nats-1:4222", "selected profile applies");
            assert_eq!(c.consumers.ack_wait, Duration::from_secs(10));
            assert_eq!(c.streams.replicas, 5, "env wins over the profile table");
            assert_eq!(c.edge.http_port, 9000);
            assert_eq!(c.orders.deadline, Duration::from_secs(90));
            assert_eq!(c.customer.http_port, 8091, "untouched defaults stay");
            Ok(())
        });
    }

    #[test]
    fn nak_delay_grows_then_repeats() {
        let c = ConsumersConfig::default();
        assert_eq!(c.nak_delay(1), Duration::from_secs(1));
        assert_eq!(c.nak_delay(3), Duration::from_secs(5));
        assert_eq!(c.nak_delay(99), Duration::from_secs(30));
    }

    #[test]
    fn sqlite_url_derived_from_data_dir() {
        let mut c = Config::default();
        assert_eq!(c.database_url("order"), "sqlite://data/order.db?mode=rwc");
        c.order.database_url = "postgres://x".into();
        assert_eq!(c.database_url("order"), "postgres://x");
        assert_eq!(
            c.database_url("customer"),
            "sqlite://data/customer.db?mode=rwc"
        );
    }
}
