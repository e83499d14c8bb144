//! JetStream's own limit on this machine: the rate of one "hop" (a durable pull consumer that
//! reads a message, publishes one and acks it after the PubAck), on a scratch stream that is
//! deleted afterwards. Publishes and acks are pipelined, as the services' should be.

use std::future::IntoFuture;
use std::time::Instant;

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use futures::stream::FuturesOrdered;

/// Messages pushed through the hop.
const MESSAGES: usize = 50_000;
/// PubAcks awaited at once.
const WINDOW: usize = 1_000;

pub async fn one_hop_rate(client: &async_nats::Client) -> anyhow::Result<f64> {
    let js = jetstream::new(client.clone());
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let name = format!("LOADGEN_HOP_{tag}");
    let (input, output) = (format!("loadgen.{tag}.in"), format!("loadgen.{tag}.out"));
    let stream = js
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![format!("loadgen.{tag}.>")],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    let result = hop(&js, &stream, &input, &output).await;
    js.delete_stream(&name).await?;
    result
}

async fn hop(
    js: &jetstream::Context,
    stream: &jetstream::stream::Stream,
    input: &str,
    output: &str,
) -> anyhow::Result<f64> {
    let payload = bytes::Bytes::from(vec![b'x'; 512]);
    let mut acks = FuturesOrdered::new();
    for _ in 0..MESSAGES {
        acks.push_back(
            js.publish(input.to_string(), payload.clone())
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
            filter_subject: input.to_string(),
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
    for _ in 0..MESSAGES {
        let message = messages.next().await.expect("messages keep coming")?;
        let ack = js
            .publish(output.to_string(), message.payload.clone())
            .await?;
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
    Ok(MESSAGES as f64 / started.elapsed().as_secs_f64())
}
