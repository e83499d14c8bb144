//! Exact money: integer minor units (cents), never a float.
//!
//! In JSON an amount is a number with its exact decimal text (`2599.99`). Parsing from client input
//! goes through [`Money::parse_decimal`] on the raw JSON text, so `2599.999` is refused instead of
//! being rounded. Our own events are read back through `f64` only to recover the integer cents that
//! we wrote ourselves, which is exact far beyond the largest amount we accept.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
    /// A JSON number whose text is the exact decimal: for |cents| < 2^53 the shortest
    /// round-trip form of `cents / 100` is that decimal, so `259999` prints as `2599.99`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.0 as f64 / 100.0)
    }
}

impl<'de> Deserialize<'de> for Money {
    /// Reads a number we wrote; rounding to the nearest cent undoes the binary representation.
    /// A number that is not within rounding of a whole cent was not written by us (`10.005`):
    /// it is refused rather than rounded to an amount nobody sent.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = f64::deserialize(deserializer)?;
        let scaled = value * 100.0;
        let cents = scaled.round();
        if !cents.is_finite() || cents.abs() > 9.0e15 {
            return Err(serde::de::Error::custom("amount out of range"));
        }
        // `cents / 100.0` and back is off by a few ulps at most; a third decimal is far more.
        if (scaled - cents).abs() > (cents.abs() * 1e-12).max(1e-9) {
            return Err(serde::de::Error::custom(format!(
                "amount {value} has more than 2 decimal places"
            )));
        }
        Ok(Money(cents as i64))
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

    #[test]
    fn json_number_keeps_its_decimal_text() {
        for text in [
            "2599.99",
            "0.01",
            "0.1",
            "1000000.0",
            "100.5",
            "99999999.99",
        ] {
            let money = Money::parse_decimal(text).unwrap();
            let json = serde_json::to_string(&money).unwrap();
            let back: Money = serde_json::from_str(&json).unwrap();
            assert_eq!(back, money, "{text} -> {json}");
            assert_eq!(json.parse::<f64>().unwrap(), text.parse::<f64>().unwrap());
        }
        assert_eq!(serde_json::to_string(&Money(259_999)).unwrap(), "2599.99");
    }

    #[test]
    fn every_cent_up_to_a_million_round_trips() {
        // The whole accepted range, sampled densely: no amount may drift by a cent.
        for cents in (0..=100_000_000_i64)
            .step_by(9_973)
            .chain([1, 99, 100_000_000])
        {
            let json = serde_json::to_string(&Money(cents)).unwrap();
            let back: Money = serde_json::from_str(&json).unwrap();
            assert_eq!(back, Money(cents));
            assert_eq!(Money::parse_decimal(&json), Ok(Money(cents)), "{json}");
        }
    }

    #[test]
    fn json_with_a_third_decimal_is_refused_not_rounded() {
        for text in ["10.005", "0.001", "2599.999", "1000000.001", "-3.333"] {
            let read: Result<Money, _> = serde_json::from_str(text);
            let error = read.expect_err(text).to_string();
            assert!(
                error.contains("more than 2 decimal places"),
                "{text}: {error}"
            );
        }
        // Trailing zeros carry no precision.
        assert_eq!(
            serde_json::from_str::<Money>("10.500").unwrap(),
            Money(1_050)
        );
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
