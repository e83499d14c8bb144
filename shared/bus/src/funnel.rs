//! Several consumers feeding one handler, so that a service commits once per round.

use std::panic::AssertUnwindSafe;

use futures::{FutureExt, StreamExt};

use oms_domain::Envelope;

use crate::{HandleError, Handler};

/// Funnels the batches of several consumers into one handler: whatever the consumers fetched
/// while the handler was busy goes into its next call as one batch. A service whose consumers
/// all write to one database then commits once per round for all of them, instead of the
/// consumers taking turns on the write lock with a commit each (SQLite has one writer).
/// With a handler that takes one batch at a time, each consumer waits for the outcome of its
/// own events before it takes more, which keeps its stream order; with more
/// ([`Handler::in_flight`]), rounds overlap.
pub struct Funnel {
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    rounds: usize,
}

struct Job {
    events: Vec<Envelope>,
    outcome: tokio::sync::oneshot::Sender<Vec<Result<(), HandleError>>>,
}

impl Funnel {
    /// Starts the task that feeds `handler`, as many calls at once as it takes
    /// ([`Handler::in_flight`]); it ends when the funnel is dropped. Each consumer feeding the
    /// funnel may have as many batches in hand.
    pub fn new<H: Handler>(handler: H) -> Self {
        let rounds = handler.in_flight().max(1);
        let (jobs, mut queue) = tokio::sync::mpsc::unbounded_channel::<Job>();
        tokio::spawn(async move {
            let handler = &handler;
            let mut running = futures::stream::FuturesUnordered::new();
            loop {
                tokio::select! {
                    Some(()) = running.next(), if !running.is_empty() => {}
                    first = queue.recv(), if running.len() < rounds => {
                        let Some(first) = first else { break };
                        let mut round = vec![first];
                        while let Ok(job) = queue.try_recv() {
                            round.push(job);
                        }
                        running.push(Self::round(handler, round));
                    }
                }
            }
            while running.next().await.is_some() {}
        });
        Funnel { jobs, rounds }
    }

    /// One call of the handler with the events of `round`, and each job's share of outcomes.
    async fn round<H: Handler>(handler: &H, round: Vec<Job>) {
        let sizes: Vec<usize> = round.iter().map(|job| job.events.len()).collect();
        let (events, outcomes): (Vec<_>, Vec<_>) = round
            .into_iter()
            .map(|job| (job.events, job.outcome))
            .unzip();
        let count = sizes.iter().sum();
        // A handler that panics must not take the funnel, and with it every consumer of the
        // service, down: the round's messages are tried again later.
        let handled = AssertUnwindSafe(handler.handle_batch(events.concat()))
            .catch_unwind()
            .await;
        let mut results = handled
            .unwrap_or_else(|_| transient_failures(count, "the handler panicked"))
            .into_iter();
        for (outcome, size) in outcomes.into_iter().zip(sizes) {
            // A consumer that stopped waiting has nothing to settle: its messages are
            // redelivered.
            let _ = outcome.send(results.by_ref().take(size).collect());
        }
    }
}

impl Handler for Funnel {
    async fn handle_batch(&self, events: Vec<Envelope>) -> Vec<Result<(), HandleError>> {
        let count = events.len();
        let (outcome, result) = tokio::sync::oneshot::channel();
        if self.jobs.send(Job { events, outcome }).is_ok()
            && let Ok(results) = result.await
        {
            return results;
        }
        transient_failures(count, "the handler task has stopped")
    }

    fn in_flight(&self) -> usize {
        self.rounds
    }
}

fn transient_failures(count: usize, why: &str) -> Vec<Result<(), HandleError>> {
    (0..count)
        .map(|_| Err(HandleError::transient(anyhow::anyhow!("{why}"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use oms_domain::OrderId;
    use oms_domain::{Event, Item, Money, OrderSnapshot};
    use std::sync::Arc;
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::sync::{Notify, Semaphore};

    /// Records the order ids of every call and fails the events of the orders in `bad`; a call
    /// waits for `gate` after saying it started. Takes `in_flight` calls at once.
    struct Recorder {
        calls: Arc<Mutex<Vec<Vec<OrderId>>>>,
        bad: Vec<OrderId>,
        started: Arc<Notify>,
        gate: Arc<Semaphore>,
        in_flight: usize,
    }

    impl Handler for Recorder {
        fn in_flight(&self) -> usize {
            self.in_flight
        }

        async fn handle_batch(&self, events: Vec<Envelope>) -> Vec<Result<(), HandleError>> {
            self.started.notify_one();
            let _open = self.gate.acquire().await.expect("gate stays open");
            let ids: Vec<OrderId> = events.iter().map(|e| e.order_id).collect();
            self.calls.lock().unwrap().push(ids.clone());
            ids.iter()
                .map(|id| match self.bad.contains(id) {
                    true => Err(HandleError::Permanent(anyhow::anyhow!("bad {id}"))),
                    false => Ok(()),
                })
                .collect()
        }
    }

    fn placed(order_id: OrderId) -> Envelope {
        Envelope::new(
            order_id,
            Event::OrderPlaced(OrderSnapshot {
                customer_id: "OMS-Cust-001".into(),
                items: vec![Item {
                    product_id: "item1".into(),
                    quantity: 1,
                }],
                total_amount: Some(Money::from_cents(100)),
                placed_at: time::OffsetDateTime::UNIX_EPOCH,
            }),
        )
    }

    #[tokio::test]
    async fn a_funnel_joins_waiting_batches_and_gives_each_its_own_outcomes() {
        let [x, a1, a2, b1, b2] = [(); 5].map(|_| OrderId::new());
        let calls = Arc::new(Mutex::new(Vec::new()));
        let started = Arc::new(Notify::new());
        let gate = Arc::new(Semaphore::new(0));
        let funnel = Arc::new(Funnel::new(Recorder {
            calls: calls.clone(),
            bad: vec![a1, b2],
            started: started.clone(),
            gate: gate.clone(),
            in_flight: 1,
        }));

        // A first batch occupies the handler; two more arrive while it is busy.
        let first = tokio::spawn({
            let funnel = funnel.clone();
            async move { funnel.handle_batch(vec![placed(x)]).await }
        });
        started.notified().await;
        let (a, b, ()) = tokio::join!(
            funnel.handle_batch(vec![placed(a1), placed(a2)]),
            funnel.handle_batch(vec![placed(b1), placed(b2)]),
            async { gate.add_permits(10) },
        );

        let first = first.await.expect("first batch");
        assert!(first.len() == 1 && first[0].is_ok());
        let outcomes =
            |r: &[Result<(), HandleError>]| -> Vec<bool> { r.iter().map(Result::is_ok).collect() };
        assert_eq!(outcomes(&a), vec![false, true], "a1 failed, a2 passed");
        assert_eq!(outcomes(&b), vec![true, false], "b1 passed, b2 failed");
        assert_eq!(
            *calls.lock().unwrap(),
            vec![vec![x], vec![a1, a2, b1, b2]],
            "the two waiting batches went to the handler as one, in arrival order"
        );
    }

    #[tokio::test]
    async fn a_funnel_of_two_rounds_starts_the_next_while_one_is_busy() {
        let [a, b, c] = [(); 3].map(|_| OrderId::new());
        let calls = Arc::new(Mutex::new(Vec::new()));
        let started = Arc::new(Notify::new());
        let gate = Arc::new(Semaphore::new(0));
        let funnel = Arc::new(Funnel::new(Recorder {
            calls: calls.clone(),
            bad: vec![],
            started: started.clone(),
            gate: gate.clone(),
            in_flight: 2,
        }));
        assert_eq!(
            funnel.in_flight(),
            2,
            "its consumers may have two batches in hand"
        );
        let call = |id| {
            let funnel = funnel.clone();
            tokio::spawn(async move { funnel.handle_batch(vec![placed(id)]).await })
        };
        let first = call(a);
        started.notified().await;
        let second = call(b);
        // Both calls are in the handler, neither finished: the second did not wait.
        tokio::time::timeout(Duration::from_secs(10), started.notified())
            .await
            .expect("the second round started while the first was busy");
        let third = call(c);
        tokio::task::yield_now().await;
        assert!(calls.lock().unwrap().is_empty(), "the gate is still closed");
        gate.add_permits(10);
        for call in [first, second, third] {
            assert!(call.await.expect("call").iter().all(Result::is_ok));
        }
        let mut seen = calls.lock().unwrap().concat();
        seen.sort();
        let mut all = vec![a, b, c];
        all.sort();
        assert_eq!(seen, all, "every event handled once");
    }

    /// Panics on its first call.
    struct PanicsOnce(std::sync::atomic::AtomicBool);

    impl Handler for PanicsOnce {
        async fn handle_batch(&self, events: Vec<Envelope>) -> Vec<Result<(), HandleError>> {
            if !self.0.swap(true, std::sync::atomic::Ordering::SeqCst) {
                panic!("a bug in the handler");
            }
            events.iter().map(|_| Ok(())).collect()
        }
    }

    #[tokio::test]
    async fn a_funnel_outlives_a_panicking_handler() {
        let funnel = Funnel::new(PanicsOnce(Default::default()));
        let first = funnel.handle_batch(vec![placed(OrderId::new())]).await;
        assert!(
            matches!(first.as_slice(), [Err(HandleError::Transient(_))]),
            "the panicked round is retried later"
        );
        let second = funnel
            .handle_batch(vec![placed(OrderId::new()), placed(OrderId::new())])
            .await;
        assert!(second.len() == 2 && second.iter().all(Result::is_ok));
    }
}
