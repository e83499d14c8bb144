//! Reading and checking operators' catalog and customer requests, as pure functions: the same
//! rules and errors as orders (400 not JSON, 422 a broken rule, exact money).

use std::collections::HashMap;

use oms_domain::api::{NewCustomer, NewProduct, Restock, SetPrice};
use oms_domain::money::MoneyError;
use oms_domain::{CustomerId, Money, ProductId};
use serde_json::value::RawValue;
use warp::http::StatusCode;

use crate::place::is_valid_id;
use crate::problem::Problem;

/// Most of a product one warehouse holds, and one delivery brings.
pub const MAX_STOCK: i64 = 1_000_000_000;
pub const MAX_DELIVERY: i64 = 1_000_000;
/// Longest name of a product or customer.
pub const MAX_NAME: usize = 200;

/// The body as its fields, each still raw JSON.
fn fields(body: &[u8], expected: &str) -> Result<HashMap<String, Box<RawValue>>, Problem> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            Problem::invalid(format!("the body must be a JSON object with {expected}"))
        }
        _ => Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            format!("the body is not valid JSON: {e}"),
        ),
    })
}

fn required<'a>(
    fields: &'a HashMap<String, Box<RawValue>>,
    name: &str,
) -> Result<&'a RawValue, Problem> {
    fields
        .get(name)
        .map(|v| &**v)
        .filter(|v| v.get() != "null")
        .ok_or_else(|| Problem::invalid(format!("{name} is required")))
}

fn id(fields: &HashMap<String, Box<RawValue>>, name: &str) -> Result<String, Problem> {
    let text: String = serde_json::from_str(required(fields, name)?.get())
        .map_err(|_| Problem::invalid(format!("{name} must be a string")))?;
    if !is_valid_id(&text) {
        return Err(Problem::invalid(format!(
            "{name} must be 1 to 64 characters of letters, digits, '.', '_' or '-'"
        )));
    }
    Ok(text)
}

fn name(fields: &HashMap<String, Box<RawValue>>) -> Result<String, Problem> {
    let text: String = serde_json::from_str(required(fields, "name")?.get())
        .map_err(|_| Problem::invalid("name must be a string"))?;
    let text = text.trim().to_string();
    if text.is_empty() || text.chars().count() > MAX_NAME || text.chars().any(char::is_control) {
        return Err(Problem::invalid(format!(
            "name must be 1 to {MAX_NAME} printable characters"
        )));
    }
    Ok(text)
}

/// Exact money from its JSON text: `positive` refuses 0; at most 1,000,000.00.
fn money(
    fields: &HashMap<String, Box<RawValue>>,
    name: &str,
    positive: bool,
) -> Result<Money, Problem> {
    let text = required(fields, name)?.get();
    if !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return Err(Problem::invalid(format!(
            "{name} must be a JSON number such as 25.00 (not a string)"
        )));
    }
    let too_large = || Problem::invalid(format!("{name} must be at most {}", Money::MAX_AMOUNT));
    let value = Money::parse_decimal(text).map_err(|e| match e {
        MoneyError::TooLarge => too_large(),
        e => Problem::invalid(format!("{name} {e}")),
    })?;
    if value < Money::ZERO || (positive && value == Money::ZERO) {
        let least = if positive {
            "greater than 0"
        } else {
            "0 or more"
        };
        return Err(Problem::invalid(format!("{name} must be {least}")));
    }
    if value > Money::MAX_AMOUNT {
        return Err(too_large());
    }
    Ok(value)
}

fn count(
    fields: &HashMap<String, Box<RawValue>>,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, Problem> {
    let wrong = || {
        Problem::invalid(format!(
            "{name} must be a whole number from {} to {}",
            range.start(),
            range.end()
        ))
    };
    let value: i64 = serde_json::from_str(required(fields, name)?.get()).map_err(|_| wrong())?;
    range.contains(&value).then_some(value).ok_or_else(wrong)
}

/// `POST /products` `{productId, name, price, available}`.
pub fn new_product(body: &[u8]) -> Result<NewProduct, Problem> {
    let f = fields(body, "productId, name, price and available")?;
    Ok(NewProduct {
        product_id: ProductId::from(id(&f, "productId")?),
        name: name(&f)?,
        price: money(&f, "price", true)?,
        available: count(&f, "available", 0..=MAX_STOCK)?,
    })
}

/// `PATCH /products/{id}` `{price}`.
pub fn set_price(product_id: ProductId, body: &[u8]) -> Result<SetPrice, Problem> {
    let f = fields(body, "price")?;
    Ok(SetPrice {
        product_id,
        price: money(&f, "price", true)?,
    })
}

/// `POST /products/{id}/stock` `{add}`, with the request's `Idempotency-Key` if any.
pub fn restock(
    product_id: ProductId,
    body: &[u8],
    key: Option<String>,
) -> Result<Restock, Problem> {
    let f = fields(body, "add")?;
    Ok(Restock {
        product_id,
        add: count(&f, "add", 1..=MAX_DELIVERY)?,
        key,
    })
}

/// `POST /customers` `{customerId, name, creditLimit}`.
pub fn new_customer(body: &[u8]) -> Result<NewCustomer, Problem> {
    let f = fields(body, "customerId, name and creditLimit")?;
    Ok(NewCustomer {
        customer_id: CustomerId::from(id(&f, "customerId")?),
        name: name(&f)?,
        credit_limit: money(&f, "creditLimit", false)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(result: Result<impl std::fmt::Debug, Problem>) -> (u16, String) {
        let p = result.expect_err("refused");
        (p.status.as_u16(), p.detail)
    }

    #[test]
    fn a_product_is_read_exactly_and_checked() {
        let p = new_product(
            br#"{"productId":"item9","name":" Z3 ","price":1299.99,"available":7,"x":1}"#,
        )
        .unwrap();
        assert_eq!(
            (p.product_id.as_str(), p.name.as_str(), p.price, p.available),
            ("item9", "Z3", Money::from_cents(129_999), 7)
        );
        for (body, status, needle) in [
            (&b"{"[..], 400, "not valid JSON"),
            (b"[1]", 422, "JSON object"),
            (
                br#"{"name":"a","price":1,"available":1}"#,
                422,
                "productId is required",
            ),
            (
                br#"{"productId":"a b","name":"a","price":1,"available":1}"#,
                422,
                "productId must be 1 to 64",
            ),
            (
                br#"{"productId":"a","name":"  ","price":1,"available":1}"#,
                422,
                "name must be 1 to 200",
            ),
            (
                br#"{"productId":"a","name":"a","price":0,"available":1}"#,
                422,
                "price must be greater than 0",
            ),
            (
                br#"{"productId":"a","name":"a","price":1.005,"available":1}"#,
                422,
                "2 decimal places",
            ),
            (
                br#"{"productId":"a","name":"a","price":"1","available":1}"#,
                422,
                "not a string",
            ),
            (
                br#"{"productId":"a","name":"a","price":1000000.01,"available":1}"#,
                422,
                "at most 1000000.00",
            ),
            (
                br#"{"productId":"a","name":"a","price":1,"available":-1}"#,
                422,
                "available must be a whole number from 0",
            ),
            (
                br#"{"productId":"a","name":"a","price":1,"available":1.5}"#,
                422,
                "whole number",
            ),
            (
                br#"{"productId":"a","name":"a","price":1}"#,
                422,
                "available is required",
            ),
        ] {
            let (code, detail) = refused(new_product(body));
            assert_eq!(code, status, "{}", String::from_utf8_lossy(body));
            assert!(
                detail.contains(needle),
                "{}: {detail}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn prices_deliveries_and_customers_are_checked() {
        let id = || ProductId::from("item1");
        assert_eq!(
            set_price(id(), br#"{"price":9.5}"#).unwrap().price,
            Money::from_cents(950)
        );
        assert!(
            refused(set_price(id(), br#"{"price":-1}"#))
                .1
                .contains("greater than 0")
        );
        let r = restock(id(), br#"{"add":10}"#, Some("k1".into())).unwrap();
        assert_eq!((r.add, r.key.as_deref()), (10, Some("k1")));
        assert!(
            refused(restock(id(), br#"{"add":0}"#, None))
                .1
                .contains("from 1 to 1000000")
        );
        let c = new_customer(br#"{"customerId":"C-9","name":"Kay","creditLimit":0}"#).unwrap();
        assert_eq!(
            c.credit_limit,
            Money::ZERO,
            "a limit of 0 is a customer who pays nothing"
        );
        assert!(
            refused(new_customer(
                br#"{"customerId":"C-9","name":"Kay","creditLimit":-0.01}"#
            ))
            .1
            .contains("creditLimit must be 0 or more")
        );
    }
}
