//! Each order's deadline: an order still PENDING `orders.deadline` after it was placed is
//! REJECTED with `TIMED_OUT`, and announced like any rejection (inventory releases its stock,
//! payment voids it or refunds a charge that comes first).
//!
//! A durable timer in the orders table itself: every tick (a quarter of the deadline, at most
//! a second) one query reads the PENDING orders placed before now − deadline, through the index
//! on (status, created_at), so it reads only those that are due, never the other orders. Each is
//! moved by a guarded update (another writer that moved it first wins) in one transaction, then
//! its rejection is published and marked announced. A crash in between leaves it REJECTED and
//! unannounced: the next start publishes it (the same `Nats-Msg-Id`). No broker message is spent
//! on the orders that end in time (see docs/performance.md for what a schedule per order cost).

use std::time::Duration;

use async_nats::jetstream;
use oms_bus::trace::{self, KeyValue, SpanKind, SpanRef};
use oms_domain::api::OrderStatus;
use oms_domain::events::Rejection;
use oms_domain::{Envelope, Event, EventId, OrderId, OrderSnapshot, Reason};
use oms_store::{self as db, Script};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{SERVICE, decide, store};

/// Orders timed out in one transaction at most.
const BATCH: i64 = 500;

#[derive(Clone)]
pub struct Deadlines {
    writer: db::Writer,
    js: jetstream::Context,
    deadline: Duration,
}

impl Deadlines {
    pub fn new(writer: db::Writer, js: jetstream::Context, deadline: Duration) -> Self {
        Deadlines {
            writer,
            js,
            deadline,
        }
    }

    /// Times out what is due, tick after tick, until `shutdown`.
    pub async fn run(&self, shutdown: CancellationToken) {
        let tick = (self.deadline / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut unannounced = match self.unannounced().await {
            Ok(orders) => orders,
            Err(e) => {
                warn!(error = %e, "cannot read the timed-out orders not yet announced");
                Vec::new()
            }
        };
        let mut ticks = tokio::time::interval(tick);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            match self.time_out().await {
                Ok(orders) => unannounced.extend(orders),
                Err(e) => warn!(error = %e, "deadlines: cannot time out the due orders"),
            }
            if !unannounced.is_empty() {
                unannounced = self.announce(unannounced).await;
            }
        }
    }

    async fn unannounced(&self) -> Result<Vec<(OrderId, OrderSnapshot)>, sqlx::Error> {
        let mut conn = self.writer.pool().acquire().await?;
        store::unannounced_timeouts(&mut conn).await
    }

    /// Rejects the orders that are due; returns those it rejected.
    async fn time_out(&self) -> Result<Vec<(OrderId, OrderSnapshot)>, sqlx::Error> {
        let cutoff =
            db::now_micros() - i64::try_from(self.deadline.as_micros()).unwrap_or(i64::MAX);
        let mut tx = self.writer.begin().await?;
        let due = store::overdue(&mut tx, cutoff, BATCH).await?;
        if due.is_empty() {
            return Ok(due);
        }
        let now = db::now_micros();
        let rejection = decide::timed_out();
        let mut script = Script::new(&tx);
        let moves: Vec<_> = due
            .iter()
            .map(|(order_id, _)| {
                let from = OrderStatus::Pending;
                store::change(
                    &mut script,
                    *order_id,
                    from,
                    &rejection,
                    None,
                    EventId::new(),
                    now,
                )
            })
            .collect();
        let written = script.run(&mut tx).await?;
        tx.commit().await?;
        let moved: Vec<_> = due
            .into_iter()
            .zip(moves)
            .filter(|(_, part)| part.affected(&written) == 1)
            .map(|(order, _)| order)
            .collect();
        info!(orders = moved.len(), "timed out");
        for (_, order) in &moved {
            crate::stats::saga_ended(OrderStatus::Rejected, order.placed_at);
        }
        Ok(moved)
    }

    /// Publishes the rejections; returns those still to publish.
    async fn announce(
        &self,
        orders: Vec<(OrderId, OrderSnapshot)>,
    ) -> Vec<(OrderId, OrderSnapshot)> {
        let rejection = decide::timed_out();
        let events: Vec<(Envelope, SpanRef)> = orders
            .iter()
            .map(|(order_id, order)| {
                let event = Event::OrderRejected(Rejection {
                    order: order.clone(),
                    reason: Reason::TimedOut,
                    detail: rejection.detail.clone().unwrap_or_default(),
                });
                let event = Envelope::new(*order_id, event);
                let span = SpanRef::own(SERVICE, &event);
                (event, span)
            })
            .collect();
        let published = oms_bus::publish_all(&self.js, &events).await;
        let (mut done, mut left) = (Vec::new(), Vec::new());
        for (((order_id, order), (_, span)), result) in
            orders.into_iter().zip(&events).zip(published)
        {
            match result {
                Ok(()) => {
                    if trace::enabled() {
                        // The time the order waited for its saga, in the order's trace.
                        trace::record(trace::Span {
                            service: SERVICE,
                            name: "deadline TIMED_OUT".into(),
                            kind: SpanKind::Internal,
                            span: *span,
                            parent: None,
                            start: order.placed_at.into(),
                            end: std::time::SystemTime::now(),
                            attributes: vec![KeyValue::new("oms.order_id", order_id.to_string())],
                            error: None,
                        });
                    }
                    done.push(order_id)
                }
                Err(e) => {
                    warn!(%order_id, error = %e, "deadlines: rejection not published yet");
                    left.push((order_id, order));
                }
            }
        }
        let _turn = self.writer.turn().await;
        if let Err(e) = store::mark_announced(self.writer.pool(), &done).await {
            // Published but not marked: the next start publishes them again (dropped as
            // duplicates, or idempotent downstream).
            warn!(error = %e, "deadlines: cannot mark rejections announced");
        }
        left
    }
}
