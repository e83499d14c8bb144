//! The binary encoding of the join value, and the only place that knows it is bincode.
//!
//! A value is one version byte followed by the bincode (standard config) of [`Join`]. bincode is
//! unmaintained (RUSTSEC-2025-0141) and pinned to 2.0.1; keeping it behind this module means a
//! new format only needs a new version byte here.

use crate::join::Join;

/// The format written today.
const VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty join value")]
    Empty,
    #[error("join value of unknown format version {0}")]
    Version(u8),
    #[error("corrupt join value: {0}")]
    Decode(#[from] bincode::error::DecodeError),
}

pub fn encode(join: &Join) -> bytes::Bytes {
    let mut out = vec![VERSION];
    // Encoding plain data into a Vec cannot fail.
    let body = bincode::serde::encode_to_vec(join, bincode::config::standard())
        .expect("a join value always encodes");
    out.extend_from_slice(&body);
    out.into()
}

pub fn decode(value: &[u8]) -> Result<Join, CodecError> {
    let (&version, body) = value.split_first().ok_or(CodecError::Empty)?;
    if version != VERSION {
        return Err(CodecError::Version(version));
    }
    let (join, _) = bincode::serde::decode_from_slice(body, bincode::config::standard())?;
    Ok(join)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join::{CustomerVerdict, InventoryVerdict, Settlement};
    use oms_domain::{Item, Money, OrderSnapshot};

    #[test]
    fn round_trips_every_field() {
        let join = Join {
            order: Some(OrderSnapshot {
                customer_id: "OMS-Cust-001".into(),
                items: vec![Item {
                    product_id: "item1".into(),
                    quantity: 3,
                }],
                total_amount: Money::from_cents(259_999),
                placed_at: time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            }),
            customer: Some(CustomerVerdict::Validated {
                credit_limit: Money::from_cents(1_000_000),
            }),
            inventory: Some(InventoryVerdict::Reserved),
            outcome: Some(Settlement::Charged {
                charge_id: "ch_1".into(),
                amount: Money::from_cents(259_999),
            }),
        };
        assert_eq!(decode(&encode(&join)).unwrap(), join);
        assert_eq!(decode(&encode(&Join::default())).unwrap(), Join::default());
    }

    #[test]
    fn unknown_versions_and_garbage_are_errors() {
        assert!(matches!(decode(&[]), Err(CodecError::Empty)));
        assert!(matches!(decode(&[9, 0]), Err(CodecError::Version(9))));
        assert!(matches!(
            decode(&[VERSION, 0xff, 0xff]),
            Err(CodecError::Decode(_))
        ));
    }
}
