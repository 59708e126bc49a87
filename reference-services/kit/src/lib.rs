//! What the reference services share, so that each service's code is about its domain:
//!
//! - HTTP conventions: [`Problem`] (RFC 9457 problem+json) for every error, strict
//!   extractors ([`ApiJson`], [`ApiQuery`], [`IfMatch`], [`IdempotencyKeyHeader`]) whose
//!   rejections say what to fix, [`Cursor`]s for pagination, [`RecordedResponse`] (the
//!   answer kept with an `Idempotency-Key`, namespaced by the caller who sent it);
//! - who may see what, from a verified identity ([`access`]: a list's scope, the 404 that
//!   hides another customer's record);
//! - the staff-only operator actions under `/admin` ([`admin`]: unpark the outbox,
//!   list and redrive dead letters);
//! - the operations endpoints ([`ops`]) and [`ServiceHttp`] (a service's listener and API
//!   with those endpoints), [`serve`] with graceful shutdown, and
//!   [`run_until_stopped`], which stops the server, consumers and relay in the order that
//!   loses nothing;
//! - layered [`config`], and what the process was configured with for its events
//!   ([`events::Transport`]) and, with feature `aws`, its AWS clients ([`aws`]);
//! - the store opening on the configured backend ([`store::open_store`]) and the
//!   one-transaction write of a change, its events and its request record on SQLite and
//!   DynamoDB ([`store`]).
//!
//! The events, their transports, the outbox and its relays are dovetail-events' and
//! dovetail-outbox's; the kit only passes them what the configuration says.
//!
//! It is not a published Dovetail crate: it is how these services happen to be built
//! (see ARCHITECTURE.md for the part of it that will be published). The crates under
//! `crates/` do not depend on this one.

pub mod access;
pub mod admin;
#[cfg(feature = "aws")]
pub mod aws;
pub mod cli;
pub mod config;
mod cursor;
mod error;
pub mod events;
mod extract;
pub mod ops;
mod recorded;
mod run;
mod serve;
mod service_http;
pub mod store;

pub use cursor::{Cursor, Page};
pub use dovetail_http::{FieldProblem, Problem};
pub use error::{RunError, StartError};
pub use extract::{ApiJson, ApiQuery, IdempotencyKeyHeader, IfMatch, etag, parse_json};
pub use recorded::RecordedResponse;
pub use run::{Background, ConsumerTask, run_until_stopped};
pub use serve::{Shutdown, bind, serve, shutdown_on_signal};
pub use service_http::{REQUEST_LIMIT, ServiceHttp};
