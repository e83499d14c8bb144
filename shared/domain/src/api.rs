//! The read API's requests and answers (JSON), which the edge asks the services for over NATS.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::events::{Envelope, Event, EventKind, Item, PricedItem, Reason};
use crate::ids::{CustomerId, OrderId, ProductId};
use crate::money::Money;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetOrder {
    pub order_id: OrderId,
}

/// One line of an order as clients see it: priced once inventory reserved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
    /// The carrier's, once shipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// An order's status; only ever moves forward, along the graph of DESIGN "Lifecycle and
/// catalog" ([`OrderStatus::may_become`]):
///
/// ```text
/// PENDING ──► CONFIRMED ──► SHIPPED ──► DELIVERED
///    │            │
///    ├──► REJECTED (reason)
///    └────────────┴──► CANCELLED (reason)
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::EnumIter)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE", ascii_case_insensitive)]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Rejected,
    Shipped,
    Delivered,
    Cancelled,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Any case: `?status=confirmed` reads as CONFIRMED.
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }

    /// Whether an order in this status may move to `next`: the graph's edges, nothing else.
    pub fn may_become(self, next: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, next),
            (Pending, Confirmed | Rejected | Cancelled)
                | (Confirmed, Shipped | Cancelled)
                | (Shipped, Delivered)
        )
    }

    /// Whether the saga is over for it (the graph goes on from CONFIRMED only by people).
    pub fn is_terminal(self) -> bool {
        self != OrderStatus::Pending
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetHistory {
    pub order_id: OrderId,
}

/// Everything that happened to an order, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderHistory {
    pub order_id: OrderId,
    /// Whose order it is (the edge shows a customer only their own).
    pub customer_id: CustomerId,
    pub history: Vec<HistoryEntry>,
}

/// One event of an order's history: its type and time, the status it moved the order to (the
/// order service's own events), and what it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    #[serde(rename = "type")]
    pub kind: EventKind,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<OrderStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The lines as priced (reserved, charged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<PricedItem>>,
    /// The priced total, or the amount charged or refunded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
}

impl HistoryEntry {
    /// The entry of one event, as it was published.
    pub fn of(envelope: &Envelope) -> Self {
        let mut entry = HistoryEntry {
            kind: envelope.event.kind(),
            at: envelope.occurred_at,
            status: None,
            reason: None,
            detail: None,
            items: None,
            amount: None,
            charge_id: None,
            tracking_number: None,
        };
        if let Some(r) = envelope.event.rejection() {
            (entry.reason, entry.detail) = (Some(r.reason), Some(r.detail.clone()));
        }
        match &envelope.event {
            Event::OrderPlaced(o) => {
                entry.status = Some(OrderStatus::Pending);
                entry.amount = o.total_amount;
            }
            Event::OrderConfirmed(_) => entry.status = Some(OrderStatus::Confirmed),
            Event::OrderRejected(_) => entry.status = Some(OrderStatus::Rejected),
            Event::OrderCancelled(c) => {
                entry.status = Some(OrderStatus::Cancelled);
                entry.reason = Some(c.reason);
            }
            Event::OrderShipped(s) => {
                entry.status = Some(OrderStatus::Shipped);
                entry.tracking_number = Some(s.tracking_number.clone());
            }
            Event::OrderDelivered(_) => entry.status = Some(OrderStatus::Delivered),
            Event::OrderCancelRequested(c) => entry.reason = Some(c.reason),
            Event::OrderShipRequested(s) => entry.tracking_number = Some(s.tracking_number.clone()),
            Event::InventoryReserved(p) => {
                entry.items = Some(p.items.clone());
                entry.amount = Some(p.total_amount);
            }
            Event::PaymentProcessed(p) => {
                entry.amount = Some(p.amount);
                entry.charge_id = Some(p.charge_id.clone());
            }
            Event::PaymentRefunded(r) => {
                entry.amount = Some(r.amount);
                entry.charge_id = Some(r.charge_id.clone());
            }
            _ => {}
        }
        entry
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

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderPage {
    pub orders: Vec<OrderView>,
    /// The cursor of the next page (`after`), `null` on the last one.
    #[schema(required = true)]
    pub next: Option<String>,
}

/// How many orders the order service holds in each status (its table, counted now).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CountOrders {}

/// The answer to [`CountOrders`]: every status, those without orders as 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCounts {
    pub by_status: BTreeMap<OrderStatus, u64>,
}

impl OrderCounts {
    /// The counts of `found` (status, count), with every other status at 0.
    pub fn of(found: impl IntoIterator<Item = (OrderStatus, u64)>) -> Self {
        use strum::IntoEnumIterator;
        let mut by_status: BTreeMap<OrderStatus, u64> =
            OrderStatus::iter().map(|s| (s, 0)).collect();
        for (status, count) in found {
            *by_status.entry(status).or_default() += count;
        }
        OrderCounts { by_status }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetCustomer {
    pub customer_id: CustomerId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerView {
    pub customer_id: CustomerId,
    pub name: String,
    #[schema(examples("ACTIVE", "BLOCKED"))]
    pub status: String,
    pub credit_limit: Money,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetProduct {
    pub product_id: ProductId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductView {
    pub product_id: ProductId,
    pub name: String,
    /// What one costs, as inventory prices it.
    pub price: Money,
    pub available: i64,
}

/// An operator's new product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewProduct {
    pub product_id: ProductId,
    pub name: String,
    pub price: Money,
    pub available: i64,
}

/// A product's new price (orders already priced keep theirs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetPrice {
    pub product_id: ProductId,
    pub price: Money,
}

/// Stock delivered to the warehouse: `add` more of a product. With a `key`, a repeat of the
/// same key adds nothing (a retry after a lost answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Restock {
    pub product_id: ProductId,
    pub add: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// An operator's new customer (ACTIVE).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewCustomer {
    pub customer_id: CustomerId,
    pub name: String,
    pub credit_limit: Money,
}

/// Block or unblock a customer: a blocked one's new orders are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetBlocked {
    pub customer_id: CustomerId,
    pub blocked: bool,
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
        assert_eq!(OrderStatus::parse("LOST"), None);
    }

    #[test]
    fn statuses_move_forward_along_the_graph_only() {
        use OrderStatus::*;
        let edges: Vec<(OrderStatus, OrderStatus)> = OrderStatus::iter()
            .flat_map(|a| OrderStatus::iter().map(move |b| (a, b)))
            .filter(|(a, b)| a.may_become(*b))
            .collect();
        assert_eq!(
            edges,
            [
                (Pending, Confirmed),
                (Pending, Rejected),
                (Pending, Cancelled),
                (Confirmed, Shipped),
                (Confirmed, Cancelled),
                (Shipped, Delivered),
            ]
        );
    }

    #[test]
    fn counts_name_every_status_by_its_json() {
        let counts = OrderCounts::of([(OrderStatus::Confirmed, 3), (OrderStatus::Pending, 1)]);
        let json = serde_json::to_string(&counts).unwrap();
        assert_eq!(
            json,
            r#"{"byStatus":{"PENDING":1,"CONFIRMED":3,"REJECTED":0,"SHIPPED":0,"DELIVERED":0,"CANCELLED":0}}"#
        );
        assert_eq!(serde_json::from_str::<OrderCounts>(&json).unwrap(), counts);
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
            tracking_number: None,
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
