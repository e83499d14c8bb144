//! `oms-inventory`: config, logging, the health port, then [`oms_inventory::run`] until Ctrl-C or SIGTERM.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    oms_shared::runtime::main(|config| config.inventory.http_port, oms_inventory::run).await
}
