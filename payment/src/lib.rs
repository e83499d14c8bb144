//! The payment service: joins the customer and inventory verdicts of each order in KV
//! `payment-join` and charges through a simulated gateway once both passed.
//!
//! takes `customers.validated|rejected` and `inventory.reserved|rejected` → loads the order's
//! join (or guesses it) → decides (pure `merge`, `decide`) → charges once both passed
//! (create-only ledger) and stores verdict and outcome in the join by compare-and-set (pure
//! `conclude`) → publishes `payments.processed` or `payments.failed` → ack. Stores KV
//! `payment-join` (bincode, `codec.rs`) and `payment-ledger` (`gateway.rs`).
//!
//! Also takes `orders.rejected` and `orders.cancelled` ([`Settle`]) → voids the order in the
//! ledger, or refunds its charge once → publishes `payments.refunded` if it refunded → ack.

pub mod codec;
pub mod gateway;
pub mod join;

use std::collections::HashMap;
use std::sync::Mutex;

use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use oms_bus::{HandleError, Incoming, Input, Step};
use oms_config::Config;
use oms_domain::OrderId;
use oms_domain::events::{PaymentProcessed, PaymentRefunded, Rejection};
use oms_domain::{Event, EventKind, OrderSnapshot, Reason};
use oms_host::Service;
use oms_topology as topology;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::join::{Arrival, CustomerVerdict, Decision, InventoryVerdict, Join, Settlement};

pub const SERVICE: &str = "payment";

/// Open sagas whose join state is remembered at most.
const REMEMBERED_JOINS: usize = 100_000;

/// Runs the service until `shutdown`; `listener` serves its health endpoints.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut service = Service::start(SERVICE, &config, listener, &shutdown).await?;
    // Counted from 0, so that rates are known before the first conflict.
    metrics::counter!(oms_bus::metrics::PAYMENT_KV_CONFLICTS, "service" => SERVICE).increment(0);
    let joins = service.bucket(topology::PAYMENT_JOIN).await;
    let ledger = service.bucket(topology::PAYMENT_LEDGER).await;
    if let (Some(joins), Some(ledger)) = (joins, ledger) {
        let payments_ledger = ledger.clone();
        let payments = Payments {
            joins,
            known: Mutex::default(),
            ledger,
        };
        let consumers = [topology::PAYMENT_CUSTOMERS, topology::PAYMENT_INVENTORY];
        service.consume(&consumers, payments)?;
        service.consume(
            &[topology::PAYMENT_ORDERS],
            Settle {
                ledger: payments_ledger,
            },
        )?;
    }
    service.run().await
}

/// What payment takes: the verdict of one check (customer or inventory) on one order.
pub struct Checked {
    pub arrival: Arrival,
    pub order: OrderSnapshot,
}

impl Input for Checked {
    const KINDS: &'static [EventKind] = &[
        EventKind::CustomerValidated,
        EventKind::CustomerRejected,
        EventKind::InventoryReserved,
        EventKind::InventoryRejected,
    ];

    fn take(event: Event) -> Option<Self> {
        let (arrival, order) = match event {
            Event::CustomerValidated(v) => (
                Arrival::Customer(CustomerVerdict::Validated {
                    credit_limit: v.credit_limit,
                }),
                v.order,
            ),
            Event::CustomerRejected(r) => (Arrival::Customer(CustomerVerdict::Rejected), r.order),
            Event::InventoryReserved(p) => (
                Arrival::Inventory(InventoryVerdict::Reserved {
                    items: p.items,
                    total: p.total_amount,
                }),
                p.order,
            ),
            Event::InventoryRejected(r) => {
                (Arrival::Inventory(InventoryVerdict::Rejected), r.order)
            }
            _ => return None,
        };
        Some(Checked { arrival, order })
    }
}

struct Payments {
    joins: kv::Store,
    /// Per open saga, the join state and revision this instance wrote last (`None`: read the
    /// bucket, someone else wrote since).
    known: Mutex<HashMap<OrderId, Option<(Join, u64)>>>,
    ledger: kv::Store,
}

/// Where the join entry was: its revision (`None`: no entry), and whether that is a guess.
struct At {
    revision: Option<u64>,
    guessed: bool,
}

/// The join as loaded, and as it is once the verdict is in.
struct Plan {
    loaded: Join,
    next: Join,
    decision: Decision,
}

/// Either verdict may come first, any number of times. A join is one order's: the events of
/// a batch go each on its own, their KV round trips and PubAcks overlapping.
impl Step for Payments {
    type Input = Checked;
    type Work = At;
    type Found = Join;
    type Plan = Plan;
    const EACH: bool = true;

    /// A guess instead of a read: the state and revision this instance wrote last while the
    /// saga is open, or else "no entry yet". So each step is one KV round trip (create, or
    /// update on the known revision); a wrong guess costs a lost compare-and-set and a read.
    async fn load(&self, batch: &[Incoming<Checked>]) -> Result<(At, Join), HandleError> {
        let order_id = one(batch).order_id;
        let known = self
            .known
            .lock()
            .expect("not poisoned")
            .get(&order_id)
            .cloned();
        match known {
            Some(Some((join, revision))) => Ok((
                At {
                    revision: Some(revision),
                    guessed: true,
                },
                join,
            )),
            None => Ok((
                At {
                    revision: None,
                    guessed: true,
                },
                Join::default(),
            )),
            Some(None) => self.read(order_id).await,
        }
    }

    fn decide(batch: &[Incoming<Checked>], loaded: Join) -> Plan {
        let verdict = &one(batch).event;
        let next = join::merge(loaded.clone(), verdict.arrival.clone(), &verdict.order);
        let decision = join::decide(&next);
        Plan {
            loaded,
            next,
            decision,
        }
    }

    /// Charges once both checks passed (the ledger gives a repeated charge the first one),
    /// then stores the verdict and the outcome together by compare-and-set. The outcome is
    /// deterministic, so a redelivery after a crash anywhere stores and announces the same.
    async fn persist(
        &self,
        at: At,
        batch: &[Incoming<Checked>],
        plan: Plan,
    ) -> Result<Vec<Option<Event>>, HandleError> {
        let order_id = one(batch).order_id;
        let outcome = match (&plan.next.outcome, plan.decision) {
            (Some(outcome), _) => Some(outcome.clone()),
            (None, Decision::Wait | Decision::NoCharge) => None,
            (None, Decision::Decline { detail }) => Some(Settlement::Declined { detail }),
            (None, Decision::Charge { amount }) => {
                let charge = gateway::charge(&self.ledger, order_id, amount)
                    .await
                    .map_err(HandleError::transient)?;
                // None: the order ended first (the ledger holds its void), and is not charged.
                charge.map(|charge| Settlement::Charged {
                    charge_id: charge.charge_id,
                    amount: charge.amount,
                })
            }
        };
        let next = match &outcome {
            Some(outcome) => join::conclude(plan.next, outcome),
            None => plan.next,
        };
        if next != plan.loaded {
            self.write(order_id, &next, at.revision).await?;
        } else if at.guessed {
            // Nothing to write if the guess is right: read the bucket and see.
            self.stale(order_id);
            return Err(HandleError::conflict("the guessed join may be out of date"));
        }
        let order = &one(batch).event.order;
        Ok(vec![outcome.map(|o| announcement(&next, order, &o))])
    }
}

/// The one event of a run of an `EACH` step.
fn one<I>(batch: &[Incoming<I>]) -> &Incoming<I> {
    batch
        .first()
        .expect("an EACH step runs one event at a time")
}

impl Payments {
    /// The order's join as the bucket has it, with its revision (`None`: no entry yet).
    async fn read(&self, order_id: OrderId) -> Result<(At, Join), HandleError> {
        let entry = self
            .joins
            .entry(order_id.to_string())
            .await
            .map_err(HandleError::transient)?;
        let (join, revision) = match entry.filter(|e| e.operation == kv::Operation::Put) {
            Some(entry) => (
                codec::decode(&entry.value).map_err(|e| HandleError::Permanent(e.into()))?,
                Some(entry.revision),
            ),
            None => (Join::default(), None),
        };
        let at = At {
            revision,
            guessed: false,
        };
        Ok((at, join))
    }

    /// Writes `join` if the entry is still at `revision` (`None`: if there is none yet).
    async fn write(
        &self,
        order_id: OrderId,
        join: &Join,
        revision: Option<u64>,
    ) -> Result<(), HandleError> {
        let key = order_id.to_string();
        let written = match revision {
            Some(revision) => match self.joins.update(&key, codec::encode(join), revision).await {
                Ok(revision) => Ok(revision),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Err(None),
                Err(e) => Err(Some(HandleError::transient(e))),
            },
            None => match self.joins.create(&key, codec::encode(join)).await {
                Ok(revision) => Ok(revision),
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Err(None),
                Err(e) => Err(Some(HandleError::transient(e))),
            },
        };
        match written {
            Ok(revision) => {
                self.remember(order_id, join, revision);
                Ok(())
            }
            Err(Some(e)) => Err(e),
            Err(None) => {
                self.stale(order_id);
                metrics::counter!(oms_bus::metrics::PAYMENT_KV_CONFLICTS, "service" => SERVICE)
                    .increment(1);
                Err(HandleError::conflict(format!(
                    "the join of {order_id} changed under us"
                )))
            }
        }
    }

    /// Someone else wrote the order's join: the next load reads it.
    fn stale(&self, order_id: OrderId) {
        self.known
            .lock()
            .expect("not poisoned")
            .insert(order_id, None);
    }

    /// Keeps what was written while the saga still needs it: not once the outcome is in, or
    /// when there is nothing to charge.
    fn remember(&self, order_id: OrderId, join: &Join, revision: u64) {
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
        known.insert(order_id, Some((join.clone(), revision)));
    }
}

/// The event that tells the order service what payment did (and, for a charge, the lines
/// charged for, as inventory priced them).
fn announcement(join: &Join, order: &OrderSnapshot, outcome: &Settlement) -> Event {
    match outcome {
        Settlement::Charged { charge_id, amount } => Event::PaymentProcessed(PaymentProcessed {
            order: order.clone(),
            amount: *amount,
            charge_id: charge_id.clone(),
            items: join.priced_items().to_vec(),
        }),
        Settlement::Declined { detail } => Event::PaymentFailed(Rejection {
            order: order.clone(),
            reason: Reason::PaymentDeclined,
            detail: detail.clone(),
        }),
    }
}

/// What settling takes: an order that ended without being fulfilled.
pub struct Ended;

impl Input for Ended {
    const KINDS: &'static [EventKind] = &[EventKind::OrderRejected, EventKind::OrderCancelled];

    fn take(event: Event) -> Option<Self> {
        match event {
            Event::OrderRejected(_) | Event::OrderCancelled(_) => Some(Ended),
            _ => None,
        }
    }
}

/// Settles orders that ended unfulfilled: no charge may come after (a void), or the charge that
/// came first is refunded once. The ledger's create-only entries decide, whatever the order of
/// arrival of the charge and the end.
struct Settle {
    ledger: kv::Store,
}

impl Step for Settle {
    type Input = Ended;
    type Work = ();
    type Found = ();
    type Plan = ();
    const EACH: bool = true;

    async fn load(&self, _: &[Incoming<Ended>]) -> Result<((), ()), HandleError> {
        Ok(((), ()))
    }

    fn decide(_: &[Incoming<Ended>], _: ()) {}

    async fn persist(
        &self,
        (): (),
        batch: &[Incoming<Ended>],
        (): (),
    ) -> Result<Vec<Option<Event>>, HandleError> {
        let order_id = one(batch).order_id;
        let refund = gateway::void_or_refund(&self.ledger, order_id)
            .await
            .map_err(HandleError::transient)?;
        Ok(vec![refund.map(|r| {
            Event::PaymentRefunded(PaymentRefunded {
                amount: r.amount,
                charge_id: r.charge_id,
                refund_id: r.refund_id,
            })
        })])
    }
}
