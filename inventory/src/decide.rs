//! The inventory decisions, as pure functions.

use std::collections::{BTreeMap, HashMap};

use oms_domain::{Item, Money, OrderId, OrderSnapshot, PricedItem, ProductId, Reason};

/// A product as the planner sees it: how many are available, and what one costs now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shelf {
    pub available: i64,
    pub price: Money,
}

/// The products involved in a batch, by id.
pub type Stock = HashMap<ProductId, Shelf>;

/// What a reservation took of one product, at the price it had then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    pub quantity: i64,
    pub unit_price: Money,
}

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
pub fn reserve(wanted: &BTreeMap<ProductId, i64>, stock: &Stock) -> Result<(), (Reason, String)> {
    if let Some(unknown) = wanted.keys().find(|p| !stock.contains_key(*p)) {
        return Err((
            Reason::UnknownProduct,
            format!("product {unknown} does not exist"),
        ));
    }
    for (product, quantity) in wanted {
        let available = stock[product].available;
        if available < *quantity {
            return Err((
                Reason::OutOfStock,
                format!("{quantity} of {product} wanted, {available} available"),
            ));
        }
    }
    Ok(())
}

/// The order's lines, in its order, at `unit_price` each, and their sum; `None` if they add up
/// beyond any amount (a price nobody could pay).
pub fn price(
    items: &[Item],
    unit_price: impl Fn(&ProductId) -> Money,
) -> Option<(Vec<PricedItem>, Money)> {
    let mut total = Money::ZERO;
    let mut lines = Vec::with_capacity(items.len());
    for item in items {
        let unit = unit_price(&item.product_id);
        let line_total = unit.times(item.quantity)?;
        total = total.checked_add(line_total)?;
        lines.push(PricedItem {
            product_id: item.product_id.clone(),
            quantity: item.quantity,
            unit_price: unit,
            line_total,
        });
    }
    Some((lines, total))
}

/// The order priced at today's prices (every product exists in `stock`): its lines and total,
/// or why it cannot be reserved at that price.
fn priced_now(order: &OrderSnapshot, stock: &Stock) -> Result<(Vec<PricedItem>, Money), String> {
    let (lines, total) = price(&order.items, |p| stock[p].price)
        .ok_or_else(|| "the items' prices add up beyond any amount".to_string())?;
    match order.total_amount {
        Some(expected) if expected != total => Err(format!(
            "the order says it costs {expected}; at today's prices its items cost {total}"
        )),
        _ => Ok((lines, total)),
    }
}

/// A new reservation of `order`, all of it or none, at today's prices: takes the stock from
/// `stock` and records the change in `delta`.
fn reserve_now(
    order: &OrderSnapshot,
    stock: &mut Stock,
    delta: &mut BTreeMap<ProductId, i64>,
) -> Held {
    let wanted = totals(&order.items);
    let checked = reserve(&wanted, stock)
        .and_then(|()| priced_now(order, stock).map_err(|why| (Reason::PriceMismatch, why)));
    if let Err(why) = checked {
        return Held::nothing(Status::Rejected, Some(why));
    }
    let mut items = BTreeMap::new();
    for (product, quantity) in wanted {
        let shelf = stock.get_mut(&product).expect("checked by reserve");
        shelf.available -= quantity;
        *delta.entry(product.clone()).or_default() -= quantity;
        items.insert(
            product,
            Taken {
                quantity,
                unit_price: shelf.price,
            },
        );
    }
    Held {
        status: Status::Reserved,
        reason: None,
        items,
    }
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
    /// An order was placed: price it and reserve its items.
    Reserve(OrderId, &'a OrderSnapshot),
    /// An order ended unfulfilled (rejected, cancelled): give back what it holds.
    Release(OrderId),
}

/// What an ask answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Reserved, and priced: the lines and their sum.
    Reserved(Vec<PricedItem>, Money),
    Rejected(Reason, String),
    /// Given back: what went back.
    Released(Vec<Item>),
    /// Nothing to announce (a rejection of an order that took nothing).
    Silent,
}

/// A reservation as the store keeps it: its status, why it was rejected, what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub status: Status,
    pub reason: Option<(Reason, String)>,
    pub items: BTreeMap<ProductId, Taken>,
}

impl Held {
    /// What it holds, as lines.
    fn items(&self) -> Vec<Item> {
        self.items
            .iter()
            .map(|(product, taken)| Item {
                product_id: product.clone(),
                quantity: u32::try_from(taken.quantity).unwrap_or(u32::MAX),
            })
            .collect()
    }

    fn nothing(status: Status, reason: Option<(Reason, String)>) -> Self {
        Held {
            status,
            reason,
            items: BTreeMap::new(),
        }
    }
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
pub fn plan(asks: &[Ask<'_>], mut held: HashMap<OrderId, Held>, mut stock: Stock) -> Plan {
    let mut plan = Plan::default();
    for ask in asks {
        let answer = match *ask {
            Ask::Reserve(order_id, order) => {
                let current = match held.get(&order_id) {
                    Some(h) => h.clone(),
                    None => {
                        let new = reserve_now(order, &mut stock, &mut plan.delta);
                        plan.new.push((order_id, new.clone()));
                        held.insert(order_id, new.clone());
                        new
                    }
                };
                match (current.status, current.reason) {
                    // At the prices it was reserved at, whatever they are now.
                    (Status::Reserved, _) => {
                        let taken = |p: &ProductId| {
                            current.items.get(p).map_or(Money::ZERO, |t| t.unit_price)
                        };
                        match price(&order.items, taken) {
                            Some((lines, total)) => Answer::Reserved(lines, total),
                            None => Answer::Rejected(
                                Reason::PriceMismatch,
                                "the items' prices add up beyond any amount".into(),
                            ),
                        }
                    }
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
                        for (product, taken) in &h.items {
                            if let Some(shelf) = stock.get_mut(product) {
                                shelf.available += taken.quantity;
                            }
                            *plan.delta.entry(product.clone()).or_default() += taken.quantity;
                        }
                        h.status = Status::Released;
                        plan.released.push(order_id);
                        Answer::Released(h.items())
                    }
                    OnRejected::AnnounceAgain => {
                        Answer::Released(current.map(|h| h.items()).unwrap_or_default())
                    }
                    OnRejected::Cancel => {
                        let h = Held::nothing(Status::Cancelled, None);
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

    /// item1 costs 1299.99, item4 25.00, item5 5.00.
    fn stock() -> Stock {
        [
            ("item1", 1000, 129_999),
            ("item4", 5, 2_500),
            ("item5", 0, 500),
        ]
        .into_iter()
        .map(|(p, available, cents)| {
            let price = Money::from_cents(cents);
            (p.into(), Shelf { available, price })
        })
        .collect()
    }

    fn order(items: &[Item], amount: Option<i64>) -> OrderSnapshot {
        OrderSnapshot {
            customer_id: "c".into(),
            items: items.to_vec(),
            total_amount: amount.map(Money::from_cents),
            placed_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn reserved(answer: &Answer) -> Money {
        match answer {
            Answer::Reserved(_, total) => *total,
            other => panic!("not reserved: {other:?}"),
        }
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
    fn lines_are_priced_in_the_orders_order_and_add_up() {
        let o = order(&[item("item4", 2), item("item1", 1)], None);
        let p = plan(&[Ask::Reserve(id(1), &o)], HashMap::new(), stock());
        let Answer::Reserved(lines, total) = &p.answers[0] else {
            panic!("{:?}", p.answers[0]);
        };
        let shown: Vec<(&str, u32, i64, i64)> = lines
            .iter()
            .map(|l| {
                let (unit, line) = (l.unit_price.cents(), l.line_total.cents());
                (l.product_id.as_str(), l.quantity, unit, line)
            })
            .collect();
        assert_eq!(
            shown,
            [("item4", 2, 2_500, 5_000), ("item1", 1, 129_999, 129_999)]
        );
        assert_eq!(*total, Money::from_cents(134_999));
        assert_eq!(
            p.new[0].1.items["item4"].unit_price,
            Money::from_cents(2_500)
        );
    }

    #[test]
    fn the_clients_amount_must_be_the_priced_total() {
        let items = [item("item4", 2)];
        let exact = order(&items, Some(5_000));
        let off = order(&items, Some(4_999));
        let p = plan(
            &[Ask::Reserve(id(1), &exact), Ask::Reserve(id(2), &off)],
            HashMap::new(),
            stock(),
        );
        assert_eq!(reserved(&p.answers[0]), Money::from_cents(5_000));
        assert_eq!(
            p.answers[1],
            Answer::Rejected(
                Reason::PriceMismatch,
                "the order says it costs 49.99; at today's prices its items cost 50.00".into()
            )
        );
        assert_eq!(p.delta["item4"], -2, "the mismatched order took nothing");
        assert!(p.new[1].1.items.is_empty());
    }

    #[test]
    fn a_stored_reservation_keeps_the_prices_it_was_reserved_at() {
        let o = order(&[item("item4", 2)], None);
        let first = plan(&[Ask::Reserve(id(1), &o)], HashMap::new(), stock());
        let held: HashMap<OrderId, Held> = first.new.into_iter().collect();
        let mut dearer = stock();
        dearer.get_mut("item4").unwrap().price = Money::from_cents(9_900);
        let again = plan(&[Ask::Reserve(id(1), &o)], held, dearer);
        assert_eq!(again.answers, first.answers, "the same lines and total");
        assert_eq!(reserved(&again.answers[0]), Money::from_cents(5_000));
    }

    #[test]
    fn prices_beyond_any_amount_are_refused_not_wrapped() {
        let items = [item("item1", 1000)];
        let huge = |_: &ProductId| Money::from_cents(i64::MAX / 10);
        assert_eq!(price(&items, huge), None);
        let mut stock = stock();
        stock.get_mut("item1").unwrap().price = Money::from_cents(i64::MAX / 10);
        let p = plan(
            &[Ask::Reserve(id(1), &order(&items, None))],
            HashMap::new(),
            stock,
        );
        assert!(matches!(
            p.answers[0],
            Answer::Rejected(Reason::PriceMismatch, _)
        ));
        assert!(p.delta.is_empty());
    }

    #[test]
    fn a_batch_sees_the_stock_the_steps_before_it_left() {
        let two = order(&[item("item4", 2)], None);
        let steps = [
            Ask::Reserve(id(1), &two),
            Ask::Reserve(id(2), &two),
            Ask::Reserve(id(3), &two), // only 1 of 5 left
            Ask::Release(id(1)),       // gives 2 back
            Ask::Reserve(id(4), &two),
        ];
        let p = plan(&steps, HashMap::new(), stock());
        reserved(&p.answers[0]);
        reserved(&p.answers[1]);
        assert!(matches!(
            p.answers[2],
            Answer::Rejected(Reason::OutOfStock, _)
        ));
        assert_eq!(p.answers[3], Answer::Released(vec![item("item4", 2)]));
        reserved(&p.answers[4]);
        assert_eq!(p.delta["item4"], -4);
        assert_eq!(p.released, vec![id(1)]);
        assert_eq!(p.new.len(), 4);
    }

    #[test]
    fn a_rejection_first_cancels_and_a_repeat_changes_nothing() {
        let one = order(&[item("item1", 1)], None);
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
        let one = order(&[item("item1", 1)], None);
        let taken = Taken {
            quantity: 1,
            unit_price: Money::from_cents(100),
        };
        let held = HashMap::from([(
            id(1),
            Held {
                status: Status::Reserved,
                reason: None,
                items: BTreeMap::from([("item1".into(), taken)]),
            },
        )]);
        let steps = [
            Ask::Reserve(id(1), &one),
            Ask::Release(id(1)),
            Ask::Release(id(1)),
        ];
        let p = plan(&steps, held, stock());
        assert_eq!(reserved(&p.answers[0]), Money::from_cents(100));
        let back = Answer::Released(vec![item("item1", 1)]);
        assert_eq!(p.answers[1..], [back.clone(), back]);
        assert_eq!(p.delta["item1"], 1);
        assert!(p.new.is_empty());
        assert_eq!(p.released, vec![id(1)]);
    }
}
