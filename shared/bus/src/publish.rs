//! Publishing events: `Nats-Msg-Id` is the event's subject (unique per order and step), and a
//! publish returns only once JetStream has stored it. A timed-out publish is retried with the
//! same id: it may have landed, and the server drops the copy.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage as Publish;
use backon::{ExponentialBuilder, Retryable};
use tracing::{debug, warn};

use oms_domain::Envelope;
use oms_topology::identity::Identity;

use crate::trace::SpanRef;
use crate::{BusError, HEADER_EVENT_TYPE, HEADER_TRACEPARENT};

/// How many times a publish that got no PubAck is sent again (with the same `Nats-Msg-Id`).
const PUBLISH_ATTEMPTS: usize = 4;

/// Publishes `event` and returns once JetStream has stored it (or had stored it already); its
/// `traceparent` names a span of its own, of the service that writes it ([`SpanRef::own`]).
pub async fn publish(
    js: &jetstream::Context,
    event: &Envelope,
) -> Result<jetstream::publish::PublishAck, BusError> {
    let writer = Identity::writer(event.event.kind());
    publish_in(js, event, SpanRef::own(writer, event)).await
}

/// Publishes `event` as caused by `span`: its `traceparent` names it.
pub async fn publish_in(
    js: &jetstream::Context,
    event: &Envelope,
    span: SpanRef,
) -> Result<jetstream::publish::PublishAck, BusError> {
    let subject = event.subject();
    let ack = send(
        js,
        subject.clone(),
        headers(event, span),
        event.encode(),
        &subject,
    )
    .await?;
    let kind = event.event.kind();
    metrics::counter!(crate::metrics::EVENTS_PUBLISHED,
        "service" => Identity::writer(kind), "type" => <&'static str>::from(kind))
    .increment(1);
    Ok(ack)
}

fn headers(event: &Envelope, span: SpanRef) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(HEADER_EVENT_TYPE, event.event.type_name());
    headers.insert(HEADER_TRACEPARENT, span.traceparent().as_str());
    headers
}

/// Publishes and awaits the PubAck, sending again (with the same `Nats-Msg-Id`) when none
/// came.
async fn send(
    js: &jetstream::Context,
    subject: String,
    headers: HeaderMap,
    payload: bytes::Bytes,
    message_id: &str,
) -> Result<jetstream::publish::PublishAck, BusError> {
    let send = || async {
        let message = Publish::build()
            .payload(payload.clone())
            .headers(headers.clone())
            .message_id(message_id);
        js.send_publish(subject.clone(), message).await?.await
    };
    let retries = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_times(PUBLISH_ATTEMPTS - 1);
    let ack = send
        .retry(retries)
        .when(|e| retryable(e.kind()))
        .notify(
            |e, pause| warn!(%subject, error = %e, ?pause, "publish not acknowledged, retrying"),
        )
        .await
        .map_err(|source| BusError::Publish {
            subject: subject.clone(),
            source,
        })?;
    if ack.duplicate {
        // Stored before (a retry, or a redelivered handler): nothing new to do.
        debug!(%subject, "publish was a duplicate");
    }
    Ok(ack)
}

fn retryable(kind: PublishErrorKind) -> bool {
    matches!(
        kind,
        PublishErrorKind::TimedOut
            | PublishErrorKind::BrokenPipe
            | PublishErrorKind::StreamNotFound
    )
}

/// Publishes all `events` at once, each as caused by its span, and then awaits their PubAcks
/// together: one round trip for the lot instead of one each. One result per event, in order.
pub async fn publish_all(
    js: &jetstream::Context,
    events: &[(Envelope, SpanRef)],
) -> Vec<Result<(), BusError>> {
    futures::future::join_all(
        events
            .iter()
            .map(|(e, span)| async move { publish_in(js, e, *span).await.map(|_| ()) }),
    )
    .await
}
