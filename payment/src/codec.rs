//! The binary encoding of the join value, and the only place that knows it is bincode.
//!
//! A value is one version byte followed by the bincode (standard config) of [`Join`]. bincode is
//! unmaintained (RUSTSEC-2025-0141) and pinned to 2.0.1; keeping it behind this module means a
//! new format only needs a new version byte here.
//!
//! Versions:
//! - 3 (written): the client's amount is optional, and the stock verdict carries the priced
//!   lines and their total (what is charged).
//! - 2 (read only): money as `i64` cents, the client's amount required, no prices; [`v2`] keeps
//!   that layout frozen, and a reserved verdict of it is charged the client's amount, as the
//!   release that wrote it would have.
//! - 1 (read only): money was the `f64` of its units, as `Money` serialized before it became
//!   exact on every wire. A join lives in KV as long as its order is open, so values written by
//!   the previous release must still read; [`v1`] keeps that layout frozen.

use crate::join::Join;

/// The format written today.
const VERSION: u8 = 3;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty join value")]
    Empty,
    #[error("join value of unknown format version {0}")]
    Version(u8),
    #[error("corrupt join value: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("join value of format version 1 holds the amount {0}, which is not whole cents")]
    Amount(f64),
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
    match version {
        VERSION => {
            let (join, _) = bincode::serde::decode_from_slice(body, bincode::config::standard())?;
            Ok(join)
        }
        2 => {
            let (join, _): (v2::Join, _) =
                bincode::serde::decode_from_slice(body, bincode::config::standard())?;
            Ok(join.upgrade())
        }
        1 => {
            let (join, _): (v1::Join, _) =
                bincode::serde::decode_from_slice(body, bincode::config::standard())?;
            Ok(join.upgrade()?.upgrade())
        }
        other => Err(CodecError::Version(other)),
    }
}

/// Format version 1, frozen: the shapes of [`Join`] and everything in it as they were, with
/// money as `f64` units. bincode has no field names, so only the order and types matter here;
/// these must not change when `Join` does.
mod v1 {
    use oms_domain::Money;
    use serde::Deserialize;
    use time::OffsetDateTime;

    use super::{CodecError, v2};

    #[derive(Deserialize)]
    pub struct Join {
        order: Option<OrderSnapshot>,
        customer: Option<CustomerVerdict>,
        inventory: Option<InventoryVerdict>,
        outcome: Option<Settlement>,
    }

    #[derive(Deserialize)]
    struct OrderSnapshot {
        customer_id: String,
        items: Vec<Item>,
        total_amount: Amount,
        #[serde(with = "time::serde::rfc3339")]
        placed_at: OffsetDateTime,
    }

    #[derive(Deserialize)]
    struct Item {
        product_id: String,
        quantity: u32,
    }

    #[derive(Deserialize)]
    enum CustomerVerdict {
        Validated { credit_limit: Amount },
        Rejected,
    }

    #[derive(Deserialize)]
    enum InventoryVerdict {
        Reserved,
        Rejected,
    }

    #[derive(Deserialize)]
    enum Settlement {
        Charged { charge_id: String, amount: Amount },
        Declined { detail: String },
    }

    /// Money as version 1 wrote it: `cents as f64 / 100.0`.
    #[derive(Deserialize)]
    struct Amount(f64);

    impl Amount {
        /// Rounding undoes the binary fraction of an amount we wrote ourselves; anything else
        /// (not finite, beyond 2^53 cents, or off a whole cent by more than rounding explains)
        /// was not written by us and is refused rather than guessed.
        fn money(self) -> Result<Money, CodecError> {
            let scaled = self.0 * 100.0;
            let cents = scaled.round();
            let exact = cents.is_finite()
                && cents.abs() <= 9.0e15
                && (scaled - cents).abs() <= (cents.abs() * 1e-12).max(1e-9);
            match exact {
                // Checked above: a whole number well inside i64.
                true => Ok(Money::from_cents(cents as i64)),
                false => Err(CodecError::Amount(self.0)),
            }
        }
    }

    impl Join {
        pub fn upgrade(self) -> Result<v2::Join, CodecError> {
            let order = match self.order {
                Some(o) => Some(v2::OrderSnapshot {
                    customer_id: o.customer_id,
                    items: (o.items.into_iter())
                        .map(|i| v2::Item {
                            product_id: i.product_id,
                            quantity: i.quantity,
                        })
                        .collect(),
                    total_amount: o.total_amount.money()?,
                    placed_at: o.placed_at,
                }),
                None => None,
            };
            let customer = match self.customer {
                Some(CustomerVerdict::Validated { credit_limit }) => {
                    Some(v2::CustomerVerdict::Validated {
                        credit_limit: credit_limit.money()?,
                    })
                }
                Some(CustomerVerdict::Rejected) => Some(v2::CustomerVerdict::Rejected),
                None => None,
            };
            let inventory = self.inventory.map(|v| match v {
                InventoryVerdict::Reserved => v2::InventoryVerdict::Reserved,
                InventoryVerdict::Rejected => v2::InventoryVerdict::Rejected,
            });
            let outcome = match self.outcome {
                Some(Settlement::Charged { charge_id, amount }) => Some(v2::Settlement::Charged {
                    charge_id,
                    amount: amount.money()?,
                }),
                Some(Settlement::Declined { detail }) => Some(v2::Settlement::Declined { detail }),
                None => None,
            };
            Ok(v2::Join {
                order,
                customer,
                inventory,
                outcome,
            })
        }
    }
}

/// Format version 2, frozen like [`v1`]: money as `i64` cents (as `Money` writes it in binary),
/// the client's amount required, the stock verdict without prices.
mod v2 {
    use oms_domain::{Item as DomainItem, Money, OrderSnapshot as DomainSnapshot};
    use serde::Deserialize;
    use time::OffsetDateTime;

    use crate::join;

    #[derive(Deserialize)]
    pub struct Join {
        pub order: Option<OrderSnapshot>,
        pub customer: Option<CustomerVerdict>,
        pub inventory: Option<InventoryVerdict>,
        pub outcome: Option<Settlement>,
    }

    #[derive(Deserialize)]
    pub struct OrderSnapshot {
        pub customer_id: String,
        pub items: Vec<Item>,
        pub total_amount: Money,
        #[serde(with = "time::serde::rfc3339")]
        pub placed_at: OffsetDateTime,
    }

    #[derive(Deserialize)]
    pub struct Item {
        pub product_id: String,
        pub quantity: u32,
    }

    #[derive(Deserialize)]
    pub enum CustomerVerdict {
        Validated { credit_limit: Money },
        Rejected,
    }

    #[derive(Deserialize)]
    pub enum InventoryVerdict {
        Reserved,
        Rejected,
    }

    #[derive(Deserialize)]
    pub enum Settlement {
        Charged { charge_id: String, amount: Money },
        Declined { detail: String },
    }

    impl Join {
        pub fn upgrade(self) -> join::Join {
            let amount = self.order.as_ref().map(|o| o.total_amount);
            let order = self.order.map(|o| DomainSnapshot {
                customer_id: o.customer_id.into(),
                items: (o.items.into_iter())
                    .map(|i| DomainItem {
                        product_id: i.product_id.into(),
                        quantity: i.quantity,
                    })
                    .collect(),
                total_amount: Some(o.total_amount),
                placed_at: o.placed_at,
            });
            let customer = self.customer.map(|v| match v {
                CustomerVerdict::Validated { credit_limit } => {
                    join::CustomerVerdict::Validated { credit_limit }
                }
                CustomerVerdict::Rejected => join::CustomerVerdict::Rejected,
            });
            let inventory = self.inventory.map(|v| match (v, amount) {
                // Reserved before orders were priced: the client's amount is the total, and
                // no line has a price.
                (InventoryVerdict::Reserved, Some(total)) => join::InventoryVerdict::Reserved {
                    items: vec![],
                    total,
                },
                // A verdict without its order was never written; without an amount to charge
                // it cannot be paid, so it reads as the rejection it amounts to.
                (InventoryVerdict::Reserved, None) | (InventoryVerdict::Rejected, _) => {
                    join::InventoryVerdict::Rejected
                }
            });
            let outcome = self.outcome.map(|o| match o {
                Settlement::Charged { charge_id, amount } => {
                    join::Settlement::Charged { charge_id, amount }
                }
                Settlement::Declined { detail } => join::Settlement::Declined { detail },
            });
            join::Join {
                order,
                customer,
                inventory,
                outcome,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join::{CustomerVerdict, InventoryVerdict, Settlement};
    use oms_domain::{Item, Money, OrderSnapshot, PricedItem};

    /// A join the release before prices wrote: the stock verdict's total is the client's
    /// amount, and no line has a price.
    fn charged() -> Join {
        Join {
            order: Some(OrderSnapshot {
                customer_id: "OMS-Cust-001".into(),
                items: vec![Item {
                    product_id: "item1".into(),
                    quantity: 3,
                }],
                total_amount: Some(Money::from_cents(259_999)),
                placed_at: time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            }),
            customer: Some(CustomerVerdict::Validated {
                credit_limit: Money::from_cents(1_000_000),
            }),
            inventory: Some(InventoryVerdict::Reserved {
                items: vec![],
                total: Money::from_cents(259_999),
            }),
            outcome: Some(Settlement::Charged {
                charge_id: "ch_1".into(),
                amount: Money::from_cents(259_999),
            }),
        }
    }

    fn declined() -> Join {
        Join {
            order: Some(OrderSnapshot {
                customer_id: "c".into(),
                items: vec![Item {
                    product_id: "a".into(),
                    quantity: 1,
                }],
                total_amount: Some(Money::from_cents(1)),
                placed_at: time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            }),
            customer: Some(CustomerVerdict::Rejected),
            inventory: Some(InventoryVerdict::Rejected),
            outcome: Some(Settlement::Declined {
                detail: "no".into(),
            }),
        }
    }

    /// A join of today: priced lines, and no amount from the client.
    fn priced() -> Join {
        let line = PricedItem {
            product_id: "item1".into(),
            quantity: 3,
            unit_price: Money::from_cents(129_999),
            line_total: Money::from_cents(389_997),
        };
        Join {
            order: charged().order.map(|o| OrderSnapshot {
                total_amount: None,
                ..o
            }),
            inventory: Some(InventoryVerdict::Reserved {
                items: vec![line],
                total: Money::from_cents(389_997),
            }),
            ..charged()
        }
    }

    #[test]
    fn round_trips_every_field() {
        for join in [priced(), charged(), declined(), Join::default()] {
            let value = encode(&join);
            assert_eq!(value[0], VERSION);
            assert_eq!(decode(&value).unwrap(), join);
        }
        // Money far beyond what an f64 holds exactly stays exact.
        let mut join = charged();
        join.outcome = Some(Settlement::Charged {
            charge_id: "ch_1".into(),
            amount: Money::from_cents(i64::MAX),
        });
        assert_eq!(decode(&encode(&join)).unwrap(), join);
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Values the previous release wrote (format 1, money as `f64`), byte for byte.
    const V1_CHARGED: &str = "01010c4f4d532d437573742d30303101056974656d310314ae47e1fa4fa44014323032332d31312d31345432323a31333a32305a0100000000000088c340010001000463685f3114ae47e1fa4fa440";
    const V1_DECLINED: &str = "01010163010161017b14ae47e17a843f14323032332d31312d31345432323a31333a32305a010101010101026e6f";
    const V1_EMPTY: &str = "0100000000";
    /// The same joins as the release before prices wrote them (format 2, money as cents).
    const V2_CHARGED: &str = "02010c4f4d532d437573742d30303101056974656d3103fc3eef070014323032332d31312d31345432323a31333a32305a0100fc80841e00010001000463685f31fc3eef0700";
    const V2_DECLINED: &str =
        "02010163010161010214323032332d31312d31345432323a31333a32305a010101010101026e6f";
    const V2_EMPTY: &str = "0200000000";

    #[test]
    fn values_of_version_1_still_read() {
        assert_eq!(decode(&hex(V1_CHARGED)).unwrap(), charged());
        assert_eq!(decode(&hex(V1_DECLINED)).unwrap(), declined());
        assert_eq!(decode(&hex(V1_EMPTY)).unwrap(), Join::default());
        // And are written back as today's version.
        assert_eq!(encode(&decode(&hex(V1_CHARGED)).unwrap())[0], VERSION);
    }

    #[test]
    fn values_of_version_2_still_read_and_charge_the_clients_amount() {
        assert_eq!(decode(&hex(V2_CHARGED)).unwrap(), charged());
        assert_eq!(decode(&hex(V2_DECLINED)).unwrap(), declined());
        assert_eq!(decode(&hex(V2_EMPTY)).unwrap(), Join::default());
        assert_eq!(encode(&decode(&hex(V2_CHARGED)).unwrap())[0], VERSION);
    }

    #[test]
    fn a_version_1_amount_that_is_not_whole_cents_is_refused() {
        let good = hex(V1_CHARGED);
        let at = (good.windows(8))
            .position(|w| w == 2599.99_f64.to_le_bytes())
            .expect("the total amount as f64");
        for bad in [2599.995, f64::NAN, f64::INFINITY, 1e300] {
            let mut value = good.clone();
            value[at..at + 8].copy_from_slice(&f64::to_le_bytes(bad));
            match decode(&value) {
                Err(CodecError::Amount(amount)) => {
                    assert!(amount.to_bits() == bad.to_bits() || amount.is_nan() && bad.is_nan())
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_versions_and_garbage_are_errors() {
        assert!(matches!(decode(&[]), Err(CodecError::Empty)));
        assert!(matches!(decode(&[9, 0]), Err(CodecError::Version(9))));
        assert!(matches!(decode(&[0, 0]), Err(CodecError::Version(0))));
        for version in [1, 2, VERSION] {
            assert!(matches!(
                decode(&[version, 0xff, 0xff]),
                Err(CodecError::Decode(_))
            ));
        }
    }
}
