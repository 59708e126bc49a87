//! Publishing envelopes to a broker: the [`Publisher`] port, its errors, and the
//! per-aggregate ordering rule every implementation keeps.
//!
//! A publisher takes a batch of envelopes and answers with one result per envelope, in the
//! same order, so a caller such as the outbox relay knows exactly which events the broker
//! accepted. Implementations never publish an event before an earlier event of the same
//! aggregate in the same batch was accepted: when one fails, the later events of its
//! aggregate in that batch are not sent and fail with
//! [`PublishError::EarlierEventFailed`].

mod memory;
pub(crate) mod rounds;
#[cfg(feature = "sns")]
mod sns;

use std::future::Future;

pub use memory::MemoryPublisher;
#[cfg(feature = "sns")]
pub use sns::{SnsPublisher, SnsPublisherConfig};

use crate::envelope::{Envelope, EventId, TooLarge};

/// The outcome of publishing one envelope.
pub type PublishResult = Result<(), PublishError>;

/// Sends envelopes to a broker.
///
/// # Contract
/// - `publish_batch` returns exactly one result per input envelope, in input order.
/// - `Ok` means the broker accepted the message durably.
/// - For envelopes of one aggregate, in the order given, the publisher never has the broker
///   accept a later one unless every earlier one was accepted.
///
/// # Example
/// ```
/// use dovetail_events::envelope::{AggregateRef, Envelope, Event, EventMetadata, Sequence, Source};
/// use dovetail_events::publish::{MemoryPublisher, Publisher};
/// # #[derive(serde::Serialize, serde::Deserialize)]
/// # struct PolicyIssued { policy_id: String }
/// # impl Event for PolicyIssued { const TYPE: &'static str = "policy.issued"; const VERSION: u32 = 1; }
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let envelope = Envelope::new(
///     Source::parse("policy-service")?,
///     AggregateRef::parse("policy", "pol-1")?,
///     Sequence::FIRST,
///     &PolicyIssued { policy_id: "pol-1".into() },
///     EventMetadata::default(),
/// )?;
/// let publisher = MemoryPublisher::new();
/// let results = publisher.publish_batch(std::slice::from_ref(&envelope)).await;
/// assert!(results[0].is_ok());
/// assert_eq!(publisher.published(), vec![envelope]);
/// # Ok(())
/// # }
/// ```
pub trait Publisher: Send + Sync {
    /// Publishes `envelopes`; one result per envelope, in the same order.
    fn publish_batch(
        &self,
        envelopes: &[Envelope],
    ) -> impl Future<Output = Vec<PublishResult>> + Send;

    /// Publishes one envelope.
    fn publish(&self, envelope: &Envelope) -> impl Future<Output = PublishResult> + Send {
        async move {
            self.publish_batch(std::slice::from_ref(envelope))
                .await
                .pop()
                .unwrap_or(Err(PublishError::Unavailable {
                    reason: "the publisher returned no result".to_owned(),
                }))
        }
    }
}

/// Why an envelope was not published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The envelope is larger than the transport accepts; it was not sent.
    ///
    /// ### Handling
    /// Never retriable as is. Keep large data out of the payload: store it where the
    /// consumer can fetch it and publish a reference.
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    /// The broker refused this message (a fault of the request, such as an invalid
    /// attribute or a missing permission).
    ///
    /// ### Handling
    /// Not retriable until the cause is fixed; park the event and alert.
    #[error("the broker refused event {event_id}: {code}: {message}")]
    Rejected {
        /// The refused event.
        event_id: EventId,
        /// The broker's error code.
        code: String,
        /// The broker's message.
        message: String,
    },
    /// The broker could not be reached or failed on its side (network, throttling, 5xx).
    ///
    /// ### Handling
    /// Retriable: publish again later, with backoff. The broker may have accepted the
    /// message anyway, so consumers must tolerate the duplicate (they are idempotent).
    #[error("the broker is unavailable: {reason}")]
    Unavailable {
        /// What went wrong.
        reason: String,
    },
    /// Not sent, because an earlier event of the same aggregate in this batch failed;
    /// sending it would have broken the per-aggregate order.
    ///
    /// ### Handling
    /// Retriable: publish it again after the earlier event.
    #[error("not sent: event {earlier} of the same aggregate failed earlier in the batch")]
    EarlierEventFailed {
        /// The earlier event that failed.
        earlier: EventId,
    },
}

impl PublishError {
    /// Whether publishing the same envelope again later can succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::TooLarge(_) | Self::Rejected { .. } => false,
            Self::Unavailable { .. } | Self::EarlierEventFailed { .. } => true,
        }
    }
}
