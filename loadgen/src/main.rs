//! `loadgen`: drives the edge over HTTP (many keep-alive connections), open-loop at a target
//! rate or closed-loop at a concurrency, learns each order's end from the `orders.confirmed` /
//! `orders.rejected` events (not by polling), and reports POST→terminal latency from an HDR
//! histogram, throughput, rejections and errors, as a table and as JSON.
//!
//! `--baseline` also measures JetStream's one-hop rate on the same server (a durable pull
//! consumer that reads a message, publishes one and acks), so the result can be read as a
//! ratio that means the same on a noisy machine. `--sweep 250,500,1000` runs several rates and
//! plots latency percentiles against offered load.

mod baseline;
mod plot;
mod procs;
mod run;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use oms_topology::identity::Identity;
use serde::Serialize;

#[derive(Parser, Debug, Clone)]
#[command(version, about)]
pub struct Args {
    /// The edge's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8090")]
    pub url: String,
    /// NATS, for the terminal events (and the baseline).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// The folder of the broker credentials; loadgen connects as `loadgen` (`loadgen.nk`).
    #[arg(long, default_value = "data/creds")]
    pub creds_dir: std::path::PathBuf,
    /// Open loop: orders offered per second. Without it, closed loop at --concurrency.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Requests in flight at most (closed loop: exactly this many).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// How long to send orders.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Share of orders (0–1) sent for a blocked customer, so they end REJECTED.
    #[arg(long, default_value_t = 0.1)]
    pub reject_share: f64,
    /// Product every accepted order takes one of (`bench` has stock for long runs).
    #[arg(long, default_value = "bench")]
    pub product: String,
    /// Also measure the raw one-hop rate of this nats-server and print the ratio.
    #[arg(long)]
    pub baseline: bool,
    /// Rates to run one after the other (e.g. `250,500,1000,2000`), for the latency plot.
    #[arg(long, value_delimiter = ',')]
    pub sweep: Vec<u64>,
    /// After the open-loop runs, one closed-loop run this long at --concurrency: the
    /// sustained maximum (e.g. `60s`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub saturate: Option<Duration>,
    /// Where to write the report.
    #[arg(long, default_value = "loadgen-report.json")]
    pub json: PathBuf,
    /// Where to draw the latency plot (with --sweep).
    #[arg(long, default_value = "loadgen-latency.png")]
    pub plot: PathBuf,
    /// Also time each stage of the saga (customer, inventory, payment, order) from when its
    /// event reaches loadgen; subscribes to those events too, so it adds a little load.
    #[arg(long)]
    pub stages: bool,
    /// No progress bar (logs, CI).
    #[arg(long)]
    pub quiet: bool,
    /// Bearer token for the edge (`oms-token --operator`). Without it loadgen mints an operator
    /// token from the OMS config, as `oms-token` does (auth.hs256_secret or
    /// <creds_dir>/edge-jwt.secret), or sends none when it finds no secret.
    #[arg(long)]
    pub token: Option<String>,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub mode: String,
    pub offered_per_sec: Option<u64>,
    pub seconds: f64,
    pub sent: u64,
    pub accepted: u64,
    pub confirmed: u64,
    pub rejected: u64,
    pub errors: u64,
    pub unfinished: u64,
    /// Orders that reached a final status per second of the sending window.
    pub orders_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// `--stages`: how long each stage of confirmed orders took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<StageReport>>,
    /// Highest resident memory seen per `oms-*` process on this machine, MiB.
    pub peak_rss_mib: Vec<(String, f64)>,
    /// CPU and context switches of the services, nats-server and loadgen over the run.
    pub processes: Vec<procs::ProcessUsage>,
}

/// One stage of the saga: customer and inventory from the POST, payment from the later
/// verdict, order from the payment to the final event.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageReport {
    pub stage: String,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    runs: Vec<RunReport>,
    one_hop_per_sec: Option<f64>,
    /// The same hop with a new subject and a `Nats-Msg-Id` per message, as the saga publishes.
    saga_hop_per_sec: Option<f64>,
    /// orders/s of the best run divided by the one-hop rate.
    ratio: Option<f64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = {
        let mut config = oms_config::Config::default();
        config.nats.url = args.nats.clone();
        config.nats.creds_dir = args.creds_dir.clone();
        let client = oms_bus::connect(&config, Identity::Loadgen).await?;
        // Fail fast on a wrong address or identity instead of retrying in the background.
        tokio::time::timeout(Duration::from_secs(10), client.flush())
            .await
            .map_err(|_| anyhow::anyhow!("cannot reach NATS at {} as loadgen", args.nats))??;
        client
    };
    let rates: Vec<Option<u64>> = if args.sweep.is_empty() {
        vec![args.rate]
    } else {
        args.sweep.iter().copied().map(Some).collect()
    };
    let mut plan: Vec<(Option<u64>, Duration)> =
        rates.into_iter().map(|r| (r, args.duration)).collect();
    plan.extend(args.saturate.map(|d| (None, d)));
    let mut runs = Vec::new();
    for (rate, duration) in plan {
        let this = Args {
            duration,
            ..args.clone()
        };
        let report = run::run(&this, &client, rate).await?;
        print_run(&report);
        runs.push(report);
    }
    let (one_hop, saga_hop) = if args.baseline {
        // Each shape three times, in turns, and the best of each: the server's limit, not a
        // moment when it was still busy with what the runs left behind (a single plain hop
        // measured right after a saturating run has come out below the saga-shaped one).
        let (mut plain, mut saga) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            use baseline::{MESSAGES, Shape, one_hop_rate};
            plain.push(one_hop_rate(&client, Shape::Plain, MESSAGES).await?);
            saga.push(one_hop_rate(&client, Shape::Saga, MESSAGES).await?);
        }
        let (plain, saga) = (
            best_of("one JetStream hop on this server", &plain),
            best_of(
                "one hop shaped like the saga's (a subject per message, Nats-Msg-Id)",
                &saga,
            ),
        );
        (Some(plain), Some(saga))
    } else {
        (None, None)
    };
    let best = runs
        .iter()
        .map(|r| r.orders_per_sec)
        .fold(0.0_f64, f64::max);
    let ratio = one_hop.map(|hop| best / hop);
    if let Some(ratio) = ratio {
        println!(
            "orders/s ÷ one-hop rate = {ratio:.4} (1/{:.1})",
            1.0 / ratio.max(f64::MIN_POSITIVE)
        );
    }
    // A plot needs a curve: at least two open-loop rates.
    if runs.iter().filter(|r| r.offered_per_sec.is_some()).count() > 1 {
        plot::latency_vs_load(&runs, &args.plot)?;
        println!("plot: {}", args.plot.display());
    }
    let report = Report {
        runs,
        one_hop_per_sec: one_hop,
        saga_hop_per_sec: saga_hop,
        ratio,
    };
    if let Some(dir) = args.json.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.json, serde_json::to_vec_pretty(&report)?)?;
    println!("report: {}", args.json.display());
    Ok(())
}

/// Prints the best of `rates` (msg/s) with all of them; returns the best.
fn best_of(what: &str, rates: &[f64]) -> f64 {
    let best = rates.iter().copied().fold(0.0_f64, f64::max);
    let all: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
    println!("{what}: {best:.0} msg/s (best of {})", all.join(", "));
    best
}

fn print_run(r: &RunReport) {
    let offered = r
        .offered_per_sec
        .map_or("closed loop".to_string(), |o| format!("{o}/s offered"));
    println!();
    println!("| {offered:<28} | {:>12} |", "");
    println!("|------------------------------|--------------|");
    let rows = [
        ("orders/s sustained", format!("{:.0}", r.orders_per_sec)),
        ("sent / accepted", format!("{} / {}", r.sent, r.accepted)),
        (
            "confirmed / rejected",
            format!("{} / {}", r.confirmed, r.rejected),
        ),
        (
            "errors / unfinished",
            format!("{} / {}", r.errors, r.unfinished),
        ),
        ("p50 ms", format!("{:.1}", r.p50_ms)),
        ("p90 ms", format!("{:.1}", r.p90_ms)),
        ("p99 ms", format!("{:.1}", r.p99_ms)),
        ("max ms", format!("{:.1}", r.max_ms)),
    ];
    for (name, value) in rows {
        println!("| {name:<28} | {value:>12} |");
    }
    for s in r.stages.iter().flatten() {
        println!(
            "| {:<28} | {:>12} |",
            format!("stage {} p50/p99 ms", s.stage),
            format!("{:.1} / {:.1}", s.p50_ms, s.p99_ms)
        );
    }
    for (name, mib) in &r.peak_rss_mib {
        println!(
            "| {:<28} | {:>12} |",
            format!("peak RSS {name}"),
            format!("{mib:.1} MiB")
        );
    }
    if !r.processes.is_empty() {
        println!();
        println!("| process        | CPU % of a core | CPU µs per order | switches/s |");
        println!("|----------------|----------------:|-----------------:|-----------:|");
        let services = r.processes.iter().filter(|p| p.name.starts_with("oms-"));
        let total = |name: &str, ps: Vec<&procs::ProcessUsage>| procs::ProcessUsage {
            name: name.into(),
            cpu_percent: ps.iter().map(|p| p.cpu_percent).sum(),
            cpu_us_per_order: ps.iter().map(|p| p.cpu_us_per_order).sum(),
            switches_per_sec: ps.iter().map(|p| p.switches_per_sec).sum(),
        };
        let totals = [
            total("oms-* together", services.collect()),
            total("all", r.processes.iter().collect()),
        ];
        for p in r.processes.iter().chain(&totals) {
            println!(
                "| {:<14} | {:>15.1} | {:>16.0} | {:>10.0} |",
                p.name, p.cpu_percent, p.cpu_us_per_order, p.switches_per_sec
            );
        }
    }
}
