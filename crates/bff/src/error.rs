//! [`CallError`]: why a call to a downstream gave no answer to use, and the
//! [`SectionOutcome`] each reason becomes.

use axum::http::StatusCode;

use crate::SectionOutcome;

/// A boxed error source (the HTTP client's, kept as `source()`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a call to a downstream gave no answer to use.
///
/// Each variant maps to the [`SectionOutcome`] of the section it was for
/// ([`CallError::outcome`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The request's deadline, or the call's own timeout, passed before the answer.
    ///
    /// ### Handling
    /// A `timeout` section; as a required section, a 504. Retrying within the same
    /// request is pointless: the time is gone.
    #[error("no answer before the deadline")]
    Timeout,
    /// The downstream's circuit breaker is open: the call was not made.
    ///
    /// ### Handling
    /// A `circuit_open` section; the breaker lets a probe through after its open
    /// duration.
    #[error("the circuit breaker is open; the downstream was not called")]
    CircuitOpen,
    /// The downstream refused the caller: 401 or 403.
    ///
    /// ### Handling
    /// A `forbidden` section. Not a failure of the downstream: the breaker ignores it.
    #[error("the downstream refused the caller ({status})")]
    Forbidden {
        /// 401 or 403.
        status: StatusCode,
    },
    /// The downstream answered a 5xx (or 429).
    ///
    /// ### Handling
    /// An `unavailable` section; idempotent calls were retried within the budget.
    #[error("the downstream failed ({status})")]
    Failed {
        /// The status it answered.
        status: StatusCode,
    },
    /// No answer: the connection could not be made or broke.
    ///
    /// ### Handling
    /// An `unavailable` section; idempotent calls were retried within the budget.
    #[error("the downstream could not be reached")]
    Transport(#[source] BoxError),
    /// The downstream answered another status than the call expects (a 404, a 409...).
    ///
    /// ### Handling
    /// An `unavailable` section; the downstream is healthy, so the breaker ignores it.
    /// Call [`Downstream::send`](crate::Downstream::send) to handle such statuses.
    #[error("the downstream answered {status}")]
    Rejected {
        /// The status it answered.
        status: StatusCode,
    },
    /// The answer's body is not what the call expects.
    ///
    /// ### Handling
    /// An `unavailable` section: a contract mismatch to fix between the services.
    #[error("the downstream's answer cannot be read")]
    Decode(#[source] serde_json::Error),
}

impl CallError {
    /// The outcome of the section this call was for.
    pub fn outcome(&self) -> SectionOutcome {
        match self {
            Self::Timeout => SectionOutcome::Timeout,
            Self::CircuitOpen => SectionOutcome::CircuitOpen,
            Self::Forbidden { .. } => SectionOutcome::Forbidden,
            Self::Failed { .. } | Self::Transport(_) | Self::Rejected { .. } | Self::Decode(_) => {
                SectionOutcome::Unavailable
            }
        }
    }

    /// Whether this error says the downstream is unhealthy: what the breaker counts and
    /// what an idempotent call is retried on.
    pub fn is_downstream_failure(&self) -> bool {
        matches!(
            self,
            Self::Timeout | Self::Failed { .. } | Self::Transport(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn errors_map_to_outcomes_and_keep_their_source() {
        assert_eq!(CallError::Timeout.outcome(), SectionOutcome::Timeout);
        assert_eq!(
            CallError::CircuitOpen.outcome(),
            SectionOutcome::CircuitOpen
        );
        let forbidden = CallError::Forbidden {
            status: StatusCode::FORBIDDEN,
        };
        assert_eq!(forbidden.outcome(), SectionOutcome::Forbidden);
        assert!(!forbidden.is_downstream_failure());
        let failed = CallError::Failed {
            status: StatusCode::SERVICE_UNAVAILABLE,
        };
        assert_eq!(failed.outcome(), SectionOutcome::Unavailable);
        assert!(failed.is_downstream_failure());
        let source = std::io::Error::other("connection refused");
        let transport = CallError::Transport(Box::new(source));
        assert_eq!(transport.to_string(), "the downstream could not be reached");
        assert_eq!(
            transport.source().map(ToString::to_string).as_deref(),
            Some("connection refused")
        );
    }
}
