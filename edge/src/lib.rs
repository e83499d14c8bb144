//! The edge: the HTTP API of the OMS (warp, port 8090).
//!
//! `POST /orders` checks the body, publishes `orders.placed` and answers 202 only after
//! JetStream's PubAck, with the order id and its `Location`. Reads go to the owning service over
//! the NATS service API; a just-placed order that the order service has not projected yet is
//! read back from the ORDERS stream, so a 202 is never followed by a 404.
//!
//! The live board's page at `/` ([`board`]) follows the orders through server-sent events
//! ([`events`]) read from the ORDERS stream.
//!
//! Every call but `/healthz`, `/readyz` and the board's page and assets needs a bearer token
//! ([`auth`]); the [`server`] checks it once per request, with the rate limit and the
//! connection limits ([`limits`]), and handlers get the [`Caller`] and ask [`authz`] what it
//! may do.

pub use oms_auth as auth;
pub mod authz;
pub mod board;
pub mod catalog;
pub mod events;
pub mod idempotency;
pub mod lifecycle;
pub mod limits;
pub mod openapi;
pub mod place;
pub mod problem;
pub mod server;
#[cfg(feature = "testing")]
pub use oms_auth::testkeys;

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::connection::State;
use async_nats::jetstream::{self, kv};
use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use oms_bus as bus;
use oms_bus::Bus;
use oms_bus::api::{self};
use oms_bus::trace;
use oms_config::Config;
use oms_domain::api::{
    CustomerView, GetCustomer, GetHistory, GetOrder, GetProduct, HistoryEntry, ListOrders,
    OrderHistory, OrderPage, OrderStatus, OrderView, ProductView, SetBlocked,
};
use oms_domain::events::EVENT_VERSION;
use oms_domain::{CustomerId, Envelope, Event, OrderId, OrderSnapshot};
use oms_host as runtime;
use oms_topology::{self as topology, api as endpoints};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use crate::auth::{Authentication, Authenticator, Caller, Refusal};
use crate::authz::Denied;
use crate::idempotency::{Claim, Claimed};
use crate::lifecycle::{Request, Verdict};
use crate::limits::RateLimiter;
use crate::place::MAX_BODY;
use crate::problem::Problem;
use crate::server::Gate;

pub const SERVICE: &str = "edge";

/// Runs the HTTP API on `listener` until `shutdown`. Refuses to start (before touching NATS)
/// when auth is off outside the dev profile or off loopback, when auth is on without a key, or
/// with limits that would let nothing through.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    check_limits(&config.http)?;
    let auth = Authenticator::from_config(&config, local).await?;
    if !auth.is_enabled() {
        warn!("auth is off (dev profile, loopback): every request acts as an operator");
    }
    runtime::telemetry::traces(SERVICE, &config.telemetry)?;
    let bus = Bus::start(&config, SERVICE, &shutdown).await?;
    info!(addr = %local, auth = auth.is_enabled(), "edge listening");
    runtime::metrics::recorder();
    // Counted from 0, so that rates are known before the first refusal.
    metrics::counter!(oms_bus::metrics::HTTP_RATE_LIMITED, "service" => SERVICE).increment(0);
    let auth = Arc::new(auth);
    let gate = Arc::new(Gate {
        metrics: runtime::metrics::Access::operators(
            auth.clone(),
            config.telemetry.metrics_loopback,
        ),
        auth,
        limiter: RateLimiter::new(config.http.rate_per_second, config.http.rate_burst),
    });
    let feed = events::Feed::new(bus.clone(), &config.http, shutdown.clone());
    server::serve(
        listener,
        warp::service(routes(bus, feed)),
        gate,
        &config.http,
        shutdown,
    )
    .await;
    Ok(())
}

fn check_limits(http: &oms_config::HttpConfig) -> anyhow::Result<()> {
    let zero = [
        ("http.max_connections", http.max_connections == 0),
        ("http.max_event_streams", http.max_event_streams == 0),
        ("http.rate_per_second", http.rate_per_second == 0),
        ("http.rate_burst", http.rate_burst == 0),
        (
            "http.header_read_timeout",
            http.header_read_timeout.is_zero(),
        ),
        ("http.idle_timeout", http.idle_timeout.is_zero()),
    ];
    match zero.iter().find(|(_, is_zero)| *is_zero) {
        Some((key, _)) => anyhow::bail!("{key} must be more than 0"),
        None => Ok(()),
    }
}

/// What the handlers share: the bus, and the idempotency bucket once the topology is in place.
pub struct Edge {
    bus: Bus,
    idempotency: tokio::sync::OnceCell<kv::Store>,
}

impl Edge {
    async fn idempotency(&self) -> Result<&kv::Store, Problem> {
        self.idempotency
            .get_or_try_init(|| async {
                self.bus
                    .js
                    .get_key_value(topology::IDEMPOTENCY)
                    .await
                    .map_err(|e| {
                        warn!(error = %e, "idempotency bucket unavailable");
                        unavailable()
                    })
            })
            .await
    }
}

/// The edge has no consumers: it is ready once connected with its part of the topology.
fn ready_when_connected(bus: Bus) -> runtime::Health {
    let health = runtime::Health::new(bus);
    health.started();
    health
}

/// Every route of the API, with rejections turned into problem+json; `feed` serves the event
/// streams.
pub fn routes(
    bus: Bus,
    feed: events::Feed,
) -> impl Filter<Extract = (impl Reply,), Error = std::convert::Infallible> + Clone {
    let edge = Arc::new(Edge {
        bus: bus.clone(),
        idempotency: tokio::sync::OnceCell::new(),
    });
    let with_edge = warp::any().map(move || edge.clone());
    let with_bus = {
        let bus = bus.clone();
        warp::any().map(move || bus.clone())
    };
    let place = warp::path!("orders")
        .and(warp::post())
        .and(caller())
        .and(json_content_type())
        .and(limited_body())
        .and(idempotency_key())
        .and(with_edge)
        .and_then(place_order);
    let get_order = warp::path!("orders" / String)
        .and(warp::get())
        .and(caller())
        .and(with_bus.clone())
        .and_then(get_order);
    let list_orders = warp::path!("orders")
        .and(warp::get())
        .and(caller())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_bus.clone())
        .and_then(list_orders);
    let cancel = warp::path!("orders" / String / "cancel")
        .and(warp::post())
        .and(caller())
        .map(|id, caller| (id, caller, Request::Cancel))
        .untuple_one()
        .and(with_bus.clone())
        .and_then(change_order);
    let ship = warp::path!("orders" / String / "ship")
        .and(warp::post())
        .and(caller())
        .and(json_content_type())
        .and(limited_body())
        .and_then(|id, caller, body: Bytes| async move {
            let request = lifecycle::parse_shipment(&body).map_err(warp::reject::custom)?;
            Ok::<_, Rejection>((id, caller, request))
        })
        .untuple_one()
        .and(with_bus.clone())
        .and_then(change_order);
    let deliver = warp::path!("orders" / String / "deliver")
        .and(warp::post())
        .and(caller())
        .map(|id, caller| (id, caller, Request::Deliver))
        .untuple_one()
        .and(with_bus.clone())
        .and_then(change_order);
    let history = warp::path!("orders" / String / "history")
        .and(warp::get())
        .and(caller())
        .and(with_bus.clone())
        .and_then(order_history);
    let catalog = {
        let operator = caller().and_then(|caller: Caller| async move {
            authz::manage_catalog(&caller)
                .map(|()| caller)
                .map_err(|d| warp::reject::custom(denied(d, || Problem::not_found("not found"))))
        });
        let body = json_content_type().and(limited_body());
        let bus = with_bus.clone();
        let create_product = warp::path!("products")
            .and(warp::post())
            .and(operator.clone())
            .and(body.clone())
            .and(bus.clone())
            .and_then(|_: Caller, body: Bytes, bus: Bus| async move {
                let new = catalog::new_product(&body)?;
                let product: ProductView = api::call(&bus.client, endpoints::PRODUCTS_CREATE, &new)
                    .await
                    .map_err(Problem::from)?;
                Ok::<_, Rejection>(created(
                    &product,
                    format!("/products/{}", product.product_id),
                ))
            });
        let set_price = warp::path!("products" / String)
            .and(warp::patch())
            .and(operator.clone())
            .and(body.clone())
            .and(bus.clone())
            .and_then(|id: String, _: Caller, body: Bytes, bus: Bus| async move {
                let set = catalog::set_price(product_id(&id)?, &body)?;
                let product: ProductView = api::call(&bus.client, endpoints::PRODUCTS_PRICE, &set)
                    .await
                    .map_err(Problem::from)?;
                Ok::<_, Rejection>(warp::reply::json(&product))
            });
        let restock = warp::path!("products" / String / "stock")
            .and(warp::post())
            .and(operator.clone())
            .and(body.clone())
            .and(idempotency_key())
            .and(bus.clone())
            .and_then(
                |id: String, _: Caller, body: Bytes, key: Option<String>, bus: Bus| async move {
                    if let Some(key) = &key {
                        idempotency::check_key(key)?;
                    }
                    let restock = catalog::restock(product_id(&id)?, &body, key)?;
                    let product: ProductView =
                        api::call(&bus.client, endpoints::PRODUCTS_RESTOCK, &restock)
                            .await
                            .map_err(Problem::from)?;
                    Ok::<_, Rejection>(warp::reply::json(&product))
                },
            );
        let create_customer = warp::path!("customers")
            .and(warp::post())
            .and(operator.clone())
            .and(body)
            .and(bus.clone())
            .and_then(|_: Caller, body: Bytes, bus: Bus| async move {
                let new = catalog::new_customer(&body)?;
                let customer: CustomerView =
                    api::call(&bus.client, endpoints::CUSTOMERS_CREATE, &new)
                        .await
                        .map_err(Problem::from)?;
                Ok::<_, Rejection>(created(
                    &customer,
                    format!("/customers/{}", customer.customer_id),
                ))
            });
        let block = warp::path!("customers" / String / String)
            .and(warp::post())
            .and(operator)
            .and(bus)
            .and_then(
                |id: String, action: String, _: Caller, bus: Bus| async move {
                    let blocked = match action.as_str() {
                        "block" => true,
                        "unblock" => false,
                        _ => return Err(warp::reject::not_found()),
                    };
                    let not_found = || Problem::not_found(format!("customer {id} does not exist"));
                    if !place::is_valid_id(&id) {
                        return Err(not_found().into());
                    }
                    let set = SetBlocked {
                        customer_id: id.clone().into(),
                        blocked,
                    };
                    let customer: CustomerView =
                        api::call(&bus.client, endpoints::CUSTOMERS_BLOCK, &set)
                            .await
                            .map_err(Problem::from)?;
                    Ok::<_, Rejection>(warp::reply::json(&customer))
                },
            );
        create_product
            .or(set_price)
            .or(restock)
            .or(create_customer)
            .or(block)
    };
    let get_customer = warp::path!("customers" / String)
        .and(warp::get())
        .and(caller())
        .and(with_bus.clone())
        .and_then(get_customer);
    let get_product = warp::path!("products" / String)
        .and(warp::get())
        .and(caller())
        .and(with_bus)
        .and_then(get_product);
    // The live board, its counters and the event streams.
    let board = board::routes()
        .or(board::stats_route(bus.clone()))
        .unify()
        .or(events::routes(Arc::new(feed)))
        .unify();
    let rest = catalog
        .or(get_order)
        .or(cancel)
        .or(ship)
        .or(deliver)
        .or(history)
        .or(list_orders)
        .or(get_customer)
        .or(get_product)
        .or(board)
        .or(runtime::health_routes(ready_when_connected(bus)))
        .or(openapi_json())
        .map(|reply| Box::new(reply) as Box<dyn Reply>)
        // Boxed: a request's future holds the routes it tries inline, and POST /orders, tried
        // first, would carry (and move, at every step) the size of the largest of these.
        .boxed();
    place.or(rest).recover(problem::recover)
}

/// `GET /openapi.json`: the API's description, open to all like the probes (it holds no data).
fn openapi_json() -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let text = openapi::json();
    warp::path!("openapi.json")
        .and(warp::get())
        .map(move || warp::reply::with_header(text.clone(), "content-type", "application/json"))
}

/// The caller the server authenticated (see [`server`]), or 401/403. Without the server's layer
/// in front, nobody gets in.
pub(crate) fn caller() -> impl Filter<Extract = (Caller,), Error = Rejection> + Clone {
    warp::ext::optional::<Authentication>().and_then(|found: Option<Authentication>| async move {
        found
            .unwrap_or(Authentication::Refused(Refusal::missing()))
            .caller()
            .map_err(|refusal| warp::reject::custom(Problem::from(&refusal)))
    })
}

/// A refusal of [`authz`] as an answer; `hidden` is the 404 the caller would get if the thing
/// did not exist.
pub(crate) fn denied(denial: Denied, hidden: impl FnOnce() -> Problem) -> Problem {
    match denial {
        Denied::Forbidden(detail) => Problem::new(StatusCode::FORBIDDEN, "forbidden", detail),
        Denied::Hidden => hidden(),
    }
}

/// The `Idempotency-Key` header as sent, checked by the handler (`idempotency::check_key`, a
/// 400 problem). Not `warp::header::optional::<String>`: its rejection of a value that is not
/// visible ASCII would lose to another route's 405 and never reach the client as the 400 it is.
fn idempotency_key()
-> impl Filter<Extract = (Option<String>,), Error = std::convert::Infallible> + Clone {
    warp::header::headers_cloned().map(|headers: warp::http::HeaderMap| {
        headers
            .get("idempotency-key")
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
    })
}

/// 415 unless the body is declared as JSON (`application/json` or `application/*+json`).
fn json_content_type() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<String>("content-type")
        .and_then(|value: Option<String>| async move {
            let essence = value
                .as_deref()
                .and_then(|v| v.split(';').next())
                .map(|v| v.trim().to_ascii_lowercase());
            match essence.as_deref() {
                Some("application/json") => Ok(()),
                Some(t) if t.starts_with("application/") && t.ends_with("+json") => Ok(()),
                _ => Err(warp::reject::custom(Problem::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported-media-type",
                    "send the body as Content-Type: application/json",
                ))),
            }
        })
        .untuple_one()
}

/// The body, up to 64 KiB: 413 beyond, whether it declares a length or comes chunked.
fn limited_body() -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(|length: Option<u64>, body| async move {
            if length.is_some_and(|n| n > MAX_BODY as u64) {
                return Err(warp::reject::custom(too_large()));
            }
            collect(body).await.map_err(warp::reject::custom)
        })
}

fn too_large() -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too-large",
        format!("the body is larger than {} KiB", MAX_BODY / 1024),
    )
}

async fn collect<S, B>(body: S) -> Result<Bytes, Problem>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut out = BytesMut::new();
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "bad-body",
                format!("the body could not be read: {e}"),
            )
        })?;
        if out.len() + chunk.remaining() > MAX_BODY {
            return Err(too_large());
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            out.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(out.freeze())
}

/// The answer to a request that was accepted (placed, or asked to change).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Accepted {
    order_id: OrderId,
    status: OrderStatus,
}

async fn place_order(
    caller: Caller,
    body: Bytes,
    key: Option<String>,
    edge: Arc<Edge>,
) -> Result<impl Reply, Rejection> {
    let started = std::time::SystemTime::now();
    let order = place::parse(&body)?;
    authz::place_order(&caller, order.customer_id.as_str())
        .map_err(|d| denied(d, || Problem::not_found("no such customer")))?;
    if let Some(key) = &key {
        idempotency::check_key(key)?;
    }
    // Refuse at once while disconnected: a publish queued in the client could land after we
    // answered 503, and the order would be half-accepted.
    if edge.bus.client.connection_state() != State::Connected {
        return Err(unavailable().into());
    }
    let fresh = Claim::new(&order);
    let (claim, retried) = match &key {
        None => (fresh, false),
        Some(key) => {
            match idempotency::claim(edge.idempotency().await?, &caller.scope(), key, fresh).await?
            {
                Claimed::New(claim) => (claim, false),
                Claimed::Existing(claim)
                    if claim.fingerprint != idempotency::fingerprint(&order) =>
                {
                    return Err(Problem::invalid(
                        "this Idempotency-Key was already used for a different order",
                    )
                    .into());
                }
                Claimed::Existing(claim) => (claim, true),
            }
        }
    };
    let order_id = claim.order_id;
    // A retry publishes the first request's event again (same ids, same time): dropped by the
    // duplicate window if it had landed. Past the window, look before publishing.
    let placed = retried && placed_order(&edge.bus.js, order_id).await?.is_some();
    if !placed {
        let event = Envelope {
            event_id: claim.event_id,
            version: EVENT_VERSION,
            order_id,
            occurred_at: claim.placed_at,
            event: Event::OrderPlaced(OrderSnapshot {
                customer_id: order.customer_id,
                items: order.items,
                total_amount: order.total_amount,
                placed_at: claim.placed_at,
            }),
        };
        if let Err(e) = bus::publish(&edge.bus.js, &event).await {
            warn!(%order_id, error = %e, "order not accepted");
            if e.is_store_full() {
                return Err(Problem::unavailable(
                    "the order store is full; nothing was accepted, please retry later",
                )
                .into());
            }
            return Err(unavailable().into());
        }
        info!(%order_id, trace_id = %order_id.uuid().simple(), retried, "order accepted");
        traced("POST /orders", &event, started);
    }
    let reply = warp::reply::json(&Accepted {
        order_id,
        status: OrderStatus::Pending,
    });
    let reply = warp::reply::with_header(reply, "location", format!("/orders/{order_id}"));
    Ok(warp::reply::with_status(reply, StatusCode::ACCEPTED))
}

/// The span of the request that published `event`: the root of the order's trace for
/// `POST /orders`. Its id is the one `event`'s `traceparent` names.
fn traced(route: &'static str, event: &Envelope, started: std::time::SystemTime) {
    if !trace::enabled() {
        return;
    }
    trace::record(trace::Span {
        service: SERVICE,
        name: route.to_string(),
        kind: trace::SpanKind::Server,
        span: trace::SpanRef::own(SERVICE, event),
        parent: None,
        start: started,
        end: std::time::SystemTime::now(),
        attributes: vec![
            trace::KeyValue::new("http.route", route),
            trace::KeyValue::new("oms.order_id", event.order_id.to_string()),
            trace::KeyValue::new("oms.event_type", event.event.type_name()),
        ],
        error: None,
    });
}

fn unavailable() -> Problem {
    Problem::unavailable("the order bus is unreachable; nothing was accepted, please retry")
}

async fn get_order(id: String, caller: Caller, bus: Bus) -> Result<impl Reply, Rejection> {
    let order = readable_order(&id, &caller, &bus).await?;
    Ok(warp::reply::json(&order))
}

/// The order `id` as its owner or an operator may see it (read your writes, as `GET`), or 404.
pub(crate) async fn readable_order(
    id: &str,
    caller: &Caller,
    bus: &Bus,
) -> Result<OrderView, Problem> {
    let not_found = || Problem::not_found(format!("order {id} does not exist"));
    let order_id: OrderId = id.parse().map_err(|_| not_found())?;
    let order =
        match api::call::<_, OrderView>(&bus.client, endpoints::ORDERS_GET, &GetOrder { order_id })
            .await
        {
            Ok(order) => order,
            Err(api::ApiError::NotFound(_)) => placed_order(&bus.js, order_id)
                .await?
                .ok_or_else(not_found)?,
            Err(e) => return Err(Problem::from(e)),
        };
    authz::read_order(caller, order.customer_id.as_str()).map_err(|d| denied(d, not_found))?;
    Ok(order)
}

/// `POST /orders/{id}/cancel`, `/ship`, `/deliver`: 202 once the request is on the stream (or
/// was done before), 409 when the order's status does not allow it.
async fn change_order(
    id: String,
    caller: Caller,
    request: Request,
    bus: Bus,
) -> Result<impl Reply, Rejection> {
    let started = std::time::SystemTime::now();
    match request {
        Request::Cancel => {}
        Request::Ship { .. } | Request::Deliver => {
            authz::fulfil_orders(&caller).map_err(|d| denied(d, || unreachable_hidden(&id)))?
        }
    }
    let order = readable_order(&id, &caller, &bus).await?;
    if let Request::Cancel = request {
        authz::cancel_order(&caller, order.customer_id.as_str())
            .map_err(|d| denied(d, || unreachable_hidden(&id)))?;
    }
    match request.verdict(order.status, order.tracking_number.as_deref()) {
        Verdict::Conflict(detail) => {
            return Err(Problem::new(StatusCode::CONFLICT, "illegal-transition", detail).into());
        }
        Verdict::Done => {}
        Verdict::Accept => {
            if bus.client.connection_state() != State::Connected {
                return Err(unavailable().into());
            }
            let event = Envelope::new(order.order_id, request.event(&caller));
            if let Err(e) = bus::publish(&bus.js, &event).await {
                warn!(order_id = %order.order_id, error = %e, "request not accepted");
                return Err(unavailable().into());
            }
            info!(order_id = %order.order_id, trace_id = %order.order_id.uuid().simple(),
                request = ?request, "request accepted");
            traced(request.route(), &event, started);
        }
    }
    let reply = warp::reply::json(&Accepted {
        order_id: order.order_id,
        status: request.target(),
    });
    Ok(warp::reply::with_status(reply, StatusCode::ACCEPTED))
}

/// A product id from a path, or 404.
fn product_id(id: &str) -> Result<oms_domain::ProductId, Problem> {
    match place::is_valid_id(id) {
        true => Ok(id.into()),
        false => Err(Problem::not_found(format!("product {id} does not exist"))),
    }
}

/// `201 Created` with the thing and where it lives.
fn created<T: Serialize>(body: &T, location: String) -> impl Reply + use<T> {
    let reply = warp::reply::with_header(warp::reply::json(body), "location", location);
    warp::reply::with_status(reply, StatusCode::CREATED)
}

/// A 404 for a refusal that is a 403 by construction (the role decides, not the order).
fn unreachable_hidden(id: &str) -> Problem {
    Problem::not_found(format!("order {id} does not exist"))
}

/// `GET /orders/{id}/history`: every event of the order, in order.
async fn order_history(id: String, caller: Caller, bus: Bus) -> Result<impl Reply, Rejection> {
    let not_found = || Problem::not_found(format!("order {id} does not exist"));
    let order_id: OrderId = id.parse().map_err(|_| not_found())?;
    let history = match api::call::<_, OrderHistory>(
        &bus.client,
        endpoints::ORDERS_HISTORY,
        &GetHistory { order_id },
    )
    .await
    {
        Ok(history) => history,
        // Accepted but not projected yet: its history so far is its placing.
        Err(api::ApiError::NotFound(_)) => {
            let placed = placed_event(&bus.js, order_id)
                .await?
                .ok_or_else(not_found)?;
            let Event::OrderPlaced(order) = &placed.event else {
                return Err(not_found().into());
            };
            OrderHistory {
                order_id,
                customer_id: order.customer_id.clone(),
                history: vec![HistoryEntry::of(&placed)],
            }
        }
        Err(e) => return Err(Problem::from(e).into()),
    };
    authz::read_order(&caller, history.customer_id.as_str()).map_err(|d| denied(d, not_found))?;
    Ok(warp::reply::json(&history))
}

/// The order as `orders.placed` holds it, PENDING, if it was ever accepted.
async fn placed_order(
    js: &jetstream::Context,
    order_id: OrderId,
) -> Result<Option<OrderView>, Problem> {
    let Some(envelope) = placed_event(js, order_id).await? else {
        return Ok(None);
    };
    let Event::OrderPlaced(order) = envelope.event else {
        return Ok(None);
    };
    Ok(Some(OrderView {
        order_id,
        customer_id: order.customer_id,
        items: order.items.into_iter().map(Into::into).collect(),
        total_amount: order.total_amount,
        status: OrderStatus::Pending,
        reason: None,
        tracking_number: None,
        created_at: order.placed_at,
        updated_at: order.placed_at,
    }))
}

/// The `orders.placed` event of the order, if it was ever accepted.
async fn placed_event(
    js: &jetstream::Context,
    order_id: OrderId,
) -> Result<Option<Envelope>, Problem> {
    use async_nats::jetstream::stream::DirectGetErrorKind;
    let stream = js
        .get_stream_no_info(topology::ORDERS)
        .await
        .map_err(|e| Problem::unavailable(format!("cannot read the order stream: {e}")))?;
    let message = match stream
        .direct_get_last_for_subject(topology::order_placed_subject(order_id))
        .await
    {
        Ok(m) => m,
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Problem::unavailable(format!(
                "cannot read the order stream: {e}"
            )));
        }
    };
    // What is not a valid OrderPlaced of this very order was never accepted by an edge (the
    // consumers send it to the DLQ): no such order.
    match Envelope::decode(&message.payload) {
        Ok(envelope) if envelope.order_id == order_id => Ok(Some(envelope)),
        Ok(_) => {
            warn!(%order_id, "an event of another order on this order's subject");
            Ok(None)
        }
        Err(e) => {
            warn!(%order_id, error = %e, "unreadable event on this order's subject");
            Ok(None)
        }
    }
}

async fn list_orders(
    caller: Caller,
    query: HashMap<String, String>,
    bus: Bus,
) -> Result<impl Reply, Rejection> {
    let customer_id = authz::list_orders(&caller, query.get("customerId").map(String::as_str))
        .map_err(|d| denied(d, || Problem::not_found("no such customer")))?;
    let status = match query.get("status") {
        None => None,
        Some(s) => Some(
            OrderStatus::parse(s)
                .ok_or_else(|| Problem::invalid("status must be PENDING, CONFIRMED or REJECTED"))?,
        ),
    };
    let limit = match query.get("limit") {
        None => 20,
        Some(l) => l
            .parse::<i64>()
            .map_err(|_| Problem::invalid("limit must be a whole number"))?
            .clamp(1, 500) as u32,
    };
    let request = ListOrders {
        customer_id: customer_id.map(CustomerId::from),
        status,
        limit,
        after: query.get("after").cloned(),
    };
    let page: OrderPage = api::call(&bus.client, endpoints::ORDERS_LIST, &request)
        .await
        .map_err(Problem::from)?;
    Ok(warp::reply::json(&page))
}

async fn get_customer(id: String, caller: Caller, bus: Bus) -> Result<impl Reply, Rejection> {
    authz::read_customer(&caller, &id).map_err(|d| {
        denied(d, || {
            Problem::not_found(format!("customer {id} does not exist"))
        })
    })?;
    let customer: CustomerView = api::call(
        &bus.client,
        endpoints::CUSTOMERS_GET,
        &GetCustomer {
            customer_id: id.into(),
        },
    )
    .await
    .map_err(Problem::from)?;
    Ok(warp::reply::json(&customer))
}

async fn get_product(id: String, caller: Caller, bus: Bus) -> Result<impl Reply, Rejection> {
    authz::read_product(&caller).map_err(|d| {
        denied(d, || {
            Problem::not_found(format!("product {id} does not exist"))
        })
    })?;
    let product: ProductView = api::call(
        &bus.client,
        endpoints::PRODUCTS_GET,
        &GetProduct {
            product_id: id.into(),
        },
    )
    .await
    .map_err(Problem::from)?;
    Ok(warp::reply::json(&product))
}
