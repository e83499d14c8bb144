//! Dead letters: parking a message a service gave up on, looking at them, replaying one.
//!
//! A dead letter keeps the original payload and headers plus `Oms-Dlq-*` headers saying which
//! service gave up, why, and where the message came from. Replaying publishes it again on its
//! original subject (with a fresh `Nats-Msg-Id`, or the server's duplicate window could drop it
//! silently) and removes it from the DLQ.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, AckKind, Message, stream::DirectGetErrorKind};
use serde::Serialize;
use tracing::{error, warn};

use crate::direct;
use crate::metrics::Outcome;
use oms_topology::{self as topology, ConsumerSpec, DLQ};

use crate::{
    HEADER_DLQ_ERROR, HEADER_DLQ_SEQUENCE, HEADER_DLQ_SERVICE, HEADER_DLQ_STREAM,
    HEADER_DLQ_SUBJECT,
};

/// When even the DLQ cannot be written, try the message again after this long.
const DLQ_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Parks `message` on `dlq.<service>.<subject>` with headers saying why, then terminates it.
/// If the DLQ itself cannot be written, the message is NAKed instead: it is never dropped.
pub(crate) async fn dead_letter(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
    message: &Message,
    stream_sequence: u64,
    error: &str,
) -> Outcome {
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
            PublishMessage::build()
                .payload(message.payload.clone())
                .headers(headers)
                .message_id(id),
        )
        .await
    {
        Ok(ack) => ack.await.map(|_| ()),
        Err(e) => Err(e),
    };
    let (kind, outcome) = match published {
        Ok(()) => (AckKind::Term, Outcome::DeadLettered),
        Err(e) => {
            warn!(error = %e, "DLQ publish failed, message stays pending");
            (AckKind::Nak(Some(DLQ_RETRY_DELAY)), Outcome::Naked)
        }
    };
    if let Err(e) = message.ack_with(kind).await {
        warn!(error = %e, "term/nak failed");
    }
    outcome
}

/// One parked message.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// Its sequence in the DLQ stream: what `replay` takes.
    pub sequence: u64,
    pub service: String,
    pub error: String,
    pub stream: String,
    pub subject: String,
    pub original_sequence: u64,
    /// The payload as text (lossy if it is not UTF-8).
    pub payload: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("no dead letter with sequence {0}")]
    NotFound(u64),
    #[error("dead letter {0} does not say where it came from")]
    NoOrigin(u64),
    #[error("NATS: {0}")]
    Nats(String),
}

fn nats(e: impl std::fmt::Display) -> DlqError {
    DlqError::Nats(e.to_string())
}

/// Up to `limit` dead letters, oldest first, from DLQ sequence `from` on.
pub async fn list(
    js: &jetstream::Context,
    from: u64,
    limit: usize,
) -> Result<Vec<DeadLetter>, DlqError> {
    let client = js.client();
    let mut pages = direct::Pages::open(&client, DLQ, from, Some(topology::DLQ_SUBJECTS))
        .await
        .map_err(nats)?;
    let mut letters = Vec::new();
    while letters.len() < limit {
        let page = pages.next_page().await.map_err(nats)?;
        if page.is_empty() {
            break;
        }
        let left = limit - letters.len();
        letters
            .extend((page.iter().take(left)).map(|m| describe(m.sequence, &m.headers, &m.payload)));
    }
    Ok(letters)
}

fn describe(sequence: u64, headers: &HeaderMap, payload: &[u8]) -> DeadLetter {
    let get = |name: &str| {
        headers
            .get(name)
            .map(|v| v.as_str().to_string())
            .unwrap_or_default()
    };
    DeadLetter {
        sequence,
        service: get(HEADER_DLQ_SERVICE),
        error: get(HEADER_DLQ_ERROR),
        stream: get(HEADER_DLQ_STREAM),
        subject: get(HEADER_DLQ_SUBJECT),
        original_sequence: get(HEADER_DLQ_SEQUENCE).parse().unwrap_or(0),
        payload: String::from_utf8_lossy(payload).into_owned(),
    }
}

/// Publishes dead letter `sequence` again on its original subject and removes it from the DLQ.
/// Returns the original subject.
pub async fn replay(js: &jetstream::Context, sequence: u64) -> Result<String, DlqError> {
    let stream = js.get_stream_no_info(DLQ).await.map_err(nats)?;
    let message = match stream.direct_get(sequence).await {
        Ok(m) => m,
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => {
            return Err(DlqError::NotFound(sequence));
        }
        Err(e) => return Err(nats(e)),
    };
    let letter = describe(sequence, &message.headers, &message.payload);
    if letter.subject.is_empty() {
        return Err(DlqError::NoOrigin(sequence));
    }
    // The original headers (event type, trace) without what the DLQ added.
    let mut headers = HeaderMap::new();
    for (name, values) in message.headers.iter() {
        let name: &str = name.as_ref();
        if name.starts_with("Oms-Dlq-") || name.starts_with("Nats-") {
            continue;
        }
        for value in values {
            headers.append(name, value.as_str());
        }
    }
    let publish = PublishMessage::build()
        .payload(message.payload.clone())
        .headers(headers)
        .message_id(format!("{}.replay.{sequence}", letter.subject));
    js.send_publish(letter.subject.clone(), publish)
        .await
        .map_err(nats)?
        .await
        .map_err(nats)?;
    stream.delete_message(sequence).await.map_err(nats)?;
    Ok(letter.subject)
}
