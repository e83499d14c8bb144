//! Publishing and consuming events on JetStream, with the delivery rules every service shares.
//!
//! * [`publish`] sets `Nats-Msg-Id` to the event's subject (unique per order and step) and waits
//!   for the server's PubAck; a timed-out publish is retried with the same id, since it may have
//!   landed and the server drops the copy.
//! * [`consume`] reads a durable pull consumer and acks a message only after the handler returned,
//!   i.e. after its effects are durable. A transient failure is NAKed with a growing delay; an
//!   undecodable message, a permanent failure, or one out of deliveries goes to the DLQ stream and
//!   is terminated. The loop survives stream errors by recreating its consumer.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::{self, AckKind, Message};
use futures::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info_span, trace, warn};

use crate::config::{Config, ConsumersConfig, NatsConfig};
use crate::events::Envelope;
use crate::identity::Identity;
use crate::topology::{self, ConsumerSpec};

pub const HEADER_EVENT_TYPE: &str = "Oms-Event-Type";
pub const HEADER_TRACEPARENT: &str = "traceparent";
pub const HEADER_DLQ_SERVICE: &str = "Oms-Dlq-Service";
pub const HEADER_DLQ_ERROR: &str = "Oms-Dlq-Error";
pub const HEADER_DLQ_STREAM: &str = "Oms-Dlq-Stream";
pub const HEADER_DLQ_SUBJECT: &str = "Oms-Dlq-Subject";
pub const HEADER_DLQ_SEQUENCE: &str = "Oms-Dlq-Sequence";

/// How many times a publish that got no PubAck is sent again (with the same `Nats-Msg-Id`).
const PUBLISH_ATTEMPTS: u32 = 4;
/// When even the DLQ cannot be written, try the message again after this long.
const DLQ_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Connects to NATS as `identity`, with its nkey seed from `<creds_dir>/<identity>.nk` and its
/// own inbox prefix. The client keeps reconnecting forever, also when the server is not up yet
/// at start, so a service outlives a broker restart without help. What the server refuses
/// (a permission, the identity itself) is logged with the server's words.
pub async fn connect(config: &Config, identity: Identity) -> Result<async_nats::Client, BusError> {
    let cfg = &config.nats;
    let seed = crate::provision::read_seed(&config.creds_dir(), identity)
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

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS: {0}")]
    Connect(String),
    #[error("no broker credentials: {0} (oms-provision creds makes them)")]
    Credentials(String),
    #[error("publish to {subject} failed: {source}")]
    Publish {
        subject: String,
        #[source]
        source: jetstream::context::PublishError,
    },
}

impl BusError {
    /// The stream refused the event because it holds all the bytes it may (discard new): retry
    /// later, once an operator has made room; nothing was stored.
    pub fn is_store_full(&self) -> bool {
        match self {
            BusError::Publish { source, .. } => {
                let text = source.to_string();
                text.contains("maximum bytes exceeded")
                    || text.contains("maximum messages exceeded")
                    || text.contains("insufficient resources")
            }
            _ => false,
        }
    }
}

/// Publishes `event` and returns once JetStream has stored it (or had stored it already).
pub async fn publish(
    js: &jetstream::Context,
    event: &Envelope,
) -> Result<jetstream::publish::PublishAck, BusError> {
    let subject = event.subject();
    let mut headers = HeaderMap::new();
    headers.insert(HEADER_EVENT_TYPE, event.event.type_name());
    headers.insert(HEADER_TRACEPARENT, event.traceparent().as_str());
    let payload = event.encode();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let message = Publish::build()
            .payload(payload.clone())
            .headers(headers.clone())
            .message_id(&subject);
        let result = match js.send_publish(subject.clone(), message).await {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match result {
            Ok(ack) => {
                if ack.duplicate {
                    // Stored before (a retry, or a redelivered handler): nothing new to do.
                    debug!(%subject, "publish was a duplicate");
                }
                return Ok(ack);
            }
            Err(e) if attempt < PUBLISH_ATTEMPTS && retryable(e.kind()) => {
                warn!(%subject, attempt, error = %e, "publish not acknowledged, retrying");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            Err(source) => return Err(BusError::Publish { subject, source }),
        }
    }
}

fn retryable(kind: PublishErrorKind) -> bool {
    matches!(
        kind,
        PublishErrorKind::TimedOut
            | PublishErrorKind::BrokenPipe
            | PublishErrorKind::StreamNotFound
    )
}

/// What a handler says about a message it could not process.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Might work later (database busy, NATS timeout): NAK with delay, redeliver.
    #[error("transient: {0:#}")]
    Transient(anyhow::Error),
    /// Can never work: straight to the DLQ.
    #[error("permanent: {0:#}")]
    Permanent(anyhow::Error),
}

impl HandleError {
    pub fn transient(e: impl Into<anyhow::Error>) -> Self {
        HandleError::Transient(e.into())
    }
}

/// A statement the database refused for a constraint fails the same way every time: straight to
/// the DLQ. Everything else (busy, a dropped connection, a pool timeout) may pass later.
/// A unique violation stays transient: on PostgreSQL it is how two instances that raced on one
/// order find out, and the retry sees the winner's row (a placed and a rejected event of one
/// order both insert its reservation in inventory; a DLQ there would leak stock).
impl From<sqlx::Error> for HandleError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::error::ErrorKind;
        let permanent = match &e {
            sqlx::Error::Database(db) => matches!(
                db.kind(),
                ErrorKind::ForeignKeyViolation
                    | ErrorKind::CheckViolation
                    | ErrorKind::NotNullViolation
            ),
            _ => false,
        };
        match permanent {
            true => HandleError::Permanent(e.into()),
            false => HandleError::Transient(e.into()),
        }
    }
}

impl From<BusError> for HandleError {
    fn from(e: BusError) -> Self {
        HandleError::Transient(e.into())
    }
}

/// A service's reaction to events: decide, persist, publish. `Ok` for an event means every
/// effect of it is durable and its message may be acked.
pub trait Handler: Send + Sync + 'static {
    /// The events of one fetched batch, in stream order; one result per event, in the same
    /// order. Persisting a whole batch in one transaction (one commit instead of one per
    /// message) and awaiting the PubAcks of what it caused together is what makes a service
    /// fast; [`whole_or_each`] does the bookkeeping.
    fn handle_batch(
        &self,
        events: Vec<Envelope>,
    ) -> impl Future<Output = Vec<Result<(), HandleError>>> + Send;

    /// Batches a consumer may hand to this handler at once. More than one lets the next batch
    /// be decided and persisted while the one before waits for its PubAcks; the handler then
    /// takes events of one order in different calls at once, as it must anyway with two
    /// instances of the service.
    fn in_flight(&self) -> usize {
        1
    }
}

/// Runs `step` (persist, then publish) on the whole batch; if the batch as a whole fails (its
/// transaction, say), runs it on each event alone, so that one bad event cannot hold back the
/// others. `step` returns one result per event it was given.
pub async fn whole_or_each<'a, F, Fut>(
    events: &'a [Envelope],
    step: F,
) -> Vec<Result<(), HandleError>>
where
    F: Fn(&'a [Envelope]) -> Fut,
    Fut: Future<Output = Result<Vec<Result<(), HandleError>>, HandleError>>,
{
    let e = match step(events).await {
        Ok(results) => return results,
        Err(e) => e,
    };
    if events.len() == 1 {
        return vec![Err(e)];
    }
    warn!(error = %e, events = events.len(), "batch failed, taking its events one by one");
    let mut results = Vec::with_capacity(events.len());
    for event in events {
        match step(std::slice::from_ref(event)).await {
            Ok(mut one) => results.push(one.pop().unwrap_or(Ok(()))),
            Err(e) => results.push(Err(e)),
        }
    }
    results
}

/// Funnels the batches of several consumers into one handler: whatever the consumers fetched
/// while the handler was busy goes into its next call as one batch. A service whose consumers
/// all write to one database then commits once per round for all of them, instead of the
/// consumers taking turns on the write lock with a commit each (SQLite has one writer).
/// With a handler that takes one batch at a time, each consumer waits for the outcome of its
/// own events before it takes more, which keeps its stream order; with more
/// ([`Handler::in_flight`]), rounds overlap.
pub struct Funnel {
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    rounds: usize,
}

struct Job {
    events: Vec<Envelope>,
    outcome: tokio::sync::oneshot::Sender<Vec<Result<(), HandleError>>>,
}

impl Funnel {
    /// Starts the task that feeds `handler`, as many calls at once as it takes
    /// ([`Handler::in_flight`]); it ends when the funnel is dropped. Each consumer feeding the
    /// funnel may have as many batches in hand.
    pub fn new<H: Handler>(handler: H) -> Self {
        let rounds = handler.in_flight().max(1);
        let (jobs, mut queue) = tokio::sync::mpsc::unbounded_channel::<Job>();
        tokio::spawn(async move {
            let handler = &handler;
            let mut running = futures::stream::FuturesUnordered::new();
            loop {
                tokio::select! {
                    Some(()) = running.next(), if !running.is_empty() => {}
                    first = queue.recv(), if running.len() < rounds => {
                        let Some(first) = first else { break };
                        let mut round = vec![first];
                        while let Ok(job) = queue.try_recv() {
                            round.push(job);
                        }
                        running.push(Self::round(handler, round));
                    }
                }
            }
            while running.next().await.is_some() {}
        });
        Funnel { jobs, rounds }
    }

    /// One call of the handler with the events of `round`, and each job's share of outcomes.
    async fn round<H: Handler>(handler: &H, round: Vec<Job>) {
        let sizes: Vec<usize> = round.iter().map(|job| job.events.len()).collect();
        let (events, outcomes): (Vec<_>, Vec<_>) = round
            .into_iter()
            .map(|job| (job.events, job.outcome))
            .unzip();
        let count = sizes.iter().sum();
        // A handler that panics must not take the funnel, and with it every consumer of the
        // service, down: the round's messages are tried again later.
        let handled = AssertUnwindSafe(handler.handle_batch(events.concat()))
            .catch_unwind()
            .await;
        let mut results = handled
            .unwrap_or_else(|_| transient_failures(count, "the handler panicked"))
            .into_iter();
        for (outcome, size) in outcomes.into_iter().zip(sizes) {
            // A consumer that stopped waiting has nothing to settle: its messages are
            // redelivered.
            let _ = outcome.send(results.by_ref().take(size).collect());
        }
    }
}

impl Handler for Funnel {
    async fn handle_batch(&self, events: Vec<Envelope>) -> Vec<Result<(), HandleError>> {
        let count = events.len();
        let (outcome, result) = tokio::sync::oneshot::channel();
        if self.jobs.send(Job { events, outcome }).is_ok()
            && let Ok(results) = result.await
        {
            return results;
        }
        transient_failures(count, "the handler task has stopped")
    }

    fn in_flight(&self) -> usize {
        self.rounds
    }
}

fn transient_failures(count: usize, why: &str) -> Vec<Result<(), HandleError>> {
    (0..count)
        .map(|_| Err(HandleError::transient(anyhow::anyhow!("{why}"))))
        .collect()
}

/// Publishes all `events` at once and then awaits their PubAcks together: one round trip for
/// the lot instead of one each. One result per event, in order.
pub async fn publish_all(
    js: &jetstream::Context,
    events: &[Envelope],
) -> Vec<Result<(), BusError>> {
    futures::future::join_all(
        events
            .iter()
            .map(|e| async move { publish(js, e).await.map(|_| ()) }),
    )
    .await
}

/// Publishes what each event of a batch caused (`None`: nothing) with the PubAcks awaited
/// together, and says per event whether all of it is now durable.
pub async fn announce(
    js: &jetstream::Context,
    caused: Vec<Option<Envelope>>,
) -> Vec<Result<(), HandleError>> {
    let count = caused.len();
    let (slots, events): (Vec<usize>, Vec<Envelope>) = caused
        .into_iter()
        .enumerate()
        .filter_map(|(i, e)| e.map(|e| (i, e)))
        .unzip();
    let published = publish_all(js, &events).await;
    let mut results: Vec<Result<(), HandleError>> = (0..count).map(|_| Ok(())).collect();
    for (slot, result) in slots.into_iter().zip(published) {
        results[slot] = result.map_err(HandleError::from);
    }
    results
}

/// Runs the durable consumer `spec` until `shutdown`: the message in hand is finished first, and
/// messages already fetched but not started are handed back (NAK) for another instance to take.
pub async fn consume<H: Handler>(
    js: jetstream::Context,
    spec: ConsumerSpec,
    config: Config,
    handler: Arc<H>,
    shutdown: CancellationToken,
) {
    let cfg = &config.consumers;
    let mut failures: u32 = 0;
    while !shutdown.is_cancelled() {
        if failures > 0 {
            // Back off while the broker is away, but wake up at once for shutdown.
            let pause = Duration::from_millis(200 * u64::from(failures.min(10)));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        let consumer = match topology::get_consumer(&js, &spec).await {
            Ok(c) => c,
            Err(e) => {
                failures += 1;
                // Only the provisioner creates consumers; until it has, say why nothing flows.
                warn!(durable = spec.durable, stream = spec.stream, error = %e,
                    "cannot look up my consumer (oms-provision topology creates it), will retry");
                continue;
            }
        };
        let messages = consumer
            .stream()
            .max_messages_per_batch(cfg.batch)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await;
        let mut messages = match messages {
            Ok(m) => m,
            Err(e) => {
                failures += 1;
                warn!(durable = spec.durable, error = %e, "cannot pull, will retry");
                continue;
            }
        };
        debug!(durable = spec.durable, "consuming");
        // Batches in hand (see `Handler::in_flight`).
        let mut in_flight = futures::stream::FuturesUnordered::new();
        let broken = loop {
            let next = tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    while in_flight.next().await.is_some() {}
                    hand_back(&js, messages).await;
                    return;
                }
                Some(()) = in_flight.next(), if !in_flight.is_empty() => continue,
                next = messages.next(), if in_flight.len() < handler.in_flight().max(1) => next,
            };
            match next {
                Some(Ok(first)) => {
                    failures = 0;
                    // Take whatever else has arrived already, without waiting for more: under
                    // load a batch fills up by itself, when idle a lone message goes at once.
                    let mut batch = vec![first];
                    let mut error = None;
                    while batch.len() < cfg.batch {
                        match messages.next().now_or_never() {
                            Some(Some(Ok(message))) => batch.push(message),
                            Some(Some(Err(e))) => {
                                error = Some(e);
                                break;
                            }
                            Some(None) | None => break,
                        }
                    }
                    in_flight.push(process(&js, &spec, cfg, handler.as_ref(), batch));
                    if error.is_some() {
                        break error;
                    }
                }
                // Missing heartbeats, a deleted consumer, a reconnect: never end the loop,
                // start over with a fresh consumer and pull.
                Some(Err(e)) => break Some(e),
                None => break None,
            }
        };
        // The batches in hand are finished before the consumer is recreated.
        while in_flight.next().await.is_some() {}
        failures += 1;
        if let Some(e) = broken {
            warn!(durable = spec.durable, error = %e, "consumer stream error, recreating");
        }
    }
}

/// Hands back (NAK, no delay) what was fetched but not started, so another instance gets it at
/// once instead of after the ack wait. Unsubscribing first matters: while our pull request is
/// open, the server would redeliver the NAKed messages straight back to us. Waiting until the
/// server has seen the unsubscribe matters too: until then it may still deliver a new message
/// to our dead pull request, where it would sit out the ack wait.
async fn hand_back(js: &jetstream::Context, mut messages: jetstream::consumer::pull::Stream) {
    let mut unstarted = Vec::new();
    while let Some(Some(Ok(message))) = messages.next().now_or_never() {
        unstarted.push(message);
    }
    drop(messages);
    if let Err(e) = js.client().flush().await {
        debug!(error = %e, "flush after unsubscribing failed");
    }
    for message in unstarted {
        let _ = message.ack_with(AckKind::Nak(None)).await;
    }
}

/// Handles one fetched batch and settles each message by its own outcome: ack, NAK with delay,
/// or DLQ. Nothing is acked before the handler returned, i.e. before its effects are durable.
async fn process<H: Handler>(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
    cfg: &ConsumersConfig,
    handler: &H,
    batch: Vec<Message>,
) {
    let mut messages = Vec::with_capacity(batch.len());
    let mut events = Vec::with_capacity(batch.len());
    for message in batch {
        // What does not decode, or breaks a rule of what may arrive on its subject, is never
        // handed to the service: it goes to the DLQ with the reason.
        let checked = Envelope::decode(&message.payload)
            .and_then(|event| Ok(event.check(&message.subject).map(|()| event)?));
        match checked {
            Ok(event) => {
                events.push(event);
                messages.push(message);
            }
            Err(e) => {
                let sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
                dead_letter(js, spec, &message, sequence, &e.to_string()).await;
            }
        }
    }
    if events.is_empty() {
        return;
    }
    let (count, started) = (events.len(), std::time::Instant::now());
    let span = info_span!("handle", durable = spec.durable, events = count);
    let outcomes = handler.handle_batch(events).instrument(span.clone()).await;
    trace!(
        durable = spec.durable,
        events = count,
        micros = started.elapsed().as_micros() as u64,
        "batch handled"
    );
    let _entered = span.enter();
    debug_assert_eq!(outcomes.len(), messages.len(), "one outcome per event");
    let settled = messages
        .iter()
        .zip(outcomes)
        .map(|(message, outcome)| async move {
            let (delivered, sequence) = message
                .info()
                .map(|i| (i.delivered, i.stream_sequence))
                .unwrap_or((1, 0));
            match outcome {
                Ok(()) => {
                    if let Err(e) = message.ack().await {
                        // The effect is durable; a lost ack only means a redelivery, which is
                        // idempotent.
                        warn!(error = %e, "ack failed");
                    }
                }
                Err(HandleError::Transient(e)) if delivered < cfg.max_deliver => {
                    let delay = cfg.nak_delay(delivered);
                    warn!(subject = %message.subject, error = %format!("{e:#}"), ?delay,
                    "transient failure, will retry");
                    if let Err(e) = message.ack_with(AckKind::Nak(Some(delay))).await {
                        warn!(error = %e, "nak failed; ack wait will redeliver");
                    }
                }
                Err(e) => dead_letter(js, spec, message, sequence, &e.to_string()).await,
            }
        });
    futures::future::join_all(settled).await;
}

/// Parks `message` on `dlq.<service>.<subject>` with headers saying why, then terminates it.
/// If the DLQ itself cannot be written, the message is NAKed instead: it is never dropped.
async fn dead_letter(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
    message: &Message,
    stream_sequence: u64,
    error: &str,
) {
    error!(durable = spec.durable, subject = %message.subject, error, "giving up on message, sending it to the DLQ");
    let mut headers = message.headers.clone().unwrap_or_default();
    // A single-line error keeps the header valid.
    let error_line: String = error
        .replace(['\r', '\n'], " ")
        .chars()
        .take(1024)
        .collect();
    headers.insert(HEADER_DLQ_SERVICE, spec.service);
    headers.insert(HEADER_DLQ_ERROR, error_line.as_str());
    headers.insert(HEADER_DLQ_STREAM, spec.stream);
    headers.insert(HEADER_DLQ_SUBJECT, message.subject.as_str());
    headers.insert(HEADER_DLQ_SEQUENCE, stream_sequence.to_string().as_str());
    let subject = topology::dlq_subject(spec.service, &message.subject);
    let id = format!("{}.{}.{stream_sequence}", spec.durable, spec.stream);
    let published = match js
        .send_publish(
            subject,
            Publish::build()
                .payload(message.payload.clone())
                .headers(headers)
                .message_id(id),
        )
        .await
    {
        Ok(ack) => ack.await.map(|_| ()),
        Err(e) => Err(e),
    };
    let kind = match published {
        Ok(()) => AckKind::Term,
        Err(e) => {
            warn!(error = %e, "DLQ publish failed, message stays pending");
            AckKind::Nak(Some(DLQ_RETRY_DELAY))
        }
    };
    if let Err(e) = message.ack_with(kind).await {
        warn!(error = %e, "term/nak failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Item, Money, OrderSnapshot};
    use std::sync::Mutex;
    use tokio::sync::{Notify, Semaphore};
    use uuid::Uuid;

    /// Records the order ids of every call and fails the events of the orders in `bad`; a call
    /// waits for `gate` after saying it started. Takes `in_flight` calls at once.
    struct Recorder {
        calls: Arc<Mutex<Vec<Vec<Uuid>>>>,
        bad: Vec<Uuid>,
        started: Arc<Notify>,
        gate: Arc<Semaphore>,
        in_flight: usize,
    }

    impl Handler for Recorder {
        fn in_flight(&self) -> usize {
            self.in_flight
        }

        async fn handle_batch(&self, events: Vec<Envelope>) -> Vec<Result<(), HandleError>> {
            self.started.notify_one();
            let _open = self.gate.acquire().await.expect("gate stays open");
            let ids: Vec<Uuid> = events.iter().map(|e| e.order_id).collect();
            self.calls.lock().unwrap().push(ids.clone());
            ids.iter()
                .map(|id| match self.bad.contains(id) {
                    true => Err(HandleError::Permanent(anyhow::anyhow!("bad {id}"))),
                    false => Ok(()),
                })
                .collect()
        }
    }

    fn placed(order_id: Uuid) -> Envelope {
        Envelope::new(
            order_id,
            crate::Event::OrderPlaced(OrderSnapshot {
                customer_id: "OMS-Cust-001".into(),
                items: vec![Item {
                    product_id: "item1".into(),
                    quantity: 1,
                }],
                total_amount: Money::from_cents(100),
                placed_at: time::OffsetDateTime::UNIX_EPOCH,
            }),
        )
    }

    #[tokio::test]
    async fn a_funnel_joins_waiting_batches_and_gives_each_its_own_outcomes() {
        let [x, a1, a2, b1, b2] = [(); 5].map(|_| Uuid::new_v4());
        let calls = Arc::new(Mutex::new(Vec::new()));
        let started = Arc::new(Notify::new());
        let gate = Arc::new(Semaphore::new(0));
        let funnel = Arc::new(Funnel::new(Recorder {
            calls: calls.clone(),
            bad: vec![a1, b2],
            started: started.clone(),
            gate: gate.clone(),
            in_flight: 1,
        }));

        // A first batch occupies the handler; two more arrive while it is busy.
        let first = tokio::spawn({
            let funnel = funnel.clone();
            async move { funnel.handle_batch(vec![placed(x)]).await }
        });
        started.notified().await;
        let (a, b, ()) = tokio::join!(
            funnel.handle_batch(vec![placed(a1), placed(a2)]),
            funnel.handle_batch(vec![placed(b1), placed(b2)]),
            async { gate.add_permits(10) },
        );

        let first = first.await.expect("first batch");
        assert!(first.len() == 1 && first[0].is_ok());
        let outcomes =
            |r: &[Result<(), HandleError>]| -> Vec<bool> { r.iter().map(Result::is_ok).collect() };
        assert_eq!(outcomes(&a), vec![false, true], "a1 failed, a2 passed");
        assert_eq!(outcomes(&b), vec![true, false], "b1 passed, b2 failed");
        assert_eq!(
            *calls.lock().unwrap(),
            vec![vec![x], vec![a1, a2, b1, b2]],
            "the two waiting batches went to the handler as one, in arrival order"
        );
    }

    #[tokio::test]
    async fn a_funnel_of_two_rounds_starts_the_next_while_one_is_busy() {
        let [a, b, c] = [(); 3].map(|_| Uuid::new_v4());
        let calls = Arc::new(Mutex::new(Vec::new()));
        let started = Arc::new(Notify::new());
        let gate = Arc::new(Semaphore::new(0));
        let funnel = Arc::new(Funnel::new(Recorder {
            calls: calls.clone(),
            bad: vec![],
            started: started.clone(),
            gate: gate.clone(),
            in_flight: 2,
        }));
        assert_eq!(
            funnel.in_flight(),
            2,
            "its consumers may have two batches in hand"
        );
        let call = |id| {
            let funnel = funnel.clone();
            tokio::spawn(async move { funnel.handle_batch(vec![placed(id)]).await })
        };
        let first = call(a);
        started.notified().await;
        let second = call(b);
        // Both calls are in the handler, neither finished: the second did not wait.
        tokio::time::timeout(Duration::from_secs(10), started.notified())
            .await
            .expect("the second round started while the first was busy");
        let third = call(c);
        tokio::task::yield_now().await;
        assert!(calls.lock().unwrap().is_empty(), "the gate is still closed");
        gate.add_permits(10);
        for call in [first, second, third] {
            assert!(call.await.expect("call").iter().all(Result::is_ok));
        }
        let mut seen = calls.lock().unwrap().concat();
        seen.sort();
        let mut all = vec![a, b, c];
        all.sort();
        assert_eq!(seen, all, "every event handled once");
    }

    /// Panics on its first call.
    struct PanicsOnce(std::sync::atomic::AtomicBool);

    impl Handler for PanicsOnce {
        async fn handle_batch(&self, events: Vec<Envelope>) -> Vec<Result<(), HandleError>> {
            if !self.0.swap(true, std::sync::atomic::Ordering::SeqCst) {
                panic!("a bug in the handler");
            }
            events.iter().map(|_| Ok(())).collect()
        }
    }

    #[tokio::test]
    async fn a_funnel_outlives_a_panicking_handler() {
        let funnel = Funnel::new(PanicsOnce(Default::default()));
        let first = funnel.handle_batch(vec![placed(Uuid::new_v4())]).await;
        assert!(
            matches!(first.as_slice(), [Err(HandleError::Transient(_))]),
            "the panicked round is retried later"
        );
        let second = funnel
            .handle_batch(vec![placed(Uuid::new_v4()), placed(Uuid::new_v4())])
            .await;
        assert!(second.len() == 2 && second.iter().all(Result::is_ok));
    }
}
