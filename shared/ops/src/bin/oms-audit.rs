//! `oms-audit`: checks the money and stock invariants of every order of a running system and
//! prints what breaks them (exit status 1 if anything does).
//!
//!     oms-audit [--settle 30s]
//!
//! Connects as the read-only `observer` with the services' config (`oms.toml`, `OMS_PROFILE`,
//! `OMS_NATS__URL`; the seed in `<creds_dir>/observer.nk`). An order whose last event is more
//! recent than `--settle` is counted, not judged: its refund or release may still be on its way.

use std::time::Duration;

use clap::Parser;
use oms_bus as bus;
use oms_ops::audit;
use oms_topology::identity::Identity;

#[derive(Parser)]
#[command(about = "Check every order's money and stock against its status")]
struct Args {
    /// Leave alone orders whose last event is more recent than this.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    settle: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (config, client) = oms_ops::connect(Identity::Observer).await?;
    let js = bus::jetstream(client, &config.nats);
    let orders = audit::read(&js).await?;
    let report = audit::check(
        &orders,
        time::OffsetDateTime::now_utc(),
        args.settle,
        config.orders.deadline,
    );
    for finding in &report.findings {
        println!("{} {}", finding.order_id, finding.problem);
    }
    let statuses: Vec<String> = (report.by_status.iter())
        .map(|(status, n)| format!("{n} {status}"))
        .collect();
    println!(
        "{} orders ({}); {} too recent to judge; {} break an invariant",
        report.orders,
        statuses.join(", "),
        report.unsettled,
        report.findings.len()
    );
    if !report.findings.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
