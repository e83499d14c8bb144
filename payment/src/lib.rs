//! The payment service: joins the customer and inventory verdicts of each order in KV
//! `payment-join` and charges through a simulated gateway once both passed.
//!
//! verdict → decide (pure `merge`, `decide`) → charge once both passed (create-only ledger) →
//! store verdict and outcome in the join by compare-and-set (pure `conclude`) ∥ publish
//! `payments.processed` / `payments.failed` → ack. Either verdict may come first, any number of times.

pub mod codec;
pub mod gateway;
pub mod join;

use std::collections::HashMap;
use std::sync::Mutex;

use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use oms_bus::{self as bus, HandleError, Handler};
use oms_config::Config;
use oms_domain::events::{PaymentProcessed, Rejection};
use oms_domain::{Envelope, Event, OrderSnapshot, Reason};
use oms_host::Service;
use oms_topology as topology;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::debug;
use uuid::Uuid;

use crate::join::{Arrival, CustomerVerdict, Decision, InventoryVerdict, Join, Settlement};

pub const SERVICE: &str = "payment";

/// Compare-and-set attempts before giving the message back for a later try.
const CAS_ATTEMPTS: usize = 50;
/// Open sagas whose join state is remembered at most.
const REMEMBERED_JOINS: usize = 100_000;

/// Runs the service until `shutdown`; `listener` serves its health endpoints.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let service = Service::start(SERVICE, &config, listener, &shutdown).await?;
    let joins = service.bucket(topology::PAYMENT_JOIN).await;
    let ledger = service.bucket(topology::PAYMENT_LEDGER).await;
    if let (Some(joins), Some(ledger)) = (joins, ledger) {
        let payments = Payments {
            joins,
            known: Mutex::default(),
            ledger,
            js: service.bus().js.clone(),
        };
        let consumers = [topology::PAYMENT_CUSTOMERS, topology::PAYMENT_INVENTORY];
        service.consume(&consumers, payments);
    }
    service.run().await
}

struct Payments {
    joins: kv::Store,
    /// The last join state and revision written by this instance, per open saga.
    known: Mutex<HashMap<Uuid, (Join, u64)>>,
    ledger: kv::Store,
    js: async_nats::jetstream::Context,
}

impl Handler for Payments {
    /// Joins are per order and updated by compare-and-set, so the events of a batch go
    /// concurrently: their KV round trips and PubAcks overlap instead of queueing.
    async fn handle_batch(&self, events: Vec<Envelope>) -> Vec<Result<(), HandleError>> {
        futures::future::join_all(events.into_iter().map(|e| self.handle(e))).await
    }
}

impl Payments {
    async fn handle(&self, envelope: Envelope) -> Result<(), HandleError> {
        let order_id = envelope.order_id;
        let verdict = match &envelope.event {
            Event::CustomerValidated(v) => Arrival::Customer(CustomerVerdict::Validated {
                credit_limit: v.credit_limit,
            }),
            Event::CustomerRejected(_) => Arrival::Customer(CustomerVerdict::Rejected),
            Event::InventoryReserved(_) => Arrival::Inventory(InventoryVerdict::Reserved),
            Event::InventoryRejected(_) => Arrival::Inventory(InventoryVerdict::Rejected),
            _ => return Ok(()), // not ours: the filters only send verdicts
        };
        let order = envelope.event.order();
        // When what this instance stored last plus this verdict completes the join, settle
        // first and store the verdict together with the outcome: one write instead of two.
        let guess = self
            .remembered(order_id)
            .map(|(join, _)| join)
            .unwrap_or_default();
        let outcome = match self
            .settle(order_id, &join::merge(guess, verdict.clone(), order))
            .await?
        {
            Some(outcome) => outcome,
            None => {
                // Still open as far as this instance knows: store the verdict, then settle
                // if the bucket held the other one after all.
                let state = self
                    .update(order_id, |j| join::merge(j, verdict.clone(), order))
                    .await?;
                match self.settle(order_id, &state).await? {
                    Some(outcome) => outcome,
                    None => {
                        debug!(?state, "nothing to charge (yet)");
                        return Ok(());
                    }
                }
            }
        };
        // Record and publish at once: the outcome is deterministic (a decline follows from
        // the verdicts, a charge is the ledger's one entry), so a redelivery after either one
        // failed records and publishes the very same thing again.
        let envelope = Envelope::new(order_id, announcement(order, &outcome));
        tokio::try_join!(
            self.update(order_id, |j| join::conclude(
                join::merge(j, verdict.clone(), order),
                &outcome
            )),
            async {
                bus::publish(&self.js, &envelope)
                    .await
                    .map_err(HandleError::from)
            }
        )?;
        Ok(())
    }

    /// The payment of a complete join: the outcome it has, or a decline, or the charge (the
    /// ledger gives the first charge again to a repeated call). `None` while a verdict is
    /// missing or when one of them was a rejection.
    async fn settle(&self, order_id: Uuid, join: &Join) -> Result<Option<Settlement>, HandleError> {
        if let Some(outcome) = &join.outcome {
            return Ok(Some(outcome.clone()));
        }
        Ok(match join::decide(join) {
            Decision::Wait | Decision::NoCharge => None,
            Decision::Decline { detail } => Some(Settlement::Declined { detail }),
            Decision::Charge { amount } => {
                let charge = gateway::charge(&self.ledger, order_id, amount)
                    .await
                    .map_err(HandleError::transient)?;
                Some(Settlement::Charged {
                    charge_id: charge.charge_id,
                    amount: charge.amount,
                })
            }
        })
    }

    /// Applies `change` to the order's join by compare-and-set on the entry's revision,
    /// retrying when another writer got in first. Returns the state that was stored.
    ///
    /// It starts from a guess instead of a read: the state and revision this instance wrote
    /// last while the saga is open, or else "no entry yet". So each step is one KV round trip
    /// (create, or update on the known revision) instead of a read and a write. A wrong guess
    /// only costs a failed compare-and-set and a read; a change that alters nothing is checked
    /// against what the bucket holds.
    async fn update(
        &self,
        order_id: Uuid,
        change: impl Fn(Join) -> Join,
    ) -> Result<Join, HandleError> {
        let key = order_id.to_string();
        let mut guess = Some(
            self.remembered(order_id)
                .map(|(join, revision)| (join, Some(revision)))
                .unwrap_or_default(),
        );
        for _ in 0..CAS_ATTEMPTS {
            let guessed = guess.is_some();
            let (current, revision) = match guess.take() {
                Some(g) => g,
                None => self.read(&key).await?,
            };
            let next = change(current.clone());
            if next == current {
                if guessed {
                    continue; // nothing to write, if the guess is right: read and see
                }
                return Ok(next);
            }
            let written = match revision {
                Some(revision) => match self
                    .joins
                    .update(&key, codec::encode(&next), revision)
                    .await
                {
                    Ok(revision) => Some(revision),
                    Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => None,
                    Err(e) => return Err(HandleError::transient(e)),
                },
                None => match self.joins.create(&key, codec::encode(&next)).await {
                    Ok(revision) => Some(revision),
                    Err(e) if e.kind() == CreateErrorKind::AlreadyExists => None,
                    Err(e) => return Err(HandleError::transient(e)),
                },
            };
            match written {
                Some(revision) => {
                    self.remember(order_id, &next, revision);
                    return Ok(next);
                }
                // Someone else wrote first: read what stands and apply the change to it.
                None => self.forget(order_id),
            }
        }
        Err(HandleError::transient(anyhow::anyhow!(
            "join of {order_id} kept changing under us"
        )))
    }

    /// The order's join as the bucket has it, with its revision (`None`: no entry yet).
    async fn read(&self, key: &str) -> Result<(Join, Option<u64>), HandleError> {
        let entry = self
            .joins
            .entry(key)
            .await
            .map_err(HandleError::transient)?;
        match entry.filter(|e| e.operation == kv::Operation::Put) {
            Some(entry) => Ok((
                codec::decode(&entry.value).map_err(|e| HandleError::Permanent(e.into()))?,
                Some(entry.revision),
            )),
            None => Ok((Join::default(), None)),
        }
    }

    fn remembered(&self, order_id: Uuid) -> Option<(Join, u64)> {
        self.known
            .lock()
            .expect("not poisoned")
            .get(&order_id)
            .cloned()
    }

    fn forget(&self, order_id: Uuid) {
        self.known.lock().expect("not poisoned").remove(&order_id);
    }

    /// Keeps what was written while the saga still needs it: not once the outcome is in, or
    /// when there is nothing to charge.
    fn remember(&self, order_id: Uuid, join: &Join, revision: u64) {
        let done = join.outcome.is_some() || join::decide(join) == Decision::NoCharge;
        let mut known = self.known.lock().expect("not poisoned");
        if done {
            known.remove(&order_id);
            return;
        }
        if known.len() >= REMEMBERED_JOINS {
            // Sagas that never finish here (their other verdict went to another instance):
            // start over rather than grow.
            known.clear();
        }
        known.insert(order_id, (join.clone(), revision));
    }
}

/// The event that tells the order service what payment did.
fn announcement(order: &OrderSnapshot, outcome: &Settlement) -> Event {
    match outcome {
        Settlement::Charged { charge_id, amount } => Event::PaymentProcessed(PaymentProcessed {
            order: order.clone(),
            amount: *amount,
            charge_id: charge_id.clone(),
        }),
        Settlement::Declined { detail } => Event::PaymentFailed(Rejection {
            order: order.clone(),
            reason: Reason::PaymentDeclined,
            detail: detail.clone(),
        }),
    }
}
