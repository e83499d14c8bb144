//! The domain events of the saga: typed, past tense, versioned, JSON on the streams.
//!
//! Every event travels in an [`Envelope`] `{eventId, type, version, orderId, occurredAt, data}`.
//! Everything after `orders.placed` carries the order snapshot, so each consumer can act on an
//! event alone, whatever order the streams deliver them in.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::money::Money;

/// Schema version written into every envelope; readers accept this version or older.
pub const EVENT_VERSION: u32 = 1;

/// One product line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    pub product_id: String,
    pub quantity: u32,
}

/// The order as the edge accepted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderSnapshot {
    pub customer_id: String,
    pub items: Vec<Item>,
    pub total_amount: Money,
    #[serde(with = "time::serde::rfc3339")]
    pub placed_at: OffsetDateTime,
}

/// Why an order was rejected. The first reason an order meets is the one it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    CustomerUnknown,
    CustomerBlocked,
    UnknownProduct,
    OutOfStock,
    PaymentDeclined,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::CustomerUnknown => "CUSTOMER_UNKNOWN",
            Reason::CustomerBlocked => "CUSTOMER_BLOCKED",
            Reason::UnknownProduct => "UNKNOWN_PRODUCT",
            Reason::OutOfStock => "OUT_OF_STOCK",
            Reason::PaymentDeclined => "PAYMENT_DECLINED",
        }
    }

    pub fn parse(s: &str) -> Option<Reason> {
        [
            Reason::CustomerUnknown,
            Reason::CustomerBlocked,
            Reason::UnknownProduct,
            Reason::OutOfStock,
            Reason::PaymentDeclined,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// A rejection with the reason code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    pub order: OrderSnapshot,
    pub reason: Reason,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerValidated {
    pub order: OrderSnapshot,
    pub credit_limit: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub order: OrderSnapshot,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentProcessed {
    pub order: OrderSnapshot,
    pub amount: Money,
    /// The gateway's charge id, as kept in the ledger.
    pub charge_id: String,
}

/// The event itself: `type` names the variant, `data` holds its payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    OrderPlaced(OrderSnapshot),
    OrderConfirmed(Snapshot),
    OrderRejected(Rejection),
    CustomerValidated(CustomerValidated),
    CustomerRejected(Rejection),
    InventoryReserved(Snapshot),
    InventoryRejected(Rejection),
    InventoryReleased(Snapshot),
    PaymentProcessed(PaymentProcessed),
    PaymentFailed(Rejection),
}

impl Event {
    /// The `type` field, repeated in the `Oms-Event-Type` header.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::OrderPlaced(_) => "OrderPlaced",
            Event::OrderConfirmed(_) => "OrderConfirmed",
            Event::OrderRejected(_) => "OrderRejected",
            Event::CustomerValidated(_) => "CustomerValidated",
            Event::CustomerRejected(_) => "CustomerRejected",
            Event::InventoryReserved(_) => "InventoryReserved",
            Event::InventoryRejected(_) => "InventoryRejected",
            Event::InventoryReleased(_) => "InventoryReleased",
            Event::PaymentProcessed(_) => "PaymentProcessed",
            Event::PaymentFailed(_) => "PaymentFailed",
        }
    }

    /// The order as it was placed; every event carries it.
    pub fn order(&self) -> &OrderSnapshot {
        match self {
            Event::OrderPlaced(o) => o,
            Event::OrderConfirmed(s)
            | Event::InventoryReserved(s)
            | Event::InventoryReleased(s) => &s.order,
            Event::OrderRejected(r)
            | Event::CustomerRejected(r)
            | Event::InventoryRejected(r)
            | Event::PaymentFailed(r) => &r.order,
            Event::CustomerValidated(v) => &v.order,
            Event::PaymentProcessed(p) => &p.order,
        }
    }

    /// The rejection this event carries, if it is one.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            Event::OrderRejected(r)
            | Event::CustomerRejected(r)
            | Event::InventoryRejected(r)
            | Event::PaymentFailed(r) => Some(r),
            _ => None,
        }
    }
}

/// What goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub event_id: Uuid,
    pub version: u32,
    pub order_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    #[serde(flatten)]
    pub event: Event,
}

/// An event that cannot be read: it can never be processed, so it goes to the DLQ.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not an event envelope: {0}")]
    Json(#[from] serde_json::Error),
    #[error("event version {0} is newer than this service understands ({EVENT_VERSION})")]
    Version(u32),
}

impl Envelope {
    /// Wraps `event` for `order_id`, stamped now with a fresh event id.
    pub fn new(order_id: Uuid, event: Event) -> Self {
        Envelope {
            event_id: Uuid::now_v7(),
            version: EVENT_VERSION,
            order_id,
            occurred_at: OffsetDateTime::now_utc(),
            event,
        }
    }

    pub fn encode(&self) -> bytes::Bytes {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_vec(self)
            .expect("an envelope always serializes")
            .into()
    }

    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let envelope: Envelope = serde_json::from_slice(payload)?;
        if envelope.version > EVENT_VERSION {
            return Err(DecodeError::Version(envelope.version));
        }
        Ok(envelope)
    }

    /// The subject this event is published on: `<family>.<step>.<orderId>`.
    pub fn subject(&self) -> String {
        crate::topology::event_subject(&self.event, self.order_id)
    }

    /// W3C trace context: one trace per order (the order id is the trace id), a span per event.
    pub fn traceparent(&self) -> String {
        let span = &self.event_id.simple().to_string()[16..];
        format!("00-{}-{span}-01", self.order_id.simple())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> OrderSnapshot {
        OrderSnapshot {
            customer_id: "OMS-Cust-001".into(),
            items: vec![Item {
                product_id: "item1".into(),
                quantity: 2,
            }],
            total_amount: Money::from_cents(259_999),
            placed_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn envelope_is_readable_camel_case_json() {
        let env = Envelope::new(
            Uuid::nil(),
            Event::CustomerRejected(Rejection {
                order: snapshot(),
                reason: Reason::CustomerBlocked,
                detail: "blocked".into(),
            }),
        );
        let json: serde_json::Value = serde_json::from_slice(&env.encode()).unwrap();
        assert_eq!(json["type"], "CustomerRejected");
        assert_eq!(json["version"], 1);
        assert_eq!(json["orderId"], Uuid::nil().to_string());
        assert_eq!(json["data"]["reason"], "CUSTOMER_BLOCKED");
        assert_eq!(json["data"]["order"]["totalAmount"].to_string(), "2599.99");
        assert_eq!(json["data"]["order"]["items"][0]["productId"], "item1");
        assert!(json["occurredAt"].as_str().unwrap().ends_with('Z'));
        assert_eq!(Envelope::decode(&env.encode()).unwrap(), env);
    }

    #[test]
    fn newer_versions_and_garbage_are_refused() {
        let mut env = Envelope::new(Uuid::nil(), Event::OrderPlaced(snapshot()));
        env.version = EVENT_VERSION + 1;
        assert!(matches!(
            Envelope::decode(&env.encode()),
            Err(DecodeError::Version(_))
        ));
        assert!(Envelope::decode(b"{not json").is_err());
        assert!(Envelope::decode(br#"{"type":"Nope"}"#).is_err());
    }

    #[test]
    fn traceparent_shares_the_order_trace() {
        let id = Uuid::now_v7();
        let a = Envelope::new(id, Event::OrderPlaced(snapshot()));
        let b = Envelope::new(id, Event::InventoryReserved(Snapshot { order: snapshot() }));
        let (ta, tb) = (a.traceparent(), b.traceparent());
        assert_eq!(ta.len(), 55);
        assert_eq!(ta[3..35], tb[3..35], "same trace id");
        assert_ne!(ta[36..52], tb[36..52], "different span ids");
    }

    #[test]
    fn reasons_round_trip_as_codes() {
        for r in [
            Reason::CustomerUnknown,
            Reason::CustomerBlocked,
            Reason::UnknownProduct,
            Reason::OutOfStock,
            Reason::PaymentDeclined,
        ] {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
    }
}
