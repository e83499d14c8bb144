//! The order's life, as pure functions: which status an event moves it to, what a batch
//! changes, and what is announced. The saga (placed, verdicts, payment) takes an order from
//! PENDING to CONFIRMED or REJECTED ([`plan`]); people's requests take it on from there
//! ([`Command`], [`lifecycle`]), along the graph of [`OrderStatus::may_become`]; its deadline
//! rejects it if it is still PENDING then ([`timed_out`]).

use std::collections::{HashMap, HashSet};

use oms_bus::Incoming;
use oms_domain::api::OrderStatus;
use oms_domain::events::{Cancellation, Nothing, PaymentProcessed, Rejection, Shipment, Snapshot};
use oms_domain::{Event, EventId, Money, OrderId, OrderSnapshot, PricedItem, Reason};

/// What order takes: every event that moves an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderEvent {
    Placed(OrderSnapshot),
    /// `customers.rejected`, `inventory.rejected` or `payments.failed`.
    Rejected(Rejection),
    Paid(PaymentProcessed),
}

impl OrderEvent {
    /// The order as it was placed; every event carries it.
    pub fn order(&self) -> &OrderSnapshot {
        match self {
            OrderEvent::Placed(order) => order,
            OrderEvent::Rejected(rejection) => &rejection.order,
            OrderEvent::Paid(payment) => &payment.order,
        }
    }
}

/// What the service knows of a stored order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: OrderStatus,
    pub reason: Option<Reason>,
    pub detail: Option<String>,
    pub tracking_number: Option<String>,
    /// Whether the event of the current status is on its stream.
    pub announced: bool,
}

impl Head {
    /// A new order's head.
    pub fn pending() -> Self {
        Head {
            status: OrderStatus::Pending,
            reason: None,
            detail: None,
            tracking_number: None,
            announced: false,
        }
    }
}

/// A status change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub status: OrderStatus,
    pub reason: Option<Reason>,
    pub detail: Option<String>,
}

/// PENDING → CONFIRMED on `payments.processed`; PENDING → REJECTED on any rejection or
/// `payments.failed`, keeping the first reason. Only a PENDING order moves: the saga has no
/// say over one confirmed, rejected or cancelled.
pub fn transition(current: OrderStatus, arrival: &OrderEvent) -> Option<Transition> {
    if current != OrderStatus::Pending {
        return None;
    }
    match arrival {
        OrderEvent::Placed(_) => None,
        OrderEvent::Rejected(rejection) => Some(Transition {
            status: OrderStatus::Rejected,
            reason: Some(rejection.reason),
            detail: Some(rejection.detail.clone()),
        }),
        OrderEvent::Paid(_) => Some(Transition {
            status: OrderStatus::Confirmed,
            reason: None,
            detail: None,
        }),
    }
}

/// What a batch changes: orders to create (id, snapshot, the event that created it), status
/// changes (order, change, the event that caused it), the prices of the orders it confirms
/// (the total charged, and the lines as inventory priced them), and every order's head
/// afterwards.
#[derive(Debug, Default)]
pub struct Plan {
    pub new: Vec<(OrderId, OrderSnapshot, EventId)>,
    pub changes: Vec<(OrderId, Transition, EventId)>,
    pub prices: Vec<(OrderId, Money, Vec<PricedItem>)>,
    pub heads: HashMap<OrderId, Head>,
}

/// Applies the `fresh` events of `batch` (those not applied before) in stream order to the
/// stored `heads`: an order seen for the first time is created from the snapshot its event
/// carries; each order changes at most once, since the first change is terminal.
pub fn plan(
    batch: &[Incoming<OrderEvent>],
    fresh: &HashSet<EventId>,
    mut heads: HashMap<OrderId, Head>,
) -> Plan {
    let mut plan = Plan::default();
    for incoming in batch.iter().filter(|e| fresh.contains(&e.event_id)) {
        let head = heads.entry(incoming.order_id).or_insert_with(|| {
            let order = incoming.event.order().clone();
            plan.new.push((incoming.order_id, order, incoming.event_id));
            Head::pending()
        });
        if let Some(t) = transition(head.status, &incoming.event) {
            (head.status, head.reason, head.detail) = (t.status, t.reason, t.detail.clone());
            plan.changes.push((incoming.order_id, t, incoming.event_id));
            if let OrderEvent::Paid(paid) = &incoming.event {
                let lines = paid.items.clone();
                plan.prices.push((incoming.order_id, paid.amount, lines));
            }
        }
    }
    plan.heads = heads;
    plan
}

/// Per event of `batch`, the final status to announce if its order has one not yet
/// announced: also after a crash between the commit and the publish, since a redelivery
/// finds it not yet announced. An order is announced once per batch, with its last event.
pub fn announcements(
    batch: &[Incoming<OrderEvent>],
    heads: &HashMap<OrderId, Head>,
) -> Vec<Option<Event>> {
    let last: HashMap<OrderId, usize> = batch
        .iter()
        .enumerate()
        .map(|(i, e)| (e.order_id, i))
        .collect();
    batch
        .iter()
        .enumerate()
        .map(|(i, incoming)| {
            let head = heads.get(&incoming.order_id)?;
            if last.get(&incoming.order_id) != Some(&i) || head.announced {
                return None;
            }
            let order = incoming.event.order().clone();
            match head.status {
                OrderStatus::Confirmed => Some(Event::OrderConfirmed(Snapshot { order })),
                // Rejected by the saga; a deadline's rejection is announced by the lifecycle.
                OrderStatus::Rejected if head.reason != Some(Reason::TimedOut) => {
                    Some(Event::OrderRejected(Rejection {
                        order,
                        reason: head.reason.unwrap_or(Reason::PaymentDeclined),
                        detail: head.detail.clone().unwrap_or_default(),
                    }))
                }
                _ => None,
            }
        })
        .collect()
}

/// What the lifecycle takes: requests people made through the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Cancel(Reason),
    Ship(String),
    Deliver,
}

impl Command {
    /// The status it would move an order to.
    pub fn target(&self) -> OrderStatus {
        match self {
            Command::Cancel(_) => OrderStatus::Cancelled,
            Command::Ship(_) => OrderStatus::Shipped,
            Command::Deliver => OrderStatus::Delivered,
        }
    }

    fn transition(&self) -> Transition {
        let reason = match self {
            Command::Cancel(reason) => Some(*reason),
            Command::Ship(_) | Command::Deliver => None,
        };
        Transition {
            status: self.target(),
            reason,
            detail: None,
        }
    }
}

/// What the lifecycle does with one command, given the order's head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Move the order from the status it is in (and then announce it).
    Move { from: OrderStatus, to: Transition },
    /// The order already is where the command would take it, but that is not on its stream
    /// yet (a crash between the commit and the publish): announce it.
    Announce,
    /// Not now: the order is not known yet, or its current status is not yet announced (the
    /// command waits and comes again, so events go out in the order statuses were reached).
    Later,
    /// Nothing to do: done before, or not a move the graph allows (the edge answered 409
    /// for what it could see; this is a race it could not).
    Nothing,
}

/// The lifecycle's decision for `command` on an order whose head is `head` (`None`: not
/// projected yet).
pub fn lifecycle(head: Option<&Head>, command: &Command) -> Step {
    let Some(head) = head else {
        return Step::Later;
    };
    let target = command.target();
    if head.status == target {
        return if head.announced {
            Step::Nothing
        } else {
            Step::Announce
        };
    }
    if !head.status.may_become(target) {
        return Step::Nothing;
    }
    // A PENDING order has nothing to announce; any other must be announced before it moves on.
    if head.status != OrderStatus::Pending && !head.announced {
        return Step::Later;
    }
    Step::Move {
        from: head.status,
        to: command.transition(),
    }
}

/// The event that says what `command` did to an order now in `head`.
pub fn lifecycle_event(command: &Command, head: &Head) -> Event {
    match command {
        Command::Cancel(_) => Event::OrderCancelled(Cancellation {
            reason: head.reason.unwrap_or(Reason::CancelledByOperator),
        }),
        Command::Ship(requested) => Event::OrderShipped(Shipment {
            tracking_number: head
                .tracking_number
                .clone()
                .unwrap_or_else(|| requested.clone()),
        }),
        Command::Deliver => Event::OrderDelivered(Nothing {}),
    }
}

/// The rejection of an order whose deadline came while it was PENDING.
pub fn timed_out() -> Transition {
    Transition {
        status: OrderStatus::Rejected,
        reason: Some(Reason::TimedOut),
        detail: Some("the order was still pending when its deadline came".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oms_domain::{Item, Money};

    fn order() -> OrderSnapshot {
        OrderSnapshot {
            customer_id: "c".into(),
            items: vec![Item {
                product_id: "item1".into(),
                quantity: 1,
            }],
            total_amount: Some(Money::from_cents(100)),
            placed_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn rejected(reason: Reason) -> OrderEvent {
        OrderEvent::Rejected(Rejection {
            order: order(),
            reason,
            detail: "d".into(),
        })
    }

    fn processed() -> OrderEvent {
        OrderEvent::Paid(PaymentProcessed {
            order: order(),
            amount: Money::from_cents(250),
            charge_id: "ch".into(),
            items: vec![PricedItem {
                product_id: "item1".into(),
                quantity: 1,
                unit_price: Money::from_cents(250),
                line_total: Money::from_cents(250),
            }],
        })
    }

    fn incoming(order_id: OrderId, event: OrderEvent) -> Incoming<OrderEvent> {
        Incoming {
            event_id: EventId::new(),
            order_id,
            event,
        }
    }

    #[test]
    fn placed_stays_pending() {
        let placed = OrderEvent::Placed(order());
        assert_eq!(transition(OrderStatus::Pending, &placed), None);
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
            transition(OrderStatus::Confirmed, &OrderEvent::Placed(order())),
            None
        );
    }

    #[test]
    fn a_batch_creates_an_order_once_moves_it_once_and_announces_it_with_its_last_event() {
        let (a, b) = (OrderId::new(), OrderId::new());
        let batch = [
            incoming(a, OrderEvent::Placed(order())),
            incoming(a, processed()),
            incoming(a, rejected(Reason::OutOfStock)), // too late: CONFIRMED stays
            incoming(b, rejected(Reason::CustomerBlocked)),
        ];
        let fresh: HashSet<EventId> = batch.iter().map(|e| e.event_id).collect();
        let plan = plan(&batch, &fresh, HashMap::new());
        let created: Vec<(OrderId, EventId)> = plan.new.iter().map(|(o, _, e)| (*o, *e)).collect();
        assert_eq!(
            created,
            vec![(a, batch[0].event_id), (b, batch[3].event_id)]
        );
        let changed: Vec<(OrderId, OrderStatus)> = plan
            .changes
            .iter()
            .map(|(o, t, _)| (*o, t.status))
            .collect();
        assert_eq!(
            changed,
            vec![(a, OrderStatus::Confirmed), (b, OrderStatus::Rejected)]
        );
        assert_eq!(plan.prices.len(), 1, "a's price, once");
        assert_eq!(
            (plan.prices[0].0, plan.prices[0].1),
            (a, Money::from_cents(250)),
            "the total charged, not the client's amount"
        );
        let said = announcements(&batch, &plan.heads);
        assert_eq!(
            said[..2],
            [None, None],
            "a is announced with its last event"
        );
        assert!(matches!(said[2], Some(Event::OrderConfirmed(_))));
        assert!(matches!(
            &said[3],
            Some(Event::OrderRejected(r)) if r.reason == Reason::CustomerBlocked
        ));
    }

    #[test]
    fn events_applied_before_change_nothing_and_an_announced_order_is_not_announced_again() {
        let a = OrderId::new();
        let batch = [incoming(a, processed())];
        let confirmed = Head {
            status: OrderStatus::Confirmed,
            announced: true,
            ..Head::pending()
        };
        let heads = HashMap::from([(a, confirmed)]);
        let plan = plan(&batch, &HashSet::new(), heads);
        assert!(plan.new.is_empty() && plan.changes.is_empty());
        assert_eq!(announcements(&batch, &plan.heads), vec![None]);
    }

    fn head(status: OrderStatus, announced: bool) -> Head {
        Head {
            status,
            announced,
            ..Head::pending()
        }
    }

    #[test]
    fn the_lifecycle_moves_forward_along_the_graph_once() {
        use OrderStatus::*;
        let cancel = Command::Cancel(Reason::CancelledByCustomer);
        let ship = Command::Ship("1Z".into());
        let moved = |h: Head, c: &Command| match lifecycle(Some(&h), c) {
            Step::Move { from, to } => Some((from, to.status, to.reason)),
            _ => None,
        };
        assert_eq!(
            moved(head(Pending, false), &cancel),
            Some((Pending, Cancelled, Some(Reason::CancelledByCustomer)))
        );
        assert_eq!(
            moved(head(Confirmed, true), &cancel),
            Some((Confirmed, Cancelled, Some(Reason::CancelledByCustomer)))
        );
        assert_eq!(
            moved(head(Confirmed, true), &ship),
            Some((Confirmed, Shipped, None))
        );
        assert_eq!(
            moved(head(Shipped, true), &Command::Deliver),
            Some((Shipped, Delivered, None))
        );
        // Not along the graph: nothing, whatever comes.
        for (status, command) in [
            (Shipped, &cancel),
            (Delivered, &cancel),
            (Rejected, &cancel),
            (Pending, &ship),
            (Cancelled, &ship),
            (Confirmed, &Command::Deliver),
        ] {
            assert_eq!(
                lifecycle(Some(&head(status, true)), command),
                Step::Nothing,
                "{status:?} {command:?}"
            );
        }
    }

    #[test]
    fn a_move_waits_for_the_order_and_its_announcement_and_a_lost_one_is_made_again() {
        let cancel = Command::Cancel(Reason::CancelledByOperator);
        assert_eq!(lifecycle(None, &cancel), Step::Later, "not projected yet");
        assert_eq!(
            lifecycle(Some(&head(OrderStatus::Confirmed, false)), &cancel),
            Step::Later,
            "orders.confirmed not out yet"
        );
        assert_eq!(
            lifecycle(Some(&head(OrderStatus::Cancelled, false)), &cancel),
            Step::Announce,
            "cancelled, but the crash came before orders.cancelled"
        );
        assert_eq!(
            lifecycle(Some(&head(OrderStatus::Cancelled, true)), &cancel),
            Step::Nothing
        );
    }

    #[test]
    fn a_timed_out_order_is_announced_by_the_lifecycle_not_the_saga() {
        let a = OrderId::new();
        let timed_out = Head {
            reason: Some(Reason::TimedOut),
            ..head(OrderStatus::Rejected, false)
        };
        let heads = HashMap::from([(a, timed_out.clone())]);
        // A late charge: the saga says nothing (payment refunds it on orders.rejected).
        assert_eq!(
            announcements(&[incoming(a, processed())], &heads),
            vec![None]
        );
    }
}
