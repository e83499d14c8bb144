//! `oms-payment`: config, logging, the health port, then [`oms_payment::run`] until Ctrl-C or SIGTERM.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    oms_shared::runtime::main(|config| config.payment.http_port, oms_payment::run).await
}
