//! Reading a durable pull consumer: a message is acked only after the handler returned, i.e.
//! after its effects are durable. A transient failure is NAKed with a growing delay; an
//! undecodable message, a permanent failure, or one out of deliveries goes to the DLQ and is
//! terminated. The loop survives stream errors by recreating its consumer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, Message};
use futures::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, trace, warn};

use oms_config::{Config, ConsumersConfig};
use oms_domain::{Envelope, EventKind};
use oms_topology::{self as topology, ConsumerSpec};
use std::str::FromStr as _;

use crate::HandleError;
use crate::dlq::dead_letter;
use crate::metrics::{self as m, Outcome};
use crate::trace::{self, KeyValue, SpanRef};

/// A service's reaction to events: decide, persist, publish. `Ok` for an event means every
/// effect of it is durable and its message may be acked.
pub trait Handler: Send + Sync + 'static {
    /// The events of one fetched batch, in stream order; one result per event, in the same
    /// order. Persisting a whole batch in one transaction (one commit instead of one per
    /// message) and awaiting the PubAcks of what it caused together is what makes a service
    /// fast; [`crate::Pipeline`] does the bookkeeping.
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
    // Counted from 0, so that a rate is known before the first redelivery.
    ::metrics::counter!(m::EVENT_REDELIVERIES, "service" => spec.service, "consumer" => spec.durable)
        .increment(0);
    let fresh = || crate::backoff(Duration::from_millis(200), Duration::from_secs(2));
    let (mut pauses, mut failing) = (fresh(), false);
    while !shutdown.is_cancelled() {
        if failing {
            // Back off while the broker is away, but wake up at once for shutdown.
            let pause = pauses.next().unwrap_or(Duration::from_secs(2));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        let consumer = match topology::get_consumer(&js, &spec).await {
            Ok(c) => c,
            Err(e) => {
                failing = true;
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
                failing = true;
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
                    pauses = fresh();
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
        failing = true;
        if let Some(e) = broken {
            warn!(durable = spec.durable, error = %e, "consumer stream error, recreating");
        }
    }
}

/// Hands back (NAK, no delay) what was fetched but not started, so another instance gets it at
/// once instead of after the ack wait. Unsubscribing first matters: while our pull request is
/// open, the server would redeliver the NAKed messages straight back to us; the NAKs follow the
/// unsubscribe on the same connection, so the server sees it first. What the server sent before
/// it saw the unsubscribe but arrives after is dropped by the client (async-nats closes the
/// subscription on drop) and comes back after the ack wait: a delay, never a loss.
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
    let started = std::time::Instant::now();
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
                let (delivered, sequence) = delivery(&message);
                let outcome = dead_letter(js, spec, &message, sequence, &e.to_string()).await;
                let event_type = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(crate::HEADER_EVENT_TYPE))
                    .and_then(|t| EventKind::from_str(t.as_str()).ok())
                    .map_or("unknown", <&str>::from);
                settled(spec, event_type, delivered, outcome, started);
            }
        }
    }
    if events.is_empty() {
        return;
    }
    let count = events.len();
    let types: Vec<&'static str> = events.iter().map(|e| e.event.type_name()).collect();
    // Each message's span: derived from the event, so what the handler publishes names it.
    let spans: Vec<SpanRef> = events
        .iter()
        .map(|e| SpanRef::of(e.order_id, spec.service, e.event_id))
        .collect();
    let began = std::time::SystemTime::now();
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
    let settling = messages.iter().zip(outcomes).zip(types).zip(spans).map(
        |(((message, outcome), event_type), span)| async move {
            let (delivered, sequence) = delivery(message);
            let failure = outcome.as_ref().err().map(|e| format!("{e:#}"));
            let outcome = match outcome {
                Ok(()) => {
                    if let Err(e) = message.ack().await {
                        // The effect is durable; a lost ack only means a redelivery, which is
                        // idempotent.
                        warn!(error = %e, "ack failed");
                    }
                    Outcome::Acked
                }
                Err(HandleError::Transient(e) | HandleError::Conflict(e))
                    if delivered < cfg.max_deliver =>
                {
                    let delay = cfg.nak_delay(delivered);
                    warn!(subject = %message.subject, trace_id = %span.trace_hex(),
                    error = %format!("{e:#}"), ?delay, "transient failure, will retry");
                    if let Err(e) = message.ack_with(AckKind::Nak(Some(delay))).await {
                        warn!(error = %e, "nak failed; ack wait will redeliver");
                    }
                    Outcome::Naked
                }
                Err(e) => dead_letter(js, spec, message, sequence, &e.to_string()).await,
            };
            settled(spec, event_type, delivered, outcome, started);
            if trace::enabled() {
                traced(
                    spec, message, event_type, span, outcome, delivered, began, failure,
                );
            }
        },
    );
    futures::future::join_all(settling).await;
}

/// Records the span of one handled message, a child of the span that published it.
#[allow(clippy::too_many_arguments)] // one span's facts, each from a different place
fn traced(
    spec: &ConsumerSpec,
    message: &Message,
    event_type: &'static str,
    span: SpanRef,
    outcome: Outcome,
    delivered: i64,
    start: std::time::SystemTime,
    failure: Option<String>,
) {
    let parent = message
        .headers
        .as_ref()
        .and_then(|h| h.get(crate::HEADER_TRACEPARENT))
        .and_then(|v| SpanRef::parse(v.as_str()));
    let outcome: &'static str = outcome.into();
    let order_id = message.subject.rsplit('.').next().unwrap_or_default();
    trace::record(trace::Span {
        service: spec.service,
        name: format!("{} {event_type}", spec.durable),
        kind: trace::SpanKind::Consumer,
        span,
        parent,
        start,
        end: std::time::SystemTime::now(),
        attributes: vec![
            KeyValue::new("messaging.system", "nats"),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.destination.name", message.subject.to_string()),
            KeyValue::new("messaging.consumer.group.name", spec.durable),
            KeyValue::new("messaging.message.delivery_count", delivered),
            KeyValue::new("oms.order_id", order_id.to_string()),
            KeyValue::new("oms.event_type", event_type),
            KeyValue::new("oms.outcome", outcome),
        ],
        error: failure,
    });
}

/// How many times `message` was delivered, and its sequence in the stream.
fn delivery(message: &Message) -> (i64, u64) {
    message
        .info()
        .map(|i| (i.delivered, i.stream_sequence))
        .unwrap_or((1, 0))
}

/// Counts a message settled with `outcome`.
fn settled(
    spec: &ConsumerSpec,
    event_type: &'static str,
    delivered: i64,
    outcome: Outcome,
    started: std::time::Instant,
) {
    let (service, consumer) = (spec.service, spec.durable);
    let outcome: &'static str = outcome.into();
    ::metrics::counter!(m::EVENTS_HANDLED, "service" => service, "consumer" => consumer,
        "type" => event_type, "outcome" => outcome)
    .increment(1);
    ::metrics::histogram!(m::EVENT_HANDLE_DURATION, "service" => service, "consumer" => consumer)
        .record(started.elapsed().as_secs_f64());
    if delivered > 1 {
        ::metrics::counter!(m::EVENT_REDELIVERIES, "service" => service, "consumer" => consumer)
            .increment(1);
    }
}
