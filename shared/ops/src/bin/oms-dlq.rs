//! `oms-dlq`: list the DLQ stream's dead letters, or replay one to its original subject.
//!
//!     oms-dlq list [FROM_SEQUENCE]     # JSON, one dead letter per line
//!     oms-dlq replay SEQUENCE
//!
//! Connects as the `operator` identity with the services' config (`oms.toml`, `OMS_PROFILE`,
//! `OMS_NATS__URL`; the seed in `<creds_dir>/operator.nk`).

use clap::{Parser, Subcommand};
use oms_bus::{self as bus, dlq};
use oms_topology::identity::Identity;

#[derive(Parser)]
#[command(about = "Look at and replay the OMS's dead letters")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every dead letter from FROM_SEQUENCE on, as JSON, one per line.
    List {
        #[arg(default_value_t = 1)]
        from_sequence: u64,
    },
    /// Publish dead letter SEQUENCE again on its original subject, then remove it.
    Replay { sequence: u64 },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (config, client) = oms_ops::connect(Identity::Operator).await?;
    let js = bus::jetstream(client, &config.nats);
    match args.command {
        Command::List { from_sequence } => {
            for letter in dlq::list(&js, from_sequence, usize::MAX).await? {
                println!("{}", serde_json::to_string(&letter)?);
            }
        }
        Command::Replay { sequence } => {
            let subject = dlq::replay(&js, sequence).await?;
            println!("replayed DLQ message {sequence} to {subject}");
        }
    }
    Ok(())
}
