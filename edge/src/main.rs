//! `oms-edge`: config, logging, the API port, then [`oms_edge::run`] until Ctrl-C or SIGTERM,
//! on one thread (see [`oms_host::main`]).

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    oms_host::main(|config| config.edge.http_port, oms_edge::run).await
}
