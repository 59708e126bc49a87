//! What a handler answers when it cannot process a delivery: [`HandlerError`], and
//! [`HandlerResultExt`] to turn any error into one.

use std::error::Error;
use std::fmt::Write as _;

/// Why a handler did not process a delivery, and so what the runtime does with it.
///
/// A handler is a [`tower::Service<Delivery, Response = (), Error = HandlerError>`]
/// (see [`Delivery`](super::Delivery)). `Ok(())` means "processed": the message is
/// acknowledged (for SQS, deleted). An error says whether trying again can help.
///
/// # Example
/// ```
/// use dovetail_events::consumer::{Delivery, HandlerError, HandlerResultExt};
///
/// #[derive(serde::Deserialize)]
/// struct PolicyActivated { policy_id: String }
///
/// async fn handle(delivery: Delivery) -> Result<(), HandlerError> {
///     // A body that does not parse never will: `?` rejects it (to the dead-letter queue).
///     let event: PolicyActivated = serde_json::from_str(&delivery.body)?;
///     // A failing dependency may recover: retry later, with backoff.
///     save(&event.policy_id).await.retriable()?;
///     Ok(())
/// }
/// # async fn save(_: &str) -> Result<(), std::io::Error> { Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// The message could not be processed now but may be later: a dependency is down, a
    /// lock is held, a row the message refers to is not there yet.
    ///
    /// ### Handling
    /// The runtime redelivers the message later, after a backoff that grows with its
    /// receive count (for SQS, by changing its visibility timeout). In a FIFO group, the
    /// later messages of the group wait for it. A queue's redrive policy (its
    /// `maxReceiveCount`) ends the retries.
    #[error("the handler asks for a retry: {reason}")]
    Retriable {
        /// Why, for logs and metrics.
        reason: String,
    },

    /// The message can never be processed: it is malformed, refers to something that
    /// cannot exist, or breaks a rule. Retrying would fail the same way.
    ///
    /// ### Handling
    /// The runtime never retries it: it sends it to the dead-letter queue with this reason
    /// and acknowledges the original. Without a dead-letter queue, it is left to the
    /// queue's own redrive policy and counted as failed.
    #[error("the handler rejected the message: {reason}")]
    Rejected {
        /// Why, recorded with the message in the dead-letter queue.
        reason: String,
    },
}

impl HandlerError {
    /// A [`Retriable`](Self::Retriable) error.
    ///
    /// ```
    /// use dovetail_events::consumer::HandlerError;
    /// let error = HandlerError::retriable("the policy service is down");
    /// assert!(error.is_retriable());
    /// ```
    pub fn retriable(reason: impl Into<String>) -> Self {
        Self::Retriable {
            reason: reason.into(),
        }
    }

    /// A [`Rejected`](Self::Rejected) error.
    ///
    /// ```
    /// use dovetail_events::consumer::HandlerError;
    /// let error = HandlerError::rejected("unknown policy pol-0");
    /// assert_eq!(error.reason(), "unknown policy pol-0");
    /// ```
    pub fn rejected(reason: impl Into<String>) -> Self {
        Self::Rejected {
            reason: reason.into(),
        }
    }

    /// A [`Retriable`](Self::Retriable) error whose reason is `error` and its sources.
    ///
    /// ```
    /// use dovetail_events::consumer::HandlerError;
    /// let io = std::io::Error::other("connection reset");
    /// assert_eq!(HandlerError::retriable_from(&io).reason(), "connection reset");
    /// ```
    pub fn retriable_from(error: &(dyn Error + 'static)) -> Self {
        Self::retriable(reason_of(error))
    }

    /// A [`Rejected`](Self::Rejected) error whose reason is `error` and its sources.
    ///
    /// ```
    /// use dovetail_events::consumer::HandlerError;
    /// let parse = "x".parse::<u32>().unwrap_err();
    /// assert!(!HandlerError::rejected_from(&parse).is_retriable());
    /// ```
    pub fn rejected_from(error: &(dyn Error + 'static)) -> Self {
        Self::rejected(reason_of(error))
    }

    /// Whether the runtime will redeliver the message.
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::Retriable { .. })
    }

    /// The reason given.
    pub fn reason(&self) -> &str {
        match self {
            Self::Retriable { reason } | Self::Rejected { reason } => reason,
        }
    }
}

/// A body that is not the JSON the handler expects is rejected (it will never parse); an
/// I/O error while reading JSON from a stream is retriable.
impl From<serde_json::Error> for HandlerError {
    fn from(error: serde_json::Error) -> Self {
        if error.is_io() {
            Self::retriable_from(&error)
        } else {
            Self::rejected(format!("the body is not the expected JSON: {error}"))
        }
    }
}

/// Turns the error of a `Result` into a [`HandlerError`], so that a handler says what a
/// failure means with one word before `?`.
///
/// ```
/// use dovetail_events::consumer::{HandlerError, HandlerResultExt};
///
/// fn handle() -> Result<(), HandlerError> {
///     let count: u32 = "42".parse().rejected()?;
///     std::fs::metadata("/").retriable()?;
///     assert_eq!(count, 42);
///     Ok(())
/// }
/// assert!(handle().is_ok());
/// ```
pub trait HandlerResultExt<T> {
    /// A failure here is worth retrying later: [`HandlerError::Retriable`].
    ///
    /// # Errors
    /// The error, with its sources as the reason.
    fn retriable(self) -> Result<T, HandlerError>;

    /// A failure here is permanent: [`HandlerError::Rejected`].
    ///
    /// # Errors
    /// The error, with its sources as the reason.
    fn rejected(self) -> Result<T, HandlerError>;
}

impl<T, E: Error + 'static> HandlerResultExt<T> for Result<T, E> {
    fn retriable(self) -> Result<T, HandlerError> {
        self.map_err(|error| HandlerError::retriable_from(&error))
    }

    fn rejected(self) -> Result<T, HandlerError> {
        self.map_err(|error| HandlerError::rejected_from(&error))
    }
}

/// `error: source: source's source`, skipping a source whose text its parent already shows.
fn reason_of(error: &(dyn Error + 'static)) -> String {
    let mut reason = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !reason.ends_with(&text) {
            let _ = write!(reason, ": {text}");
        }
        source = cause.source();
    }
    reason
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot save the policy")]
    struct SaveFailed(#[source] std::io::Error);

    #[test]
    fn the_reason_carries_the_whole_chain() {
        let error = SaveFailed(std::io::Error::other("disk full"));
        assert_eq!(
            HandlerError::retriable_from(&error).reason(),
            "cannot save the policy: disk full"
        );
    }

    #[test]
    fn a_json_syntax_error_is_rejected() {
        let error = serde_json::from_str::<u32>("{").unwrap_err();
        let handler_error = HandlerError::from(error);
        assert!(!handler_error.is_retriable());
        assert!(
            handler_error
                .reason()
                .starts_with("the body is not the expected JSON")
        );
    }

    #[test]
    fn the_extension_trait_classifies_errors() {
        let failed: Result<(), _> = Err(std::io::Error::other("timeout"));
        assert_eq!(failed.retriable(), Err(HandlerError::retriable("timeout")));
        let failed: Result<(), _> = Err(std::io::Error::other("bad"));
        assert_eq!(failed.rejected(), Err(HandlerError::rejected("bad")));
    }
}
