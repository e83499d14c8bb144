//! Orders placed in the background while a test kills things, and the wait until every one of
//! them is final.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;
use sqlx::Row;

use crate::testing::eventually;
use crate::{Stack, place_until_accepted};

/// Orders placed 16 at a time, each with Idempotency-Key `<prefix><i>` and retried until
/// accepted.
pub struct Load {
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Vec<(usize, String)>>,
}

impl Load {
    /// Starts placing `count` orders on `stack`'s edge, `order(i)` the body of the i-th.
    pub fn start(
        stack: &Stack,
        count: usize,
        prefix: &'static str,
        order: fn(usize) -> Value,
    ) -> Load {
        let accepted = Arc::new(AtomicUsize::new(0));
        let (edge, http, counter) = (stack.edge(), stack.http.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            futures::stream::iter(0..count)
                .map(|i| {
                    let (edge, http, counter) = (edge.clone(), http.clone(), counter.clone());
                    async move {
                        let key = format!("{prefix}{i}");
                        let id = place_until_accepted(&http, &edge, &order(i), &key).await;
                        counter.fetch_add(1, Ordering::Relaxed);
                        (i, id)
                    }
                })
                .buffer_unordered(16)
                .collect::<Vec<_>>()
                .await
        });
        Load { accepted, task }
    }

    /// Orders accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Waits until `n` orders are accepted.
    pub async fn reached(&self, n: usize) {
        eventually(
            Duration::from_secs(180),
            &format!("{n} orders accepted"),
            || {
                let done = self.accepted() >= n;
                async move { done.then_some(()) }
            },
        )
        .await
    }

    /// Waits for every order to be accepted; returns (index, order id) pairs.
    pub async fn finish(self) -> Vec<(usize, String)> {
        self.task.await.expect("the load task does not panic")
    }
}

/// Waits until `count` orders are final in the order service's database; fails after `limit`
/// with the services' latest log lines. Returns how long it took.
pub async fn all_final(
    stack: &Stack,
    orders: &sqlx::AnyPool,
    count: usize,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let done: i64 = sqlx::query("SELECT COUNT(*) AS n FROM orders WHERE status <> 'PENDING'")
            .fetch_one(orders)
            .await
            .expect("counting final orders")
            .get("n");
        if done as usize == count {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "only {done} of {count} orders final after {limit:?}\n{}",
            stack.log_tails(15)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
