//! The inventory decisions, as pure functions.

use std::collections::{BTreeMap, HashMap};

use oms_shared::{Item, Reason};

/// Quantities per product; a product listed twice adds up. Sorted, so that every writer
/// touches rows in the same order.
pub fn totals(items: &[Item]) -> BTreeMap<String, i64> {
    let mut totals = BTreeMap::new();
    for item in items {
        *totals.entry(item.product_id.clone()).or_insert(0) += i64::from(item.quantity);
    }
    totals
}

/// All or nothing: every product must exist and have enough stock, else nothing is taken.
/// `stock` holds what is available per product that exists.
pub fn reserve(
    wanted: &BTreeMap<String, i64>,
    stock: &HashMap<String, i64>,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Reserved,
    Rejected,
    Released,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Reserved => "RESERVED",
            Status::Rejected => "REJECTED",
            Status::Released => "RELEASED",
            Status::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::Reserved,
            Status::Rejected,
            Status::Released,
            Status::Cancelled,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn item(p: &str, q: u32) -> Item {
        Item {
            product_id: p.into(),
            quantity: q,
        }
    }

    fn stock() -> HashMap<String, i64> {
        [("item1", 1000), ("item4", 5), ("item5", 0)]
            .into_iter()
            .map(|(p, n)| (p.to_string(), n))
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
}
