//! Reading and checking `POST /orders` bodies, as pure functions.
//!
//! Accepts the original system's body `{customerId, totalAmount, productIds}` and the richer
//! `{customerId, totalAmount, items:[{productId, quantity}]}`. `totalAmount` is optional:
//! inventory prices the order, and when the client gave an amount the order is rejected unless
//! the prices add up to it. The amount is read from its exact JSON text, so `2599.99` is
//! 259 999 cents and `2599.999` is refused, never rounded.

pub use oms_domain::ids::is_valid_id;
use oms_domain::money::MoneyError;
use oms_domain::{CustomerId, Item, Money};
use serde::Deserialize;
use serde_json::value::RawValue;
use warp::http::StatusCode;

use crate::problem::Problem;

pub const MAX_BODY: usize = 64 * 1024;
pub const MAX_LINES: usize = 100;
pub const MAX_QUANTITY: u64 = 1000;
pub const MAX_AMOUNT: Money = Money::from_cents(100_000_000);

/// A valid order request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceOrder {
    pub customer_id: CustomerId,
    /// What the client expects to pay, if it said.
    pub total_amount: Option<Money>,
    /// One line per product; repeated product ids are added up, first appearance first.
    pub items: Vec<Item>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBody<'a> {
    #[serde(borrow)]
    customer_id: Option<&'a RawValue>,
    #[serde(borrow)]
    total_amount: Option<&'a RawValue>,
    #[serde(borrow)]
    product_ids: Option<&'a RawValue>,
    #[serde(borrow)]
    items: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawItem<'a> {
    #[serde(borrow)]
    product_id: Option<&'a RawValue>,
    #[serde(borrow)]
    quantity: Option<&'a RawValue>,
}

/// Parses and checks a body: 400 if it is not JSON, 422 if it breaks a rule.
pub fn parse(body: &[u8]) -> Result<PlaceOrder, Problem> {
    let raw: RawBody = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => Problem::invalid(
            "the body must be a JSON object with customerId and productIds or items (and, if \
             you like, the totalAmount you expect)",
        ),
        _ => Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            format!("the body is not valid JSON: {e}"),
        ),
    })?;
    let customer_id = id("customerId", required("customerId", raw.customer_id)?)?;
    let total_amount = raw.total_amount.map(amount).transpose()?;
    let lines = match (raw.product_ids, raw.items) {
        (Some(_), Some(_)) => {
            return Err(Problem::invalid(
                "give either productIds or items, not both",
            ));
        }
        (None, None) => {
            return Err(Problem::invalid(
                "give the products to order as productIds or items",
            ));
        }
        (Some(ids), None) => {
            let ids: Vec<&RawValue> = list("productIds", ids)?;
            ids.into_iter()
                .enumerate()
                .map(|(i, v)| {
                    Ok(Item {
                        product_id: id(&format!("productIds[{i}]"), v)?,
                        quantity: 1,
                    })
                })
                .collect::<Result<Vec<_>, Problem>>()?
        }
        (None, Some(items)) => {
            let items: Vec<RawItem> = list("items", items)?;
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    let product = required(&format!("items[{i}].productId"), item.product_id)?;
                    let quantity = required(&format!("items[{i}].quantity"), item.quantity)?;
                    Ok(Item {
                        product_id: id(&format!("items[{i}].productId"), product)?,
                        quantity: quantity_of(&format!("items[{i}].quantity"), quantity)?,
                    })
                })
                .collect::<Result<Vec<_>, Problem>>()?
        }
    };
    Ok(PlaceOrder {
        customer_id,
        total_amount,
        items: add_up(lines),
    })
}

fn required<'a>(field: &str, value: Option<&'a RawValue>) -> Result<&'a RawValue, Problem> {
    value.ok_or_else(|| Problem::invalid(format!("{field} is required")))
}

/// An id: 1–64 characters of `A-Z a-z 0-9 . _ -`.
fn id<T: From<String>>(field: &str, value: &RawValue) -> Result<T, Problem> {
    let text: String = serde_json::from_str(value.get())
        .map_err(|_| Problem::invalid(format!("{field} must be a string")))?;
    if !is_valid_id(&text) {
        return Err(Problem::invalid(format!(
            "{field} must be 1 to 64 characters of letters, digits, '.', '_' or '-'"
        )));
    }
    Ok(text.into())
}

fn amount(value: &RawValue) -> Result<Money, Problem> {
    let text = value.get();
    let is_number = text.starts_with(|c: char| c == '-' || c.is_ascii_digit());
    if !is_number {
        return Err(Problem::invalid(
            "totalAmount must be a JSON number such as 2599.99 (not a string)",
        ));
    }
    let money = Money::parse_decimal(text).map_err(|e| match e {
        MoneyError::TooLarge => Problem::invalid("totalAmount must be at most 1000000.00"),
        e => Problem::invalid(format!("totalAmount {e}")),
    })?;
    if money <= Money::ZERO {
        return Err(Problem::invalid("totalAmount must be greater than 0"));
    }
    if money > MAX_AMOUNT {
        return Err(Problem::invalid("totalAmount must be at most 1000000.00"));
    }
    Ok(money)
}

fn list<'a, T: Deserialize<'a>>(field: &str, value: &'a RawValue) -> Result<Vec<T>, Problem> {
    let entries: Vec<T> = serde_json::from_str(value.get())
        .map_err(|_| Problem::invalid(format!("{field} must be a list of {}", describe(field))))?;
    if entries.is_empty() || entries.len() > MAX_LINES {
        return Err(Problem::invalid(format!(
            "{field} must have 1 to {MAX_LINES} entries"
        )));
    }
    Ok(entries)
}

fn describe(field: &str) -> &'static str {
    if field == "items" {
        "objects {productId, quantity}"
    } else {
        "product id strings"
    }
}

fn quantity_of(field: &str, value: &RawValue) -> Result<u32, Problem> {
    let quantity: u64 = serde_json::from_str(value.get()).map_err(|_| {
        Problem::invalid(format!(
            "{field} must be a whole number from 1 to {MAX_QUANTITY}"
        ))
    })?;
    if !(1..=MAX_QUANTITY).contains(&quantity) {
        return Err(Problem::invalid(format!(
            "{field} must be a whole number from 1 to {MAX_QUANTITY}"
        )));
    }
    Ok(quantity as u32)
}

/// Repeated product ids add up into one line, in order of first appearance.
fn add_up(lines: Vec<Item>) -> Vec<Item> {
    let mut out: Vec<Item> = Vec::with_capacity(lines.len());
    for line in lines {
        match out.iter_mut().find(|i| i.product_id == line.product_id) {
            Some(existing) => existing.quantity += line.quantity,
            None => out.push(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> PlaceOrder {
        parse(body.as_bytes()).unwrap_or_else(|p| panic!("{body}: {p:?}"))
    }

    fn err(body: &str) -> Problem {
        parse(body.as_bytes()).expect_err(body)
    }

    #[test]
    fn the_original_body_is_accepted_exactly() {
        let order = ok(
            r#"{"customerId":"OMS-Cust-001","totalAmount":2599.99,"productIds":["item1","item2"]}"#,
        );
        assert_eq!(order.customer_id, "OMS-Cust-001");
        assert_eq!(order.total_amount, Some(Money::from_cents(259_999)));
        assert_eq!(order.items.len(), 2);
        assert!(order.items.iter().all(|i| i.quantity == 1));
    }

    #[test]
    fn items_form_adds_up_repeated_products_and_ignores_unknown_fields() {
        let order = ok(
            r#"{"customerId":"c","totalAmount":10,"items":[{"productId":"a","quantity":2},{"productId":"b","quantity":1},{"productId":"a","quantity":3}],"note":"x"}"#,
        );
        assert_eq!(
            order.items,
            vec![
                Item {
                    product_id: "a".into(),
                    quantity: 5
                },
                Item {
                    product_id: "b".into(),
                    quantity: 1
                }
            ]
        );
    }

    #[test]
    fn not_json_is_400_and_rule_breaking_json_is_422() {
        assert_eq!(err("{nope").status, StatusCode::BAD_REQUEST);
        assert_eq!(err("").status, StatusCode::BAD_REQUEST);
        assert_eq!(err("[1,2]").status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(err("42").status, StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[test]
    fn amounts_are_checked_exactly() {
        let body =
            |a: &str| format!(r#"{{"customerId":"c","totalAmount":{a},"productIds":["p"]}}"#);
        for (amount, needle) in [
            ("0", "greater than 0"),
            ("-1", "greater than 0"),
            ("2599.999", "at most 2 decimal"),
            ("\"2599.99\"", "not a string"),
            ("1000000.01", "at most 1000000.00"),
            ("1e3", "plain decimal"),
            ("true", "JSON number"),
        ] {
            let p = err(&body(amount));
            assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{amount}");
            assert!(p.detail.contains(needle), "{amount}: {}", p.detail);
        }
        assert_eq!(ok(&body("1000000.00")).total_amount, Some(MAX_AMOUNT));
        assert_eq!(ok(&body("0.01")).total_amount, Some(Money::from_cents(1)));
        for without in [
            r#"{"customerId":"c","productIds":["p"]}"#,
            r#"{"customerId":"c","totalAmount":null,"productIds":["p"]}"#,
        ] {
            assert_eq!(ok(without).total_amount, None, "{without}");
        }
    }

    #[test]
    fn lines_and_ids_are_checked() {
        let cases = [
            (
                r#"{"customerId":"c","totalAmount":1}"#,
                "productIds or items",
            ),
            (
                r#"{"customerId":"c","totalAmount":1,"productIds":["a"],"items":[]}"#,
                "not both",
            ),
            (
                r#"{"customerId":"c","totalAmount":1,"productIds":[]}"#,
                "1 to 100",
            ),
            (
                r#"{"customerId":"c","totalAmount":1,"productIds":"a"}"#,
                "must be a list",
            ),
            (
                r#"{"customerId":"c","totalAmount":1,"items":[{"productId":"a","quantity":0}]}"#,
                "1 to 1000",
            ),
            (
                r#"{"customerId":"c","totalAmount":1,"items":[{"productId":"a","quantity":1001}]}"#,
                "1 to 1000",
            ),
            (
                r#"{"customerId":"c","totalAmount":1,"items":[{"productId":"a","quantity":1.5}]}"#,
                "whole number",
            ),
            (
                r#"{"customerId":"c","totalAmount":1,"items":[{"productId":"a"}]}"#,
                "items[0].quantity is required",
            ),
            (
                r#"{"customerId":"c d","totalAmount":1,"productIds":["a"]}"#,
                "customerId must be 1 to 64",
            ),
            (
                r#"{"customerId":"","totalAmount":1,"productIds":["a"]}"#,
                "customerId must be 1 to 64",
            ),
            (
                r#"{"customerId":7,"totalAmount":1,"productIds":["a"]}"#,
                "customerId must be a string",
            ),
            (
                r#"{"totalAmount":1,"productIds":["a"]}"#,
                "customerId is required",
            ),
            (
                r#"{"customerId":"c","totalAmount":1,"productIds":["a/b"]}"#,
                "productIds[0]",
            ),
        ];
        for (body, needle) in cases {
            let p = err(body);
            assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert!(p.detail.contains(needle), "{body}: {}", p.detail);
        }
        let many = format!(
            r#"{{"customerId":"c","totalAmount":1,"productIds":[{}]}}"#,
            vec!["\"a\""; 101].join(",")
        );
        assert!(err(&many).detail.contains("1 to 100"));
    }
}
