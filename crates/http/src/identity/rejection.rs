//! [`Unauthorized`]: the 401 answer, problem+json with an RFC 6750 `WWW-Authenticate`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::VerifyError;
use crate::Problem;

/// The realm every Dovetail API names in its challenge.
pub const REALM: &str = "dovetail";

/// A refused request: 401 with a problem+json body (type `unauthorized`) whose detail says
/// what to fix, and `WWW-Authenticate: Bearer realm="dovetail"` with `error` and
/// `error_description` (RFC 6750 §3) unless the token was simply missing.
#[derive(Debug)]
pub struct Unauthorized {
    error: VerifyError,
}

impl Unauthorized {
    /// Why the request was refused.
    pub fn error(&self) -> &VerifyError {
        &self.error
    }

    /// The `WWW-Authenticate` challenge.
    pub fn challenge(&self) -> HeaderValue {
        let value = match self.error.oauth_error() {
            None => format!("Bearer realm=\"{REALM}\""),
            Some(code) => format!(
                "Bearer realm=\"{REALM}\", error=\"{code}\", error_description=\"{}\"",
                quoted_string_safe(&self.error.to_string())
            ),
        };
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }

    /// The problem+json body.
    pub fn problem(&self) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
            .detail(self.error.to_string())
    }
}

impl From<VerifyError> for Unauthorized {
    fn from(error: VerifyError) -> Self {
        Self { error }
    }
}

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        let challenge = self.challenge();
        let mut response = self.problem().into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
        response
    }
}

/// RFC 6750 limits `error_description` to printable ASCII without `"` and `\`.
fn quoted_string_safe(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_is_a_safe_quoted_string() {
        assert_eq!(quoted_string_safe("a \"b\" \\ é"), "a 'b' ' ?");
    }

    #[test]
    fn a_missing_token_is_challenged_without_an_error() {
        let challenge = Unauthorized::from(VerifyError::Missing).challenge();
        assert_eq!(challenge, "Bearer realm=\"dovetail\"");
    }
}
