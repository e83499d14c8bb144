//! Operator commands of the OMS: `oms-provision` (broker set-up), `oms-dlq` (dead letters),
//! `oms-audit` (the money and stock invariants of every order, [`audit`]) and `oms-view` (a
//! stream's messages, read only).

use anyhow::Context as _;
use oms_config::Config;
use oms_topology::identity::Identity;

pub mod audit;

/// How a tool starts: the services' config (`oms.toml`, `OMS_PROFILE`, `OMS_*`), and a client of
/// its broker as `identity` (the seed in `<creds_dir>/<identity>.nk`).
pub async fn connect(identity: Identity) -> anyhow::Result<(Config, async_nats::Client)> {
    let config = Config::load()?;
    let client = oms_bus::connect(&config, identity)
        .await
        .with_context(|| format!("connecting to {}", config.nats.url))?;
    Ok((config, client))
}
