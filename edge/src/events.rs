//! Server-sent events: every order's status changes (`GET /events`, operators, with the
//! board's counters as `stats` events) and one order's (`GET /orders/{id}/events`, its customer
//! or an operator), read from the ORDERS stream.
//!
//! A [`Reader`] reads ORDERS in stream order by sequence, in batches of direct gets (which
//! change nothing on the broker), from after the last event it handed out; the status events,
//! subscribed to as they are published, only wake it up (a lost wake-up costs at most
//! [`POLL_EVERY`]). So a stream neither skips nor repeats an event, whatever happens to the
//! connection, and each event's `id` is its stream sequence: a client that reconnects with
//! `Last-Event-ID` (as `EventSource` does) resumes right after it. None of this is on the way
//! of `POST /orders`. No consumer is made: the edge may not create one (see its identity).
//!
//! A stream ends when the edge shuts down (the server would otherwise wait for it) or when its
//! client goes; comments keep it alive in between, well within the idle timeout.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Subscriber;
use futures::stream::SelectAll;
use futures::{FutureExt, StreamExt};
use oms_bus::Bus;
use oms_bus::api;
use oms_bus::direct::{self, BATCH, ReadError};
use oms_config::HttpConfig;
use oms_domain::api::{GetOrder, HistoryEntry, OrderView};
use oms_domain::{CustomerId, Envelope, OrderId};
use oms_topology::identity::STATUS_EVENTS;
use oms_topology::{self as topology, api as endpoints};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use warp::http::StatusCode;
use warp::sse::Event;
use warp::{Filter, Rejection, Reply};

use crate::auth::Caller;
use crate::board;
use crate::problem::Problem;
use crate::{authz, caller, denied, readable_order};

/// How long a stream waits for a wake-up before it looks anyway.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// How often `/events` sends the board's counters.
pub const STATS_EVERY: Duration = Duration::from_secs(2);

/// The order ids whose customer `/events` remembers (events after the saga do not name it).
const REMEMBERED: usize = 10_000;

pub use crate::auth::is_event_stream;

/// What the event streams share.
pub struct Feed {
    bus: Bus,
    shutdown: CancellationToken,
    keep_alive: Duration,
    /// One per open stream (`http.max_event_streams`); beyond, 503.
    slots: Arc<Semaphore>,
    most: usize,
}

impl Feed {
    /// Streams on `bus` that end at `shutdown`, at most `http.max_event_streams` at once, with a
    /// comment at least three times per `http.idle_timeout` (the server closes a connection
    /// silent for that long).
    pub fn new(bus: Bus, http: &HttpConfig, shutdown: CancellationToken) -> Feed {
        Feed {
            bus,
            shutdown,
            keep_alive: keep_alive(http.idle_timeout),
            slots: Arc::new(Semaphore::new(http.max_event_streams)),
            most: http.max_event_streams,
        }
    }
}

/// Comments at least three times per `idle_timeout`, at most every 15 s.
fn keep_alive(idle_timeout: Duration) -> Duration {
    (idle_timeout / 3).clamp(Duration::from_millis(100), Duration::from_secs(15))
}

/// One status change of an order, as both streams send it (`event: status`, `id: <sequence>`):
/// its history entry (type, time, status, reason…) with the order and its customer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusChange {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    /// The event's sequence in ORDERS (also the SSE `id`).
    pub sequence: u64,
    #[serde(flatten)]
    pub entry: HistoryEntry,
}

/// `GET /events` and `GET /orders/{id}/events`.
pub fn routes(
    feed: Arc<Feed>,
) -> impl Filter<Extract = (Box<dyn Reply>,), Error = Rejection> + Clone {
    let with_feed = warp::any().map(move || feed.clone());
    let all = warp::path!("events")
        .and(warp::get())
        .and(caller())
        .and(warp::sse::last_event_id::<u64>())
        .and(with_feed.clone())
        .and_then(every_order);
    let one = warp::path!("orders" / String / "events")
        .and(warp::get())
        .and(caller())
        .and(warp::sse::last_event_id::<u64>())
        .and(with_feed)
        .and_then(one_order);
    all.or(one)
        .unify()
        .map(|reply| Box::new(reply) as Box<dyn Reply>)
}

async fn every_order(
    caller: Caller,
    after: Option<u64>,
    feed: Arc<Feed>,
) -> Result<warp::reply::Response, Rejection> {
    authz::watch_all(&caller).map_err(|d| denied(d, || Problem::not_found("not found")))?;
    let wake = STATUS_EVENTS.iter().map(|k| topology::all_of(*k)).collect();
    let from = match after {
        Some(after) => Some(after),
        // From now: after the stream's last event.
        None => Some(last_sequence(&feed.bus).await?),
    };
    let reader = Reader::new(&feed.bus, ALL_ORDERS.to_string(), wake, from);
    open(&feed, reader, Scope::Every(HashMap::new())).await
}

async fn one_order(
    id: String,
    caller: Caller,
    after: Option<u64>,
    feed: Arc<Feed>,
) -> Result<warp::reply::Response, Rejection> {
    let order: OrderView = readable_order(&id, &caller, &feed.bus).await?;
    let wake = STATUS_EVENTS
        .iter()
        .map(|k| k.subject(order.order_id))
        .collect();
    // From its beginning unless resumed: the whole story so far, then what comes.
    let filter = format!("{ORDER_EVENTS}.{}", order.order_id);
    let reader = Reader::new(&feed.bus, filter, wake, after);
    open(&feed, reader, Scope::One(order.customer_id)).await
}

/// Every event of ORDERS (its requests are read and left out: one filter reads in order).
const ALL_ORDERS: &str = "orders.>";
/// Every event of one order on ORDERS, with `.<orderId>`.
const ORDER_EVENTS: &str = "orders.*";

/// The last sequence of ORDERS now.
async fn last_sequence(bus: &Bus) -> Result<u64, Problem> {
    match bus.js.get_stream(topology::ORDERS).await {
        Ok(stream) => Ok(stream.cached_info().state.last_sequence),
        Err(e) => {
            warn!(error = %e, "cannot read the order stream");
            Err(Problem::unavailable(
                "the order stream cannot be read now; retry",
            ))
        }
    }
}

/// Whose events a stream carries, and how it knows each one's customer.
enum Scope {
    /// Every order: the customers seen in `orders.placed`, the others asked of the order service.
    Every(HashMap<OrderId, CustomerId>),
    One(CustomerId),
}

/// Starts a stream: 503 when the edge serves too many, or when ORDERS cannot be read now.
async fn open(
    feed: &Feed,
    mut reader: Reader,
    scope: Scope,
) -> Result<warp::reply::Response, Rejection> {
    let permit = feed.slots.clone().try_acquire_owned().map_err(|_| {
        Problem::unavailable(format!(
            "this edge already serves {} event streams, as many as it may; retry later",
            feed.most
        ))
    })?;
    if let Err(e) = reader.subscribe().await {
        warn!(error = %e, "cannot follow the order stream");
        return Err(Problem::unavailable("the order stream cannot be read now; retry").into());
    }
    let (tx, mut rx) = mpsc::channel::<Event>(64);
    let task = Stream {
        reader,
        scope,
        bus: feed.bus.clone(),
        out: tx,
        shutdown: feed.shutdown.clone(),
        _permit: permit,
    };
    tokio::spawn(task.run());
    let events = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).map(Ok::<_, Infallible>);
    let stream = warp::sse::keep_alive()
        .interval(feed.keep_alive)
        .stream(events);
    let reply = warp::sse::reply(stream);
    // Not for buffering proxies: each event as it happens.
    let reply = warp::reply::with_header(reply, "x-accel-buffering", "no");
    Ok(warp::reply::with_status(reply, StatusCode::OK).into_response())
}

/// One open stream: reads ORDERS and the counters, writes SSE events until the client
/// goes or the edge shuts down.
struct Stream {
    reader: Reader,
    scope: Scope,
    bus: Bus,
    out: mpsc::Sender<Event>,
    shutdown: CancellationToken,
    /// Held while the stream is open.
    _permit: OwnedSemaphorePermit,
}

impl Stream {
    async fn run(mut self) {
        let counters = matches!(self.scope, Scope::Every(_));
        let mut tick = tokio::time::interval(STATS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = self.out.closed() => break,
                (sequence, envelope) = self.reader.next() => {
                    match self.change(sequence, &envelope).await {
                        Some(change) => status_event(&change),
                        None => continue,
                    }
                }
                _ = tick.tick(), if counters => {
                    let stats = board::stats(&self.bus).await;
                    Event::default().event("stats").json_data(&stats).unwrap_or_default()
                }
            };
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                sent = self.out.send(event) => if sent.is_err() { break },
            }
        }
        debug!("event stream ended");
    }

    /// The change `envelope` makes, with its order's customer.
    async fn change(&mut self, sequence: u64, envelope: &Envelope) -> Option<StatusChange> {
        let entry = HistoryEntry::of(envelope);
        entry.status?;
        let order_id = envelope.order_id;
        let customer_id = match &mut self.scope {
            Scope::One(customer) => customer.clone(),
            Scope::Every(known) => {
                let customer = match envelope.event.order() {
                    Some(order) => order.customer_id.clone(),
                    None => match known.get(&order_id) {
                        Some(customer) => customer.clone(),
                        None => customer_of(&self.bus, order_id).await?,
                    },
                };
                if known.len() >= REMEMBERED {
                    known.clear();
                }
                known.insert(order_id, customer.clone());
                customer
            }
        };
        Some(StatusChange {
            order_id,
            customer_id,
            sequence,
            entry,
        })
    }
}

fn status_event(change: &StatusChange) -> Event {
    Event::default()
        .event("status")
        .id(change.sequence.to_string())
        .json_data(change)
        .expect("a status change serializes")
}

/// The customer of an order the stream did not see placed (its events after the saga name no
/// customer): the order service knows.
async fn customer_of(bus: &Bus, order_id: OrderId) -> Option<CustomerId> {
    match api::call::<_, OrderView>(&bus.client, endpoints::ORDERS_GET, &GetOrder { order_id })
        .await
    {
        Ok(order) => Some(order.customer_id),
        Err(e) => {
            warn!(%order_id, error = %e, "an order's customer is unknown; its event is left out");
            None
        }
    }
}

/// Reads the events of ORDERS on a filter in stream order: batches of direct gets from after
/// the last sequence handed out, woken by the events as they are published.
pub struct Reader {
    bus: Bus,
    /// `next_by_subj` of the direct gets.
    filter: String,
    /// The subjects that wake it up.
    wake: Vec<String>,
    /// The last stream sequence read (0: from the start).
    last: u64,
    /// Read and not handed out yet.
    read: VecDeque<(u64, Envelope)>,
    /// Wake-ups and answers, once subscribed.
    subscribed: Option<Subscriptions>,
}

struct Subscriptions {
    wake: SelectAll<Subscriber>,
    /// One subscription for every answer: `<inbox>.<request number>`.
    answers: Subscriber,
    inbox: String,
    asked: u64,
}

impl Reader {
    /// Reads events on `filter` after sequence `after` (from the start if `None`), woken by
    /// publishes on `wake`.
    pub fn new(bus: &Bus, filter: String, wake: Vec<String>, after: Option<u64>) -> Reader {
        Reader {
            bus: bus.clone(),
            filter,
            wake,
            last: after.unwrap_or(0),
            read: VecDeque::new(),
            subscribed: None,
        }
    }

    /// Subscribes to the wake-ups and the answers (before the first read: what is published
    /// from now on wakes it).
    pub async fn subscribe(&mut self) -> Result<(), ReadError> {
        let client = &self.bus.client;
        let mut wake = SelectAll::new();
        for subject in &self.wake {
            wake.push(client.subscribe(subject.clone()).await?);
        }
        let inbox = client.new_inbox();
        let answers = client.subscribe(format!("{inbox}.*")).await?;
        self.subscribed = Some(Subscriptions {
            wake,
            answers,
            inbox,
            asked: 0,
        });
        Ok(())
    }

    /// The next event, with its stream sequence. Waits (retrying the broker as long as it
    /// takes) until there is one; cancel-safe.
    pub async fn next(&mut self) -> (u64, Envelope) {
        let mut failures = oms_bus::backoff(Duration::from_millis(100), Duration::from_secs(2));
        // Right after a wake-up the event may not be stored yet: look again a few times
        // (5 ms doubling, 315 ms in all).
        let settle =
            || oms_bus::backoff(Duration::from_millis(5), Duration::from_millis(160)).take(6);
        let mut settling = settle();
        let mut woken = false;
        loop {
            if let Some(event) = self.read.pop_front() {
                return event;
            }
            if self.subscribed.is_none()
                && let Err(e) = self.subscribe().await
            {
                warn!(error = %e, "cannot follow the order stream, retrying");
                tokio::time::sleep(failures.next().unwrap_or(POLL_EVERY)).await;
                continue;
            }
            match self.read_batch().await {
                Ok(0) => {}
                Ok(_) => continue,
                Err(e) => {
                    warn!(error = %e, "cannot read the order stream, retrying");
                    self.subscribed = None;
                    tokio::time::sleep(failures.next().unwrap_or(POLL_EVERY)).await;
                    continue;
                }
            }
            if woken && let Some(pause) = settling.next() {
                tokio::time::sleep(pause).await;
                continue;
            }
            let Some(subscribed) = self.subscribed.as_mut() else {
                continue;
            };
            woken = match tokio::time::timeout(POLL_EVERY, subscribed.wake.next()).await {
                Ok(Some(_)) => true,
                Err(_) => false,
                // The subscriptions ended (refused, or the client closed): anew, not in a spin.
                Ok(None) => {
                    self.subscribed = None;
                    tokio::time::sleep(POLL_EVERY).await;
                    continue;
                }
            };
            // Many events, one read (at most a batch's worth of wake-ups at a time).
            for _ in 0..BATCH {
                if !matches!(subscribed.wake.next().now_or_never(), Some(Some(_))) {
                    break;
                }
            }
            settling = settle();
        }
    }

    /// Reads the next batch after `last` into `read`; how many events it found.
    async fn read_batch(&mut self) -> Result<usize, ReadError> {
        let Some(subscribed) = self.subscribed.as_mut() else {
            return Ok(0);
        };
        subscribed.asked += 1;
        let reply = format!("{}.{}", subscribed.inbox, subscribed.asked);
        let read = direct::batch(
            &self.bus.client,
            &mut subscribed.answers,
            &reply,
            topology::ORDERS,
            self.last + 1,
            Some(&self.filter),
        )
        .await?;
        let mut found = 0;
        for stored in read {
            if stored.sequence <= self.last {
                continue;
            }
            self.last = stored.sequence;
            match Envelope::decode(&stored.payload) {
                Ok(envelope) => {
                    self.read.push_back((stored.sequence, envelope));
                    found += 1;
                }
                // The consumers park such a message in the DLQ; here it is no status change.
                Err(e) => warn!(sequence = stored.sequence, error = %e,
                    "an unreadable event on ORDERS, left out"),
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_stream_paths() {
        for yes in ["/events", "/orders/abc/events"] {
            assert!(is_event_stream(yes), "{yes}");
        }
        for no in [
            "/",
            "/events/",
            "/events/x",
            "/orders/events",
            "/orders//events",
            "/orders/abc",
            "/orders/abc/history",
            "/orders/abc/events/x",
            "/stats",
        ] {
            assert!(!is_event_stream(no), "{no}");
        }
    }

    #[test]
    fn keep_alives_come_well_within_the_idle_timeout() {
        assert_eq!(keep_alive(Duration::from_secs(60)), Duration::from_secs(15));
        assert_eq!(keep_alive(Duration::from_secs(3)), Duration::from_secs(1));
        assert_eq!(
            keep_alive(Duration::from_millis(30)),
            Duration::from_millis(100)
        );
    }
}
