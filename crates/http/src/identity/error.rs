//! Why a bearer token was refused ([`VerifyError`]) and why the key set could not be had
//! ([`JwksError`]).

use std::fmt;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Algorithm;

/// The source of a [`JwksError`]: the HTTP client's or the JSON parser's own error, kept
/// opaque so that no third-party type is part of this crate's API.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a request's bearer token was not accepted. Every variant is answered with 401 and
/// a problem+json body whose detail is this error's `Display`: it says what to fix and
/// never repeats the token.
///
/// ### Handling
/// The caller's fix is in the message: log in again or refresh the token
/// ([`Expired`](Self::Expired)), ask for a token for this service
/// ([`WrongAudience`](Self::WrongAudience)), send one at all ([`Missing`](Self::Missing)).
/// An operator looks at [`KeySetUnavailable`](Self::KeySetUnavailable) (the JWKS endpoint
/// is down) and [`UnknownKey`](Self::UnknownKey) after a key rotation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// No `Authorization` header.
    #[error("this endpoint needs a bearer token: send `Authorization: Bearer <access token>`")]
    Missing,

    /// An `Authorization` header that is not `Bearer <token>`, or a token that is not a
    /// JWS compact serialization.
    #[error(
        "the bearer token cannot be read: {reason}; send the access token the auth service issued"
    )]
    Malformed {
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The header says `alg: none`: an unsigned token.
    #[error("the token is unsigned (alg none); only signed access tokens are accepted")]
    Unsigned,

    /// The token's algorithm is not one this service accepts (HS256 signed with a public
    /// key, an ES256 token where only EdDSA is configured, ...).
    #[error("the token is signed with {found}; this service accepts only {}", AlgorithmList(.allowed))]
    AlgorithmNotAllowed {
        /// The header's `alg`, cut short.
        found: String,
        /// What the verifier is configured with.
        allowed: Vec<Algorithm>,
    },

    /// The header has no `kid`: the service cannot tell which key signed the token.
    #[error("the token's header has no kid; tokens must name their signing key")]
    MissingKeyId,

    /// No key of the JWKS has the token's `kid`, even after fetching the key set again
    /// (or a fetch was not allowed yet: the refetch interval had not passed).
    #[error(
        "the token was signed with key `{kid}`, which this service does not know; \
         log in again for a token signed with a current key"
    )]
    UnknownKey {
        /// The token's `kid`, cut short.
        kid: String,
    },

    /// The key has the token's `kid` but is for another algorithm.
    #[error(
        "the token says {alg} but key `{kid}` is not a {alg} key; the token was not issued by this system"
    )]
    KeyAlgorithmMismatch {
        /// The token's `kid`.
        kid: String,
        /// The token's algorithm.
        alg: Algorithm,
    },

    /// The token's `kid` is unknown and the JWKS could not be fetched to look for it.
    #[error(
        "the token was signed with key `{kid}`, which this service does not know, and the \
         key set cannot be fetched now; retry later"
    )]
    KeySetUnavailable {
        /// The token's `kid`, cut short.
        kid: String,
        /// Why the key set could not be fetched.
        #[source]
        source: JwksError,
    },

    /// The signature does not match the header and payload: the token was altered or was
    /// not signed by the key it names.
    #[error("the token's signature does not verify; it was altered or not issued by this system")]
    BadSignature,

    /// `exp` has passed (beyond the leeway).
    #[error("the token expired at {}; log in again or refresh it", Timestamp(*.at))]
    Expired {
        /// The token's `exp`.
        at: i64,
    },

    /// `nbf` is still ahead (beyond the leeway).
    #[error("the token is not valid before {}; check the clocks of the issuer and this service", Timestamp(*.from))]
    NotYetValid {
        /// The token's `nbf`.
        from: i64,
    },

    /// `iat` is in the future (beyond the leeway).
    #[error("the token says it was issued at {}, which is in the future; check the clocks", Timestamp(*.at))]
    IssuedInFuture {
        /// The token's `iat`.
        at: i64,
    },

    /// `iss` is not the configured issuer.
    #[error("the token's issuer is `{found}`, this service trusts `{expected}`")]
    WrongIssuer {
        /// The token's `iss`, cut short.
        found: String,
        /// The configured issuer.
        expected: String,
    },

    /// `aud` does not contain this service.
    #[error(
        "the token's audience is `{found}`, this service is `{expected}`; ask for a token for `{expected}`"
    )]
    WrongAudience {
        /// The token's `aud` values, joined with commas and cut short.
        found: String,
        /// The configured audience.
        expected: String,
    },

    /// A claim this crate requires is absent or of the wrong type.
    #[error("the token's claims are incomplete: {reason}")]
    BadClaims {
        /// Which claim, and what is wrong with it.
        reason: String,
    },
}

impl VerifyError {
    /// The RFC 6750 `error` attribute for `WWW-Authenticate`: none when the token is
    /// simply missing, `invalid_request` when the header cannot be read, otherwise
    /// `invalid_token`.
    pub fn oauth_error(&self) -> Option<&'static str> {
        match self {
            Self::Missing => None,
            Self::Malformed { .. } => Some("invalid_request"),
            _ => Some("invalid_token"),
        }
    }
}

/// Why the JWKS could not be had.
///
/// ### Handling
/// Usually transient (the auth service is restarting). Tokens whose key is cached keep
/// verifying meanwhile; only tokens with an unknown `kid` are refused. Alert if it lasts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The request to the JWKS URL failed (connection refused, timeout).
    #[error("the JWKS at {url} could not be fetched")]
    Fetch {
        /// The JWKS URL.
        url: String,
        /// The HTTP client's error.
        #[source]
        source: BoxError,
    },
    /// The JWKS URL answered with a status other than 200.
    #[error("the JWKS at {url} answered {status}")]
    Status {
        /// The JWKS URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The key set is not a JWKS (`{"keys": [...]}`).
    #[error("the key set from {origin} is not a JWKS")]
    Parse {
        /// The URL, or `"static key set"`.
        origin: String,
        /// The JSON parser's error.
        #[source]
        source: BoxError,
    },
    /// The fetch was not tried: the last one was less than the refetch interval ago.
    #[error("the JWKS was fetched less than the refetch interval ago; not fetching again yet")]
    RateLimited {
        /// Whether that last fetch failed (the endpoint is likely still down).
        last_fetch_failed: bool,
    },
    /// The source is a static key set: there is nothing to fetch.
    #[error("the key set is static; there is nothing to fetch")]
    Static,
}

/// At most `max` characters of an untrusted value, for a message.
pub(crate) fn cut(value: &str, max: usize) -> String {
    if value.chars().count() <= max {
        value.to_owned()
    } else {
        let mut short: String = value.chars().take(max).collect();
        short.push('…');
        short
    }
}

struct Timestamp(i64);

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match OffsetDateTime::from_unix_timestamp(self.0)
            .ok()
            .and_then(|at| at.format(&Rfc3339).ok())
        {
            Some(text) => f.write_str(&text),
            None => write!(f, "{} (seconds since 1970)", self.0),
        }
    }
}

struct AlgorithmList<'a>(&'a [Algorithm]);

impl fmt::Display for AlgorithmList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, alg) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{alg}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_said_as_a_date_with_what_to_do() {
        let message = VerifyError::Expired { at: 1_700_000_000 }.to_string();
        assert_eq!(
            message,
            "the token expired at 2023-11-14T22:13:20Z; log in again or refresh it"
        );
    }

    #[test]
    fn a_missing_token_has_no_oauth_error_and_a_bad_one_has() {
        assert_eq!(VerifyError::Missing.oauth_error(), None);
        assert_eq!(
            VerifyError::BadSignature.oauth_error(),
            Some("invalid_token")
        );
    }

    #[test]
    fn untrusted_values_are_cut_short() {
        assert_eq!(cut("abc", 5), "abc");
        assert_eq!(cut("abcdefgh", 3), "abc…");
    }

    #[test]
    fn the_source_is_kept_and_not_repeated() {
        let error = VerifyError::KeySetUnavailable {
            kid: "k1".into(),
            source: JwksError::Status {
                url: "http://auth/jwks".into(),
                status: 503,
            },
        };
        assert!(!error.to_string().contains("503"));
        let source = std::error::Error::source(&error).map(ToString::to_string);
        assert_eq!(
            source.as_deref(),
            Some("the JWKS at http://auth/jwks answered 503")
        );
    }
}
