//! `oms-view`: prints a stream's messages, one JSON object per line, read by direct gets.
//!
//!     oms-view ORDERS [--subject 'orders.placed.*'] [--from 1]
//!
//! What `nats stream view` shows, for the read-only `observer`: paging with the nats CLI takes a
//! consumer, which the observer may not create (a create may name a service's durable and
//! rewrite it). Connects with the services' config (`oms.toml`, `OMS_PROFILE`, `OMS_NATS__URL`;
//! the seed in `<creds_dir>/observer.nk`).

use anyhow::Context;
use clap::Parser;
use oms_bus::direct;
use oms_topology::identity::Identity;
use serde_json::{Map, Value, json};

#[derive(Parser)]
#[command(about = "Print a stream's messages as JSON, one per line")]
struct Args {
    /// The stream: ORDERS, CUSTOMERS, INVENTORY, PAYMENTS, DEADLINES, DLQ, or a bucket's
    /// KV_<bucket>.
    stream: String,
    /// Only the messages on this subject (wildcards allowed).
    #[arg(long)]
    subject: Option<String>,
    /// The first stream sequence to print.
    #[arg(long, default_value_t = 1)]
    from: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (_, client) = oms_ops::connect(Identity::Observer).await?;
    let mut pages = direct::Pages::open(&client, &args.stream, args.from, args.subject.as_deref())
        .await
        .with_context(|| format!("reading {}", args.stream))?;
    loop {
        let page = pages
            .next_page()
            .await
            .with_context(|| format!("reading {}", args.stream))?;
        if page.is_empty() {
            return Ok(());
        }
        for message in page {
            println!("{}", shown(&message));
        }
    }
}

/// A message as one JSON object: its payload as JSON where it is JSON (the events), else as
/// text (lossy where it is not UTF-8: the payment join's binary values).
fn shown(message: &direct::Stored) -> Value {
    // The direct get's own headers say where the message is, which the object says already.
    const WHERE: [&str; 6] = [
        "Nats-Stream",
        "Nats-Subject",
        "Nats-Sequence",
        "Nats-Time-Stamp",
        "Nats-Num-Pending",
        "Nats-UpTo-Sequence",
    ];
    let headers: Map<String, Value> = (message.headers.iter())
        .map(|(name, values)| (name.to_string(), values))
        .filter(|(name, _)| !WHERE.contains(&name.as_str()))
        .map(|(name, values)| {
            let values: Vec<&str> = values.iter().map(|v| v.as_str()).collect();
            (name, json!(values.join(", ")))
        })
        .collect();
    let stored = message.headers.get("Nats-Time-Stamp").map(|v| v.as_str());
    let data = serde_json::from_slice(&message.payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&message.payload).into_owned()));
    json!({
        "sequence": message.sequence,
        "subject": message.subject,
        "stored": stored,
        "headers": headers,
        "data": data,
    })
}
