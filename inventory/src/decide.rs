//! The inventory decisions, as pure functions.

use std::collections::{BTreeMap, HashMap};

use oms_domain::{Item, OrderId, ProductId, Reason};

/// Quantities per product; a product listed twice adds up. Sorted, so that every writer
/// touches rows in the same order.
pub fn totals(items: &[Item]) -> BTreeMap<ProductId, i64> {
    let mut totals = BTreeMap::new();
    for item in items {
        *totals.entry(item.product_id.clone()).or_insert(0) += i64::from(item.quantity);
    }
    totals
}

/// All or nothing: every product must exist and have enough stock, else nothing is taken.
/// `stock` holds what is available per product that exists.
pub fn reserve(
    wanted: &BTreeMap<ProductId, i64>,
    stock: &HashMap<ProductId, i64>,
) -> Result<(), (Reason, String)> {
    if let Some(unknown) = wanted.keys().find(|p| !stock.contains_key(*p)) {
        return Err((
            Reason::UnknownProduct,
            format!("product {unknown} does not exist"),
        ));
    }
    for (product, quantity) in wanted {
        let available = stock[product];
        if available < *quantity {
            return Err((
                Reason::OutOfStock,
                format!("{quantity} of {product} wanted, {available} available"),
            ));
        }
    }
    Ok(())
}

/// What a reservation is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Reserved,
    Rejected,
    Released,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(s: &str) -> Option<Status> {
        s.parse().ok()
    }
}

/// What to do when an order is rejected, given its reservation so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRejected {
    /// Give the stock back and announce `inventory.released`.
    Release,
    /// The rejection came first: remember it so a late `orders.placed` reserves nothing.
    Cancel,
    /// Given back already: announce it again (the first announcement may have been lost in a
    /// crash; the server drops the copy if it was not).
    AnnounceAgain,
    /// Nothing was taken.
    Nothing,
}

pub fn on_rejected(current: Option<Status>) -> OnRejected {
    match current {
        Some(Status::Reserved) => OnRejected::Release,
        None => OnRejected::Cancel,
        Some(Status::Released) => OnRejected::AnnounceAgain,
        Some(Status::Rejected | Status::Cancelled) => OnRejected::Nothing,
    }
}

/// What one event of a batch asks of the stock, as the planner sees it.
#[derive(Debug, Clone, Copy)]
pub enum Ask<'a> {
    /// An order was placed: reserve its items.
    Reserve(OrderId, &'a [Item]),
    /// An order was rejected: give back what it holds.
    Release(OrderId),
}

/// What an ask answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Reserved,
    Rejected(Reason, String),
    Released,
    /// Nothing to announce (a rejection of an order that took nothing).
    Silent,
}

/// A reservation as the store keeps it: its status, why it was rejected, what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub status: Status,
    pub reason: Option<(Reason, String)>,
    pub items: BTreeMap<ProductId, i64>,
}

/// The effects of a batch: reservations to insert, orders whose stock goes back, the net
/// change of each product's stock, and one answer per ask.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub answers: Vec<Answer>,
    pub new: Vec<(OrderId, Held)>,
    pub released: Vec<OrderId>,
    pub delta: BTreeMap<ProductId, i64>,
}

/// Folds the asks of a batch, in order, over the stored reservations and stock, as if each
/// were applied alone after the ones before it. An ask for an order seen before repeats what
/// was decided then (redeliveries, and a rejection that came before its order).
pub fn plan(
    asks: &[Ask<'_>],
    mut held: HashMap<OrderId, Held>,
    mut stock: HashMap<ProductId, i64>,
) -> Plan {
    let mut plan = Plan::default();
    for ask in asks {
        let answer = match *ask {
            Ask::Reserve(order_id, items) => {
                let current = match held.get(&order_id) {
                    Some(h) => h.clone(),
                    None => {
                        let wanted = totals(items);
                        let new = match reserve(&wanted, &stock) {
                            Ok(()) => {
                                for (product, quantity) in &wanted {
                                    *stock.get_mut(product).expect("checked by reserve") -=
                                        quantity;
                                    *plan.delta.entry(product.clone()).or_default() -= quantity;
                                }
                                Held {
                                    status: Status::Reserved,
                                    reason: None,
                                    items: wanted,
                                }
                            }
                            Err(why) => Held {
                                status: Status::Rejected,
                                reason: Some(why),
                                items: BTreeMap::new(),
                            },
                        };
                        plan.new.push((order_id, new.clone()));
                        held.insert(order_id, new.clone());
                        new
                    }
                };
                match (current.status, current.reason) {
                    (Status::Reserved, _) => Answer::Reserved,
                    (Status::Rejected, Some((reason, detail))) => Answer::Rejected(reason, detail),
                    // Rejected before it was placed: reserve nothing, say nothing.
                    _ => Answer::Silent,
                }
            }
            Ask::Release(order_id) => {
                let current = held.get_mut(&order_id);
                match on_rejected(current.as_ref().map(|h| h.status)) {
                    OnRejected::Release => {
                        let h = current.expect("release implies a reservation");
                        for (product, quantity) in &h.items {
                            *stock.entry(product.clone()).or_default() += quantity;
                            *plan.delta.entry(product.clone()).or_default() += quantity;
                        }
                        h.status = Status::Released;
                        plan.released.push(order_id);
                        Answer::Released
                    }
                    OnRejected::AnnounceAgain => Answer::Released,
                    OnRejected::Cancel => {
                        let h = Held {
                            status: Status::Cancelled,
                            reason: None,
                            items: BTreeMap::new(),
                        };
                        plan.new.push((order_id, h.clone()));
                        held.insert(order_id, h);
                        Answer::Silent
                    }
                    OnRejected::Nothing => Answer::Silent,
                }
            }
        };
        plan.answers.push(answer);
    }
    plan.delta.retain(|_, d| *d != 0);
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(p: &str, q: u32) -> Item {
        Item {
            product_id: p.into(),
            quantity: q,
        }
    }

    fn stock() -> HashMap<ProductId, i64> {
        [("item1", 1000), ("item4", 5), ("item5", 0)]
            .into_iter()
            .map(|(p, n)| (p.into(), n))
            .collect()
    }

    #[test]
    fn repeated_products_add_up() {
        let t = totals(&[item("item4", 3), item("item1", 1), item("item4", 3)]);
        assert_eq!(t["item4"], 6);
        assert_eq!(reserve(&t, &stock()).unwrap_err().0, Reason::OutOfStock);
    }

    #[test]
    fn enough_stock_reserves() {
        let t = totals(&[item("item1", 2), item("item4", 5)]);
        assert_eq!(reserve(&t, &stock()), Ok(()));
    }

    #[test]
    fn unknown_product_wins_over_out_of_stock() {
        let t = totals(&[item("item5", 1), item("nope", 1)]);
        let (reason, detail) = reserve(&t, &stock()).unwrap_err();
        assert_eq!(reason, Reason::UnknownProduct);
        assert!(detail.contains("nope"));
    }

    #[test]
    fn empty_stock_is_out_of_stock() {
        let t = totals(&[item("item1", 1), item("item5", 1)]);
        assert_eq!(reserve(&t, &stock()).unwrap_err().0, Reason::OutOfStock);
    }

    #[test]
    fn rejection_releases_only_what_was_reserved() {
        assert_eq!(on_rejected(Some(Status::Reserved)), OnRejected::Release);
        assert_eq!(on_rejected(None), OnRejected::Cancel);
        assert_eq!(on_rejected(Some(Status::Rejected)), OnRejected::Nothing);
        assert_eq!(
            on_rejected(Some(Status::Released)),
            OnRejected::AnnounceAgain
        );
        assert_eq!(on_rejected(Some(Status::Cancelled)), OnRejected::Nothing);
    }

    fn id(n: u128) -> OrderId {
        OrderId::from_uuid(uuid::Uuid::from_u128(n))
    }

    #[test]
    fn a_batch_sees_the_stock_the_steps_before_it_left() {
        let two = [item("item4", 2)];
        let steps = [
            Ask::Reserve(id(1), &two),
            Ask::Reserve(id(2), &two),
            Ask::Reserve(id(3), &two), // only 1 of 5 left
            Ask::Release(id(1)),       // gives 2 back
            Ask::Reserve(id(4), &two),
        ];
        let p = plan(&steps, HashMap::new(), stock());
        assert_eq!(p.answers[0], Answer::Reserved);
        assert_eq!(p.answers[1], Answer::Reserved);
        assert!(matches!(
            p.answers[2],
            Answer::Rejected(Reason::OutOfStock, _)
        ));
        assert_eq!(p.answers[3], Answer::Released);
        assert_eq!(p.answers[4], Answer::Reserved);
        assert_eq!(p.delta["item4"], -4);
        assert_eq!(p.released, vec![id(1)]);
        assert_eq!(p.new.len(), 4);
    }

    #[test]
    fn a_rejection_first_cancels_and_a_repeat_changes_nothing() {
        let one = [item("item1", 1)];
        let steps = [
            Ask::Release(id(1)),
            Ask::Reserve(id(1), &one),
            Ask::Reserve(id(1), &one),
        ];
        let p = plan(&steps, HashMap::new(), stock());
        assert_eq!(
            p.answers,
            vec![Answer::Silent, Answer::Silent, Answer::Silent]
        );
        assert!(p.delta.is_empty());
        assert_eq!(p.new.len(), 1);
        assert_eq!(p.new[0].1.status, Status::Cancelled);
    }

    #[test]
    fn stored_reservations_are_repeated_not_redone() {
        let one = [item("item1", 1)];
        let held = HashMap::from([(
            id(1),
            Held {
                status: Status::Reserved,
                reason: None,
                items: totals(&one),
            },
        )]);
        let steps = [
            Ask::Reserve(id(1), &one),
            Ask::Release(id(1)),
            Ask::Release(id(1)),
        ];
        let p = plan(&steps, held, stock());
        assert_eq!(
            p.answers,
            vec![Answer::Reserved, Answer::Released, Answer::Released]
        );
        assert_eq!(p.delta["item1"], 1);
        assert!(p.new.is_empty());
        assert_eq!(p.released, vec![id(1)]);
    }
}
