//! The order service: projects every event of an order into the orders table, decides its
//! final status, and announces it once.
//!
//! event → skip if applied before → create the order from its snapshot if new → next status
//! (pure) → persist with the event id, in one transaction → publish `orders.confirmed` /
//! `orders.rejected` if now terminal and not yet announced → ack. Also answers
//! `oms.api.orders.get` and `oms.api.orders.list`.

pub mod decide;
pub mod store;

use std::sync::Arc;

use async_nats::service::ServiceExt;
use oms_shared::api::{self, ApiError, GetOrder, ListOrders, OrderStatus};
use oms_shared::bus::{self, HandleError, Handler};
use oms_shared::events::{Rejection, Snapshot};
use oms_shared::runtime::{self, Bus};
use oms_shared::topology;
use oms_shared::{Config, Envelope, Event, Reason, db};
use sqlx::AnyPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::decide::transition;

pub const SERVICE: &str = "order";

/// Runs the service until `shutdown`; `listener` serves its health endpoints.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let pool = db::connect(&config.database_url(SERVICE, &config.order.database_url)).await?;
    db::migrate(&pool, &store::SQLITE, &store::POSTGRES).await?;
    let bus = Bus::start(&config, SERVICE, &shutdown).await?;
    let service = bus
        .client
        .service_builder()
        .description("Orders of the OMS")
        .start(topology::api::ORDERS_SERVICE, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| anyhow::anyhow!("starting the service API: {e}"))?;
    let get = service
        .endpoint(topology::api::ORDERS_GET)
        .await
        .map_err(|e| anyhow::anyhow!("adding endpoint: {e}"))?;
    let list = service
        .endpoint(topology::api::ORDERS_LIST)
        .await
        .map_err(|e| anyhow::anyhow!("adding endpoint: {e}"))?;

    let handler = Arc::new(Orders {
        pool: pool.clone(),
        js: bus.js.clone(),
    });
    let tasks = TaskTracker::new();
    for spec in [
        topology::ORDER_ORDERS,
        topology::ORDER_CUSTOMERS,
        topology::ORDER_INVENTORY,
        topology::ORDER_PAYMENTS,
    ] {
        tasks.spawn(bus::consume(
            bus.js.clone(),
            spec,
            config.clone(),
            handler.clone(),
            shutdown.clone(),
        ));
    }
    let read_pool = pool.clone();
    tasks.spawn(api::serve(get, shutdown.clone(), move |req: GetOrder| {
        let pool = read_pool.clone();
        async move {
            store::get(&pool, req.order_id)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("order {} does not exist", req.order_id)))
        }
    }));
    let read_pool = pool.clone();
    tasks.spawn(api::serve(
        list,
        shutdown.clone(),
        move |req: ListOrders| {
            let pool = read_pool.clone();
            async move { Ok(store::list(&pool, &req).await?) }
        },
    ));
    tasks.spawn(runtime::serve_http(
        listener,
        runtime::health_routes(bus.clone()),
        shutdown.clone(),
    ));
    info!("order service started");
    tasks.close();
    tasks.wait().await;
    pool.close().await;
    Ok(())
}

struct Orders {
    pool: AnyPool,
    js: async_nats::jetstream::Context,
}

impl Handler for Orders {
    async fn handle(&self, envelope: Envelope) -> Result<(), HandleError> {
        let (order_id, event_id) = (envelope.order_id, envelope.event_id);
        let order = envelope.event.order();
        let mut tx = db::begin_write(&self.pool).await?;
        if !store::seen(&mut tx, event_id).await? {
            store::ensure_order(&mut tx, order_id, order, event_id).await?;
            let current = store::head(&mut tx, order_id).await?;
            if let Some(t) = transition(current.status, &envelope.event) {
                store::apply(&mut tx, order_id, &t, event_id).await?;
            }
            store::mark_seen(&mut tx, event_id, order_id).await?;
        }
        let head = store::head(&mut tx, order_id).await?;
        tx.commit().await?;

        // Announce a final status once: also after a crash between the commit above and the
        // publish below, since a redelivery finds it not yet announced.
        if head.announced {
            return Ok(());
        }
        let announcement = match head.status {
            OrderStatus::Pending => return Ok(()),
            OrderStatus::Confirmed => Event::OrderConfirmed(Snapshot {
                order: order.clone(),
            }),
            OrderStatus::Rejected => Event::OrderRejected(Rejection {
                order: order.clone(),
                reason: head.reason.unwrap_or(Reason::PaymentDeclined),
                detail: head.detail.unwrap_or_default(),
            }),
        };
        bus::publish(&self.js, &Envelope::new(order_id, announcement)).await?;
        store::mark_announced(&self.pool, order_id).await?;
        Ok(())
    }
}
