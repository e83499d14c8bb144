//! One load run: send orders, learn their ends from the events, measure.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use oms_domain::EventKind;
use oms_topology as topology;
use serde_json::json;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::{Args, RunReport, StageReport};

/// After sending stops, how long to wait for the last orders to end.
const DRAIN: Duration = Duration::from_secs(30);

/// The saga's stages `--stages` times, in the order they happen.
const STAGES: [&str; 4] = ["customer", "inventory", "payment", "order"];

/// When the step events of one order reached loadgen: the customer verdict, the inventory
/// verdict and the payment outcome (the first three of [`STAGES`] end with them).
type Steps = [Option<Instant>; 3];

/// How long each stage of a confirmed order took: customer and inventory from the POST (they
/// run in parallel), payment from the later verdict, order from the payment to the end. `None`
/// when a step is missing (a rejected order has no payment).
fn stage_times(posted: Instant, steps: Steps, ended: Instant) -> Option<[Duration; 4]> {
    let [customer, inventory, payment] = steps;
    let (customer, inventory, payment) = (customer?, inventory?, payment?);
    Some([
        customer.saturating_duration_since(posted),
        inventory.saturating_duration_since(posted),
        payment.saturating_duration_since(customer.max(inventory)),
        ended.saturating_duration_since(payment),
    ])
}

#[derive(Default)]
struct Counters {
    sent: u64,
    accepted: u64,
    confirmed: u64,
    rejected: u64,
    errors: u64,
}

/// Matches POST answers with terminal events, whichever comes first.
struct Tracker {
    inner: Mutex<Inner>,
}

struct Inner {
    /// Accepted, not ended yet: when its POST started.
    pending: HashMap<Uuid, Instant>,
    /// Ended before its POST answer was read (or not ours): when, and whether confirmed.
    early: HashMap<Uuid, (Instant, bool)>,
    /// Closed loop: who waits for which order to end.
    waiters: HashMap<Uuid, tokio::sync::oneshot::Sender<()>>,
    latency_us: Histogram<u64>,
    /// `--stages`: step arrivals of orders not ended yet, and one histogram per stage.
    steps: HashMap<Uuid, Steps>,
    stages_us: Option<Vec<Histogram<u64>>>,
    counters: Counters,
    last_end: Option<Instant>,
}

impl Tracker {
    fn new(stages: bool) -> Self {
        let histogram = || {
            // 1 µs to 10 min, 3 significant digits.
            Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
        };
        Tracker {
            inner: Mutex::new(Inner {
                pending: HashMap::new(),
                early: HashMap::new(),
                waiters: HashMap::new(),
                latency_us: histogram(),
                steps: HashMap::new(),
                stages_us: stages.then(|| STAGES.map(|_| histogram()).to_vec()),
                counters: Counters::default(),
                last_end: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding it would already have ended the run.
        self.inner.lock().expect("tracker lock")
    }

    fn sent(&self) {
        self.lock().counters.sent += 1;
    }

    fn error(&self) {
        self.lock().counters.errors += 1;
    }

    /// Records an accepted order; the receiver fires when it ends (at once if it already has).
    fn accepted(&self, id: Uuid, started: Instant) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut inner = self.lock();
        inner.counters.accepted += 1;
        match inner.early.remove(&id) {
            Some((ended, confirmed)) => {
                inner.record(id, started, ended, confirmed);
                let _ = tx.send(());
            }
            None => {
                inner.pending.insert(id, started);
                inner.waiters.insert(id, tx);
            }
        }
        rx
    }

    fn ended(&self, id: Uuid, confirmed: bool, at: Instant) {
        let mut inner = self.lock();
        match inner.pending.remove(&id) {
            Some(started) => {
                inner.record(id, started, at, confirmed);
                if let Some(waiter) = inner.waiters.remove(&id) {
                    let _ = waiter.send(());
                }
            }
            None => {
                inner.early.insert(id, (at, confirmed));
            }
        }
    }

    /// A step event of `id` arrived (`--stages`); only the first of each kind counts.
    fn step(&self, id: Uuid, stage: usize, at: Instant) {
        let mut inner = self.lock();
        inner.steps.entry(id).or_default()[stage].get_or_insert(at);
    }
}

fn micros(d: Duration) -> u64 {
    (d.as_micros().max(1) as u64).min(600_000_000)
}

impl Inner {
    fn record(&mut self, id: Uuid, started: Instant, ended: Instant, confirmed: bool) {
        let _ = self
            .latency_us
            .record(micros(ended.saturating_duration_since(started)));
        let steps = self.steps.remove(&id).unwrap_or_default();
        if let (Some(histograms), true) = (self.stages_us.as_mut(), confirmed)
            && let Some(times) = stage_times(started, steps, ended)
        {
            for (h, t) in histograms.iter_mut().zip(times) {
                let _ = h.record(micros(t));
            }
        }
        if confirmed {
            self.counters.confirmed += 1;
        } else {
            self.counters.rejected += 1;
        }
        self.last_end = Some(self.last_end.map_or(ended, |l| l.max(ended)));
    }
}

pub async fn run(
    args: &Args,
    nats: &async_nats::Client,
    rate: Option<u64>,
) -> anyhow::Result<RunReport> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = bearer_token(args)? {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse()?,
        );
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .default_headers(headers)
        .build()?;
    let tracker = Arc::new(Tracker::new(args.stages));

    // The ends, straight from the events.
    let mut ends = futures::stream::select(
        nats.subscribe(topology::all_of(EventKind::OrderConfirmed))
            .await?,
        nats.subscribe(topology::all_of(EventKind::OrderRejected))
            .await?,
    );
    // `--stages`: the verdicts and the payment outcome, on the subjects their consumers read.
    let step_subjects = [
        (0, topology::PAYMENT_CUSTOMERS.filters()),
        (1, topology::PAYMENT_INVENTORY.filters()),
        (2, topology::ORDER_PAYMENTS.filters()),
    ];
    let mut steps = futures::stream::SelectAll::new();
    if args.stages {
        for (stage, filters) in step_subjects {
            for filter in filters {
                let subscription = nats.subscribe(filter).await?;
                steps.push(subscription.map(move |m| (stage, m)).boxed());
            }
        }
    }
    nats.flush().await?;
    let step_listener = {
        let tracker = tracker.clone();
        tokio::spawn(async move {
            while let Some((stage, message)) = steps.next().await {
                let now = Instant::now();
                if let Some(id) = order_of(&message.subject) {
                    tracker.step(id, stage, now);
                }
            }
        })
    };
    let listener = {
        let tracker = tracker.clone();
        tokio::spawn(async move {
            while let Some(message) = ends.next().await {
                let now = Instant::now();
                let confirmed = message
                    .subject
                    .starts_with(topology::step::ORDERS_CONFIRMED);
                if let Some(id) = order_of(&message.subject) {
                    tracker.ended(id, confirmed, now);
                }
            }
        })
    };
    wait_idle(nats).await?;
    let sampler = crate::procs::Sampler::start();

    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.duration.as_secs())
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len}s {msg}")
            .expect("a valid template"),
    );
    let started = Instant::now();
    let end = started + args.duration;
    let slots = Arc::new(Semaphore::new(args.concurrency));
    let mut sequence: u64 = 0;
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = rate.map(|r| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / r.max(1) as f64));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    let mut last_report = Instant::now();
    while Instant::now() < end {
        let permit = match &mut tick {
            // Open loop: one order per tick, whatever the answers do; a full window is an error
            // (the system is not keeping up with the offered load).
            Some(t) => {
                t.tick().await;
                match slots.clone().try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => {
                        tracker.sent();
                        tracker.error();
                        continue;
                    }
                }
            }
            // Closed loop: the next order as soon as a slot frees.
            None => slots.clone().acquire_owned().await?,
        };
        sequence += 1;
        let reject = for_blocked_customer(sequence, args.reject_share);
        let body = json!({
            "customerId": if reject { "OMS-Cust-003" } else { "OMS-Cust-001" },
            "totalAmount": 9.99,
            "items": [{"productId": args.product, "quantity": 1}],
        });
        let (http, url, task_tracker) = (
            http.clone(),
            format!("{}/orders", args.url),
            tracker.clone(),
        );
        let closed_loop = rate.is_none();
        tasks.spawn(async move {
            let _permit = permit;
            let tracker = task_tracker;
            tracker.sent();
            let t0 = Instant::now();
            match http.post(&url).json(&body).send().await {
                Ok(r) if r.status().as_u16() == 202 => {
                    let answer: serde_json::Value = r.json().await.unwrap_or_default();
                    match answer["orderId"].as_str().and_then(|s| s.parse().ok()) {
                        Some(id) => {
                            let ended = tracker.accepted(id, t0);
                            // Closed loop: the slot frees when the order has ended.
                            if closed_loop {
                                let _ = tokio::time::timeout(DRAIN, ended).await;
                            }
                        }
                        None => tracker.error(),
                    }
                }
                _ => tracker.error(),
            }
        });
        // Reap finished request tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            bar.set_position(started.elapsed().as_secs());
            let c = &tracker.lock().counters;
            bar.set_message(format!(
                "sent {} accepted {} ended {} errors {}",
                c.sent,
                c.accepted,
                c.confirmed + c.rejected,
                c.errors
            ));
        }
    }
    while tasks.join_next().await.is_some() {}
    let sending = started.elapsed();
    bar.set_message("draining");
    // Wait for the accepted orders to end (polling our own counters, bounded).
    let drain_until = Instant::now() + DRAIN;
    while !tracker.lock().pending.is_empty() && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bar.finish_and_clear();
    listener.abort();
    step_listener.abort();
    let ended = {
        let c = &tracker.lock().counters;
        c.confirmed + c.rejected
    };
    let (peak_rss_mib, processes) = sampler.stop(ended).await;

    let inner = tracker.lock();
    let c = &inner.counters;
    let window = inner
        .last_end
        .map_or(sending, |l| l.duration_since(started).max(sending));
    let q = |p: f64| inner.latency_us.value_at_quantile(p) as f64 / 1000.0;
    Ok(RunReport {
        mode: if rate.is_some() { "open" } else { "closed" }.into(),
        offered_per_sec: rate,
        seconds: window.as_secs_f64(),
        sent: c.sent,
        accepted: c.accepted,
        confirmed: c.confirmed,
        rejected: c.rejected,
        errors: c.errors,
        unfinished: inner.pending.len() as u64,
        orders_per_sec: ended as f64 / window.as_secs_f64(),
        p50_ms: q(0.50),
        p90_ms: q(0.90),
        p99_ms: q(0.99),
        max_ms: inner.latency_us.max() as f64 / 1000.0,
        stages: inner.stages_us.as_ref().map(|histograms| {
            STAGES
                .iter()
                .zip(histograms)
                .map(|(name, h)| StageReport {
                    stage: name.to_string(),
                    p50_ms: h.value_at_quantile(0.50) as f64 / 1000.0,
                    p90_ms: h.value_at_quantile(0.90) as f64 / 1000.0,
                    p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
                })
                .collect()
        }),
        peak_rss_mib,
        processes,
    })
}

/// The order id an event subject ends with.
/// `--token`, else an operator token minted from the OMS config (valid a day: longer than any
/// run), else none (an edge with auth off).
fn bearer_token(args: &Args) -> anyhow::Result<Option<String>> {
    if let Some(token) = &args.token {
        return Ok(Some(token.clone()));
    }
    let config = oms_config::Config::load()?;
    let Some(secret) = oms_edge::auth::hs256_secret(&config)? else {
        eprintln!(
            "loadgen: no --token and no HS256 secret in the config: sending no token \
             (set OMS_AUTH__HS256_SECRET or pass --token \"$(oms-token --operator)\")"
        );
        return Ok(None);
    };
    Ok(Some(oms_edge::auth::mint(
        &config.auth,
        &secret,
        "loadgen",
        oms_edge::auth::Role::Operator,
        Duration::from_secs(24 * 3600),
    )))
}

fn order_of(subject: &str) -> Option<Uuid> {
    subject.rsplit('.').next().and_then(|t| t.parse().ok())
}

/// Whether order number `sequence` (from 1) of a run goes to the blocked customer: of the
/// first n orders, exactly ⌊n × share⌋ (share in whole percent) do, spread evenly rather than
/// in a burst at the start of every hundred.
fn for_blocked_customer(sequence: u64, share: f64) -> bool {
    let percent = (share.clamp(0.0, 1.0) * 100.0).round() as u64;
    sequence * percent / 100 > sequence.saturating_sub(1) * percent / 100
}

/// Waits until no durable consumer of the saga has work left, so one run's backlog does not
/// count against the next.
async fn wait_idle(nats: &async_nats::Client) -> anyhow::Result<()> {
    let js = async_nats::jetstream::new(nats.clone());
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut told = false;
    loop {
        let mut busy = 0;
        for (stream, _) in topology::streams() {
            let Ok(stream) = js.get_stream(stream).await else {
                continue;
            };
            let mut names = stream.consumer_names();
            while let Some(Ok(name)) = names.next().await {
                let info = stream
                    .consumer_info(&name)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                busy += info.num_pending + info.num_ack_pending as u64;
            }
        }
        if busy == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the saga still has {busy} messages to process after 5 minutes"
        );
        if !told {
            eprintln!("waiting for the saga to finish earlier work ({busy} messages)");
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_follow_the_saga_and_need_every_step() {
        let posted = Instant::now();
        let at = |ms| posted + Duration::from_millis(ms);
        let steps = [Some(at(3)), Some(at(5)), Some(at(9))];
        let ms = |d: Duration| d.as_millis();
        let times = stage_times(posted, steps, at(16)).expect("all steps seen");
        // Payment waits for the later verdict (inventory at 5 ms), order for the payment.
        assert_eq!(times.map(ms), [3, 5, 4, 7]);
        let rejected = [Some(at(3)), Some(at(5)), None];
        assert!(stage_times(posted, rejected, at(16)).is_none());
    }

    #[test]
    fn the_reject_share_is_exact_and_spread_out() {
        let blocked = |n: u64, share: f64| (1..=n).filter(move |&s| for_blocked_customer(s, share));
        assert_eq!(blocked(40, 0.3).count(), 12);
        assert_eq!(blocked(1_000, 0.1).count(), 100);
        assert_eq!(blocked(100, 0.0).count(), 0);
        assert_eq!(blocked(100, 1.0).count(), 100);
        // Every tenth order at 10 %, not the first ten of each hundred.
        assert_eq!(blocked(30, 0.1).collect::<Vec<_>>(), [10, 20, 30]);
    }

    #[test]
    fn only_the_first_event_of_a_step_counts() {
        let tracker = Tracker::new(true);
        let (id, t0) = (Uuid::new_v4(), Instant::now());
        tracker.step(id, 1, t0 + Duration::from_millis(2));
        // inventory.released of a rejected order comes later on the same stream.
        tracker.step(id, 1, t0 + Duration::from_millis(50));
        let inventory = tracker.lock().steps[&id][1];
        assert_eq!(inventory, Some(t0 + Duration::from_millis(2)));
    }
}
