//! The order service: projects every event of an order into the orders table, decides its
//! final status, and announces it once.
//!
//! event → skip if applied before → create the order from its snapshot if new → next status
//! (pure) → persist with the event id, in one transaction → publish `orders.confirmed` /
//! `orders.rejected` if now terminal and not yet announced → ack. Also answers
//! `oms.api.orders.get` and `oms.api.orders.list`.

pub mod decide;
pub mod store;

use std::collections::{HashMap, HashSet};

use oms_bus::api::ApiError;
use oms_bus::{self as bus, HandleError, Handler};
use oms_config::Config;
use oms_domain::api::{GetOrder, ListOrders, OrderStatus};
use oms_domain::events::{Rejection, Snapshot};
use oms_domain::{Envelope, Event, Reason};
use oms_host::Service;
use oms_store::{self as db, Script};
use oms_topology as topology;
use sqlx::AnyPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::decide::transition;

pub const SERVICE: &str = "order";

/// Runs the service until `shutdown`; `listener` serves its health endpoints.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut service = Service::start(SERVICE, &config, listener, &shutdown).await?;
    let pool = service
        .database(&config.order.database_url, &store::MIGRATIONS)
        .await?;
    let orders = Orders {
        pool: pool.clone(),
        js: service.bus().js.clone(),
        writing: Default::default(),
    };
    // Four consumers, one SQLite writer: one transaction per round for all of them.
    let consumers = [
        topology::ORDER_ORDERS,
        topology::ORDER_CUSTOMERS,
        topology::ORDER_INVENTORY,
        topology::ORDER_PAYMENTS,
    ];
    service.consume(&consumers, bus::Funnel::new(orders));
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
    service
        .endpoint(topology::api::ORDERS_LIST, move |req: ListOrders| {
            let pool = pool.clone();
            async move { Ok(store::list(&pool, &req).await?) }
        })
        .await?;
    service.run().await
}

struct Orders {
    pool: AnyPool,
    js: async_nats::jetstream::Context,
    /// Held while a round writes. Rounds overlap (on PostgreSQL) only in that one publishes
    /// while the next writes: two transactions creating and moving the same orders at once
    /// deadlocked on their row locks, which PostgreSQL resolves only after a second.
    writing: tokio::sync::Mutex<()>,
}

impl Handler for Orders {
    /// Overlapping rounds would be safe for the same reason two instances are (every change
    /// is guarded by the status it expects, an event is claimed once), but see `writing`.
    fn in_flight(&self) -> usize {
        db::batches_at_once(&self.pool)
    }

    async fn handle_batch(&self, events: Vec<Envelope>) -> Vec<Result<(), HandleError>> {
        bus::whole_or_each(&events, |events| async move {
            let announcements = self.apply_all(events).await?;
            let orders: Vec<Option<Uuid>> = announcements
                .iter()
                .map(|a| a.as_ref().map(|a| a.order_id))
                .collect();
            let results = bus::announce(&self.js, announcements).await;
            let published: Vec<Uuid> = orders
                .into_iter()
                .zip(&results)
                .filter_map(|(order, result)| order.filter(|_| result.is_ok()))
                .collect();
            {
                let _turn = self.writing.lock().await;
                store::mark_announced(&self.pool, &published).await?;
            }
            Ok(results)
        })
        .await
    }
}

impl Orders {
    /// Applies the batch in stream order in one transaction (skipping events applied before)
    /// and returns, per event, the final status to announce if its order has one not yet
    /// announced: also after a crash between this commit and the publish, since a redelivery
    /// finds it not yet announced. An order is announced once per batch, with its last event.
    async fn apply_all(&self, events: &[Envelope]) -> Result<Vec<Option<Envelope>>, HandleError> {
        let _turn = self.writing.lock().await;
        let mut tx = db::begin_write(&self.pool).await?;
        // Two scripts (see `db::Script`): what the batch finds, then what it writes.
        let now = db::now_micros();
        let ids: Vec<(Uuid, Uuid)> = events.iter().map(|e| (e.event_id, e.order_id)).collect();
        let mut orders: Vec<Uuid> = events.iter().map(|e| e.order_id).collect();
        orders.sort_unstable();
        orders.dedup();
        let mut script = Script::new(&tx);
        let claimed = store::claim(&mut script, &ids, now);
        let stored = store::heads(&mut script, &orders);
        let found = script.run(&mut tx).await?;
        let Some(fresh) = store::fresh(claimed.affected(&found), &ids) else {
            // Redelivered and new events in one batch (after a crash, or a second instance):
            // `whole_or_each` takes them one by one.
            return Err(HandleError::transient(anyhow::anyhow!(
                "some events of the batch were applied before, some not"
            )));
        };
        let mut heads = store::read_heads(&stored, &found)?;
        let fresh: Vec<&Envelope> = events
            .iter()
            .filter(|e| fresh.contains(&e.event_id))
            .collect();

        // Orders seen for the first time are created from the snapshot their event carries.
        let mut first_seen = HashSet::new();
        let new: Vec<_> = fresh
            .iter()
            .filter(|e| !heads.contains_key(&e.order_id) && first_seen.insert(e.order_id))
            .map(|e| (e.order_id, e.event.order(), e.event_id))
            .collect();
        heads.extend(new.iter().map(|(id, _, _)| (*id, store::Head::pending())));
        // Decide in stream order against the heads; at most one change per order, since the
        // first one is terminal.
        let mut changes = Vec::new();
        for envelope in fresh {
            let order_id = envelope.order_id;
            let head = heads.get_mut(&order_id).ok_or_else(|| {
                HandleError::transient(anyhow::anyhow!("order {order_id} vanished"))
            })?;
            if let Some(t) = transition(head.status, &envelope.event) {
                (head.status, head.reason, head.detail) = (t.status, t.reason, t.detail.clone());
                changes.push((order_id, t, envelope.event_id));
            }
        }
        let mut script = Script::new(&tx);
        let created = store::create(&mut script, &new);
        let changed = store::apply(&mut script, &changes, now);
        let written = script.run(&mut tx).await?;
        // Orders another instance created, or moved, first: what it stored stands. The
        // counts say whether that happened, not to which orders, so all are read again.
        let mut stale = Vec::new();
        if created.affected(&written) != new.len() as u64 {
            stale.extend(new.iter().map(|(id, _, _)| *id));
        }
        if changed.affected(&written) != changes.len() as u64 {
            stale.extend(changes.iter().map(|(id, _, _)| *id));
        }
        store::reread(&mut tx, &mut heads, &stale).await?;
        tx.commit().await?;

        let last: HashMap<Uuid, usize> = events
            .iter()
            .enumerate()
            .map(|(i, e)| (e.order_id, i))
            .collect();
        Ok(events
            .iter()
            .enumerate()
            .map(|(i, envelope)| {
                let head = heads.get(&envelope.order_id)?;
                if last.get(&envelope.order_id) != Some(&i) || head.announced {
                    return None;
                }
                let order = envelope.event.order().clone();
                let event = match head.status {
                    OrderStatus::Pending => return None,
                    OrderStatus::Confirmed => Event::OrderConfirmed(Snapshot { order }),
                    OrderStatus::Rejected => Event::OrderRejected(Rejection {
                        order,
                        reason: head.reason.unwrap_or(Reason::PaymentDeclined),
                        detail: head.detail.clone().unwrap_or_default(),
                    }),
                };
                Some(Envelope::new(envelope.order_id, event))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use oms_domain::events::PaymentProcessed;
    use oms_domain::{EventKind, Item, Money, OrderSnapshot};
    use oms_testkit::{NatsServer, TestBroker};
    use sqlx::Row;

    /// A batch that holds an event applied before and a new one (a redelivery after a crash
    /// next to fresh work) cannot be told apart by the claim's count: it must still apply
    /// the new event once and announce the order once.
    #[tokio::test]
    async fn a_batch_of_an_applied_and_a_new_event_applies_the_new_one_once() {
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
        let orders = Orders {
            pool: pool.clone(),
            js: js.clone(),
            writing: Default::default(),
        };
        let order_id = Uuid::now_v7();
        let order = OrderSnapshot {
            customer_id: "OMS-Cust-001".into(),
            items: vec![Item {
                product_id: "item1".into(),
                quantity: 1,
            }],
            total_amount: Money::from_cents(2_599),
            placed_at: time::OffsetDateTime::now_utc(),
        };
        let placed = Envelope::new(order_id, Event::OrderPlaced(order.clone()));
        let processed = Envelope::new(
            order_id,
            Event::PaymentProcessed(PaymentProcessed {
                order,
                amount: Money::from_cents(2_599),
                charge_id: "ch_1".into(),
            }),
        );

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
}
