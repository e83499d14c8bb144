//! `loadgen` against the whole system (the five services in this process, a real nats-server):
//! a short sweep must account for every order it sent by the event that ended it, split them
//! into confirmed and rejected as `--reject-share` says, and write its report and plot.

use oms_e2e::testing::TestBroker;
use oms_e2e::{ORDERS, Stack};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_sweep_ends_every_order_it_sent_and_reports_it() {
    let stack = Stack::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (json, plot) = (
        dir.path().join("report.json"),
        dir.path().join("latency.png"),
    );
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("--url")
        .arg(stack.edge())
        .arg("--nats")
        .arg(stack.nats.url())
        .arg("--token")
        .arg(stack.operator_token())
        .arg("--creds-dir")
        .arg(stack.nats.creds_dir())
        .args([
            "--sweep",
            "20,40",
            "--duration",
            "2s",
            "--reject-share",
            "0.3",
        ])
        .arg("--quiet")
        .arg("--json")
        .arg(&json)
        .arg("--plot")
        .arg(&plot)
        .output()
        .await
        .expect("loadgen runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "loadgen failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("orders/s sustained"), "{stdout}");

    let report: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("report written")).expect("JSON");
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2, "one run per rate of the sweep: {report}");
    let (mut confirmed, mut rejected) = (0, 0);
    for (run, offered) in runs.iter().zip([20, 40]) {
        let n = |field: &str| {
            run[field]
                .as_u64()
                .unwrap_or_else(|| panic!("{field}: {run}"))
        };
        let ms = |field: &str| {
            run[field]
                .as_f64()
                .unwrap_or_else(|| panic!("{field}: {run}"))
        };
        assert_eq!(n("offeredPerSec"), offered);
        let sent = n("sent");
        assert!(sent >= offered, "a 2-s run at {offered}/s sent {sent}");
        assert_eq!(n("accepted"), sent, "{run}");
        assert_eq!(n("errors"), 0, "{run}");
        assert_eq!(n("unfinished"), 0, "{run}");
        assert_eq!(n("confirmed") + n("rejected"), sent, "{run}");
        assert_eq!(
            n("rejected"),
            sent * 30 / 100,
            "30 % for the blocked customer: {run}"
        );
        assert!(
            0.0 < ms("p50Ms") && ms("p50Ms") <= ms("p90Ms"),
            "percentiles in order: {run}"
        );
        assert!(
            ms("p90Ms") <= ms("p99Ms") && ms("p99Ms") <= ms("maxMs"),
            "{run}"
        );
        confirmed += n("confirmed");
        rejected += n("rejected");
    }
    // What loadgen learned matches what the order service announced.
    assert_eq!(stack.count(ORDERS, "orders.confirmed.*").await, confirmed);
    assert_eq!(stack.count(ORDERS, "orders.rejected.*").await, rejected);

    let image = std::fs::read(&plot).expect("plot written");
    assert!(image.starts_with(b"\x89PNG"), "the plot is a PNG");
}
