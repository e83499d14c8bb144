//! `oms-customer`: config, logging, the health port, then [`oms_customer::run`] until Ctrl-C or SIGTERM.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    oms_shared::runtime::main(|config| config.customer.http_port, oms_customer::run).await
}
