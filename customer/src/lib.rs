//! The customer service: validates the customer of every placed order.
//!
//! takes `orders.placed` → loads the customers → decides (pure) → keeps the verdict, the first
//! one standing → publishes `customers.validated` or `customers.rejected` → ack. Stores
//! `customers` (read only here) and `verdicts`. Also answers `oms.api.customers.get`, and for
//! operators `oms.api.customers.create` and `oms.api.customers.block` (request/reply: the
//! change is one statement, done when the answer comes).

pub mod decide;
pub mod store;

use std::collections::HashMap;

use oms_bus::api::ApiError;
use oms_bus::{HandleError, Incoming, Input, Step};
use oms_config::Config;
use oms_domain::OrderId;
use oms_domain::api::{CustomerView, GetCustomer, NewCustomer, SetBlocked};
use oms_domain::events::{CustomerValidated, Rejection};
use oms_domain::{CustomerId, Event, EventKind, OrderSnapshot};
use oms_host::Service;
use oms_store::{self as db, Script};
use oms_topology as topology;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::decide::{Customer, Verdict, decide};

pub const SERVICE: &str = "customer";

/// Runs the service until `shutdown`; `listener` serves its health endpoints.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut service = Service::start(SERVICE, &config, listener, &shutdown).await?;
    let pool = service.database(&store::MIGRATIONS).await?;
    service.consume(&[topology::CUSTOMER], Customers { pool: pool.clone() })?;
    service
        .api(topology::api::CUSTOMERS_SERVICE, "Customers of the OMS")
        .await?;
    let read = pool.clone();
    service
        .endpoint(topology::api::CUSTOMERS_GET, move |req: GetCustomer| {
            let pool = read.clone();
            async move { get_customer(&pool, &req.customer_id).await }
        })
        .await?;
    let create = pool.clone();
    service
        .endpoint(topology::api::CUSTOMERS_CREATE, move |req: NewCustomer| {
            let pool = create.clone();
            async move {
                if !store::create(&pool, &req).await? {
                    return Err(ApiError::Conflict(format!(
                        "customer {} exists already",
                        req.customer_id
                    )));
                }
                get_customer(&pool, &req.customer_id).await
            }
        })
        .await?;
    service
        .endpoint(topology::api::CUSTOMERS_BLOCK, move |req: SetBlocked| {
            let pool = pool.clone();
            async move {
                if !store::set_blocked(&pool, &req.customer_id, req.blocked).await? {
                    return Err(not_found(&req.customer_id));
                }
                get_customer(&pool, &req.customer_id).await
            }
        })
        .await?;
    service.run().await
}

/// What customer takes: placed orders.
pub struct Placed(pub OrderSnapshot);

impl Input for Placed {
    const KINDS: &'static [EventKind] = &[EventKind::OrderPlaced];

    fn take(event: Event) -> Option<Self> {
        match event {
            Event::OrderPlaced(order) => Some(Placed(order)),
            _ => None,
        }
    }
}

struct Customers {
    pool: AnyPool,
}

/// No transaction is needed: customers are only read, and the verdicts go in with one
/// insert-if-absent statement, which is atomic by itself. So the usual batch is two
/// statements; only redeliveries read the verdicts kept before.
impl Step for Customers {
    type Input = Placed;
    type Work = PoolConnection<Any>;
    type Found = HashMap<CustomerId, Customer>;
    /// The verdict per order of the batch.
    type Plan = HashMap<OrderId, Verdict>;

    fn in_flight(&self) -> usize {
        db::batches_at_once(&self.pool)
    }

    async fn load(
        &self,
        batch: &[Incoming<Placed>],
    ) -> Result<(Self::Work, Self::Found), HandleError> {
        let mut ids: Vec<&CustomerId> = batch.iter().map(|p| &p.event.0.customer_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut conn = self.pool.acquire().await?;
        let customers = store::customers(&mut conn, &ids).await?;
        Ok((conn, customers))
    }

    fn decide(batch: &[Incoming<Placed>], customers: Self::Found) -> Self::Plan {
        let mut verdicts = HashMap::with_capacity(batch.len());
        for placed in batch {
            let order = &placed.event.0;
            verdicts
                .entry(placed.order_id)
                .or_insert_with(|| decide(customers.get(&order.customer_id), order));
        }
        verdicts
    }

    /// An order decided before (a redelivery, or another instance) keeps the verdict it got
    /// then.
    async fn persist(
        &self,
        mut conn: Self::Work,
        batch: &[Incoming<Placed>],
        mut verdicts: Self::Plan,
    ) -> Result<Vec<Option<Event>>, HandleError> {
        let decided: Vec<(OrderId, Verdict)> =
            verdicts.iter().map(|(id, v)| (*id, v.clone())).collect();
        let mut script = Script::new(&conn);
        let kept_now = store::keep_verdicts(&mut script, &decided, db::now_micros());
        if kept_now.affected(&script.run(&mut conn).await?) < decided.len() as u64 {
            // The count does not say which were kept before; what is kept now is right for all.
            let all: Vec<OrderId> = verdicts.keys().copied().collect();
            verdicts.extend(store::verdicts(&mut conn, &all).await?);
        }
        batch
            .iter()
            .map(|placed| {
                let kept = verdicts.get(&placed.order_id).ok_or_else(|| {
                    HandleError::transient(anyhow::anyhow!(
                        "no verdict kept for {}",
                        placed.order_id
                    ))
                })?;
                Ok(Some(announcement(placed.event.0.clone(), kept.clone())))
            })
            .collect()
    }
}

/// The event that tells payment and order what customer decided.
fn announcement(order: OrderSnapshot, verdict: Verdict) -> Event {
    match verdict {
        Verdict::Validated { credit_limit } => Event::CustomerValidated(CustomerValidated {
            order,
            credit_limit,
        }),
        Verdict::Rejected { reason, detail } => Event::CustomerRejected(Rejection {
            order,
            reason,
            detail,
        }),
    }
}

fn not_found(customer_id: &CustomerId) -> ApiError {
    ApiError::NotFound(format!("customer {customer_id} does not exist"))
}

async fn get_customer(pool: &AnyPool, customer_id: &CustomerId) -> Result<CustomerView, ApiError> {
    let customer = store::customer(pool, customer_id)
        .await?
        .ok_or_else(|| not_found(customer_id))?;
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
