//! The simulated payment gateway. Its ledger is KV `payment-ledger`, one create-only entry per
//! order: its charge, or the mark that the order ended (rejected, cancelled) before any charge
//! (a void). Whichever is created first stands, so a charge and the end of its order can race
//! and the outcome is still one of two: no charge, or a charge and its refund. A second charge
//! of the same order finds the first one instead of charging again; a refund is the create-only
//! entry `<orderId>.refund`, so a charge is refunded at most once.

use async_nats::jetstream::kv::{CreateErrorKind, Store};
pub use oms_domain::ledger::{Charge, Entry, Refund, Void, refund_key};
use oms_domain::{Money, OrderId};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
    #[error("ledger entry for {0} is unreadable: {1}")]
    Corrupt(OrderId, serde_json::Error),
}

/// Charges `amount` for `order_id` exactly once; later calls return the first charge. `None`:
/// the order ended first (see [`void_or_refund`]), and is not charged.
pub async fn charge(
    ledger: &Store,
    order_id: OrderId,
    amount: Money,
) -> Result<Option<Charge>, GatewayError> {
    let key = order_id.to_string();
    let charge = Charge {
        charge_id: format!("ch_{}", Uuid::new_v4().simple()),
        order_id,
        amount,
        charged_at: time::OffsetDateTime::now_utc(),
    };
    let value = serde_json::to_vec(&charge).expect("a charge always serializes");
    match create_or_read(ledger, &key, value).await? {
        None => Ok(Some(charge)),
        Some(existing) => {
            match Entry::read(&existing).map_err(|e| GatewayError::Corrupt(order_id, e))? {
                Entry::Charged(first) => Ok(Some(first)),
                Entry::Voided(_) => Ok(None),
            }
        }
    }
}

/// The order ended without being fulfilled: voids it if it was not charged (no charge may come
/// after), else refunds its charge once. Returns the refund, if there is one (the first one,
/// when called again).
pub async fn void_or_refund(
    ledger: &Store,
    order_id: OrderId,
) -> Result<Option<Refund>, GatewayError> {
    let now = time::OffsetDateTime::now_utc();
    let void = Void {
        order_id,
        voided_at: now,
    };
    let value = serde_json::to_vec(&void).expect("a void always serializes");
    let Some(existing) = create_or_read(ledger, &order_id.to_string(), value).await? else {
        return Ok(None);
    };
    let charge = match Entry::read(&existing).map_err(|e| GatewayError::Corrupt(order_id, e))? {
        Entry::Voided(_) => return Ok(None),
        Entry::Charged(charge) => charge,
    };
    let refund = Refund {
        refund_id: format!("re_{}", Uuid::new_v4().simple()),
        charge_id: charge.charge_id,
        order_id,
        amount: charge.amount,
        refunded_at: now,
    };
    let value = serde_json::to_vec(&refund).expect("a refund always serializes");
    match create_or_read(ledger, &refund_key(order_id), value).await? {
        None => Ok(Some(refund)),
        Some(first) => serde_json::from_slice(&first)
            .map(Some)
            .map_err(|e| GatewayError::Corrupt(order_id, e)),
    }
}

/// Creates `key` with `value`; `Some(existing)` if it was there already.
async fn create_or_read(
    ledger: &Store,
    key: &str,
    value: Vec<u8>,
) -> Result<Option<bytes::Bytes>, GatewayError> {
    match ledger.create(key, value.into()).await {
        Ok(_) => Ok(None),
        Err(e) if e.kind() == CreateErrorKind::AlreadyExists => ledger
            .get(key)
            .await
            .map_err(|e| GatewayError::Unavailable(e.to_string()))?
            .map(Some)
            .ok_or_else(|| GatewayError::Unavailable(format!("ledger entry {key} vanished"))),
        Err(e) => Err(GatewayError::Unavailable(e.to_string())),
    }
}
