//! The customer service: validates the customer of every placed order.
//!
//! `orders.placed` → look up the customer → decide (pure) → keep the verdict → publish
//! `customers.validated` or `customers.rejected` → ack. Also answers `oms.api.customers.get`.

pub mod decide;
pub mod store;

use std::sync::Arc;

use async_nats::service::ServiceExt;
use oms_shared::api::{self, ApiError, CustomerView, GetCustomer};
use oms_shared::bus::{self, HandleError, Handler};
use oms_shared::events::{CustomerValidated, Rejection};
use oms_shared::runtime::{self, Bus};
use oms_shared::topology;
use oms_shared::{Config, Envelope, Event, db};
use sqlx::AnyPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::decide::{Verdict, decide};

pub const SERVICE: &str = "customer";

/// Runs the service until `shutdown`; `listener` serves its health endpoints.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let pool = db::connect(&config.database_url(SERVICE, &config.customer.database_url)).await?;
    db::migrate(&pool, &store::SQLITE, &store::POSTGRES).await?;
    let bus = Bus::start(&config, SERVICE, &shutdown).await?;
    let service = bus
        .client
        .service_builder()
        .description("Customers of the OMS")
        .start(topology::api::CUSTOMERS_SERVICE, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| anyhow::anyhow!("starting the service API: {e}"))?;
    let get = service
        .endpoint(topology::api::CUSTOMERS_GET)
        .await
        .map_err(|e| anyhow::anyhow!("adding endpoint: {e}"))?;

    let handler = Arc::new(Customers {
        pool: pool.clone(),
        js: bus.js.clone(),
    });
    let tasks = TaskTracker::new();
    tasks.spawn(bus::consume(
        bus.js.clone(),
        topology::CUSTOMER,
        config.clone(),
        handler,
        shutdown.clone(),
    ));
    let read_pool = pool.clone();
    tasks.spawn(api::serve(
        get,
        shutdown.clone(),
        move |req: GetCustomer| {
            let pool = read_pool.clone();
            async move { get_customer(&pool, &req.customer_id).await }
        },
    ));
    tasks.spawn(runtime::serve_http(
        listener,
        runtime::health_routes(bus.clone()),
        shutdown.clone(),
    ));
    info!("customer service started");
    tasks.close();
    tasks.wait().await;
    pool.close().await;
    Ok(())
}

struct Customers {
    pool: AnyPool,
    js: async_nats::jetstream::Context,
}

impl Handler for Customers {
    async fn handle(&self, envelope: Envelope) -> Result<(), HandleError> {
        let Event::OrderPlaced(order) = envelope.event else {
            return Ok(()); // not ours: the filter only sends orders.placed
        };
        let verdict = match store::verdict_of(&self.pool, envelope.order_id).await? {
            Some(kept) => kept,
            None => {
                let customer = store::customer(&self.pool, &order.customer_id).await?;
                let verdict = decide(customer.as_ref(), &order);
                store::keep_verdict(&self.pool, envelope.order_id, &verdict).await?
            }
        };
        let event = match verdict {
            Verdict::Validated { credit_limit } => Event::CustomerValidated(CustomerValidated {
                order,
                credit_limit,
            }),
            Verdict::Rejected { reason, detail } => Event::CustomerRejected(Rejection {
                order,
                reason,
                detail,
            }),
        };
        bus::publish(&self.js, &Envelope::new(envelope.order_id, event)).await?;
        Ok(())
    }
}

async fn get_customer(pool: &AnyPool, customer_id: &str) -> Result<CustomerView, ApiError> {
    let customer = store::customer(pool, customer_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("customer {customer_id} does not exist")))?;
    Ok(CustomerView {
        customer_id: customer.customer_id,
        name: customer.name,
        status: if customer.blocked {
            "BLOCKED"
        } else {
            "ACTIVE"
        }
        .into(),
        credit_limit: customer.credit_limit,
    })
}
