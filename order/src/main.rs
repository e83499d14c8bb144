//! `oms-order`: config, logging, the health port, then [`oms_order::run`] until Ctrl-C or SIGTERM,
//! on one thread (see [`oms_host::main`]).

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    oms_host::main(|config| config.order.http_port, oms_order::run).await
}
