//! The read API's requests and answers (JSON), which the edge asks the services for over NATS.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::events::{Item, PricedItem, Reason};
use crate::ids::{CustomerId, OrderId, ProductId};
use crate::money::Money;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetOrder {
    pub order_id: OrderId,
}

/// One line of an order as clients see it: priced once inventory reserved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    pub product_id: ProductId,
    pub quantity: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_total: Option<Money>,
}

impl From<Item> for OrderLine {
    fn from(item: Item) -> Self {
        OrderLine {
            product_id: item.product_id,
            quantity: item.quantity,
            unit_price: None,
            line_total: None,
        }
    }
}

impl From<PricedItem> for OrderLine {
    fn from(item: PricedItem) -> Self {
        OrderLine {
            product_id: item.product_id,
            quantity: item.quantity,
            unit_price: Some(item.unit_price),
            line_total: Some(item.line_total),
        }
    }
}

/// An order as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub items: Vec<OrderLine>,
    /// The priced total once inventory priced the order; before that, the client's amount if
    /// it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_amount: Option<Money>,
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
    /// What one costs, as inventory prices it.
    pub price: Money,
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

    #[test]
    fn answers_carry_exact_money() {
        let order = OrderView {
            order_id: OrderId::from_uuid(uuid::Uuid::nil()),
            customer_id: "OMS-Cust-001".into(),
            items: vec![
                OrderLine::from(Item {
                    product_id: "item3".into(),
                    quantity: 1,
                }),
                OrderLine::from(PricedItem {
                    product_id: "item1".into(),
                    quantity: 2,
                    unit_price: Money::from_cents(7_500),
                    line_total: Money::from_cents(15_000),
                }),
            ],
            total_amount: Some(Money::from_cents(15_000)),
            status: OrderStatus::Confirmed,
            reason: None,
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        };
        let json = serde_json::to_string(&order).unwrap();
        assert!(json.contains(r#""totalAmount":150.00,"#), "{json}");
        assert!(
            json.contains(r#"[{"productId":"item3","quantity":1},{"productId":"item1","quantity":2,"unitPrice":75.00,"lineTotal":150.00}]"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<OrderView>(&json).unwrap(), order);
        let page = OrderPage {
            orders: vec![order.clone()],
            next: None,
        };
        let json = serde_json::to_vec(&page).unwrap();
        assert_eq!(
            serde_json::from_slice::<OrderPage>(&json).unwrap().orders,
            [order]
        );

        let customer = CustomerView {
            customer_id: "OMS-Cust-001".into(),
            name: "Ada Lovelace".into(),
            status: "ACTIVE".into(),
            credit_limit: Money::from_cents(1_000_000),
        };
        let json = serde_json::to_string(&customer).unwrap();
        assert!(json.ends_with(r#""creditLimit":10000.00}"#), "{json}");
        assert_eq!(
            serde_json::from_str::<CustomerView>(&json).unwrap(),
            customer
        );
        let refused = json.replace("10000.00", "10000.001");
        let error = serde_json::from_str::<CustomerView>(&refused).unwrap_err();
        assert!(
            error.to_string().contains("more than 2 decimal places"),
            "{error}"
        );
    }
}
