//! The HTTP plumbing the reference services share, so that each service's code is about
//! its domain: [`Problem`] (RFC 9457 problem+json) for every error, strict extractors
//! ([`ApiJson`], [`ApiQuery`], [`IfMatch`], [`IdempotencyKeyHeader`]) whose rejections say
//! what to fix, [`Cursor`]s for pagination, the operations endpoints ([`ops`]), layered
//! [`config`], [`ServiceHttp`] (a service's listener and API with those endpoints), and
//! [`serve`] with graceful shutdown.
//!
//! It is not a published Dovetail crate: it is how these services happen to do HTTP.
//! Teams with their own conventions keep them; the crates under `crates/` do not depend
//! on this one.

#[cfg(feature = "aws")]
pub mod aws;
pub mod cli;
pub mod config;
mod cursor;
pub mod events;
mod extract;
pub mod ops;
mod problem;
mod recorded;
mod run;
mod serve;
mod service_http;
pub mod store;

pub use cursor::{Cursor, Page};
pub use extract::{ApiJson, ApiQuery, IdempotencyKeyHeader, IfMatch, etag, parse_json};
pub use problem::{FieldProblem, Problem};
pub use recorded::RecordedResponse;
pub use run::{Background, ConsumerTask, run_until_stopped};
pub use serve::{Shutdown, bind, serve, shutdown_on_signal};
pub use service_http::ServiceHttp;
