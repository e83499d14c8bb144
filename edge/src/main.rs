//! `oms-edge`: load config, start logging, bind the API port, run.

use oms_shared::{Config, runtime, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::load()?;
    telemetry::init(&config.log);
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", config.edge.http_port)).await?;
    oms_edge::run(config, listener, runtime::shutdown_on_signals()).await
}
