//! The customer service: validates the customer of every placed order.
//!
//! `orders.placed` → look up the customer → decide (pure) → keep the verdict → publish
//! `customers.validated` or `customers.rejected` → ack. Also answers `oms.api.customers.get`.

pub mod decide;
pub mod store;

use std::collections::HashMap;

use oms_bus::api::ApiError;
use oms_bus::{self as bus, HandleError, Handler};
use oms_config::Config;
use oms_domain::api::{CustomerView, GetCustomer};
use oms_domain::events::{CustomerValidated, Rejection};
use oms_domain::{Envelope, Event, OrderSnapshot};
use oms_host::Service;
use oms_store::{self as db, Script};
use oms_topology as topology;
use sqlx::AnyPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::decide::{Verdict, decide};

pub const SERVICE: &str = "customer";

/// Runs the service until `shutdown`; `listener` serves its health endpoints.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut service = Service::start(SERVICE, &config, listener, &shutdown).await?;
    let pool = service
        .database(&config.customer.database_url, &store::MIGRATIONS)
        .await?;
    let js = service.bus().js.clone();
    service.consume(
        &[topology::CUSTOMER],
        Customers {
            pool: pool.clone(),
            js,
        },
    );
    service
        .api(topology::api::CUSTOMERS_SERVICE, "Customers of the OMS")
        .await?;
    service
        .endpoint(topology::api::CUSTOMERS_GET, move |req: GetCustomer| {
            let pool = pool.clone();
            async move { get_customer(&pool, &req.customer_id).await }
        })
        .await?;
    service.run().await
}

struct Customers {
    pool: AnyPool,
    js: async_nats::jetstream::Context,
}

impl Handler for Customers {
    fn in_flight(&self) -> usize {
        db::batches_at_once(&self.pool)
    }

    async fn handle_batch(&self, events: Vec<Envelope>) -> Vec<Result<(), HandleError>> {
        bus::whole_or_each(&events, |events| async move {
            let answers = self.decide_all(events).await?;
            Ok(bus::announce(&self.js, answers).await)
        })
        .await
    }
}

impl Customers {
    /// Decides every placed order of the batch and keeps the verdicts; returns the answer to
    /// publish for each event. An order decided before gets the decision it got then.
    ///
    /// No transaction is needed: customers are only read, and the verdicts go in with one
    /// insert-if-absent statement, which is atomic by itself. So the usual batch is two
    /// statements; only redeliveries read the verdicts kept before.
    async fn decide_all(&self, events: &[Envelope]) -> Result<Vec<Option<Envelope>>, HandleError> {
        let placed: Vec<(Uuid, &OrderSnapshot)> = events
            .iter()
            .filter_map(|e| match &e.event {
                Event::OrderPlaced(order) => Some((e.order_id, order)),
                _ => None, // not ours: the filter only sends orders.placed
            })
            .collect();
        let mut ids: Vec<&str> = placed.iter().map(|(_, o)| o.customer_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut conn = self.pool.acquire().await?;
        let customers = store::customers(&mut conn, &ids).await?;
        let mut kept: HashMap<Uuid, Verdict> = HashMap::with_capacity(placed.len());
        for (order_id, order) in &placed {
            kept.entry(*order_id)
                .or_insert_with(|| decide(customers.get(&order.customer_id), order));
        }
        let decided: Vec<(Uuid, Verdict)> = kept.iter().map(|(id, v)| (*id, v.clone())).collect();
        let mut script = Script::new(&conn);
        let kept_now = store::keep_verdicts(&mut script, &decided, db::now_micros());
        if kept_now.affected(&script.run(&mut conn).await?) < decided.len() as u64 {
            // Some were decided before (a redelivery, or another instance): those verdicts
            // stand. The count does not say which, and what is kept now is right for all.
            let all: Vec<Uuid> = kept.keys().copied().collect();
            kept.extend(store::verdicts(&mut conn, &all).await?);
        }
        events
            .iter()
            .map(|envelope| {
                let Event::OrderPlaced(order) = &envelope.event else {
                    return Ok(None);
                };
                let order = order.clone();
                let kept = kept.get(&envelope.order_id).ok_or_else(|| {
                    HandleError::transient(anyhow::anyhow!(
                        "no verdict kept for {}",
                        envelope.order_id
                    ))
                })?;
                let event = match kept.clone() {
                    Verdict::Validated { credit_limit } => {
                        Event::CustomerValidated(CustomerValidated {
                            order,
                            credit_limit,
                        })
                    }
                    Verdict::Rejected { reason, detail } => Event::CustomerRejected(Rejection {
                        order,
                        reason,
                        detail,
                    }),
                };
                Ok(Some(Envelope::new(envelope.order_id, event)))
            })
            .collect()
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
