//! `oms-payment`: load config, start logging, bind the health port, run.

use oms_shared::{Config, runtime, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::load()?;
    telemetry::init(&config.log);
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", config.payment.http_port)).await?;
    oms_payment::run(config, listener, runtime::shutdown_on_signals()).await
}
