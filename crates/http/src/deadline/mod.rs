//! [`Deadline`]: how long a request may still take, carried from hop to hop in the
//! [`DEADLINE_HEADER`] as the milliseconds that remain (relative, like gRPC's
//! `grpc-timeout`, so hosts need not agree on the time).
//!
//! A gateway starts the clock for the whole request and gives each downstream call the
//! time that remains; a service reads the header when the request arrives and stops
//! working once it has passed, answering [`Deadline::exceeded_problem`] (504).
//!
//! ```
//! use std::time::Duration;
//! use axum::http::HeaderMap;
//! use dovetail_http::deadline::{DEADLINE_HEADER, Deadline};
//!
//! let deadline = Deadline::after(Duration::from_millis(800));
//! let mut headers = HeaderMap::new();
//! deadline.insert_into(&mut headers);
//! let remaining: u64 = headers[DEADLINE_HEADER].to_str()?.parse()?;
//! assert!(remaining <= 800 && remaining > 700);
//!
//! let downstream = Deadline::from_headers(&headers)?.expect("the header is there");
//! assert!(downstream.remaining() <= Duration::from_millis(800));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A service honours the header with [`DeadlineLayer`]; a handler takes the request's
//! [`Deadline`] as an extractor (`Option<Deadline>` when the header is optional) to pass
//! it to the calls it makes.

mod layer;

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use tokio::time::Instant;

use crate::Problem;

pub use layer::{DeadlineLayer, DeadlineService};

/// The header that carries the time a request has left, in whole milliseconds.
pub const DEADLINE_HEADER: &str = "dovetail-deadline-ms";

/// The longest deadline a header may ask for: ten minutes. More is refused, so that a
/// caller cannot make a service hold work for ever.
pub const MAX_DEADLINE: Duration = Duration::from_secs(600);

/// The instant by which a request must be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline {
    at: Instant,
}

/// Why a [`DEADLINE_HEADER`] cannot be read; the message says what to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "header {DEADLINE_HEADER}: {found:?} is not a deadline; send the milliseconds the request \
     may still take, a whole number from 0 to {max}",
    max = MAX_DEADLINE.as_millis()
)]
pub struct BadDeadline {
    /// What the header held (cut to 32 characters).
    pub found: String,
}

impl BadDeadline {
    /// The 400 problem to answer.
    pub fn problem(&self) -> Problem {
        Problem::bad_request(self.to_string())
    }
}

impl Deadline {
    /// `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Self {
            at: Instant::now() + budget,
        }
    }

    /// The deadline at `at`.
    pub fn at(at: Instant) -> Self {
        Self { at }
    }

    /// The instant it falls at.
    pub fn instant(&self) -> Instant {
        self.at
    }

    /// The time that remains; zero once it has passed.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whether it has passed.
    pub fn has_passed(&self) -> bool {
        Instant::now() >= self.at
    }

    /// The earlier of this deadline and `budget` from now: a call's own timeout never
    /// outlasts the request's deadline.
    pub fn capped(&self, budget: Duration) -> Self {
        (*self).min(Self::after(budget))
    }

    /// The deadline a request's headers carry, if any.
    ///
    /// # Errors
    /// [`BadDeadline`] when the header is not a whole number of milliseconds up to
    /// [`MAX_DEADLINE`].
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, BadDeadline> {
        let Some(value) = headers.get(DEADLINE_HEADER) else {
            return Ok(None);
        };
        let text = value.to_str().unwrap_or_default().trim();
        let millis: u64 = text.parse().map_err(|_| BadDeadline {
            found: text.chars().take(32).collect(),
        })?;
        let budget = Duration::from_millis(millis);
        if budget > MAX_DEADLINE {
            return Err(BadDeadline {
                found: text.chars().take(32).collect(),
            });
        }
        Ok(Some(Self::after(budget)))
    }

    /// The header value: the whole milliseconds that remain, rounded down.
    pub fn header_value(&self) -> HeaderValue {
        let millis = u64::try_from(self.remaining().as_millis()).unwrap_or(u64::MAX);
        HeaderValue::from(millis)
    }

    /// Puts [`DEADLINE_HEADER`] with the time that remains into `headers`, for a call
    /// downstream.
    pub fn insert_into(&self, headers: &mut HeaderMap) {
        headers.insert(DEADLINE_HEADER, self.header_value());
    }

    /// The 504 problem of a request whose deadline passed before it was answered.
    pub fn exceeded_problem() -> Problem {
        Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            "deadline-exceeded",
            "Deadline exceeded",
        )
        .detail(format!(
            "the request's deadline ({DEADLINE_HEADER}) passed before it was answered; the work \
             it started was stopped. Retry with a longer deadline, or later"
        ))
    }
}

/// The request's deadline, put there by [`DeadlineLayer`]. A request without one is
/// refused with a 400 problem that asks for the header; take `Option<Deadline>` where the
/// header is optional.
impl<S: Send + Sync> FromRequestParts<S> for Deadline {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Deadline>().copied().ok_or_else(|| {
            Problem::bad_request(format!(
                "this endpoint needs a deadline: send {DEADLINE_HEADER} with the milliseconds \
                 the request may still take"
            ))
        })
    }
}

/// The request's deadline if it carries one.
impl<S: Send + Sync> OptionalFromRequestParts<S> for Deadline {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Deadline>().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(DEADLINE_HEADER, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn the_header_round_trips_the_remaining_time() {
        let deadline = Deadline::after(Duration::from_millis(500));
        let mut map = HeaderMap::new();
        deadline.insert_into(&mut map);
        let read = Deadline::from_headers(&map).unwrap().unwrap();
        assert!(read.remaining() <= Duration::from_millis(500));
        assert!(read.remaining() > Duration::from_millis(400));
    }

    #[test]
    fn no_header_is_no_deadline_and_a_bad_one_says_what_to_send() {
        assert_eq!(Deadline::from_headers(&HeaderMap::new()), Ok(None));
        for bad in ["soon", "-5", "1.5", "600001"] {
            let error = Deadline::from_headers(&headers(bad)).unwrap_err();
            assert!(
                error.to_string().contains("whole number from 0 to 600000"),
                "{error}"
            );
            assert_eq!(error.problem().status(), StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn a_zero_deadline_has_passed_and_capping_keeps_the_earlier() {
        let zero = Deadline::from_headers(&headers("0")).unwrap().unwrap();
        assert!(zero.has_passed());
        let long = Deadline::after(Duration::from_secs(60));
        assert!(long.capped(Duration::from_millis(10)).remaining() <= Duration::from_millis(10));
        let short = Deadline::after(Duration::from_millis(10));
        assert_eq!(short.capped(Duration::from_secs(60)), short);
        assert_eq!(
            Deadline::exceeded_problem().status(),
            StatusCode::GATEWAY_TIMEOUT
        );
    }
}
