//! The payment service: joins the customer and inventory verdicts of each order in KV
//! `payment-join` and charges through a simulated gateway once both passed.
//!
//! verdict → fold it into the join by compare-and-set (pure `merge`) → decide (pure) →
//! charge (create-only ledger) → record the outcome → publish `payments.processed` /
//! `payments.failed` → ack. Either verdict may come first, any number of times.

pub mod codec;
pub mod gateway;
pub mod join;

use std::sync::Arc;

use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use oms_shared::bus::{self, HandleError, Handler};
use oms_shared::events::{PaymentProcessed, Rejection};
use oms_shared::runtime::{self, Bus};
use oms_shared::topology;
use oms_shared::{Config, Envelope, Event, Reason};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};
use uuid::Uuid;

use crate::join::{CustomerVerdict, Decision, InventoryVerdict, Join, Outcome, Verdict};

pub const SERVICE: &str = "payment";

/// Compare-and-set attempts before giving the message back for a later try.
const CAS_ATTEMPTS: usize = 50;

/// Runs the service until `shutdown`; `listener` serves its health endpoints.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let bus = Bus::start(&config, SERVICE, &shutdown).await?;
    let tasks = TaskTracker::new();
    tasks.spawn(runtime::serve_http(
        listener,
        runtime::health_routes(bus.clone()),
        shutdown.clone(),
    ));
    let joins = bus.key_value(topology::PAYMENT_JOIN, &shutdown).await;
    let ledger = bus.key_value(topology::PAYMENT_LEDGER, &shutdown).await;
    if let (Some(joins), Some(ledger)) = (joins, ledger) {
        let handler = Arc::new(Payments {
            joins,
            ledger,
            js: bus.js.clone(),
        });
        for spec in [topology::PAYMENT_CUSTOMERS, topology::PAYMENT_INVENTORY] {
            tasks.spawn(bus::consume(
                bus.js.clone(),
                spec,
                config.clone(),
                handler.clone(),
                shutdown.clone(),
            ));
        }
        info!("payment service started");
    }
    tasks.close();
    tasks.wait().await;
    Ok(())
}

struct Payments {
    joins: kv::Store,
    ledger: kv::Store,
    js: async_nats::jetstream::Context,
}

impl Handler for Payments {
    async fn handle(&self, envelope: Envelope) -> Result<(), HandleError> {
        let order_id = envelope.order_id;
        let verdict = match &envelope.event {
            Event::CustomerValidated(v) => Verdict::Customer(CustomerVerdict::Validated {
                credit_limit: v.credit_limit,
            }),
            Event::CustomerRejected(_) => Verdict::Customer(CustomerVerdict::Rejected),
            Event::InventoryReserved(_) => Verdict::Inventory(InventoryVerdict::Reserved),
            Event::InventoryRejected(_) => Verdict::Inventory(InventoryVerdict::Rejected),
            _ => return Ok(()), // not ours: the filters only send verdicts
        };
        let order = envelope.event.order();
        let state = self
            .update(order_id, |j| join::merge(j, verdict.clone(), order))
            .await?;
        let event = match join::decide(&state) {
            Decision::Wait | Decision::NoCharge => {
                debug!(?state, "nothing to charge (yet)");
                return Ok(());
            }
            Decision::Decline { detail } => {
                self.record(
                    order_id,
                    Outcome::Declined {
                        detail: detail.clone(),
                    },
                )
                .await?;
                Event::PaymentFailed(Rejection {
                    order: order.clone(),
                    reason: Reason::PaymentDeclined,
                    detail,
                })
            }
            Decision::Charge { amount } => {
                let charge = gateway::charge(&self.ledger, order_id, amount)
                    .await
                    .map_err(HandleError::transient)?;
                self.record(
                    order_id,
                    Outcome::Charged {
                        charge_id: charge.charge_id.clone(),
                        amount: charge.amount,
                    },
                )
                .await?;
                Event::PaymentProcessed(PaymentProcessed {
                    order: order.clone(),
                    amount: charge.amount,
                    charge_id: charge.charge_id,
                })
            }
        };
        bus::publish(&self.js, &Envelope::new(order_id, event)).await?;
        Ok(())
    }
}

impl Payments {
    /// Keeps the outcome beside the verdicts (the first outcome stands).
    async fn record(&self, order_id: Uuid, outcome: Outcome) -> Result<Join, HandleError> {
        self.update(order_id, |mut j| {
            j.outcome.get_or_insert_with(|| outcome.clone());
            j
        })
        .await
    }

    /// Applies `change` to the order's join by compare-and-set on the entry's revision,
    /// retrying when another writer got in first. Returns the state that was stored.
    async fn update(
        &self,
        order_id: Uuid,
        change: impl Fn(Join) -> Join,
    ) -> Result<Join, HandleError> {
        let key = order_id.to_string();
        for _ in 0..CAS_ATTEMPTS {
            let entry = self
                .joins
                .entry(&key)
                .await
                .map_err(HandleError::transient)?;
            match entry.filter(|e| e.operation == kv::Operation::Put) {
                Some(entry) => {
                    let current = codec::decode(&entry.value)
                        .map_err(|e| HandleError::Permanent(e.into()))?;
                    let next = change(current.clone());
                    if next == current {
                        return Ok(next);
                    }
                    match self
                        .joins
                        .update(&key, codec::encode(&next), entry.revision)
                        .await
                    {
                        Ok(_) => return Ok(next),
                        Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
                        Err(e) => return Err(HandleError::transient(e)),
                    }
                }
                None => {
                    let next = change(Join::default());
                    match self.joins.create(&key, codec::encode(&next)).await {
                        Ok(_) => return Ok(next),
                        Err(e) if e.kind() == CreateErrorKind::AlreadyExists => continue,
                        Err(e) => return Err(HandleError::transient(e)),
                    }
                }
            }
        }
        Err(HandleError::transient(anyhow::anyhow!(
            "join of {order_id} kept changing under us"
        )))
    }
}
