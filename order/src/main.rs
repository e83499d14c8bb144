//! `oms-order`: config, logging, the health port, then [`oms_order::run`] until Ctrl-C or SIGTERM.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    oms_shared::runtime::main(|config| config.order.http_port, oms_order::run).await
}
