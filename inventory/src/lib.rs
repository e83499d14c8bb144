//! The inventory service: reserves the stock of every placed order, all of it or none, and gives
//! it back when the order is rejected.
//!
//! takes `orders.placed`, `orders.rejected` and `orders.cancelled` → loads their reservations and the stock with
//! its prices → decides (pure: price the order and reserve all or nothing, rejecting it when the
//! client's amount is not the priced total; release, or cancel ahead when the rejection came
//! first) → takes or gives back stock and records the reservations in one transaction →
//! publishes `inventory.reserved`, `inventory.rejected` or `inventory.released` → ack.
//! Stores `products` and `reservations`. Also answers `oms.api.products.get`, and for operators
//! `oms.api.products.create`, `.price` and `.restock` (request/reply: each change is done in one
//! transaction when the answer comes; orders already priced keep their prices).

pub mod decide;
pub mod store;

use std::collections::HashMap;

use oms_bus::api::ApiError;
use oms_bus::{HandleError, Incoming, Input, Step};
use oms_config::Config;
use oms_domain::api::{GetProduct, NewProduct, ProductView, Restock, SetPrice};
use oms_domain::events::{Priced, Rejection, Released};
use oms_domain::{Event, EventKind, OrderId, OrderSnapshot, ProductId};
use oms_host::Service;
use oms_store::{self as db, Script};
use oms_topology as topology;
use sqlx::AnyPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::decide::Stock;
use crate::decide::{Answer, Ask, Held, Plan};
use crate::store::Restocked;

pub const SERVICE: &str = "inventory";

/// Runs the service until `shutdown`; `listener` serves its health endpoints.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut service = Service::start(SERVICE, &config, listener, &shutdown).await?;
    let pool = service.database(&store::MIGRATIONS).await?;
    let writer = db::Writer::new(pool.clone());
    let inventory = Inventory {
        writer: writer.clone(),
    };
    service.consume(&[topology::INVENTORY_ORDERS], inventory)?;
    service
        .api(
            topology::api::INVENTORY_SERVICE,
            "Products and stock of the OMS",
        )
        .await?;
    let read = pool.clone();
    service
        .endpoint(topology::api::PRODUCTS_GET, move |req: GetProduct| {
            let pool = read.clone();
            async move { get_product(&pool, &req.product_id).await }
        })
        .await?;
    let create = pool.clone();
    service
        .endpoint(topology::api::PRODUCTS_CREATE, move |req: NewProduct| {
            let pool = create.clone();
            async move {
                if !store::create(&pool, &req).await? {
                    return Err(ApiError::Conflict(format!(
                        "product {} exists already",
                        req.product_id
                    )));
                }
                get_product(&pool, &req.product_id).await
            }
        })
        .await?;
    let price = pool.clone();
    service
        .endpoint(topology::api::PRODUCTS_PRICE, move |req: SetPrice| {
            let pool = price.clone();
            async move {
                if !store::set_price(&pool, &req).await? {
                    return Err(not_found(&req.product_id));
                }
                get_product(&pool, &req.product_id).await
            }
        })
        .await?;
    service
        .endpoint(topology::api::PRODUCTS_RESTOCK, move |req: Restock| {
            let (pool, writer) = (pool.clone(), writer.clone());
            async move {
                match store::restock(&writer, &req).await? {
                    Restocked::Added | Restocked::Repeated => {}
                    Restocked::UnknownProduct => return Err(not_found(&req.product_id)),
                    Restocked::KeyReused => {
                        return Err(ApiError::Conflict(
                            "this Idempotency-Key was already used for another delivery".into(),
                        ));
                    }
                }
                get_product(&pool, &req.product_id).await
            }
        })
        .await?;
    service.run().await
}

/// What inventory takes: placed orders to reserve, and orders that ended without being
/// fulfilled (rejected or cancelled) to release.
pub enum StockEvent {
    Placed(OrderSnapshot),
    Ended,
}

impl Input for StockEvent {
    const KINDS: &'static [EventKind] = &[
        EventKind::OrderPlaced,
        EventKind::OrderRejected,
        EventKind::OrderCancelled,
    ];

    fn take(event: Event) -> Option<Self> {
        match event {
            Event::OrderPlaced(order) => Some(StockEvent::Placed(order)),
            Event::OrderRejected(_) | Event::OrderCancelled(_) => Some(StockEvent::Ended),
            _ => None,
        }
    }
}

struct Inventory {
    /// Batches reserve one after the other, from reading the stock to committing its change:
    /// first come, first served. (Another instance's batch that interleaves is caught by the
    /// compare-and-set on the stock, and decided again.)
    writer: db::Writer,
}

/// A batch goes in stream order in one transaction, each event seeing the stock the ones
/// before it left.
impl Step for Inventory {
    type Input = StockEvent;
    type Work = db::Turn;
    /// The reservations of the batch's orders, and the stock of every product involved.
    type Found = (HashMap<OrderId, Held>, Stock);
    type Plan = Plan;

    fn in_flight(&self) -> usize {
        db::batches_at_once(self.writer.pool())
    }

    async fn load(
        &self,
        batch: &[Incoming<StockEvent>],
    ) -> Result<(Self::Work, Self::Found), HandleError> {
        let mut orders: Vec<OrderId> = batch.iter().map(|a| a.order_id).collect();
        orders.sort_unstable();
        orders.dedup();
        // Products the placed orders name; those the held reservations name come with them.
        let mut products: Vec<&ProductId> = batch
            .iter()
            .filter_map(|a| match &a.event {
                StockEvent::Placed(order) => Some(order.items.iter()),
                StockEvent::Ended => None,
            })
            .flatten()
            .map(|i| &i.product_id)
            .collect();
        products.sort_unstable();
        products.dedup();

        let mut tx = self.writer.begin().await?;
        let mut script = Script::new(&tx);
        let reservations = store::reservations(&mut script, &orders);
        let ordered = store::stock(&mut script, &products);
        let found = script.run(&mut tx).await?;
        let (held, mut stock) = store::read_reservations(&reservations, &found)?;
        stock.extend(store::read_stock(&ordered, &found)?);
        Ok((tx, (held, stock)))
    }

    fn decide(batch: &[Incoming<StockEvent>], (held, stock): Self::Found) -> Plan {
        let asks: Vec<Ask<'_>> = batch
            .iter()
            .map(|a| match &a.event {
                StockEvent::Placed(order) => Ask::Reserve(a.order_id, order),
                StockEvent::Ended => Ask::Release(a.order_id),
            })
            .collect();
        decide::plan(&asks, held, stock)
    }

    async fn persist(
        &self,
        mut tx: db::Turn,
        batch: &[Incoming<StockEvent>],
        plan: Plan,
    ) -> Result<Vec<Option<Event>>, HandleError> {
        let now = db::now_micros();
        let mut script = Script::new(&tx);
        let adjusted = store::adjust(&mut script, &plan.delta);
        store::insert(&mut script, &plan.new, now);
        store::mark_released(&mut script, &plan.released, now);
        let written = script.run(&mut tx).await?;
        if adjusted.affected(&written) != plan.delta.len() as u64 {
            return Err(HandleError::conflict("stock changed while reserving"));
        }
        tx.commit().await?;
        Ok(batch
            .iter()
            .zip(plan.answers)
            .map(|(arrival, answer)| announcement(&arrival.event, answer))
            .collect())
    }
}

/// The event that tells payment and order what inventory did, if anything.
fn announcement(arrival: &StockEvent, answer: Answer) -> Option<Event> {
    let order = || match arrival {
        StockEvent::Placed(order) => Some(order.clone()),
        StockEvent::Ended => None,
    };
    Some(match answer {
        Answer::Reserved(items, total_amount) => Event::InventoryReserved(Priced {
            order: order()?,
            items,
            total_amount,
        }),
        Answer::Rejected(reason, detail) => Event::InventoryRejected(Rejection {
            order: order()?,
            reason,
            detail,
        }),
        Answer::Released(items) => Event::InventoryReleased(Released { items }),
        Answer::Silent => return None,
    })
}

fn not_found(product_id: &ProductId) -> ApiError {
    ApiError::NotFound(format!("product {product_id} does not exist"))
}

async fn get_product(pool: &AnyPool, product_id: &ProductId) -> Result<ProductView, ApiError> {
    let product = store::product(pool, product_id)
        .await?
        .ok_or_else(|| not_found(product_id))?;
    Ok(ProductView {
        product_id: product.product_id,
        name: product.name,
        price: product.price,
        available: product.available,
    })
}
