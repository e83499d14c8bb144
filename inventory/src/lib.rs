//! The inventory service: reserves the stock of every placed order, all of it or none, and gives
//! it back when the order is rejected.
//!
//! `orders.placed` → read stock → decide (pure) → take stock and record the reservation in one
//! transaction → publish `inventory.reserved` / `inventory.rejected` → ack.
//! `orders.rejected` → release (or, if the rejection came first, cancel ahead) → publish
//! `inventory.released` → ack. Also answers `oms.api.products.get`.

pub mod decide;
pub mod store;

use oms_bus::api::ApiError;
use oms_bus::{self as bus, HandleError, Handler};
use oms_config::Config;
use oms_domain::api::{GetProduct, ProductView};
use oms_domain::events::{Rejection, Snapshot};
use oms_domain::{Envelope, Event};
use oms_host::Service;
use oms_store::{self as db, Script};
use oms_topology as topology;
use sqlx::AnyPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::decide::{Answer, Step, plan};

pub const SERVICE: &str = "inventory";

/// Runs the service until `shutdown`; `listener` serves its health endpoints.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut service = Service::start(SERVICE, &config, listener, &shutdown).await?;
    let pool = service
        .database(&config.inventory.database_url, &store::MIGRATIONS)
        .await?;
    let inventory = Inventory {
        pool: pool.clone(),
        js: service.bus().js.clone(),
        reserving: Default::default(),
    };
    service.consume(&[topology::INVENTORY_ORDERS], inventory);
    service
        .api(
            topology::api::INVENTORY_SERVICE,
            "Products and stock of the OMS",
        )
        .await?;
    service
        .endpoint(topology::api::PRODUCTS_GET, move |req: GetProduct| {
            let pool = pool.clone();
            async move { get_product(&pool, &req.product_id).await }
        })
        .await?;
    service.run().await
}

struct Inventory {
    pool: AnyPool,
    js: async_nats::jetstream::Context,
    /// Taken from reading the stock to committing its change. With batches overlapping
    /// (PostgreSQL), they still reserve one after the other, in the order they were fetched
    /// (the lock is fair), so stock goes to orders first come, first served, while one
    /// batch's publishing overlaps the next one's reserving. (Another instance's batch that
    /// interleaves is caught by the compare-and-set on the stock, and retried.)
    reserving: tokio::sync::Mutex<()>,
}

impl Handler for Inventory {
    fn in_flight(&self) -> usize {
        db::batches_at_once(&self.pool)
    }

    async fn handle_batch(&self, events: Vec<Envelope>) -> Vec<Result<(), HandleError>> {
        bus::whole_or_each(&events, |events| async move {
            let answers = self.apply_all(events).await?;
            Ok(bus::announce(&self.js, answers).await)
        })
        .await
    }
}

impl Inventory {
    /// Applies the batch in stream order in one transaction, each event seeing the stock the
    /// ones before it left; returns what to announce for each.
    async fn apply_all(&self, events: &[Envelope]) -> Result<Vec<Option<Envelope>>, HandleError> {
        let steps: Vec<Option<Step<'_>>> = events
            .iter()
            .map(|e| match &e.event {
                Event::OrderPlaced(order) => Some(Step::Placed(e.order_id, &order.items)),
                Event::OrderRejected(_) => Some(Step::Rejected(e.order_id)),
                _ => None, // not ours: the filter only sends placed and rejected orders
            })
            .collect();
        let mut orders: Vec<Uuid> = events.iter().map(|e| e.order_id).collect();
        orders.sort_unstable();
        orders.dedup();

        // Products the placed orders name; those the held reservations name are read with
        // the reservations.
        let mut products: Vec<&str> = events
            .iter()
            .filter_map(|e| match &e.event {
                Event::OrderPlaced(order) => Some(order.items.iter()),
                _ => None,
            })
            .flatten()
            .map(|i| i.product_id.as_str())
            .collect();
        products.sort_unstable();
        products.dedup();

        let _turn = self.reserving.lock().await;
        let mut tx = db::begin_write(&self.pool).await?;
        // Two scripts (see `db::Script`): what the batch finds, then what it writes.
        let mut script = Script::new(&tx);
        let reservations = store::reservations(&mut script, &orders);
        let ordered = store::stock(&mut script, &products);
        let found = script.run(&mut tx).await?;
        let (held, mut stock) = store::read_reservations(&reservations, &found)?;
        stock.extend(store::read_stock(&ordered, &found)?);
        let steps_in: Vec<Step<'_>> = steps.iter().flatten().copied().collect();
        let plan = plan(&steps_in, held, stock);
        let now = db::now_micros();
        let mut script = Script::new(&tx);
        let adjusted = store::adjust(&mut script, &plan.delta);
        store::insert(&mut script, &plan.new, now);
        store::mark_released(&mut script, &plan.released, now);
        let written = script.run(&mut tx).await?;
        if adjusted.affected(&written) != plan.delta.len() as u64 {
            return Err(HandleError::transient(anyhow::anyhow!(
                "stock changed while reserving; retrying"
            )));
        }
        tx.commit().await?;

        let mut answers = plan.answers.into_iter();
        Ok(events
            .iter()
            .zip(&steps)
            .map(|(envelope, step)| {
                step.as_ref()?;
                let order = envelope.event.order().clone();
                let event = match answers.next()? {
                    Answer::Reserved => Event::InventoryReserved(Snapshot { order }),
                    Answer::Rejected(reason, detail) => Event::InventoryRejected(Rejection {
                        order,
                        reason,
                        detail,
                    }),
                    Answer::Released => Event::InventoryReleased(Snapshot { order }),
                    Answer::Silent => return None,
                };
                Some(Envelope::new(envelope.order_id, event))
            })
            .collect())
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
