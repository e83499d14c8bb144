//! The inventory service: reserves the stock of every placed order, all of it or none, and gives
//! it back when the order is rejected.
//!
//! `orders.placed` → read stock → decide (pure) → take stock and record the reservation in one
//! transaction → publish `inventory.reserved` / `inventory.rejected` → ack.
//! `orders.rejected` → release (or, if the rejection came first, cancel ahead) → publish
//! `inventory.released` → ack. Also answers `oms.api.products.get`.

pub mod decide;
pub mod store;

use std::sync::Arc;

use async_nats::service::ServiceExt;
use oms_shared::api::{self, ApiError, GetProduct, ProductView};
use oms_shared::bus::{self, HandleError, Handler};
use oms_shared::events::{Rejection, Snapshot};
use oms_shared::runtime::{self, Bus};
use oms_shared::topology;
use oms_shared::{Config, Envelope, Event, OrderSnapshot, db};
use sqlx::AnyPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;
use uuid::Uuid;

use crate::decide::{OnRejected, Status, on_rejected, reserve, totals};

pub const SERVICE: &str = "inventory";

/// Runs the service until `shutdown`; `listener` serves its health endpoints.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let pool = db::connect(&config.database_url(SERVICE, &config.inventory.database_url)).await?;
    db::migrate(&pool, &store::SQLITE, &store::POSTGRES).await?;
    let bus = Bus::start(&config, SERVICE, &shutdown).await?;
    let service = bus
        .client
        .service_builder()
        .description("Products and stock of the OMS")
        .start(topology::api::INVENTORY_SERVICE, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| anyhow::anyhow!("starting the service API: {e}"))?;
    let get = service
        .endpoint(topology::api::PRODUCTS_GET)
        .await
        .map_err(|e| anyhow::anyhow!("adding endpoint: {e}"))?;

    let handler = Arc::new(Inventory {
        pool: pool.clone(),
        js: bus.js.clone(),
    });
    let tasks = TaskTracker::new();
    tasks.spawn(bus::consume(
        bus.js.clone(),
        topology::INVENTORY_ORDERS,
        config.clone(),
        handler,
        shutdown.clone(),
    ));
    let read_pool = pool.clone();
    tasks.spawn(api::serve(get, shutdown.clone(), move |req: GetProduct| {
        let pool = read_pool.clone();
        async move { get_product(&pool, &req.product_id).await }
    }));
    tasks.spawn(runtime::serve_http(
        listener,
        runtime::health_routes(bus.clone()),
        shutdown.clone(),
    ));
    info!("inventory service started");
    tasks.close();
    tasks.wait().await;
    pool.close().await;
    Ok(())
}

struct Inventory {
    pool: AnyPool,
    js: async_nats::jetstream::Context,
}

impl Handler for Inventory {
    async fn handle(&self, envelope: Envelope) -> Result<(), HandleError> {
        let order_id = envelope.order_id;
        let event = match envelope.event {
            Event::OrderPlaced(order) => self.placed(order_id, order).await?,
            Event::OrderRejected(rejection) => self.rejected(order_id, rejection.order).await?,
            _ => None, // not ours: the filter only sends placed and rejected orders
        };
        if let Some(event) = event {
            bus::publish(&self.js, &Envelope::new(order_id, event)).await?;
        }
        Ok(())
    }
}

impl Inventory {
    /// Reserves the order's stock, or records why not; returns the event to announce.
    async fn placed(
        &self,
        order_id: Uuid,
        order: OrderSnapshot,
    ) -> Result<Option<Event>, HandleError> {
        let mut tx = db::begin_write(&self.pool).await?;
        let kept = match store::reservation(&mut tx, order_id).await? {
            // Seen before (a redelivery, or the rejection came first): repeat what was decided.
            Some(r) => r,
            None => {
                let wanted = totals(&order.items);
                let stock = store::stock(&mut tx, wanted.keys()).await?;
                match reserve(&wanted, &stock) {
                    Ok(()) => {
                        if !store::take(&mut tx, order_id, &wanted).await? {
                            return Err(HandleError::transient(anyhow::anyhow!(
                                "stock changed while reserving; retrying"
                            )));
                        }
                    }
                    Err((reason, detail)) => {
                        store::insert(&mut tx, order_id, Status::Rejected, Some(reason), &detail)
                            .await?;
                    }
                }
                store::reservation(&mut tx, order_id)
                    .await?
                    .expect("the reservation was just written")
            }
        };
        tx.commit().await?;
        Ok(match (kept.status, kept.reason) {
            (Status::Reserved, _) => Some(Event::InventoryReserved(Snapshot { order })),
            (Status::Rejected, Some(reason)) => Some(Event::InventoryRejected(Rejection {
                order,
                reason,
                detail: kept.detail,
            })),
            // Rejected before it was placed: reserve nothing, say nothing.
            _ => None,
        })
    }

    /// Gives the stock of a rejected order back; returns the event to announce.
    async fn rejected(
        &self,
        order_id: Uuid,
        order: OrderSnapshot,
    ) -> Result<Option<Event>, HandleError> {
        let mut tx = db::begin_write(&self.pool).await?;
        let current = store::reservation(&mut tx, order_id).await?;
        let action = on_rejected(current.map(|r| r.status));
        match action {
            OnRejected::Release => store::release(&mut tx, order_id).await?,
            OnRejected::Cancel => {
                store::insert(
                    &mut tx,
                    order_id,
                    Status::Cancelled,
                    None,
                    "rejected before it was placed",
                )
                .await?
            }
            OnRejected::AnnounceAgain | OnRejected::Nothing => {}
        }
        tx.commit().await?;
        Ok(match action {
            OnRejected::Release | OnRejected::AnnounceAgain => {
                Some(Event::InventoryReleased(Snapshot { order }))
            }
            OnRejected::Cancel | OnRejected::Nothing => None,
        })
    }
}

async fn get_product(pool: &AnyPool, product_id: &str) -> Result<ProductView, ApiError> {
    let product = store::product(pool, product_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("product {product_id} does not exist")))?;
    Ok(ProductView {
        product_id: product.product_id,
        name: product.name,
        available: product.available,
    })
}
