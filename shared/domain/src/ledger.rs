//! The payment ledger's entries (KV `payment-ledger`, JSON): per order its charge, or a void
//! (the order ended before any charge), and under `<orderId>.refund` the refund of its charge.
//! Payment writes them; the audit and the tests read them.

use serde::{Deserialize, Serialize};

use crate::ids::OrderId;
use crate::money::Money;

/// A charge as the ledger keeps it (JSON, readable with `nats kv get payment-ledger <orderId>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Charge {
    pub charge_id: String,
    pub order_id: OrderId,
    pub amount: Money,
    #[serde(with = "time::serde::rfc3339")]
    pub charged_at: time::OffsetDateTime,
}

/// The mark that an order ended before it was charged: it never will be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Void {
    pub order_id: OrderId,
    #[serde(with = "time::serde::rfc3339")]
    pub voided_at: time::OffsetDateTime,
}

/// A charge given back (JSON, under `<orderId>.refund`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Refund {
    pub refund_id: String,
    pub charge_id: String,
    pub order_id: OrderId,
    pub amount: Money,
    #[serde(with = "time::serde::rfc3339")]
    pub refunded_at: time::OffsetDateTime,
}

/// The ledger's key of the refund of `order_id`'s charge.
pub fn refund_key(order_id: OrderId) -> String {
    format!("{order_id}.refund")
}

/// What the ledger holds for an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Charged(Charge),
    Voided(Void),
}

impl Entry {
    pub fn read(value: &[u8]) -> Result<Entry, serde_json::Error> {
        // Two plain structs rather than an untagged enum: money must be read from its text.
        match serde_json::from_slice::<Charge>(value) {
            Ok(charge) => Ok(Entry::Charged(charge)),
            Err(e) => match serde_json::from_slice::<Void>(value) {
                Ok(void) => Ok(Entry::Voided(void)),
                Err(_) => Err(e),
            },
        }
    }
}
