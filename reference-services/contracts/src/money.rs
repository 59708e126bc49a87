//! [`Money`]: an exact, non-negative amount with at most two decimals, never a float.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An exact amount of money: non-negative, at most two decimal places, below one
/// trillion. It travels in JSON as a string (`"1200.50"`), so no float ever touches it.
///
/// ```
/// use dovetail_contracts::Money;
///
/// let limit: Money = "10000.00".parse()?;
/// let deductible: Money = "250".parse()?;
/// assert_eq!(limit.saturating_sub(deductible).to_string(), "9750.00");
/// assert!("12.345".parse::<Money>().is_err());
/// assert!("-1".parse::<Money>().is_err());
/// # Ok::<(), dovetail_contracts::MoneyError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(Decimal);

/// Why a text is not an amount of [`Money`]; the message says what to send instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{reason}: {text:?} is not an amount of money; send a string such as \"1200.50\" (non-negative, at most 2 decimals)"
)]
pub struct MoneyError {
    text: String,
    reason: &'static str,
}

impl Money {
    /// Nothing.
    pub const ZERO: Self = Self(Decimal::ZERO);

    /// The largest amount accepted, 999,999,999,999.99.
    fn max() -> Decimal {
        Decimal::new(99_999_999_999_999, 2)
    }

    /// Parses an amount such as `"1200.50"` or `"3"`.
    ///
    /// # Errors
    /// [`MoneyError`] when the text is not a plain decimal number, is negative, has more
    /// than two decimals or is one trillion or more.
    pub fn parse(text: &str) -> Result<Self, MoneyError> {
        let refuse = |reason| MoneyError {
            text: text.to_owned(),
            reason,
        };
        let plain = !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
            && text.bytes().filter(|&b| b == b'.').count() <= 1
            && !text.starts_with('.')
            && !text.ends_with('.');
        if !plain {
            return Err(refuse("not a plain decimal number"));
        }
        let value = Decimal::from_str(text).map_err(|_| refuse("not a plain decimal number"))?;
        if value.is_sign_negative() && !value.is_zero() {
            return Err(refuse("negative"));
        }
        if value.scale() > 2 && value.normalize().scale() > 2 {
            return Err(refuse("more than two decimals"));
        }
        if value > Self::max() {
            return Err(refuse("one trillion or more"));
        }
        let mut value = value.abs();
        value.rescale(2);
        Ok(Self(value))
    }

    /// `self - other`, or zero when `other` is larger.
    #[must_use]
    pub fn saturating_sub(self, other: Self) -> Self {
        if other.0 >= self.0 {
            Self::ZERO
        } else {
            Self(self.0 - other.0)
        }
    }

    /// Whether this is zero.
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", self.0)
    }
}

impl FromStr for Money {
    type Err = MoneyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Money;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an amount of money as a string, such as \"1200.50\"")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Money, E> {
                Money::parse(text).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::Money;
    use proptest::prelude::*;

    #[test]
    fn accepts_plain_amounts_and_prints_two_decimals() {
        for (text, printed) in [
            ("0", "0.00"),
            ("1", "1.00"),
            ("1.5", "1.50"),
            ("1200.50", "1200.50"),
            ("7.000", "7.00"),
            ("999999999999.99", "999999999999.99"),
        ] {
            assert_eq!(Money::parse(text).unwrap().to_string(), printed, "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_money_with_a_reason() {
        for (text, reason) in [
            ("", "not a plain decimal number"),
            ("1e3", "not a plain decimal number"),
            ("12,50", "not a plain decimal number"),
            (" 1", "not a plain decimal number"),
            ("1.", "not a plain decimal number"),
            ("NaN", "not a plain decimal number"),
            ("-0.01", "negative"),
            ("0.001", "more than two decimals"),
            ("1000000000000", "one trillion or more"),
        ] {
            let error = Money::parse(text).unwrap_err().to_string();
            assert!(error.starts_with(reason), "{text}: {error}");
            assert!(error.contains("\"1200.50\""), "{error}");
        }
    }

    #[test]
    fn json_is_a_string_and_numbers_are_refused() {
        let money: Money = serde_json::from_str("\"12.30\"").unwrap();
        assert_eq!(serde_json::to_string(&money).unwrap(), "\"12.30\"");
        let error = serde_json::from_str::<Money>("12.3")
            .unwrap_err()
            .to_string();
        assert!(error.contains("as a string"), "{error}");
    }

    proptest! {
        #[test]
        fn cents_round_trip_exactly(cents in 0_u64..99_999_999_999_999) {
            let text = format!("{}.{:02}", cents / 100, cents % 100);
            let money = Money::parse(&text).unwrap();
            prop_assert_eq!(money.to_string(), text);
            prop_assert_eq!(money.saturating_sub(money), Money::ZERO);
        }
    }
}
