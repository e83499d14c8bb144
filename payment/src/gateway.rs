//! The simulated payment gateway. Its ledger is KV `payment-ledger`, one create-only entry per
//! order: a second charge of the same order finds the first one instead of charging again.

use async_nats::jetstream::kv::{CreateErrorKind, Store};
use oms_domain::{Money, OrderId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
    #[error("ledger entry for {0} is unreadable: {1}")]
    Corrupt(OrderId, serde_json::Error),
}

/// Charges `amount` for `order_id` exactly once; later calls return the first charge.
pub async fn charge(
    ledger: &Store,
    order_id: OrderId,
    amount: Money,
) -> Result<Charge, GatewayError> {
    let key = order_id.to_string();
    let charge = Charge {
        charge_id: format!("ch_{}", Uuid::new_v4().simple()),
        order_id,
        amount,
        charged_at: time::OffsetDateTime::now_utc(),
    };
    let value = serde_json::to_vec(&charge).expect("a charge always serializes");
    match ledger.create(&key, value.into()).await {
        Ok(_) => Ok(charge),
        Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
            let existing = ledger
                .get(&key)
                .await
                .map_err(|e| GatewayError::Unavailable(e.to_string()))?
                .ok_or_else(|| GatewayError::Unavailable("charge vanished".into()))?;
            serde_json::from_slice(&existing).map_err(|e| GatewayError::Corrupt(order_id, e))
        }
        Err(e) => Err(GatewayError::Unavailable(e.to_string())),
    }
}
