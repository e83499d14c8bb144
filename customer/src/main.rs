//! `oms-customer`: config, logging, the health port, then [`oms_customer::run`] until Ctrl-C or SIGTERM,
//! on one thread (see [`oms_host::main`]).

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    oms_host::main(|config| config.customer.http_port, oms_customer::run).await
}
