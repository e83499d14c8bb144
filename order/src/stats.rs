//! The order service's metrics: orders per status and the oldest PENDING one (read from the
//! table every few seconds), and each saga's time from placement to its final status.

use std::collections::HashSet;

use oms_bus::Incoming;
use oms_bus::metrics as m;
use oms_domain::api::OrderStatus;
use oms_domain::{Event, OrderId};
use oms_host::metrics::WATCH_INTERVAL;
use sqlx::AnyPool;
use strum::IntoEnumIterator;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::SERVICE;
use crate::decide::OrderEvent;
use crate::store;

/// Counts a saga that ended with `status`, placed at `placed_at`.
pub fn saga_ended(status: OrderStatus, placed_at: OffsetDateTime) {
    let took = (OffsetDateTime::now_utc() - placed_at)
        .as_seconds_f64()
        .max(0.0);
    let status: &'static str = status.into();
    metrics::histogram!(m::SAGA_DURATION, "service" => SERVICE, "status" => status).record(took);
}

/// Counts the sagas whose end `announcements` (one per event of `batch`) announce, of the
/// orders in `ended`: those the batch's transaction moved to their end. An announcement made
/// again (a redelivery found the order not yet announced) is not a second end.
pub fn sagas_ended(
    batch: &[Incoming<OrderEvent>],
    announcements: &[Option<Event>],
    ended: &HashSet<OrderId>,
) {
    let now_ended = batch
        .iter()
        .zip(announcements)
        .filter(|(incoming, _)| ended.contains(&incoming.order_id))
        .filter_map(|(_, event)| event.as_ref());
    for event in now_ended {
        match event {
            Event::OrderConfirmed(s) => saga_ended(OrderStatus::Confirmed, s.order.placed_at),
            Event::OrderRejected(r) => saga_ended(OrderStatus::Rejected, r.order.placed_at),
            _ => {}
        }
    }
}

/// Refreshes the orders-per-status gauges every [`WATCH_INTERVAL`] until `shutdown`.
pub async fn watch(pool: AnyPool, shutdown: CancellationToken) {
    loop {
        match store::census(&pool).await {
            Ok((counts, oldest)) => {
                for status in OrderStatus::iter() {
                    let name: &'static str = status.into();
                    let n = counts
                        .iter()
                        .find(|(s, _)| s == name)
                        .map_or(0, |(_, n)| *n);
                    metrics::gauge!(m::ORDERS, "service" => SERVICE, "status" => name)
                        .set(n as f64);
                }
                let age = oldest.map_or(0.0, |placed| {
                    (OffsetDateTime::now_utc() - oms_store::from_micros(placed))
                        .as_seconds_f64()
                        .max(0.0)
                });
                metrics::gauge!(m::ORDERS_OLDEST_PENDING, "service" => SERVICE).set(age);
            }
            Err(e) => debug!(error = %e, "orders census failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(WATCH_INTERVAL) => {}
        }
    }
}
