//! The order service: projects every event of an order into the orders table, decides its
//! status, and announces each once.
//!
//! The saga: takes `orders.placed`, `customers.rejected`, `inventory.rejected`,
//! `payments.processed` and `payments.failed` (four consumers, one pipeline) → claims the
//! events and loads their orders → decides (pure: create from the snapshot if new, next status,
//! forward only) → persists with the event ids in one transaction → publishes `orders.confirmed`
//! or `orders.rejected` once an order is final and not yet announced → ack. After it: people's
//! requests ([`lifecycle`]) and each order's deadline ([`deadline`]). Stores `orders`,
//! `order_items`, `order_history` and `processed_events`. Also answers `oms.api.orders.get`,
//! `oms.api.orders.list`, `oms.api.orders.history` ([`history`]) and `oms.api.orders.stats`
//! (how many orders are in each status).

pub mod deadline;
pub mod decide;
pub mod history;
pub mod lifecycle;
pub mod stats;
pub mod store;

use std::collections::{HashMap, HashSet};

use oms_bus::api::ApiError;
use oms_bus::{HandleError, Incoming, Input, Step};
use oms_config::Config;
use oms_domain::api::{CountOrders, GetHistory, GetOrder, ListOrders};
use oms_domain::{Event, EventId, EventKind, OrderId};
use oms_host::Service;
use oms_store::{self as db, Script};
use oms_topology as topology;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::decide::{Head, OrderEvent, Plan};

pub const SERVICE: &str = "order";

/// Runs the service until `shutdown`; `listener` serves its health endpoints.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut service = Service::start(SERVICE, &config, listener, &shutdown).await?;
    let pool = service.database(&store::MIGRATIONS).await?;
    let writer = db::Writer::new(pool.clone());
    let orders = Orders {
        writer: writer.clone(),
    };
    // Four consumers into one pipeline: one transaction per round for all of them.
    let consumers = [
        topology::ORDER_ORDERS,
        topology::ORDER_CUSTOMERS,
        topology::ORDER_INVENTORY,
        topology::ORDER_PAYMENTS,
    ];
    service.consume(&consumers, orders)?;
    service.consume(
        &[topology::ORDER_LIFECYCLE],
        lifecycle::Lifecycle {
            writer: writer.clone(),
        },
    )?;
    let deadlines =
        deadline::Deadlines::new(writer, service.bus().js.clone(), config.orders.deadline);
    service.background("deadlines", move |shutdown| {
        let deadlines = deadlines.clone();
        async move { deadlines.run(shutdown).await }
    });
    let counted = pool.clone();
    service.background("order stats", move |shutdown| {
        stats::watch(counted.clone(), shutdown)
    });
    service
        .api(topology::api::ORDERS_SERVICE, "Orders of the OMS")
        .await?;
    let read = pool.clone();
    service
        .endpoint(topology::api::ORDERS_GET, move |req: GetOrder| {
            let pool = read.clone();
            async move {
                let order = store::get(&pool, req.order_id).await?;
                order.ok_or_else(|| {
                    ApiError::NotFound(format!("order {} does not exist", req.order_id))
                })
            }
        })
        .await?;
    let list = pool.clone();
    service
        .endpoint(topology::api::ORDERS_LIST, move |req: ListOrders| {
            let pool = list.clone();
            async move { Ok(store::list(&pool, &req).await?) }
        })
        .await?;
    let count = pool.clone();
    service
        .endpoint(topology::api::ORDERS_STATS, move |_: CountOrders| {
            let pool = count.clone();
            async move { Ok(store::counts(&pool).await?) }
        })
        .await?;
    let js = service.bus().js.clone();
    service
        .endpoint(topology::api::ORDERS_HISTORY, move |req: GetHistory| {
            let (pool, js) = (pool.clone(), js.clone());
            async move { history::history(&pool, &js, req.order_id).await }
        })
        .await?;
    service.run().await
}

impl Input for OrderEvent {
    const KINDS: &'static [EventKind] = &[
        EventKind::OrderPlaced,
        EventKind::CustomerRejected,
        EventKind::InventoryRejected,
        EventKind::PaymentProcessed,
        EventKind::PaymentFailed,
    ];

    fn take(event: Event) -> Option<Self> {
        match event {
            Event::OrderPlaced(order) => Some(OrderEvent::Placed(order)),
            Event::CustomerRejected(r) | Event::InventoryRejected(r) | Event::PaymentFailed(r) => {
                Some(OrderEvent::Rejected(r))
            }
            Event::PaymentProcessed(payment) => Some(OrderEvent::Paid(payment)),
            _ => None,
        }
    }
}

struct Orders {
    /// Rounds overlap (on PostgreSQL) only in that one publishes while the next writes.
    writer: db::Writer,
}

/// A batch goes in stream order in one transaction. Overlapping rounds would be safe for the
/// same reason two instances are (every change is guarded by the status it expects, an event
/// is claimed once), but see `writer`.
impl Step for Orders {
    type Input = OrderEvent;
    type Work = db::Turn;
    /// The events of the batch not applied before, and the stored heads of its orders.
    type Found = (HashSet<EventId>, HashMap<OrderId, Head>);
    type Plan = Plan;

    fn in_flight(&self) -> usize {
        db::batches_at_once(self.writer.pool())
    }

    /// Claims the batch's events (recorded as applied, in the transaction) and reads the heads
    /// of their orders.
    async fn load(
        &self,
        batch: &[Incoming<OrderEvent>],
    ) -> Result<(Self::Work, Self::Found), HandleError> {
        let mut tx = self.writer.begin().await?;
        let ids: Vec<(EventId, OrderId)> = batch.iter().map(|e| (e.event_id, e.order_id)).collect();
        let mut orders: Vec<OrderId> = batch.iter().map(|e| e.order_id).collect();
        orders.sort_unstable();
        orders.dedup();
        let mut script = Script::new(&tx);
        let claimed = store::claim(&mut script, &ids, db::now_micros());
        let stored = store::heads(&mut script, &orders);
        let found = script.run(&mut tx).await?;
        let Some(fresh) = store::fresh(claimed.affected(&found), &ids) else {
            // Redelivered and new events in one batch (after a crash, or a second instance):
            // the count cannot tell which are which, so the pipeline takes them one by one.
            return Err(HandleError::transient(anyhow::anyhow!(
                "some events of the batch were applied before, some not"
            )));
        };
        Ok((tx, (fresh, store::read_heads(&stored, &found)?)))
    }

    fn decide(batch: &[Incoming<OrderEvent>], (fresh, heads): Self::Found) -> Plan {
        decide::plan(batch, &fresh, heads)
    }

    async fn persist(
        &self,
        mut tx: db::Turn,
        batch: &[Incoming<OrderEvent>],
        mut plan: Plan,
    ) -> Result<Vec<Option<Event>>, HandleError> {
        let mut script = Script::new(&tx);
        let created = store::create(&mut script, &plan.new);
        let changed = store::apply(&mut script, &plan.changes, db::now_micros());
        store::price(&mut script, &plan.prices);
        let written = script.run(&mut tx).await?;
        // Orders another instance created, or moved, first: what it stored stands. The
        // counts say whether that happened, not to which orders, so all are read again.
        let mut stale = Vec::new();
        if created.affected(&written) != plan.new.len() as u64 {
            stale.extend(plan.new.iter().map(|(id, _, _)| *id));
        }
        // The sagas this transaction ended, for their time. If another instance moved some of
        // the orders first, the count does not tell which: none of the batch's is counted,
        // rather than one twice.
        let mut ended = HashSet::new();
        if changed.affected(&written) == plan.changes.len() as u64 {
            ended.extend(plan.changes.iter().map(|(id, _, _)| *id));
        } else {
            stale.extend(plan.changes.iter().map(|(id, _, _)| *id));
        }
        store::reread(&mut tx, &mut plan.heads, &stale).await?;
        tx.commit().await?;
        let announcements = decide::announcements(batch, &plan.heads);
        stats::sagas_ended(batch, &announcements, &ended);
        Ok(announcements)
    }

    async fn announced(&self, orders: &[OrderId]) -> Result<(), HandleError> {
        let _turn = self.writer.turn().await;
        Ok(store::mark_announced(self.writer.pool(), orders).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use oms_bus::Handler;
    use oms_domain::api::OrderStatus;
    use oms_domain::events::{PaymentProcessed, Snapshot};
    use oms_domain::{Envelope, Item, Money, OrderSnapshot};
    use oms_testkit::{NatsServer, TestBroker};
    use sqlx::Row;

    #[test]
    fn its_own_announcements_are_not_what_order_takes() {
        let order = OrderSnapshot {
            customer_id: "c".into(),
            items: vec![],
            total_amount: Some(Money::from_cents(100)),
            placed_at: time::OffsetDateTime::UNIX_EPOCH,
        };
        assert!(OrderEvent::take(Event::OrderConfirmed(Snapshot { order })).is_none());
        assert!(!OrderEvent::KINDS.contains(&EventKind::OrderConfirmed));
        assert!(!OrderEvent::KINDS.contains(&EventKind::OrderRejected));
    }

    /// The order service's pipeline on a fresh SQLite file and nats-server, and the two events
    /// that confirm one order: placed, and paid.
    struct Fixture {
        _dir: tempfile::TempDir,
        pool: sqlx::AnyPool,
        nats: NatsServer,
        orders: oms_bus::Pipeline<Orders>,
        order_id: OrderId,
        placed: Envelope,
        processed: Envelope,
        line: oms_domain::PricedItem,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/order.db?mode=rwc", dir.path().display());
        let pool = db::connect(&url).await.expect("sqlite");
        store::MIGRATIONS.run(&pool).await.expect("migrations");
        let nats = NatsServer::start();
        nats.provision(&nats.config()).await;
        // The order service's own identity: what it publishes, it may.
        let js = async_nats::jetstream::new(
            nats.connect_as(oms_topology::identity::Identity::Order)
                .await,
        );
        let orders = oms_bus::Pipeline::new(
            SERVICE,
            Orders {
                writer: db::Writer::new(pool.clone()),
            },
            js.clone(),
        );
        let order_id = OrderId::new();
        let order = OrderSnapshot {
            customer_id: "OMS-Cust-001".into(),
            items: vec![Item {
                product_id: "item1".into(),
                quantity: 1,
            }],
            total_amount: None,
            placed_at: time::OffsetDateTime::now_utc(),
        };
        let placed = Envelope::new(order_id, Event::OrderPlaced(order.clone()));
        let line = oms_domain::PricedItem {
            product_id: "item1".into(),
            quantity: 1,
            unit_price: Money::from_cents(2_599),
            line_total: Money::from_cents(2_599),
        };
        let processed = Envelope::new(
            order_id,
            Event::PaymentProcessed(PaymentProcessed {
                order,
                amount: Money::from_cents(2_599),
                charge_id: "ch_1".into(),
                items: vec![line.clone()],
            }),
        );
        Fixture {
            _dir: dir,
            pool,
            nats,
            orders,
            order_id,
            placed,
            processed,
            line,
        }
    }

    /// A batch that holds an event applied before and a new one (a redelivery after a crash
    /// next to fresh work) cannot be told apart by the claim's count: it must still apply
    /// the new event once and announce the order once.
    #[tokio::test]
    async fn a_batch_of_an_applied_and_a_new_event_applies_the_new_one_once() {
        let Fixture {
            pool,
            nats,
            orders,
            order_id,
            placed,
            processed,
            line,
            ..
        } = fixture().await;
        let first = orders.handle_batch(vec![placed.clone()]).await;
        assert!(first.iter().all(Result::is_ok));
        let both = orders.handle_batch(vec![placed, processed]).await;
        assert!(both.iter().all(Result::is_ok), "{both:?}");

        let count = |sql: &'static str| {
            let pool = pool.clone();
            async move {
                sqlx::query(sql)
                    .bind(order_id.to_string())
                    .fetch_one(&pool)
                    .await
                    .expect("count")
                    .get::<i64, _>(0)
            }
        };
        let view = store::get(&pool, order_id)
            .await
            .expect("read")
            .expect("order");
        assert_eq!(view.status, OrderStatus::Confirmed);
        assert_eq!(view.total_amount, Some(Money::from_cents(2_599)), "priced");
        assert_eq!(view.items, [line.into()], "the line at its price");
        assert_eq!(
            count("SELECT COUNT(*) FROM order_history WHERE order_id = $1").await,
            2,
            "PENDING once, CONFIRMED once"
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM processed_events WHERE order_id = $1").await,
            2
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM orders WHERE announced = 1 AND order_id = $1").await,
            1
        );
        let observer = async_nats::jetstream::new(
            nats.connect_as(oms_topology::identity::Identity::Observer)
                .await,
        );
        let stream = observer.get_stream(topology::ORDERS).await.expect("ORDERS");
        let info = stream
            .info_with_subjects(EventKind::OrderConfirmed.subject(order_id))
            .await
            .expect("subjects")
            .try_collect::<std::collections::HashMap<String, usize>>()
            .await
            .expect("subject counts");
        assert_eq!(info.values().sum::<usize>(), 1, "announced once: {info:?}");
    }

    /// A saga's time is recorded when its transaction ends it, not again when a redelivery
    /// (after a crash between the commit and marking the order announced) announces it again.
    #[tokio::test]
    async fn a_saga_is_timed_once_however_often_its_end_is_announced() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        // This test's thread only (the runtime is current-thread): others record elsewhere.
        let _local = metrics::set_default_local_recorder(&recorder);
        let f = fixture().await;
        let timed =
            || {
                let samples = snapshotter.snapshot().into_vec().into_iter().filter_map(
                    |(key, _, _, value)| match value {
                        DebugValue::Histogram(v)
                            if key.key().name() == oms_bus::metrics::SAGA_DURATION =>
                        {
                            Some(v.len())
                        }
                        _ => None,
                    },
                );
                samples.sum::<usize>()
            };
        let handled = f
            .orders
            .handle_batch(vec![f.placed, f.processed.clone()])
            .await;
        assert!(handled.iter().all(Result::is_ok), "{handled:?}");
        assert_eq!(timed(), 1, "the confirmation timed");

        sqlx::query("UPDATE orders SET announced = 0 WHERE order_id = $1")
            .bind(f.order_id.to_string())
            .execute(&f.pool)
            .await
            .expect("as if it crashed before marking the order announced");
        let again = f.orders.handle_batch(vec![f.processed]).await;
        assert!(again.iter().all(Result::is_ok), "{again:?}");
        let announced: i64 = sqlx::query("SELECT announced FROM orders WHERE order_id = $1")
            .bind(f.order_id.to_string())
            .fetch_one(&f.pool)
            .await
            .expect("the order")
            .get(0);
        assert_eq!(announced, 1, "announced again");
        assert_eq!(timed(), 0, "and not timed again");
    }
}
