//! The payment decision, as pure functions: fold verdicts into the join state, then decide.

use oms_domain::{Money, OrderSnapshot, PricedItem};
use serde::{Deserialize, Serialize};

/// The customer check's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CustomerVerdict {
    Validated { credit_limit: Money },
    Rejected,
}

/// The stock check's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InventoryVerdict {
    /// Reserved and priced: the lines at inventory's prices, and their sum, which is charged.
    Reserved {
        items: Vec<PricedItem>,
        total: Money,
    },
    Rejected,
}

impl Join {
    /// The lines inventory priced, if it reserved the order.
    pub fn priced_items(&self) -> &[PricedItem] {
        match &self.inventory {
            Some(InventoryVerdict::Reserved { items, .. }) => items,
            _ => &[],
        }
    }
}

/// One verdict as it arrives from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    Customer(CustomerVerdict),
    Inventory(InventoryVerdict),
}

/// What payment did about the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Settlement {
    Charged { charge_id: String, amount: Money },
    Declined { detail: String },
}

/// Everything payment knows of one order, kept in KV `payment-join`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Join {
    pub order: Option<OrderSnapshot>,
    pub customer: Option<CustomerVerdict>,
    pub inventory: Option<InventoryVerdict>,
    pub outcome: Option<Settlement>,
}

/// Adds a verdict. The first verdict of each side stands: a redelivery changes nothing.
pub fn merge(mut join: Join, verdict: Arrival, order: &OrderSnapshot) -> Join {
    if join.order.is_none() {
        join.order = Some(order.clone());
    }
    match verdict {
        Arrival::Customer(v) => {
            join.customer.get_or_insert(v);
        }
        Arrival::Inventory(v) => {
            join.inventory.get_or_insert(v);
        }
    }
    join
}

/// Keeps the payment's outcome in a complete join whose checks both passed; the first
/// outcome stands.
pub fn conclude(mut join: Join, outcome: &Settlement) -> Join {
    if matches!(
        decide(&join),
        Decision::Charge { .. } | Decision::Decline { .. }
    ) {
        join.outcome.get_or_insert_with(|| outcome.clone());
    }
    join
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A verdict is still missing.
    Wait,
    /// A check failed: charge nothing; the order service rejects the order on that verdict.
    NoCharge,
    /// Both passed and the amount is within the credit limit.
    Charge { amount: Money },
    /// Both passed but the amount is above the credit limit (per order, not cumulative).
    Decline { detail: String },
}

pub fn decide(join: &Join) -> Decision {
    let (Some(customer), Some(inventory), Some(_)) = (&join.customer, &join.inventory, &join.order)
    else {
        return Decision::Wait;
    };
    match (customer, inventory) {
        (CustomerVerdict::Validated { credit_limit }, InventoryVerdict::Reserved { total, .. }) => {
            if total > credit_limit {
                Decision::Decline {
                    detail: format!("amount {total} is above the credit limit {credit_limit}"),
                }
            } else {
                Decision::Charge { amount: *total }
            }
        }
        _ => Decision::NoCharge,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oms_domain::Item;

    fn order(cents: i64) -> OrderSnapshot {
        OrderSnapshot {
            customer_id: "c".into(),
            items: vec![Item {
                product_id: "item1".into(),
                quantity: 1,
            }],
            total_amount: Some(Money::from_cents(cents)),
            placed_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    /// Reserved, priced at `cents` in all (the client's amount is not what is charged).
    fn reserved(cents: i64) -> Arrival {
        Arrival::Inventory(InventoryVerdict::Reserved {
            items: vec![PricedItem {
                product_id: "item1".into(),
                quantity: 1,
                unit_price: Money::from_cents(cents),
                line_total: Money::from_cents(cents),
            }],
            total: Money::from_cents(cents),
        })
    }

    fn validated(limit: i64) -> Arrival {
        Arrival::Customer(CustomerVerdict::Validated {
            credit_limit: Money::from_cents(limit),
        })
    }

    #[test]
    fn waits_for_both_verdicts_in_either_order() {
        let o = order(100);
        let a = merge(Join::default(), validated(1_000), &o);
        assert_eq!(decide(&a), Decision::Wait);
        let ab = merge(a, reserved(100), &o);
        let b = merge(Join::default(), reserved(100), &o);
        assert_eq!(decide(&b), Decision::Wait);
        let ba = merge(b, validated(1_000), &o);
        assert_eq!(ab, ba, "arrival order does not matter");
        assert_eq!(
            decide(&ab),
            Decision::Charge {
                amount: Money::from_cents(100)
            }
        );
    }

    #[test]
    fn redelivery_changes_nothing() {
        let o = order(100);
        let once = merge(Join::default(), validated(1_000), &o);
        let twice = merge(once.clone(), validated(5), &o);
        assert_eq!(once, twice, "the first verdict stands");
    }

    #[test]
    fn above_the_limit_is_declined_and_at_the_limit_is_charged() {
        // The client said 1.00 each time: the priced total is what counts.
        let o = order(100);
        let join = merge(
            merge(Join::default(), validated(10_000), &o),
            reserved(10_001),
            &o,
        );
        assert_eq!(
            decide(&join),
            Decision::Decline {
                detail: "amount 100.01 is above the credit limit 100.00".into()
            }
        );
        let join = merge(
            merge(Join::default(), validated(10_000), &o),
            reserved(10_000),
            &o,
        );
        assert_eq!(
            decide(&join),
            Decision::Charge {
                amount: Money::from_cents(10_000)
            }
        );
    }

    #[test]
    fn any_rejection_means_no_charge() {
        let o = order(100);
        for (c, i) in [
            (
                validated(1_000),
                Arrival::Inventory(InventoryVerdict::Rejected),
            ),
            (Arrival::Customer(CustomerVerdict::Rejected), reserved(100)),
            (
                Arrival::Customer(CustomerVerdict::Rejected),
                Arrival::Inventory(InventoryVerdict::Rejected),
            ),
        ] {
            let join = merge(merge(Join::default(), c, &o), i, &o);
            assert_eq!(decide(&join), Decision::NoCharge);
        }
    }

    #[test]
    fn an_outcome_is_kept_only_for_a_payable_join_and_the_first_stands() {
        let o = order(100);
        let charged = Settlement::Charged {
            charge_id: "ch_1".into(),
            amount: Money::from_cents(100),
        };
        let open = merge(Join::default(), validated(1_000), &o);
        assert_eq!(
            conclude(open.clone(), &charged),
            open,
            "a verdict is missing"
        );
        let rejected = merge(
            open.clone(),
            Arrival::Inventory(InventoryVerdict::Rejected),
            &o,
        );
        assert_eq!(conclude(rejected.clone(), &charged), rejected, "no charge");
        let complete = merge(open, reserved(100), &o);
        let concluded = conclude(complete, &charged);
        assert_eq!(concluded.outcome, Some(charged.clone()));
        let again = conclude(
            concluded.clone(),
            &Settlement::Charged {
                charge_id: "ch_2".into(),
                amount: Money::from_cents(100),
            },
        );
        assert_eq!(again, concluded, "the first outcome stands");
    }
}
