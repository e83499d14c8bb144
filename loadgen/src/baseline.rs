//! JetStream's own limit on this machine: the rate of one "hop" (a durable pull consumer that
//! reads a message, publishes one and acks it after the PubAck), on a scratch stream that is
//! deleted afterwards. Publishes and acks are pipelined, as the services' should be.
//!
//! The plain hop is the yardstick the ratio is taken against. The saga-shaped hop costs what a
//! step of the saga costs the server: every message on a subject of its own (one per order and
//! step) and with a `Nats-Msg-Id` to remember for the duplicate window.

use std::future::IntoFuture;
use std::time::Instant;

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use oms_topology::identity::{LOADGEN_STREAM, LOADGEN_SUBJECTS};

/// Messages pushed through the hop in a measurement.
pub const MESSAGES: usize = 50_000;
/// PubAcks awaited at once.
const WINDOW: usize = 1_000;

/// What the messages of a hop look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One subject in, one out, no message ids.
    Plain,
    /// A new subject per message and a `Nats-Msg-Id` on every publish, like the saga's events.
    Saga,
}

impl Shape {
    /// The subject of message `n` of `base`.
    fn subject(self, base: &str, n: usize) -> String {
        match self {
            Shape::Plain => base.to_string(),
            Shape::Saga => format!("{base}.{n}"),
        }
    }

    /// What a consumer of `base` filters on.
    fn filter(self, base: &str) -> String {
        match self {
            Shape::Plain => base.to_string(),
            Shape::Saga => format!("{base}.>"),
        }
    }
}

/// Messages per second through one hop of `messages` messages, on a scratch stream that is
/// deleted afterwards.
pub async fn one_hop_rate(
    client: &async_nats::Client,
    shape: Shape,
    messages: usize,
) -> anyhow::Result<f64> {
    let js = jetstream::new(client.clone());
    // One scratch stream by a fixed name: loadgen's identity may create and delete that one.
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let name = LOADGEN_STREAM.to_string();
    let (input, output) = (format!("loadgen.{tag}.in"), format!("loadgen.{tag}.out"));
    let stream = js
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![LOADGEN_SUBJECTS.to_string()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    let result = hop(&js, &stream, shape, &input, &output, messages).await;
    js.delete_stream(&name).await?;
    result
}

async fn hop(
    js: &jetstream::Context,
    stream: &jetstream::stream::Stream,
    shape: Shape,
    input: &str,
    output: &str,
    count: usize,
) -> anyhow::Result<f64> {
    let payload = bytes::Bytes::from(vec![b'x'; 512]);
    let mut acks = FuturesOrdered::new();
    for n in 0..count {
        acks.push_back(
            publish(js, shape, shape.subject(input, n), payload.clone())
                .await?
                .into_future(),
        );
        if acks.len() >= WINDOW {
            acks.next().await.expect("an ack")?;
        }
    }
    while let Some(ack) = acks.next().await {
        ack?;
    }
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("hop".into()),
            filter_subject: shape.filter(input),
            ack_policy: consumer::AckPolicy::Explicit,
            max_ack_pending: 20_000,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(500)
        .messages()
        .await?;
    let started = Instant::now();
    let mut in_flight = FuturesOrdered::new();
    for n in 0..count {
        let message = messages.next().await.expect("messages keep coming")?;
        let ack = publish(js, shape, shape.subject(output, n), message.payload.clone()).await?;
        in_flight.push_back(async move {
            ack.await?;
            message.ack().await.map_err(anyhow::Error::msg)
        });
        if in_flight.len() >= WINDOW {
            in_flight.next().await.expect("a hop")?;
        }
    }
    while let Some(done) = in_flight.next().await {
        done?;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Publishes without waiting for the PubAck; the saga shape sets the subject as message id, as
/// the services do.
async fn publish(
    js: &jetstream::Context,
    shape: Shape,
    subject: String,
    payload: bytes::Bytes,
) -> Result<jetstream::context::PublishAckFuture, jetstream::context::PublishError> {
    let message = jetstream::message::PublishMessage::build().payload(payload);
    let message = match shape {
        Shape::Plain => message,
        Shape::Saga => message.message_id(&subject),
    };
    js.send_publish(subject, message).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use oms_testkit::TestBroker;
    use oms_topology::identity::Identity;

    #[test]
    fn a_saga_shaped_hop_gives_every_message_its_own_subject_under_the_filter() {
        let subjects: Vec<String> = (0..3).map(|n| Shape::Saga.subject("hop.in", n)).collect();
        assert_eq!(subjects, ["hop.in.0", "hop.in.1", "hop.in.2"]);
        assert_eq!(Shape::Saga.filter("hop.in"), "hop.in.>");
        assert_eq!(Shape::Plain.subject("hop.in", 7), "hop.in");
        assert_eq!(Shape::Plain.filter("hop.in"), "hop.in");
    }

    /// Both shapes move every message through a real nats-server (the hop waits for each one,
    /// so a lost message would hang it past the deadline) and leave no scratch stream behind.
    #[tokio::test]
    async fn a_hop_moves_its_messages_and_removes_its_stream() {
        let nats = oms_testkit::NatsServer::start();
        let client = nats.connect_as(Identity::Loadgen).await;
        for shape in [Shape::Plain, Shape::Saga] {
            let rate = tokio::time::timeout(
                std::time::Duration::from_secs(60),
                one_hop_rate(&client, shape, 2_000),
            )
            .await
            .expect("the hop finishes")
            .expect("the hop runs");
            assert!(rate.is_finite() && rate > 0.0, "{shape:?}: {rate}");
        }
        let js = jetstream::new(nats.connect_as(Identity::Observer).await);
        let streams: Vec<String> = js
            .stream_names()
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .expect("stream names");
        assert!(streams.is_empty(), "left behind: {streams:?}");
    }
}
