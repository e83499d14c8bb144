//! The money and stock invariants of every order, checked from what the system recorded: the
//! order's events (ORDERS, INVENTORY) and the payment ledger (KV `payment-ledger`).
//!
//! For every order, once it has settled (its last event older than `settle`):
//! - charged − refunded is its priced total when it is CONFIRMED, SHIPPED or DELIVERED, and 0
//!   when it is REJECTED or CANCELLED; nothing is refunded that was not charged;
//! - the stock it reserved is released exactly when it is REJECTED or CANCELLED;
//! - it is not PENDING past its deadline.
//!
//! Reading is the observer's part: [`read`] walks each stream once by direct gets (no consumer,
//! nothing changed on the server); [`check`] is pure.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use oms_bus::direct;
use oms_domain::api::OrderStatus;
use oms_domain::ledger::{Entry, Refund};
use oms_domain::{Envelope, Event, Money, OrderId};
use oms_topology as topology;
use time::OffsetDateTime;

/// What the records say of one order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub placed_at: Option<OffsetDateTime>,
    /// The status its own events reached (the furthest along the graph).
    pub status: Option<OrderStatus>,
    /// The priced total, from its reservation.
    pub total: Option<Money>,
    pub reserved: bool,
    pub released: bool,
    pub charged: Option<Money>,
    pub refunded: Option<Money>,
    /// When the last of its events happened.
    pub last: Option<OffsetDateTime>,
}

impl Facts {
    fn saw(&mut self, at: OffsetDateTime) {
        self.last = Some(self.last.map_or(at, |last| last.max(at)));
    }

    fn moved(&mut self, status: OrderStatus) {
        let rank = |s: OrderStatus| match s {
            OrderStatus::Pending => 0,
            OrderStatus::Confirmed | OrderStatus::Rejected => 1,
            OrderStatus::Shipped | OrderStatus::Cancelled => 2,
            OrderStatus::Delivered => 3,
        };
        if self.status.is_none_or(|now| rank(status) > rank(now)) {
            self.status = Some(status);
        }
    }

    /// Applies one event of the order.
    pub fn apply(&mut self, envelope: &Envelope) {
        self.saw(envelope.occurred_at);
        match &envelope.event {
            Event::OrderPlaced(o) => {
                self.placed_at = Some(o.placed_at);
                self.moved(OrderStatus::Pending);
            }
            Event::OrderConfirmed(_) => self.moved(OrderStatus::Confirmed),
            Event::OrderRejected(_) => self.moved(OrderStatus::Rejected),
            Event::OrderCancelled(_) => self.moved(OrderStatus::Cancelled),
            Event::OrderShipped(_) => self.moved(OrderStatus::Shipped),
            Event::OrderDelivered(_) => self.moved(OrderStatus::Delivered),
            Event::InventoryReserved(p) => {
                self.reserved = true;
                self.total = Some(p.total_amount);
            }
            Event::InventoryReleased(_) => self.released = true,
            _ => {}
        }
    }
}

/// One order that breaks an invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub order_id: OrderId,
    pub problem: String,
}

/// What an audit found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub orders: usize,
    pub by_status: BTreeMap<&'static str, usize>,
    /// Orders whose last event is too recent to judge (a refund or release may be on its way).
    pub unsettled: usize,
    pub findings: Vec<Finding>,
}

/// Checks every order's facts as of `now`.
pub fn check(
    orders: &HashMap<OrderId, Facts>,
    now: OffsetDateTime,
    settle: Duration,
    deadline: Duration,
) -> Report {
    let mut report = Report {
        orders: orders.len(),
        ..Report::default()
    };
    let mut ids: Vec<&OrderId> = orders.keys().collect();
    ids.sort();
    for id in ids {
        let facts = &orders[id];
        let mut problem = |text: String| {
            report.findings.push(Finding {
                order_id: *id,
                problem: text,
            })
        };
        let Some(status) = facts.status else {
            problem("has events but was never placed".into());
            continue;
        };
        *report.by_status.entry(status.as_str()).or_default() += 1;
        let settled = facts.last.is_none_or(|last| now - last >= settle);
        if status == OrderStatus::Pending {
            let overdue = facts
                .placed_at
                .is_some_and(|placed| now - placed >= deadline + settle);
            if overdue {
                problem(format!(
                    "still PENDING more than {deadline:?} after it was placed"
                ));
            }
            continue;
        }
        if !settled {
            report.unsettled += 1;
            continue;
        }
        let fulfilled = matches!(
            status,
            OrderStatus::Confirmed | OrderStatus::Shipped | OrderStatus::Delivered
        );
        let cents = |m: Option<Money>| m.map_or(0, Money::cents);
        let kept = Money::from_cents(cents(facts.charged) - cents(facts.refunded));
        let expected = match (fulfilled, facts.total) {
            (false, _) => Some(Money::ZERO),
            (true, total) => total,
        };
        match expected {
            Some(expected) if kept != expected => problem(format!(
                "{}: charged {}, refunded {}, so keeps {kept}; it should keep {expected}",
                status.as_str(),
                cents_text(facts.charged),
                cents_text(facts.refunded),
            )),
            None => problem(format!("{} but never priced", status.as_str())),
            _ => {}
        }
        if facts.refunded.is_some() && facts.charged.is_none() {
            problem("refunded without a charge".into());
        }
        let ended = !fulfilled;
        if facts.reserved && ended && !facts.released {
            problem(format!("{} but its stock is still held", status.as_str()));
        }
        if facts.released && !ended {
            problem(format!("{} but its stock was released", status.as_str()));
        }
    }
    report
}

fn cents_text(money: Option<Money>) -> String {
    money.map_or_else(|| "nothing".into(), |m| m.to_string())
}

/// Reads every order's facts: the events of ORDERS and INVENTORY, and the ledger.
pub async fn read(js: &jetstream::Context) -> anyhow::Result<HashMap<OrderId, Facts>> {
    let mut orders: HashMap<OrderId, Facts> = HashMap::new();
    for stream in [topology::ORDERS, topology::INVENTORY] {
        let stored = direct::read_all(&js.client(), stream, None)
            .await
            .with_context(|| format!("reading stream {stream}"))?;
        for message in stored {
            // What does not decode was parked in the DLQ by the services: not part of any order.
            if let Ok(envelope) = Envelope::decode(&message.payload) {
                orders
                    .entry(envelope.order_id)
                    .or_default()
                    .apply(&envelope);
            }
        }
    }
    for (order_id, money) in ledger(js).await? {
        let facts = orders.entry(order_id).or_default();
        facts.charged = money.charged;
        facts.refunded = money.refunded;
    }
    Ok(orders)
}

/// What the payment ledger holds of one order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    pub charged: Option<Money>,
    pub refunded: Option<Money>,
    /// It ended before any charge, and none may come.
    pub voided: bool,
}

impl Ledger {
    /// Charged less refunded.
    pub fn kept(&self) -> Money {
        let cents = |m: Option<Money>| m.map_or(0, |m| m.cents());
        Money::from_cents(cents(self.charged) - cents(self.refunded))
    }
}

/// Every order the payment ledger (KV `payment-ledger`) knows, read from its stream.
pub async fn ledger(js: &jetstream::Context) -> anyhow::Result<HashMap<OrderId, Ledger>> {
    let stream = format!("KV_{}", topology::PAYMENT_LEDGER);
    let prefix = format!("$KV.{}.", topology::PAYMENT_LEDGER);
    let stored = direct::read_all(&js.client(), &stream, None)
        .await
        .with_context(|| format!("reading stream {stream}"))?;
    // A key's latest revision is the last in the stream.
    let mut latest: HashMap<String, bytes::Bytes> = HashMap::new();
    for message in stored {
        if let Some(key) = message.subject.strip_prefix(&prefix) {
            latest.insert(key.to_string(), message.payload);
        }
    }
    let mut ledger: HashMap<OrderId, Ledger> = HashMap::new();
    for (key, value) in latest {
        if value.is_empty() {
            continue; // a deleted key
        }
        let (order, refund) = match key.strip_suffix(".refund") {
            Some(order) => (order, true),
            None => (key.as_str(), false),
        };
        let Ok(order_id) = order.parse::<OrderId>() else {
            continue;
        };
        let money = ledger.entry(order_id).or_default();
        if refund {
            let refund: Refund = serde_json::from_slice(&value)
                .with_context(|| format!("the ledger's {key} is not a refund"))?;
            money.refunded = Some(refund.amount);
        } else {
            match Entry::read(&value)
                .with_context(|| format!("the ledger's {key} is not a charge or a void"))?
            {
                Entry::Charged(charge) => money.charged = Some(charge.amount),
                Entry::Voided(_) => money.voided = true,
            }
        }
    }
    Ok(ledger)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn at(minutes: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::minutes(minutes)
    }

    fn facts(status: OrderStatus, charged: Option<i64>, refunded: Option<i64>) -> Facts {
        Facts {
            placed_at: Some(at(0)),
            status: Some(status),
            total: Some(Money::from_cents(100)),
            reserved: true,
            released: matches!(status, OrderStatus::Rejected | OrderStatus::Cancelled),
            charged: charged.map(Money::from_cents),
            refunded: refunded.map(Money::from_cents),
            last: Some(at(1)),
        }
    }

    fn problems(f: Facts) -> Vec<String> {
        let orders = HashMap::from([(OrderId::new(), f)]);
        check(&orders, at(10), MINUTE, MINUTE)
            .findings
            .into_iter()
            .map(|f| f.problem)
            .collect()
    }

    #[test]
    fn orders_that_keep_what_they_should_pass() {
        use OrderStatus::*;
        for f in [
            facts(Confirmed, Some(100), None),
            facts(Shipped, Some(100), None),
            facts(Delivered, Some(100), None),
            facts(Cancelled, Some(100), Some(100)),
            facts(Cancelled, None, None),
            facts(Rejected, None, None),
            facts(Rejected, Some(100), Some(100)),
        ] {
            assert_eq!(problems(f.clone()), Vec::<String>::new(), "{f:?}");
        }
    }

    #[test]
    fn money_and_stock_out_of_line_are_found() {
        use OrderStatus::*;
        assert_eq!(
            problems(facts(Cancelled, Some(100), None)),
            ["CANCELLED: charged 1.00, refunded nothing, so keeps 1.00; it should keep 0.00"]
        );
        assert_eq!(
            problems(facts(Confirmed, Some(100), Some(100))),
            ["CONFIRMED: charged 1.00, refunded 1.00, so keeps 0.00; it should keep 1.00"]
        );
        assert_eq!(
            problems(facts(Rejected, None, Some(100))),
            [
                "REJECTED: charged nothing, refunded 1.00, so keeps -1.00; it should keep 0.00",
                "refunded without a charge"
            ]
        );
        let held = Facts {
            released: false,
            ..facts(Cancelled, None, None)
        };
        assert_eq!(problems(held), ["CANCELLED but its stock is still held"]);
        let freed = Facts {
            released: true,
            ..facts(Confirmed, Some(100), None)
        };
        assert_eq!(problems(freed), ["CONFIRMED but its stock was released"]);
    }

    #[test]
    fn recent_orders_wait_and_overdue_pending_ones_are_found() {
        let recent = Facts {
            last: Some(at(10)),
            ..facts(OrderStatus::Cancelled, Some(100), None)
        };
        let orders = HashMap::from([(OrderId::new(), recent)]);
        let report = check(&orders, at(10), MINUTE, MINUTE);
        assert_eq!((report.unsettled, report.findings.len()), (1, 0));
        assert_eq!(
            problems(facts(OrderStatus::Pending, None, None)),
            ["still PENDING more than 60s after it was placed"]
        );
    }
}
