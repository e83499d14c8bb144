//! The customer check, as a pure function.

use oms_domain::{CustomerId, Money, OrderSnapshot, Reason};

/// A customer as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub customer_id: CustomerId,
    pub name: String,
    pub blocked: bool,
    pub credit_limit: Money,
}

/// The answer to "may this customer order?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Validated { credit_limit: Money },
    Rejected { reason: Reason, detail: String },
}

/// Unknown → CUSTOMER_UNKNOWN; blocked → CUSTOMER_BLOCKED; else validated with the credit limit
/// (payment, not this check, compares the amount with it).
pub fn decide(customer: Option<&Customer>, order: &OrderSnapshot) -> Verdict {
    match customer {
        None => Verdict::Rejected {
            reason: Reason::CustomerUnknown,
            detail: format!("customer {} does not exist", order.customer_id),
        },
        Some(c) if c.blocked => Verdict::Rejected {
            reason: Reason::CustomerBlocked,
            detail: format!("customer {} is blocked", c.customer_id),
        },
        Some(c) => Verdict::Validated {
            credit_limit: c.credit_limit,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oms_domain::Item;

    fn order(customer: &str) -> OrderSnapshot {
        OrderSnapshot {
            customer_id: customer.into(),
            items: vec![Item {
                product_id: "item1".into(),
                quantity: 1,
            }],
            total_amount: Some(Money::from_cents(100)),
            placed_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn customer(blocked: bool) -> Customer {
        Customer {
            customer_id: "c".into(),
            name: "C".into(),
            blocked,
            credit_limit: Money::from_cents(5_000),
        }
    }

    #[test]
    fn unknown_customer_is_rejected() {
        let v = decide(None, &order("nobody"));
        assert!(matches!(
            v,
            Verdict::Rejected {
                reason: Reason::CustomerUnknown,
                ..
            }
        ));
    }

    #[test]
    fn blocked_customer_is_rejected() {
        let v = decide(Some(&customer(true)), &order("c"));
        assert!(matches!(
            v,
            Verdict::Rejected {
                reason: Reason::CustomerBlocked,
                ..
            }
        ));
    }

    #[test]
    fn active_customer_is_validated_with_its_limit() {
        let v = decide(Some(&customer(false)), &order("c"));
        assert_eq!(
            v,
            Verdict::Validated {
                credit_limit: Money::from_cents(5_000)
            }
        );
    }
}
