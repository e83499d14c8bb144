//! The order's life, as a pure function: which status an event moves it to.

use oms_domain::api::OrderStatus;
use oms_domain::{Event, Reason};

/// A status change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub status: OrderStatus,
    pub reason: Option<Reason>,
    pub detail: Option<String>,
}

/// PENDING → CONFIRMED on `payments.processed`; PENDING → REJECTED on any rejection or
/// `payments.failed`, keeping the first reason. A terminal status never changes again.
pub fn transition(current: OrderStatus, event: &Event) -> Option<Transition> {
    if current.is_terminal() {
        return None;
    }
    if let Some(rejection) = event.rejection() {
        if matches!(event, Event::OrderRejected(_)) {
            return None; // our own announcement coming back
        }
        return Some(Transition {
            status: OrderStatus::Rejected,
            reason: Some(rejection.reason),
            detail: Some(rejection.detail.clone()),
        });
    }
    match event {
        Event::PaymentProcessed(_) => Some(Transition {
            status: OrderStatus::Confirmed,
            reason: None,
            detail: None,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oms_domain::events::{PaymentProcessed, Rejection, Snapshot};
    use oms_domain::{Item, Money, OrderSnapshot};

    fn order() -> OrderSnapshot {
        OrderSnapshot {
            customer_id: "c".into(),
            items: vec![Item {
                product_id: "item1".into(),
                quantity: 1,
            }],
            total_amount: Money::from_cents(100),
            placed_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn rejected(reason: Reason) -> Event {
        Event::InventoryRejected(Rejection {
            order: order(),
            reason,
            detail: "d".into(),
        })
    }

    fn processed() -> Event {
        Event::PaymentProcessed(PaymentProcessed {
            order: order(),
            amount: Money::from_cents(100),
            charge_id: "ch".into(),
        })
    }

    #[test]
    fn placed_stays_pending() {
        assert_eq!(
            transition(OrderStatus::Pending, &Event::OrderPlaced(order())),
            None
        );
    }

    #[test]
    fn payment_confirms() {
        let t = transition(OrderStatus::Pending, &processed()).unwrap();
        assert_eq!(t.status, OrderStatus::Confirmed);
    }

    #[test]
    fn rejection_rejects_with_its_reason() {
        let t = transition(OrderStatus::Pending, &rejected(Reason::OutOfStock)).unwrap();
        assert_eq!(t.status, OrderStatus::Rejected);
        assert_eq!(t.reason, Some(Reason::OutOfStock));
    }

    #[test]
    fn statuses_never_go_back_and_the_first_reason_stays() {
        assert_eq!(
            transition(OrderStatus::Rejected, &rejected(Reason::CustomerBlocked)),
            None
        );
        assert_eq!(transition(OrderStatus::Rejected, &processed()), None);
        assert_eq!(
            transition(OrderStatus::Confirmed, &rejected(Reason::OutOfStock)),
            None
        );
        assert_eq!(
            transition(OrderStatus::Confirmed, &Event::OrderPlaced(order())),
            None
        );
    }

    #[test]
    fn own_announcements_change_nothing() {
        let confirmed = Event::OrderConfirmed(Snapshot { order: order() });
        assert_eq!(transition(OrderStatus::Pending, &confirmed), None);
    }
}
