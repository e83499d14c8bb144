//! What the OMS processes on this machine use while a run lasts (Linux /proc): each one's peak
//! resident memory, and the CPU time and context switches of the services, nats-server,
//! PostgreSQL (when the services use it) and loadgen itself, so that builds can be compared by
//! what an order costs.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// CPU and context switches of one process over a run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessUsage {
    pub name: String,
    /// Percent of one core, over the run (sending and draining).
    pub cpu_percent: f64,
    /// CPU time per order that reached a final status, µs.
    pub cpu_us_per_order: f64,
    pub switches_per_sec: f64,
}

pub struct Sampler {
    peaks: Arc<Mutex<BTreeMap<String, u64>>>,
    task: tokio::task::JoinHandle<()>,
    usage: HashMap<u32, Usage>,
    started: Instant,
}

impl Sampler {
    /// Notes what every process has used so far, and samples the resident memory of every
    /// `oms-*` process twice a second.
    pub fn start() -> Self {
        let peaks: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let task = {
            let peaks = peaks.clone();
            tokio::spawn(async move {
                loop {
                    let services = processes().filter(|(name, _)| name.starts_with("oms-"));
                    for (name, kib) in
                        services.filter_map(|(name, dir)| Some((name, rss_kib(&dir)?)))
                    {
                        let mut peaks = peaks.lock().expect("rss lock");
                        let peak = peaks.entry(name).or_default();
                        *peak = (*peak).max(kib);
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            })
        };
        Sampler {
            peaks,
            task,
            usage: usage(),
            started: Instant::now(),
        }
    }

    /// Stops sampling; returns each `oms-*` process's peak resident memory (MiB), and what
    /// each program that ran the whole time used (its processes summed), given the orders that
    /// ended meanwhile.
    pub async fn stop(self, orders: u64) -> (Vec<(String, f64)>, Vec<ProcessUsage>) {
        self.task.abort();
        let seconds = self.started.elapsed().as_secs_f64();
        let peaks = self.peaks.lock().expect("rss lock");
        let rss = peaks
            .iter()
            .map(|(name, kib)| (name.clone(), *kib as f64 / 1024.0))
            .collect();
        // Per name: PostgreSQL is a process per connection, and a service may run twice.
        let mut by_name: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for (pid, now) in usage() {
            let Some(before) = self.usage.get(&pid) else {
                continue;
            };
            let (cpu_ns, switches) = by_name.entry(now.name).or_default();
            *cpu_ns += now.cpu_ns.saturating_sub(before.cpu_ns);
            *switches += now.switches.saturating_sub(before.switches);
        }
        let used = by_name
            .into_iter()
            .map(|(name, (cpu_ns, switches))| {
                let cpu = cpu_ns as f64 / 1e9;
                ProcessUsage {
                    name,
                    cpu_percent: cpu / seconds * 100.0,
                    cpu_us_per_order: cpu * 1e6 / orders.max(1) as f64,
                    switches_per_sec: switches as f64 / seconds,
                }
            })
            .collect();
        (rss, used)
    }
}

/// CPU time and context switches a process has used so far, summed over its threads.
struct Usage {
    name: String,
    cpu_ns: u64,
    switches: u64,
}

/// What each process of the OMS, nats-server and loadgen has used so far, by pid.
fn usage() -> HashMap<u32, Usage> {
    processes()
        .filter(|(name, _)| {
            name.starts_with("oms-")
                || ["nats-server", "postgres"].contains(&name.as_str())
                || name.starts_with("loadgen")
        })
        .filter_map(|(name, dir)| {
            let pid = dir.file_name()?.to_str()?.parse().ok()?;
            let mut usage = Usage {
                name,
                cpu_ns: 0,
                switches: 0,
            };
            for task in std::fs::read_dir(dir.join("task")).ok()?.flatten() {
                // The first field of schedstat is the time the thread has run, in ns.
                let schedstat = std::fs::read_to_string(task.path().join("schedstat"));
                usage.cpu_ns += schedstat
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0);
                let status = std::fs::read_to_string(task.path().join("status"));
                usage.switches += status
                    .iter()
                    .flat_map(|s| s.lines())
                    .filter(|l| l.contains("ctxt_switches:"))
                    .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .sum::<u64>();
            }
            Some((pid, usage))
        })
        .collect()
}

/// (process name, /proc folder) of every process.
fn processes() -> impl Iterator<Item = (String, std::path::PathBuf)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| {
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            Some((comm.trim().to_string(), e.path()))
        })
}

/// Resident memory of the process in `dir`, KiB.
fn rss_kib(dir: &Path) -> Option<u64> {
    std::fs::read_to_string(dir.join("status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_seen_using_cpu() {
        let me = std::process::id();
        let before = usage();
        let mine = before.get(&me).expect("the test binary is named loadgen-…");
        assert!(mine.name.starts_with("loadgen"));
        // Burn a little CPU, then it must show.
        let mut x = 0u64;
        let until = Instant::now() + Duration::from_millis(50);
        while Instant::now() < until {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = usage();
        assert!(after[&me].cpu_ns > mine.cpu_ns);
        assert!(after[&me].switches >= mine.switches);
    }
}
