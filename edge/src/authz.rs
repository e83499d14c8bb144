//! What a caller may do, as pure functions over `(Caller, resource)`.
//!
//! | call | customer | operator |
//! |---|---|---|
//! | `POST /orders` | only with its own `customerId` (else 403) | for any customer |
//! | `GET /orders/{id}`, `…/history` | its own orders; another's is 404, as if it did not exist | any |
//! | `POST /orders/{id}/cancel` | its own orders; another's is 404 | any |
//! | `POST /orders/{id}/ship`, `…/deliver` | never (403) | any |
//! | `GET /orders` | its own: no `customerId` means its own, another's is 403 | any, filtered or not |
//! | `GET /customers/{id}` | its own record; another's is 403 (decided without looking) | any |
//! | `GET /products/{id}` | any | any |
//! | `POST /products`, `PATCH /products/{id}`, `POST /products/{id}/stock`, `POST /customers`, `POST /customers/{id}/block`, `…/unblock` | never (403) | any |
//! | `GET /orders/{id}/events` | its own orders; another's is 404 | any |
//! | `GET /events`, `GET /stats` (every order, the system's counters) | never (403) | yes |
//!
//! A 403 is given only where the answer follows from the request alone, so it reveals nothing;
//! whether an order id exists is only known after reading it, so another's order is a 404.

use crate::auth::{Caller, Role};

/// Why a call is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// 403 with this detail.
    Forbidden(&'static str),
    /// 404: the caller must not learn that the thing exists.
    Hidden,
}

/// May `caller` place an order for `customer_id`?
pub fn place_order(caller: &Caller, customer_id: &str) -> Result<(), Denied> {
    match caller.role {
        Role::Operator => Ok(()),
        Role::Customer if caller.sub == customer_id => Ok(()),
        Role::Customer => Err(Denied::Forbidden(
            "a customer places orders only for itself: customerId must be the token's sub",
        )),
    }
}

/// May `caller` read an order of `owner`?
pub fn read_order(caller: &Caller, owner: &str) -> Result<(), Denied> {
    match caller.role {
        Role::Operator => Ok(()),
        Role::Customer if caller.sub == owner => Ok(()),
        Role::Customer => Err(Denied::Hidden),
    }
}

/// May `caller` cancel an order of `owner`? Who may read it may cancel it.
pub fn cancel_order(caller: &Caller, owner: &str) -> Result<(), Denied> {
    read_order(caller, owner)
}

/// May `caller` ship and deliver orders? Operators only (the warehouse, the carrier).
pub fn fulfil_orders(caller: &Caller) -> Result<(), Denied> {
    match caller.role {
        Role::Operator => Ok(()),
        Role::Customer => Err(Denied::Forbidden(
            "only an operator ships and delivers orders",
        )),
    }
}

/// The `customerId` filter `GET /orders` runs with, given the one asked for.
pub fn list_orders(caller: &Caller, asked: Option<&str>) -> Result<Option<String>, Denied> {
    match (caller.role, asked) {
        (Role::Operator, asked) => Ok(asked.map(str::to_string)),
        (Role::Customer, None) => Ok(Some(caller.sub.clone())),
        (Role::Customer, Some(id)) if id == caller.sub => Ok(Some(caller.sub.clone())),
        (Role::Customer, Some(_)) => Err(Denied::Forbidden(
            "a customer lists only its own orders: leave customerId out or give the token's sub",
        )),
    }
}

/// May `caller` read the record of customer `id`?
pub fn read_customer(caller: &Caller, id: &str) -> Result<(), Denied> {
    match caller.role {
        Role::Operator => Ok(()),
        Role::Customer if caller.sub == id => Ok(()),
        Role::Customer => Err(Denied::Forbidden(
            "a customer reads only its own customer record",
        )),
    }
}

/// May `caller` change the catalog and the customers? Operators only.
pub fn manage_catalog(caller: &Caller) -> Result<(), Denied> {
    match caller.role {
        Role::Operator => Ok(()),
        Role::Customer => Err(Denied::Forbidden(
            "only an operator changes products and customers",
        )),
    }
}

/// May `caller` watch every order and the system's counters (the live board)? Operators only.
pub fn watch_all(caller: &Caller) -> Result<(), Denied> {
    match caller.role {
        Role::Operator => Ok(()),
        Role::Customer => Err(Denied::Forbidden(
            "only an operator watches every order; a customer follows its own at /orders/{id}/events",
        )),
    }
}

/// Products are readable by every authenticated caller.
pub fn read_product(_caller: &Caller) -> Result<(), Denied> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ada() -> Caller {
        Caller::customer("OMS-Cust-001")
    }

    fn ops() -> Caller {
        Caller::operator("ops")
    }

    const OWN: &str = "OMS-Cust-001";
    const OTHER: &str = "OMS-Cust-002";

    #[test]
    fn placing_orders() {
        assert_eq!(place_order(&ada(), OWN), Ok(()));
        assert!(matches!(
            place_order(&ada(), OTHER),
            Err(Denied::Forbidden(_))
        ));
        assert_eq!(place_order(&ops(), OWN), Ok(()));
        assert_eq!(place_order(&ops(), OTHER), Ok(()));
        // An operator whose name happens to be a customer id is still an operator, and a
        // customer is never one: the role decides, not the name.
        assert_eq!(place_order(&Caller::operator(OWN), OTHER), Ok(()));
    }

    #[test]
    fn reading_orders() {
        assert_eq!(read_order(&ada(), OWN), Ok(()));
        assert_eq!(read_order(&ada(), OTHER), Err(Denied::Hidden));
        assert_eq!(read_order(&ops(), OTHER), Ok(()));
    }

    #[test]
    fn cancelling_shipping_and_delivering() {
        assert_eq!(cancel_order(&ada(), OWN), Ok(()));
        assert_eq!(cancel_order(&ada(), OTHER), Err(Denied::Hidden));
        assert_eq!(cancel_order(&ops(), OTHER), Ok(()));
        assert!(matches!(fulfil_orders(&ada()), Err(Denied::Forbidden(_))));
        assert_eq!(fulfil_orders(&ops()), Ok(()));
    }

    #[test]
    fn listing_orders() {
        // caller, customerId asked for, filter run with (None: 403)
        type Row = (Caller, Option<&'static str>, Option<Option<&'static str>>);
        let table: [Row; 6] = [
            (ada(), None, Some(Some(OWN))),
            (ada(), Some(OWN), Some(Some(OWN))),
            (ada(), Some(OTHER), None),
            (ops(), None, Some(None)),
            (ops(), Some(OWN), Some(Some(OWN))),
            (ops(), Some(OTHER), Some(Some(OTHER))),
        ];
        for (caller, asked, expected) in table {
            let got = list_orders(&caller, asked);
            match expected {
                Some(filter) => {
                    assert_eq!(got, Ok(filter.map(str::to_string)), "{caller:?} {asked:?}")
                }
                None => assert!(
                    matches!(got, Err(Denied::Forbidden(_))),
                    "{caller:?} {asked:?}"
                ),
            }
        }
    }

    #[test]
    fn reading_customers_and_products() {
        assert_eq!(read_customer(&ada(), OWN), Ok(()));
        assert!(matches!(
            read_customer(&ada(), OTHER),
            Err(Denied::Forbidden(_))
        ));
        assert_eq!(read_customer(&ops(), OTHER), Ok(()));
        assert_eq!(read_product(&ada()), Ok(()));
        assert_eq!(read_product(&ops()), Ok(()));
        assert!(matches!(manage_catalog(&ada()), Err(Denied::Forbidden(_))));
        assert_eq!(manage_catalog(&ops()), Ok(()));
    }

    #[test]
    fn watching() {
        assert!(matches!(watch_all(&ada()), Err(Denied::Forbidden(_))));
        assert_eq!(watch_all(&ops()), Ok(()));
        // One order's events are read like the order.
        assert_eq!(read_order(&ada(), OTHER), Err(Denied::Hidden));
    }
}
