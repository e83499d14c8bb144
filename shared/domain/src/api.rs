//! The read API's requests and answers (JSON), which the edge asks the services for over NATS.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::events::{Item, Reason};
use crate::ids::{CustomerId, OrderId, ProductId};
use crate::money::Money;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetOrder {
    pub order_id: OrderId,
}

/// An order as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub items: Vec<Item>,
    pub total_amount: Money,
    pub status: OrderStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// An order's status; only ever moves forward: PENDING → CONFIRMED | REJECTED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::EnumIter)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE", ascii_case_insensitive)]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Rejected,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Any case: `?status=confirmed` reads as CONFIRMED.
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }

    pub fn is_terminal(self) -> bool {
        self != OrderStatus::Pending
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListOrders {
    pub customer_id: Option<CustomerId>,
    pub status: Option<OrderStatus>,
    pub limit: u32,
    /// Opaque cursor from a previous page's `next`.
    pub after: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPage {
    pub orders: Vec<OrderView>,
    pub next: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetCustomer {
    pub customer_id: CustomerId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerView {
    pub customer_id: CustomerId,
    pub name: String,
    pub status: String,
    pub credit_limit: Money,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetProduct {
    pub product_id: ProductId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductView {
    pub product_id: ProductId,
    pub name: String,
    pub available: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::IntoEnumIterator;

    #[test]
    fn status_strings_are_their_json_and_read_back_in_any_case() {
        for status in OrderStatus::iter() {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
            let lower = status.as_str().to_lowercase();
            assert_eq!(OrderStatus::parse(&lower), Some(status));
        }
        assert_eq!(OrderStatus::parse("SHIPPED"), None);
    }
}
