//! `oms-inventory`: config, logging, the health port, then [`oms_inventory::run`] until Ctrl-C or SIGTERM,
//! on one thread (see [`oms_host::main`]).

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    oms_host::main(|config| config.inventory.http_port, oms_inventory::run).await
}
