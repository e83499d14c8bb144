//! `oms-dlq`: list the DLQ stream's dead letters, or replay one to its original subject.
//!
//!     oms-dlq list [FROM_SEQUENCE]     # JSON, one dead letter per line
//!     oms-dlq replay SEQUENCE
//!
//! Connects with the services' config (`oms.toml`, `OMS_PROFILE`, `OMS_NATS__URL`).

use anyhow::{Context, bail};
use oms_shared::{Config, bus, dlq};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = Config::load()?;
    let client = async_nats::connect(bus::seeds(&config.nats.url))
        .await
        .with_context(|| format!("connecting to {}", config.nats.url))?;
    let js = bus::jetstream(client, &config.nats);
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["list"] | ["list", _] => {
            let from = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(1);
            for letter in dlq::list(&js, from, usize::MAX).await? {
                println!("{}", serde_json::to_string(&letter)?);
            }
        }
        ["replay", sequence] => {
            let sequence: u64 = sequence.parse().context("SEQUENCE must be a number")?;
            let subject = dlq::replay(&js, sequence).await?;
            println!("replayed DLQ message {sequence} to {subject}");
        }
        _ => bail!("usage: oms-dlq list [FROM_SEQUENCE] | oms-dlq replay SEQUENCE"),
    }
    Ok(())
}
