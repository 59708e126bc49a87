//! The consumer runtime: receive messages, hand each to a handler, settle it.
//!
//! A handler is any [`tower::Service`]`<`[`Delivery`]`, Response = (), Error =
//! `[`HandlerError`]`>` that is `Clone + Send + 'static` with a `Send` future; idempotency,
//! decoding into an envelope, timeouts and metrics are layers around it. The runtime knows
//! nothing of envelopes: it hands over the raw [`Delivery`].
//!
//! The runtime over SQS is [`sqs::SqsConsumer`] (feature `sqs`).
//!
//! # What the runtime guarantees
//!
//! - **At-least-once.** A message is acknowledged (deleted) only after its handler returned
//!   `Ok`. A crash, a lost delete or an expired visibility redelivers it: make handlers
//!   idempotent (the idempotency layer does).
//! - **Bounded concurrency.** At most `max_in_flight` handlers run at once, and the consumer
//!   never receives more messages than it can start.
//! - **Slow handlers keep their message.** While a handler runs, the message's visibility
//!   is extended every `heartbeat_every` (a heartbeat), so no other consumer receives it.
//! - **FIFO order.** In a FIFO queue, the messages of one message group are handled one at a
//!   time, in order; different groups run in parallel. When a message fails retriably, the
//!   later messages of its group that this consumer holds are released unhandled, so the
//!   queue redelivers the group in order, failed message first.
//! - **Backoff from the receive count.** A [`HandlerError::Retriable`] message is redelivered
//!   after [`RetryBackoff::delay`] of its receive count; the queue's redrive policy ends the
//!   retries.
//! - **Poison messages leave with a reason.** A [`HandlerError::Rejected`] message, and a
//!   message whose body cannot be decoded, go to the dead-letter queue with the reason in
//!   an attribute, and are never retried. Without a dead-letter queue they are held back
//!   for the longest backoff and left to the queue's redrive policy: no crash loop, no
//!   silent drop.
//! - **Graceful drain.** On shutdown the consumer stops receiving, lets running handlers
//!   finish (up to a timeout), flushes deletes and returns a [`ConsumerReport`].
//!
//! # Bodies
//!
//! A queue subscribed to an SNS topic without raw message delivery receives SNS
//! notifications; the runtime unwraps them, so the handler sees the same body and
//! attributes either way ([`BodyFormat`]).
//!
//! # Example: a handler
//! ```
//! use dovetail_events::consumer::{Delivery, HandlerError, HandlerResultExt};
//!
//! #[derive(serde::Deserialize)]
//! struct ClaimFiled { claim_id: String }
//!
//! async fn on_claim_filed(delivery: Delivery) -> Result<(), HandlerError> {
//!     let event: ClaimFiled = serde_json::from_str(&delivery.body)?; // rejected if malformed
//!     if event.claim_id.is_empty() {
//!         return Err(HandlerError::rejected("a claim without an id"));
//!     }
//!     store(&event.claim_id).await.retriable()?; // retried later if the store is down
//!     Ok(())
//! }
//! # async fn store(_: &str) -> std::io::Result<()> { Ok(()) }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use tower::ServiceExt as _;
//! let handler = tower::service_fn(on_claim_filed);
//! let delivery = Delivery::new("m-1", r#"{"claim_id":"c-7"}"#);
//! assert_eq!(handler.oneshot(delivery).await, Ok(()));
//! # }
//! ```

mod backoff;
#[cfg_attr(not(any(feature = "sqs", feature = "sqlite")), allow(dead_code))]
mod counters;
mod decode;
mod delivery;
mod handler;
mod report;
#[cfg_attr(not(feature = "sqs"), allow(dead_code))]
mod sequencing;
#[cfg_attr(not(feature = "sqs"), allow(dead_code))]
mod sns;

#[cfg(feature = "sqs")]
pub mod sqs;

pub use backoff::RetryBackoff;
#[cfg(feature = "sqlite")]
pub(crate) use counters::{Counters, Outcome};
pub use decode::{EnvelopeLayer, EnvelopeService};
pub use delivery::Delivery;
pub use handler::{HandlerError, HandlerResultExt};
pub use report::ConsumerReport;
pub use sns::BodyFormat;
