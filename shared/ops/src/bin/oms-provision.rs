//! `oms-provision`: sets up a broker for the OMS (see `oms_topology::provision`).
//!
//!     oms-provision creds [--base nats.conf] [--out <data_dir>/nats-server.conf]
//!     oms-provision topology [--wait 60s]
//!
//! `creds` makes what is missing of this installation's identities (`<creds_dir>/*.nk`) and
//! token keys (the edge's HS256 secret, an ES256 key and its public JWKS) and writes the file
//! to start nats-server with; `topology` then creates or updates every stream,
//! bucket and durable consumer as the provisioner. Both are safe to run at every start.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use oms_bus::provision::topology;
use oms_config::Config;
use oms_host::telemetry;
use oms_topology::provision;

#[derive(Parser)]
#[command(about = "Identities, server config and topology of the OMS's NATS broker")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make the missing identities and token keys, and write nats-server's config with the
    /// identities' permissions.
    Creds {
        /// The project's server config to include (nats.conf, or nats-cluster.conf).
        #[arg(long, default_value = "nats.conf")]
        base: PathBuf,
        /// Where to write the generated config; default <data_dir>/nats-server.conf.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Create or update every stream, bucket and durable consumer (as the provisioner).
    Topology {
        /// How long to keep trying while the server is not up yet.
        #[arg(long, default_value = "60s", value_parser = humantime_serde::re::humantime::parse_duration)]
        wait: Duration,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = Config::load()?;
    telemetry::init(&config.log);
    let creds = config.creds_dir();
    match args.command {
        Command::Creds { base, out } => {
            provision::ensure_creds(&creds)?;
            oms_auth::es256::ensure(&creds)?;
            let out = out.unwrap_or_else(|| config.data_dir.join(provision::SERVER_CONFIG_FILE));
            provision::write_server_config(&creds, &base, &out)
                .with_context(|| format!("writing {}", out.display()))?;
            println!("{}", out.display());
        }
        Command::Topology { wait } => topology(&config, wait).await?,
    }
    Ok(())
}
