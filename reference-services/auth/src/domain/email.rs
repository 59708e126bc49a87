//! [`Email`]: an email address normalised (trimmed, lowercased) so that one address is
//! one user whatever its spelling.

use std::fmt;

use super::DomainError;

/// The longest address accepted (RFC 5321's limit on a forward path).
const MAX_LEN: usize = 254;

/// A normalised email address: trimmed, lowercased, one `@` between a non-empty local
/// part and a domain, at most 254 bytes.
///
/// ```
/// use dovetail_auth::domain::Email;
///
/// let email = Email::parse("  Ada@Example.COM ").unwrap();
/// assert_eq!(email.as_str(), "ada@example.com");
/// assert!(Email::parse("no-at-sign").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// The normalised address of `raw`.
    ///
    /// # Errors
    /// [`DomainError::Invalid`] on `email` when it is empty, too long, or not
    /// `local@domain`.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let email = raw.trim().to_lowercase();
        if email.len() > MAX_LEN {
            return Err(DomainError::invalid(
                "email",
                format!("an email address has at most {MAX_LEN} characters"),
            ));
        }
        let valid = email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !email.chars().any(char::is_whitespace)
        });
        if !valid {
            return Err(DomainError::invalid(
                "email",
                "give an email address like name@example.com",
            ));
        }
        Ok(Self(email))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The normalised address, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_address_normalise_to_it() {
        for raw in ["ada@example.com", " ADA@example.com", "Ada@Example.Com\t"] {
            assert_eq!(Email::parse(raw).unwrap().as_str(), "ada@example.com");
        }
    }

    #[test]
    fn what_is_not_an_address_is_refused() {
        for raw in ["", "   ", "ada", "@example.com", "ada@", "a@b@c", "a b@c.d"] {
            assert!(Email::parse(raw).is_err(), "{raw:?}");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(250))).is_err());
    }
}
