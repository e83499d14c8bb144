//! Prometheus metrics: the process's recorder, `GET /metrics`, and the gauges read from
//! JetStream (a consumer's lag, the service's dead letters). The names are
//! [`oms_bus::metrics`]'s.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::jetstream;
use futures::TryStreamExt;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use oms_auth::{Authenticator, Role};
use oms_bus::metrics as m;
use oms_config::Config;
use oms_topology::{self as topology, ConsumerSpec};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};
use warp::Filter;
use warp::http::{HeaderMap, StatusCode};

/// Upper bounds of the latency histograms' buckets, in seconds: a handled message takes
/// around a millisecond, a saga tens of milliseconds, a stalled one up to its deadline.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// How often the gauges read from JetStream are refreshed.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(5);

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use; every service in the process records into
/// it, each under its own `service` label.
pub fn recorder() -> &'static PrometheusHandle {
    RECORDER.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            debug!("a metrics recorder was installed already; /metrics shows only ours");
        }
        m::describe();
        // Histogram samples wait in the recorder until folded into their buckets, which a
        // scrape does; without scrapes they would pile up.
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(WATCH_INTERVAL);
                    upkeep.run_upkeep();
                }
            })
            .expect("a thread can be started at start-up");
        handle
    })
}

/// Who may read `/metrics`: a client on this machine (when `loopback`), or a caller whose
/// bearer token `operator` accepts.
#[derive(Clone)]
pub struct Access {
    pub loopback: bool,
    pub operator: Check,
}

/// Whether a request's headers carry an operator's token.
pub type Check = Arc<dyn Fn(&HeaderMap) -> Result<(), Denied> + Send + Sync>;

/// An operator's token, as `auth` checks it (with auth off, everyone is one).
pub fn operator_only(auth: &Authenticator, headers: &HeaderMap) -> Result<(), Denied> {
    let caller = auth
        .authenticate(headers)
        .caller()
        .map_err(|refusal| Denied::Unauthenticated(refusal.detail))?;
    match caller.role {
        Role::Operator => Ok(()),
        Role::Customer => Err(Denied::Forbidden(
            "metrics are for operators; this token is a customer's".into(),
        )),
    }
}

/// Why a `/metrics` request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No valid token (401).
    Unauthenticated(String),
    /// A valid token without the operator role (403).
    Forbidden(String),
}

impl Access {
    /// As configured for a service listening on `local`: this machine when
    /// `telemetry.metrics_loopback`, and operator tokens when the service has a key to check
    /// them with (`auth.hs256_secret` or its file, or `auth.jwks`).
    pub async fn for_service(config: &Config, local: SocketAddr) -> Access {
        let loopback = config.telemetry.metrics_loopback;
        match Authenticator::from_config(config, local).await {
            Ok(auth) => Access::operators(Arc::new(auth), loopback),
            Err(e) => {
                info!("/metrics takes no tokens here: {e}");
                Access {
                    loopback,
                    operator: Arc::new(|_: &HeaderMap| {
                        Err(Denied::Forbidden(
                            "this service has no key to check tokens with; read its metrics \
                             from its own machine"
                                .into(),
                        ))
                    }),
                }
            }
        }
    }

    /// Operators' tokens as `auth` checks them, and this machine when `loopback`.
    pub fn operators(auth: Arc<Authenticator>, loopback: bool) -> Access {
        Access {
            loopback,
            operator: Arc::new(move |headers: &HeaderMap| operator_only(&auth, headers)),
        }
    }

    fn check(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Result<(), Denied> {
        if self.loopback && peer.is_some_and(|p| p.ip().to_canonical().is_loopback()) {
            return Ok(());
        }
        (self.operator)(headers)
    }
}

/// The answer to `GET /metrics` from `peer` with `headers`: the exposition, or a problem.
pub fn answer(
    access: &Access,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
) -> warp::reply::Response {
    use warp::Reply;
    let (status, title, detail) = match access.check(peer, headers) {
        Ok(()) => {
            let body = recorder().render();
            return warp::reply::with_header(
                body,
                "content-type",
                "text/plain; version=0.0.4; charset=utf-8",
            )
            .into_response();
        }
        Err(Denied::Unauthenticated(detail)) => (StatusCode::UNAUTHORIZED, "unauthorized", detail),
        Err(Denied::Forbidden(detail)) => (StatusCode::FORBIDDEN, "forbidden", detail),
    };
    let body = serde_json::json!({
        "type": format!("/problems/{title}"),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    let reply = warp::reply::with_status(warp::reply::json(&body), status);
    let mut response =
        warp::reply::with_header(reply, "content-type", "application/problem+json").into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            "www-authenticate",
            warp::http::HeaderValue::from_static(r#"Bearer realm="oms""#),
        );
    }
    response
}

/// `GET /metrics` for a service's own port.
pub fn route(
    access: Access,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path!("metrics")
        .and(warp::get())
        .and(warp::addr::remote())
        .and(warp::header::headers_cloned())
        .map(move |peer: Option<SocketAddr>, headers: HeaderMap| answer(&access, peer, &headers))
}

/// Refreshes, every [`WATCH_INTERVAL`] until `shutdown`, the gauges of `consumers` (pending,
/// ack pending, ack floor age) and of `service`'s dead letters.
pub async fn watch(
    js: jetstream::Context,
    service: &'static str,
    consumers: Vec<ConsumerSpec>,
    shutdown: CancellationToken,
) {
    loop {
        for spec in &consumers {
            match topology::get_consumer(&js, spec).await {
                Ok(consumer) => {
                    let info = consumer.cached_info();
                    let labels = [("service", service), ("consumer", spec.durable)];
                    metrics::gauge!(m::CONSUMER_PENDING, &labels).set(info.num_pending as f64);
                    metrics::gauge!(m::CONSUMER_ACK_PENDING, &labels)
                        .set(info.num_ack_pending as f64);
                    let waiting = info.num_pending > 0 || info.num_ack_pending > 0;
                    let age = ack_floor_age(
                        waiting,
                        info.ack_floor.last_active.unwrap_or(info.created),
                        OffsetDateTime::now_utc(),
                    );
                    metrics::gauge!(m::CONSUMER_ACK_FLOOR_AGE, &labels).set(age);
                }
                Err(e) => debug!(durable = spec.durable, error = %e, "consumer info unavailable"),
            }
        }
        match dead_letters(&js, service).await {
            Ok(count) => metrics::gauge!(m::DLQ_MESSAGES, "service" => service).set(count as f64),
            Err(e) => debug!(error = %e, "DLQ info unavailable"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(WATCH_INTERVAL) => {}
        }
    }
}

/// Seconds since the ack floor last moved, while messages wait; 0 when none do.
fn ack_floor_age(waiting: bool, floor_moved: OffsetDateTime, now: OffsetDateTime) -> f64 {
    match waiting {
        true => (now - floor_moved).as_seconds_f64().max(0.0),
        false => 0.0,
    }
}

/// Messages in the DLQ that `service` parked there (`dlq.<service>.>`).
async fn dead_letters(js: &jetstream::Context, service: &str) -> anyhow::Result<usize> {
    let stream = js.get_stream_no_info(topology::DLQ).await?;
    let subjects = stream
        .info_with_subjects(topology::dlq_subjects(service))
        .await?;
    Ok(subjects
        .try_fold(0, |sum, (_, n)| async move { Ok(sum + n) })
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ack_floor_ages_only_while_messages_wait() {
        let then = OffsetDateTime::UNIX_EPOCH;
        let now = then + time::Duration::seconds(90);
        assert_eq!(ack_floor_age(true, then, now), 90.0);
        assert_eq!(ack_floor_age(false, then, now), 0.0);
        assert_eq!(ack_floor_age(true, now, then), 0.0, "clock skew is no lag");
    }

    #[test]
    fn loopback_reads_without_a_token_when_allowed() {
        let refuse: Check =
            Arc::new(|_: &HeaderMap| Err(Denied::Unauthenticated("no token".into())));
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let remote: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        let open = Access {
            loopback: true,
            operator: refuse.clone(),
        };
        assert_eq!(open.check(Some(local), &HeaderMap::new()), Ok(()));
        assert!(open.check(Some(remote), &HeaderMap::new()).is_err());
        assert!(open.check(None, &HeaderMap::new()).is_err());
        let closed = Access {
            loopback: false,
            operator: refuse,
        };
        assert!(closed.check(Some(local), &HeaderMap::new()).is_err());
    }
}
