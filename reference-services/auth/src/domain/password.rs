//! [`Password`]: a new password that follows NIST SP 800-63B's rule (length only, no
//! composition rules), kept out of `Debug` output.

use std::fmt;

use super::DomainError;

/// The fewest characters a password may have.
pub const MIN_CHARS: usize = 8;

/// The most characters a password may have.
pub const MAX_CHARS: usize = 128;

/// The rule, as problems state it.
pub const PASSWORD_RULE: &str = "a password has 8 to 128 characters (any characters, \
     spaces and emoji included; no other rules), per NIST SP 800-63B";

/// A password that follows the rule: 8 to 128 characters (Unicode scalar values, not
/// bytes), nothing else required. Its `Debug` shows no character of it.
///
/// ```
/// use dovetail_auth::domain::Password;
///
/// assert!(Password::parse("correct horse".to_owned()).is_ok());
/// assert!(Password::parse("short".to_owned()).is_err());
/// assert_eq!(format!("{:?}", Password::parse("correct horse".to_owned()).unwrap()), "Password(..)");
/// ```
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// `raw` as a new password, if it follows the rule.
    ///
    /// # Errors
    /// [`DomainError::Invalid`] on `password`, stating the rule.
    pub fn parse(raw: String) -> Result<Self, DomainError> {
        let chars = raw.chars().count();
        if !(MIN_CHARS..=MAX_CHARS).contains(&chars) {
            return Err(DomainError::invalid(
                "password",
                format!("{PASSWORD_RULE}; this one has {chars}"),
            ));
        }
        Ok(Self(raw))
    }

    /// The password's text, for hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_counts_characters_not_bytes() {
        // Eight characters, 32 bytes.
        assert!(Password::parse("🦀🦀🦀🦀🦀🦀🦀🦀".to_owned()).is_ok());
        // Seven characters, 28 bytes.
        assert!(Password::parse("🦀🦀🦀🦀🦀🦀🦀".to_owned()).is_err());
    }

    #[test]
    fn the_bounds_are_8_and_128_and_nothing_else_is_required() {
        assert!(Password::parse("a".repeat(7)).is_err());
        assert!(Password::parse("a".repeat(8)).is_ok());
        assert!(Password::parse("a".repeat(128)).is_ok());
        assert!(Password::parse("a".repeat(129)).is_err());
        assert!(Password::parse("        ".to_owned()).is_ok());
    }

    #[test]
    fn the_refusal_states_the_rule() {
        let error = Password::parse("short".to_owned()).unwrap_err();
        assert!(error.to_string().contains("8 to 128 characters"), "{error}");
    }
}
