//! Reading a stream without a consumer: batched direct gets (`$JS.API.DIRECT.GET.<stream>` with
//! `batch`, nats-server 2.11+). They change nothing on the server, so an identity that may only
//! read (the observer, the edge) never needs the right to create a consumer, which would let it
//! rewrite a durable one by naming it.

use std::time::Duration;

use async_nats::header::{NATS_SEQUENCE, NATS_SUBJECT};
use async_nats::{Client, HeaderMap, Subscriber};
use bytes::Bytes;
use futures::StreamExt;

/// Messages asked for in one request.
pub const BATCH: usize = 256;

/// How long a batch's answers may take.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// One stored message.
#[derive(Debug, Clone)]
pub struct Stored {
    pub sequence: u64,
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot subscribe: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
    #[error("cannot ask: {0}")]
    Publish(#[from] async_nats::PublishError),
    #[error("no answer in time")]
    TimedOut,
    #[error("the server answered {0}")]
    Refused(String),
}

/// Asks `stream` for up to [`BATCH`] messages from sequence `from` on (only those on `filter`,
/// if given), answered to `reply`, and reads the answers from `answers` (a subscription that
/// covers `reply`; answers to other replies, late ones of an earlier request, are skipped).
/// An empty batch: nothing from `from` on.
pub async fn batch(
    client: &Client,
    answers: &mut Subscriber,
    reply: &str,
    stream: &str,
    from: u64,
    filter: Option<&str>,
) -> Result<Vec<Stored>, ReadError> {
    let mut request = serde_json::json!({ "seq": from, "batch": BATCH });
    if let Some(filter) = filter {
        request["next_by_subj"] = filter.into();
    }
    client
        .publish_with_reply(
            format!("$JS.API.DIRECT.GET.{stream}"),
            reply.to_string(),
            request.to_string().into(),
        )
        .await?;
    let mut found = Vec::new();
    loop {
        let answer = tokio::time::timeout(ANSWER_WITHIN, answers.next())
            .await
            .map_err(|_| ReadError::TimedOut)?
            .ok_or(ReadError::TimedOut)?;
        if answer.subject.as_str() != reply {
            continue;
        }
        match answer.status.map(|s| s.as_u16()) {
            None => {}
            // Nothing (more) from `from` on; the end of the batch.
            Some(404 | 204) => return Ok(found),
            Some(status) => {
                let why = answer.description.unwrap_or_default();
                return Err(ReadError::Refused(format!("{status} {why}")));
            }
        }
        let headers = answer.headers.unwrap_or_default();
        let sequence = headers
            .get(NATS_SEQUENCE)
            .and_then(|v| v.as_str().parse::<u64>().ok())
            .ok_or_else(|| ReadError::Refused("a message without its sequence".into()))?;
        let subject = headers
            .get(NATS_SUBJECT)
            .map(|v| v.as_str().to_string())
            .ok_or_else(|| ReadError::Refused("a message without its subject".into()))?;
        found.push(Stored {
            sequence,
            subject,
            headers,
            payload: answer.payload,
        });
    }
}

/// A stream read page by page, from a sequence on.
pub struct Pages {
    client: Client,
    /// One subscription for every answer: `<inbox>.<request number>`.
    answers: Subscriber,
    inbox: String,
    asked: u64,
    stream: String,
    filter: Option<String>,
    /// The sequence the next page starts at.
    next: u64,
}

impl Pages {
    /// Reads `stream` (only what is on `filter`, if given) from sequence `from` on.
    pub async fn open(
        client: &Client,
        stream: &str,
        from: u64,
        filter: Option<&str>,
    ) -> Result<Pages, ReadError> {
        let inbox = client.new_inbox();
        let answers = client.subscribe(format!("{inbox}.*")).await?;
        Ok(Pages {
            client: client.clone(),
            answers,
            inbox,
            asked: 0,
            stream: stream.to_string(),
            filter: filter.map(str::to_string),
            next: from.max(1),
        })
    }

    /// The next page, in stream order; empty once nothing more is stored.
    pub async fn next_page(&mut self) -> Result<Vec<Stored>, ReadError> {
        self.asked += 1;
        let reply = format!("{}.{}", self.inbox, self.asked);
        let (client, stream, filter) = (&self.client, &self.stream, self.filter.as_deref());
        let page = batch(client, &mut self.answers, &reply, stream, self.next, filter).await?;
        if let Some(last) = page.last() {
            self.next = last.sequence + 1;
        }
        Ok(page)
    }
}

/// Every message of `stream` (on `filter`, if given) as it is now, in stream order.
pub async fn read_all(
    client: &Client,
    stream: &str,
    filter: Option<&str>,
) -> Result<Vec<Stored>, ReadError> {
    let mut pages = Pages::open(client, stream, 1, filter).await?;
    let mut all = Vec::new();
    loop {
        let page = pages.next_page().await?;
        if page.is_empty() {
            return Ok(all);
        }
        all.extend(page);
    }
}
