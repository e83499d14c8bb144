//! Exact money: integer minor units (cents), never a float.
//!
//! In JSON an amount is a number whose text is the exact decimal with two places (`2599.99`,
//! `150.00`). It is written and read as raw JSON text (serde_json's `RawValue`), so an amount
//! never passes through `f64` in either direction: reading goes through [`Money::parse_decimal`],
//! so `10.005` and `1e2` are refused instead of being rounded or guessed. In binary formats
//! (bincode, which is not human readable) an amount is its `i64` cents.
//!
//! The exact text only survives a serde_json reader that sees the JSON itself: `from_str`,
//! `from_slice`, `from_reader`, or `from_value` (which reads the number's shortest text). serde's
//! buffering (`#[serde(flatten)]`, untagged and internally tagged enums) cannot hand raw text on,
//! so types that hold money do not use it (see `Envelope`'s `Deserialize`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// An amount in minor units (1/100 of the currency unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

/// Why a decimal text is not an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("must be a plain decimal number such as 2599.99")]
    NotDecimal,
    #[error("must have at most 2 decimal places")]
    TooPrecise,
    #[error("is too large")]
    TooLarge,
}

impl Money {
    pub const ZERO: Money = Money(0);
    /// The largest amount an order may have: 1,000,000.00.
    pub const MAX_AMOUNT: Money = Money(100_000_000);

    /// Whether this is an amount an order may have: more than 0, at most [`Money::MAX_AMOUNT`].
    pub fn is_order_amount(self) -> bool {
        Money::ZERO < self && self <= Money::MAX_AMOUNT
    }

    pub const fn from_cents(cents: i64) -> Self {
        Money(cents)
    }

    pub const fn cents(self) -> i64 {
        self.0
    }

    /// Parses the exact text of a decimal number: `-`? digits (`.` 1–2 digits)?.
    /// Exponents and more than two decimals are refused rather than rounded.
    pub fn parse_decimal(text: &str) -> Result<Self, MoneyError> {
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = match unsigned.split_once('.') {
            Some((w, f)) => (w, f),
            None => (unsigned, ""),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || (unsigned.contains('.') && !digits(fraction)) {
            return Err(MoneyError::NotDecimal);
        }
        if fraction.len() > 2 {
            // Trailing zeros carry no precision: 1.500 is 1.50.
            if fraction[2..].bytes().any(|b| b != b'0') {
                return Err(MoneyError::TooPrecise);
            }
        }
        // 15 digits of whole units keeps cents far inside i64.
        if whole.trim_start_matches('0').len() > 15 {
            return Err(MoneyError::TooLarge);
        }
        let whole: i64 = whole.parse().map_err(|_| MoneyError::TooLarge)?;
        let mut cents_text: String = fraction.chars().take(2).collect();
        while cents_text.len() < 2 {
            cents_text.push('0');
        }
        let cents: i64 = cents_text.parse().map_err(|_| MoneyError::NotDecimal)?;
        let value = whole * 100 + cents;
        Ok(Money(if negative { -value } else { value }))
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    /// `quantity` of this amount; `None` beyond what an `i64` of cents holds.
    pub fn times(self, quantity: u32) -> Option<Money> {
        self.0.checked_mul(i64::from(quantity)).map(Money)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl FromStr for Money {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Money::parse_decimal(s)
    }
}

impl Serialize for Money {
    /// JSON: a number with the exact decimal text, `150.00`. Binary formats: the `i64` cents.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !serializer.is_human_readable() {
            return serializer.serialize_i64(self.0);
        }
        let mut text = Decimal::default();
        // Display writes at most 21 bytes (`-92233720368547758.08`), which fits the buffer.
        fmt::Write::write_fmt(&mut text, format_args!("{self}"))
            .map_err(serde::ser::Error::custom)?;
        // Our decimal text is always a valid JSON number; serde_json checks it without allocating.
        let raw: &RawValue =
            serde_json::from_str(text.as_str()).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Money {
    /// JSON: the exact text of a number, through [`Money::parse_decimal`]; a string, an exponent
    /// or a third decimal (`10.005`) is refused rather than rounded to an amount nobody sent.
    /// Binary formats: the `i64` cents.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if !deserializer.is_human_readable() {
            return i64::deserialize(deserializer).map(Money);
        }
        // Boxed rather than borrowed: `serde_json::from_value` can only hand over owned text.
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let text = raw.get();
        Money::parse_decimal(text).map_err(|e| {
            let shown = shorten(text);
            serde::de::Error::custom(match e {
                // The wording the DLQ reasons have always used.
                MoneyError::TooPrecise => format!("amount {shown} has more than 2 decimal places"),
                MoneyError::NotDecimal => {
                    format!("amount {shown} is not a JSON number such as 2599.99")
                }
                MoneyError::TooLarge => format!("amount {shown} is too large"),
            })
        })
    }
}

/// In an API description: a JSON number, as it is written (no `multipleOf`: validators that
/// check it in floating point refuse exact amounts such as 2599.99).
impl utoipa::PartialSchema for Money {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Number)
            .description(Some(
                "An exact amount: a JSON number with at most 2 decimal places (integer cents \
                 on the server, never a float), such as 2599.99",
            ))
            .examples([serde_json::json!(2599.99)])
            .into()
    }
}

impl utoipa::ToSchema for Money {}

/// At most 40 characters of a text that was refused: the reason may go into a header.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// A stack buffer for an amount's decimal text: serializing money allocates nothing.
#[derive(Default)]
struct Decimal {
    bytes: [u8; 24],
    len: usize,
}

impl Decimal {
    fn as_str(&self) -> &str {
        // Only whole `&str`s are ever written in.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl fmt::Write for Decimal {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.bytes
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_decimals() {
        assert_eq!(Money::parse_decimal("2599.99"), Ok(Money(259_999)));
        assert_eq!(Money::parse_decimal("2599.9"), Ok(Money(259_990)));
        assert_eq!(Money::parse_decimal("2599"), Ok(Money(259_900)));
        assert_eq!(Money::parse_decimal("0.01"), Ok(Money(1)));
        assert_eq!(Money::parse_decimal("-5.00"), Ok(Money(-500)));
        assert_eq!(Money::parse_decimal("1.500"), Ok(Money(150)));
    }

    #[test]
    fn refuses_what_would_need_rounding_or_guessing() {
        assert_eq!(
            Money::parse_decimal("2599.999"),
            Err(MoneyError::TooPrecise)
        );
        assert_eq!(Money::parse_decimal("1e3"), Err(MoneyError::NotDecimal));
        assert_eq!(Money::parse_decimal("1."), Err(MoneyError::NotDecimal));
        assert_eq!(Money::parse_decimal(".5"), Err(MoneyError::NotDecimal));
        assert_eq!(Money::parse_decimal(""), Err(MoneyError::NotDecimal));
        assert_eq!(
            Money::parse_decimal("12345678901234567"),
            Err(MoneyError::TooLarge)
        );
    }

    /// Amounts across the range, signs and cents, with their exact JSON text.
    const AMOUNTS: [(i64, &str); 10] = [
        (0, "0.00"),
        (1, "0.01"),
        (10, "0.10"),
        (100, "1.00"),
        (15_000, "150.00"),
        (259_999, "2599.99"),
        (99_999_999, "999999.99"),
        (100_000_000, "1000000.00"),
        (-500, "-5.00"),
        (-1, "-0.01"),
    ];

    #[test]
    fn json_is_the_exact_decimal_with_two_places() {
        for (cents, text) in AMOUNTS {
            let json = serde_json::to_string(&Money(cents)).unwrap();
            assert_eq!(json, text);
            let back: Money = serde_json::from_str(&json).unwrap();
            assert_eq!(back, Money(cents), "{text}");
        }
        // Inside a document too: a number, not a string.
        let json = serde_json::to_string(&[Money(15_000), Money(1)]).unwrap();
        assert_eq!(json, "[150.00,0.01]");
        // The extremes of i64 still print exactly and read back.
        for cents in [i64::MAX, i64::MIN + 1] {
            let json = serde_json::to_string(&Money(cents)).unwrap();
            assert_eq!(json, Money(cents).to_string());
        }
    }

    #[test]
    fn json_is_read_from_its_text_not_through_a_float() {
        for (text, cents) in [
            ("1.50", 150),
            ("1.5", 150),
            ("2", 200),
            ("-0.01", -1),
            ("10.500", 1_050),
            // More digits than an f64 holds: read exactly, not rounded.
            ("999999999999999.99", 99_999_999_999_999_999),
            ("0.10000000000000000000", 10),
        ] {
            assert_eq!(
                serde_json::from_str::<Money>(text).unwrap(),
                Money(cents),
                "{text}"
            );
            assert_eq!(
                serde_json::from_slice::<Money>(text.as_bytes()).unwrap(),
                Money(cents)
            );
            assert_eq!(
                serde_json::from_reader::<_, Money>(text.as_bytes()).unwrap(),
                Money(cents)
            );
        }
    }

    #[test]
    fn every_cent_up_to_a_million_round_trips() {
        // The whole accepted range, sampled densely: no amount may drift by a cent.
        for cents in (0..=100_000_000_i64)
            .step_by(9_973)
            .chain([1, 99, 100_000_000])
        {
            let json = serde_json::to_string(&Money(cents)).unwrap();
            assert_eq!(json, Money(cents).to_string());
            let back: Money = serde_json::from_str(&json).unwrap();
            assert_eq!(back, Money(cents));
        }
    }

    fn refusal(text: &str) -> String {
        let read: Result<Money, _> = serde_json::from_str(text);
        read.expect_err(text).to_string()
    }

    #[test]
    fn json_with_a_third_decimal_is_refused_not_rounded() {
        for text in ["10.005", "0.001", "2599.999", "1000000.001", "-3.333"] {
            let error = refusal(text);
            assert!(
                error.contains(&format!("amount {text} has more than 2 decimal places")),
                "{text}: {error}"
            );
        }
        // A digit past a long run of zeros is still a third decimal.
        assert!(refusal("0.100000000000000000001").contains("more than 2 decimal places"));
    }

    #[test]
    fn json_that_is_not_a_plain_decimal_number_is_refused() {
        for text in [
            "1e2",
            "1E2",
            "1.5e0",
            "-1e-2",
            "\"150.00\"",
            "\"1\"",
            "null",
            "true",
            "[1]",
            "{\"cents\":1}",
        ] {
            let error = refusal(text);
            assert!(
                error.contains("is not a JSON number such as 2599.99"),
                "{text}: {error}"
            );
        }
        // Not JSON at all: serde_json's own error.
        for text in ["1.", ".5", "01", "+1", "NaN", ""] {
            refusal(text);
        }
    }

    #[test]
    fn huge_json_amounts_are_refused_and_shown_in_part() {
        let huge = "9".repeat(400);
        for text in ["1234567890123456.00", "9223372036854775808", huge.as_str()] {
            let error = refusal(text);
            assert!(error.contains("is too large"), "{text}: {error}");
            assert!(error.len() < 120, "{error}");
        }
        let error = refusal(&format!("1.{huge}"));
        assert!(error.contains('…') && error.len() < 120, "{error}");
    }

    #[test]
    fn serde_json_values_carry_the_amount_both_ways() {
        for (cents, _) in AMOUNTS {
            let value = serde_json::to_value(Money(cents)).unwrap();
            assert!(value.is_number(), "{value}");
            assert_eq!(
                serde_json::from_value::<Money>(value.clone()).unwrap(),
                Money(cents)
            );
            assert_eq!(Money::deserialize(&value).unwrap(), Money(cents));
        }
        // A `Value` keeps an f64, not the text: it reads back exactly all the same.
        let value: serde_json::Value = serde_json::from_str("150.00").unwrap();
        assert_eq!(
            serde_json::from_value::<Money>(value).unwrap(),
            Money(15_000)
        );
        let error = serde_json::from_value::<Money>(serde_json::json!(10.005)).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("amount 10.005 has more than 2 decimal places")
        );
        assert!(serde_json::from_value::<Money>(serde_json::json!("1.00")).is_err());
    }

    #[test]
    fn binary_formats_hold_the_cents() {
        let config = bincode::config::standard();
        for (cents, _) in AMOUNTS {
            let bytes = bincode::serde::encode_to_vec(Money(cents), config).unwrap();
            assert_eq!(bytes, bincode::serde::encode_to_vec(cents, config).unwrap());
            let (back, _): (Money, _) = bincode::serde::decode_from_slice(&bytes, config).unwrap();
            assert_eq!(back, Money(cents));
        }
    }

    #[test]
    fn order_amounts_are_positive_and_at_most_a_million() {
        assert!(Money(1).is_order_amount());
        assert!(Money::MAX_AMOUNT.is_order_amount());
        assert_eq!(Money::MAX_AMOUNT.to_string(), "1000000.00");
        for cents in [0, -1, 100_000_001, i64::MAX] {
            assert!(!Money(cents).is_order_amount(), "{cents}");
        }
    }

    #[test]
    fn displays_two_decimals() {
        assert_eq!(Money(259_999).to_string(), "2599.99");
        assert_eq!(Money(5).to_string(), "0.05");
        assert_eq!(Money(-150).to_string(), "-1.50");
    }
}
