//! Peak resident memory of the OMS processes on this machine while a run lasts (Linux /proc).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct RssSampler {
    peaks: Arc<Mutex<BTreeMap<String, u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    /// Samples every `oms-*` process twice a second.
    pub fn start() -> Self {
        let peaks: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let task = {
            let peaks = peaks.clone();
            tokio::spawn(async move {
                loop {
                    for (name, kib) in sample() {
                        let mut peaks = peaks.lock().expect("rss lock");
                        let peak = peaks.entry(name).or_default();
                        *peak = (*peak).max(kib);
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            })
        };
        RssSampler { peaks, task }
    }

    /// Stops sampling; returns each process name's peak, MiB.
    pub async fn stop(self) -> Vec<(String, f64)> {
        self.task.abort();
        let peaks = self.peaks.lock().expect("rss lock");
        peaks
            .iter()
            .map(|(name, kib)| (name.clone(), *kib as f64 / 1024.0))
            .collect()
    }
}

/// (process name, VmRSS in KiB) of every process whose name starts with `oms-`.
fn sample() -> Vec<(String, u64)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| {
            let status = std::fs::read_to_string(e.path().join("status")).ok()?;
            let name = status
                .lines()
                .next()?
                .strip_prefix("Name:")?
                .trim()
                .to_string();
            if !name.starts_with("oms-") {
                return None;
            }
            let rss = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some((name, rss))
        })
        .collect()
}
