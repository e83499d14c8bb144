//! The live board at `/`: a page and its assets, compiled into the binary (no CDN), and the
//! counters it shows, `GET /stats` (operators): orders per status (the order service counts
//! them), the dead letters waiting in the DLQ, and how far behind each durable consumer is
//! (JetStream's consumer info, read only).
//!
//! The page holds no data: it is served to anybody, and asks for a token before it reads
//! anything. Its Content-Security-Policy lets it load nothing but its own files and talk to
//! nothing but this edge.

use std::collections::BTreeMap;

use futures::future::join_all;
use oms_bus::Bus;
use oms_bus::api;
use oms_domain::api::{CountOrders, OrderCounts, OrderStatus};
use oms_topology::{self as topology, api as endpoints};
use serde::Serialize;
use time::OffsetDateTime;
use tracing::debug;
use warp::http::{HeaderValue, Response, header};
use warp::{Filter, Rejection, Reply};

use crate::auth::Caller;
use crate::problem::Problem;
use crate::{authz, caller, denied};

/// What the page may do: its own script, style and icon, requests to this edge; no inline
/// code, no frames, no forms sent elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The page and its assets: path under `/`, content type, bytes.
const ASSETS: [(&str, &str, &[u8]); 4] = [
    (
        "",
        "text/html; charset=utf-8",
        include_bytes!("../assets/index.html"),
    ),
    (
        "board.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/board.js"),
    ),
    (
        "board.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/board.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../assets/favicon.svg"),
    ),
];

/// `GET /`, `GET /assets/<name>` and `GET /stats`.
pub fn routes() -> impl Filter<Extract = (Box<dyn Reply>,), Error = Rejection> + Clone {
    let page = warp::path::end().and(warp::get()).map(|| asset(""));
    let file =
        warp::path!("assets" / String)
            .and(warp::get())
            .and_then(|name: String| async move {
                match name.is_empty() {
                    true => Err(warp::reject::not_found()),
                    false => Ok(asset(&name)),
                }
            });
    page.or(file)
        .unify()
        .map(|reply| Box::new(reply) as Box<dyn Reply>)
}

/// `GET /stats` on `bus`.
pub fn stats_route(
    bus: Bus,
) -> impl Filter<Extract = (Box<dyn Reply>,), Error = Rejection> + Clone {
    warp::path!("stats")
        .and(warp::get())
        .and(caller())
        .and(warp::any().map(move || bus.clone()))
        .and_then(|caller: Caller, bus: Bus| async move {
            authz::watch_all(&caller).map_err(|d| denied(d, || Problem::not_found("not found")))?;
            Ok::<_, Rejection>(Box::new(warp::reply::json(&stats(&bus).await)) as Box<dyn Reply>)
        })
}

/// An asset by name with its headers, or a 404 problem.
fn asset(name: &str) -> warp::reply::Response {
    let Some((_, content_type, body)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return Problem::not_found(format!("no asset {name}")).into_response();
    };
    let mut response = Response::new((*body).into());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The event streams carry the token in their URL: no page of the board names it elsewhere.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Always the edge's own version: the assets change with the binary.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The board's counters. What cannot be read now is `null` (a service down is exactly when an
/// operator looks at the DLQ and the lag).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Orders in each status, as the order service has them.
    pub orders: Option<BTreeMap<OrderStatus, u64>>,
    /// Messages in the DLQ.
    pub dead_letters: Option<u64>,
    /// Each durable consumer's backlog; one that cannot be read is left out.
    pub consumers: Vec<Lag>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
}

/// How far behind one durable consumer is.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Lag {
    pub stream: &'static str,
    pub durable: &'static str,
    /// Events on its stream it has not been given yet.
    pub pending: u64,
    /// Given, not acknowledged yet (in hand, or waiting to be redelivered).
    pub unacked: u64,
}

/// Reads the counters, all at once.
pub async fn stats(bus: &Bus) -> Stats {
    let orders = async {
        match api::call::<_, OrderCounts>(&bus.client, endpoints::ORDERS_STATS, &CountOrders {})
            .await
        {
            Ok(counts) => Some(counts.by_status),
            Err(e) => {
                debug!(error = %e, "order counts unavailable");
                None
            }
        }
    };
    let dead_letters = async {
        match bus.js.get_stream(topology::DLQ).await {
            Ok(stream) => Some(stream.cached_info().state.messages),
            Err(e) => {
                debug!(error = %e, "DLQ unavailable");
                None
            }
        }
    };
    let consumers = join_all(topology::CONSUMERS.iter().map(|spec| async move {
        let consumer: async_nats::jetstream::consumer::PullConsumer = bus
            .js
            .get_consumer_from_stream(spec.durable, spec.stream)
            .await
            .inspect_err(|e| debug!(durable = spec.durable, error = %e, "consumer unavailable"))
            .ok()?;
        let info = consumer.cached_info();
        Some(Lag {
            stream: spec.stream,
            durable: spec.durable,
            pending: info.num_pending,
            unacked: info.num_ack_pending as u64,
        })
    }));
    let (orders, dead_letters, consumers) = futures::join!(orders, dead_letters, consumers);
    Stats {
        orders,
        dead_letters,
        consumers: consumers.into_iter().flatten().collect(),
        at: OffsetDateTime::now_utc(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_its_type_and_the_policy() {
        for (name, content_type, body) in ASSETS {
            let response = asset(name);
            assert_eq!(response.status(), 200, "{name}");
            assert_eq!(response.headers()[header::CONTENT_TYPE], content_type);
            assert_eq!(
                response.headers()[header::CONTENT_SECURITY_POLICY],
                CONTENT_SECURITY_POLICY
            );
            assert_eq!(
                response.headers()[header::X_CONTENT_TYPE_OPTIONS],
                "nosniff"
            );
            assert!(!body.is_empty());
        }
        assert_eq!(asset("nothing.js").status(), 404);
    }

    /// No inline script or style (the policy would block them), nothing from another host.
    #[test]
    fn the_page_loads_only_its_own_files() {
        let page = std::str::from_utf8(ASSETS[0].2).unwrap();
        for src in page
            .split("src=\"")
            .skip(1)
            .chain(page.split("href=\"").skip(1))
        {
            assert!(src.starts_with("/assets/"), "{}", &src[..src.len().min(40)]);
        }
        assert!(page.contains("<script src=\"/assets/board.js\" defer></script>"));
        assert!(!page.contains("<script>"), "inline script");
        assert!(!page.contains("<style"), "inline style");
        assert!(!page.contains("style=\""), "inline style");
        let handler = page.split(" on").skip(1).find(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert_eq!(handler, None, "an inline event handler");
        for (name, _, body) in ASSETS {
            let text = String::from_utf8_lossy(body);
            assert!(
                !text.contains("http://") && !text.contains("https://") || name == "favicon.svg",
                "{name}"
            );
        }
    }
}
