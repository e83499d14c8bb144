//! `Idempotency-Key` for `POST /orders`, kept in KV `idempotency` (24 h).
//!
//! The first request with a key claims it with a create-only write: the order id, event id and
//! acceptance time it will publish, and a fingerprint of the order. A retry (or a racing twin)
//! finds the claim and publishes the very same event again, which the stream's duplicate window
//! drops if it had landed, so every request with one key answers with one order id. The same key
//! with a different order is refused. Keys belong to the caller (role and `sub` of its token):
//! two callers using the same key do not collide.

use async_nats::jetstream::kv::{CreateErrorKind, Store};
use oms_domain::{EventId, OrderId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::place::PlaceOrder;
use crate::problem::Problem;
use warp::http::StatusCode;

/// What a key stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claim {
    pub order_id: OrderId,
    pub event_id: EventId,
    #[serde(with = "time::serde::rfc3339")]
    pub placed_at: OffsetDateTime,
    pub fingerprint: String,
}

impl Claim {
    /// A fresh order id, event id and acceptance time for `order`.
    pub fn new(order: &PlaceOrder) -> Self {
        Claim {
            order_id: OrderId::new(),
            event_id: EventId::new(),
            placed_at: OffsetDateTime::now_utc(),
            fingerprint: fingerprint(order),
        }
    }
}

/// "The same body" means the same parsed order: customer, amount (or none) and items. Ids cannot hold
/// `|`, `:` or `,`, so the text is unambiguous.
pub fn fingerprint(order: &PlaceOrder) -> String {
    let items: Vec<String> = order
        .items
        .iter()
        .map(|i| format!("{}:{}", i.product_id, i.quantity))
        .collect();
    // No amount is `-`, which no amount's cents are.
    let amount = order
        .total_amount
        .map_or_else(|| "-".to_string(), |a| a.cents().to_string());
    format!("{}|{amount}|{}", order.customer_id, items.join(","))
}

/// 1–255 visible ASCII characters.
pub fn check_key(key: &str) -> Result<(), Problem> {
    if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-idempotency-key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        ))
    }
}

/// KV keys allow few characters: store the caller's scope and the key hex-encoded, so two
/// callers using the same key never meet.
fn storage_key(scope: &str, key: &str) -> String {
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    format!("{}.{}", hex(scope), hex(key))
}

/// Whether the key was new (this request owns it) or already claimed.
#[derive(Debug)]
pub enum Claimed {
    New(Claim),
    Existing(Claim),
}

/// Claims `key` of the caller `scope` (see [`crate::auth::Caller::scope`]) for `fresh`, or
/// returns the claim that holds it.
pub async fn claim(
    store: &Store,
    scope: &str,
    key: &str,
    fresh: Claim,
) -> Result<Claimed, Problem> {
    let stored = storage_key(scope, key);
    let value = serde_json::to_vec(&fresh).expect("a claim always serializes");
    match store.create(&stored, value.into()).await {
        Ok(_) => return Ok(Claimed::New(fresh)),
        Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {}
        Err(e) => return Err(unavailable(e)),
    }
    let existing = store
        .get(&stored)
        .await
        .map_err(unavailable)?
        // Expired between the two calls: rare enough to ask for a retry.
        .ok_or_else(|| {
            Problem::new(
                StatusCode::CONFLICT,
                "idempotency-conflict",
                "this Idempotency-Key is being processed, retry",
            )
        })?;
    let claim = serde_json::from_slice(&existing).map_err(|e| {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("unreadable Idempotency-Key record: {e}"),
        )
    })?;
    Ok(Claimed::Existing(claim))
}

fn unavailable(e: impl std::fmt::Display) -> Problem {
    tracing::warn!(error = %e, "idempotency store unavailable");
    Problem::unavailable("the order bus is unreachable; nothing was accepted, please retry")
}

#[cfg(test)]
mod tests {
    use super::*;
    use oms_domain::{Item, Money};

    fn order(quantity: u32) -> PlaceOrder {
        PlaceOrder {
            customer_id: "OMS-Cust-001".into(),
            total_amount: Some(Money::from_cents(259_999)),
            items: vec![Item {
                product_id: "item1".into(),
                quantity,
            }],
        }
    }

    #[test]
    fn same_order_same_fingerprint() {
        assert_eq!(fingerprint(&order(1)), fingerprint(&order(1)));
        assert_ne!(fingerprint(&order(1)), fingerprint(&order(2)));
        assert_eq!(fingerprint(&order(1)), "OMS-Cust-001|259999|item1:1");
        let unpriced = PlaceOrder {
            total_amount: None,
            ..order(1)
        };
        assert_eq!(fingerprint(&unpriced), "OMS-Cust-001|-|item1:1");
    }

    #[test]
    fn keys_are_visible_ascii() {
        assert!(check_key("abc-123_!~").is_ok());
        assert!(check_key(&"k".repeat(255)).is_ok());
        assert!(check_key("").is_err());
        assert!(check_key(&"k".repeat(256)).is_err());
        assert!(check_key("with space").is_err());
        assert!(check_key("é").is_err());
    }

    #[test]
    fn storage_keys_are_valid_kv_keys() {
        assert_eq!(
            storage_key("customer:A", "a/B ~"),
            "637573746f6d65723a41.612f42207e"
        );
        assert_ne!(
            storage_key("customer:A", "k"),
            storage_key("operator:A", "k"),
            "the same key of two callers is two keys"
        );
    }
}
