//! Events between services that each own their database: the envelope, typed events with
//! upcasting, and idempotent consumers.
//!
//! - [`envelope`]: the [`Envelope`](envelope::Envelope) every event travels in, typed
//!   events ([`Event`](envelope::Event)) with upcasting of old schema versions, and the
//!   envelope's forms on the wire: its JSON body, message attributes, CloudEvents 1.0, and
//!   the size limits of SNS, SQS and EventBridge.
//! - [`publish`]: the [`Publisher`](publish::Publisher) port, an in-memory publisher and
//!   the SNS publisher (feature `sns`).
//! - [`consumer`]: the transport-neutral [`Delivery`](consumer::Delivery) and handler
//!   errors, decoding layers, and the SQS consumer runtime (feature `sqs`).
//! - [`bus`]: the embedded bus (feature `sqlite`): topics, filtered subscriptions, ordered
//!   delivery, visibility timeouts and dead letters in one SQLite file.
//! - [`transport`]: one [`Transport`](transport::Transport) over the embedded bus or
//!   SNS/SQS: a publisher per topic and a subscription by spec, provisioning included.
//! - [`idempotency`]: the idempotency store port, its memory, SQLite, DynamoDB and Redis
//!   implementations, and the tower layer that makes a handler idempotent.
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `sqlite` | on | the embedded bus and the SQLite idempotency store |
//! | `sns` | | the SNS publisher |
//! | `sqs` | | the SQS consumer runtime (with `sns`: the SNS/SQS transport) |
//! | `dynamodb` | | the DynamoDB idempotency store |
//! | `redis` | | the Redis idempotency store |
//! | `metrics` | | consumer counts and handling times through `metrics` |

#[cfg(feature = "sqlite")]
pub mod bus;
pub mod consumer;
pub mod envelope;
pub mod idempotency;
pub mod publish;
#[cfg(any(feature = "sqlite", all(feature = "sns", feature = "sqs")))]
pub mod transport;

mod error_chain;
pub(crate) use error_chain::error_chain;

/// The README's example, compiled and run as a doc test so that it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
