//! The trait a Rust type implements to travel as an event.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A domain event that travels in an [`Envelope`](super::Envelope): its Rust type is the
/// payload's current schema, `TYPE` names it and `VERSION` says which schema it is.
///
/// Both constants are checked when the program is compiled, at the first
/// [`Envelope::new`](super::Envelope::new), [`Envelope::decode`](super::Envelope::decode) or
/// [`Upcasters::register`](super::Upcasters::register) of the type: `TYPE` must be 1 to 128
/// characters of `A-Z`, `a-z`, `0-9`, `.`, `_` and `-`, and `VERSION` at least 1.
///
/// When the payload changes incompatibly, raise `VERSION` and register an upcaster from the
/// old version to the new one; envelopes already written keep their version and are
/// upcast on read.
///
/// ```
/// use dovetail_events::envelope::Event;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct PolicyActivated {
///     policy_id: String,
///     customer_id: String,
/// }
///
/// impl Event for PolicyActivated {
///     const TYPE: &'static str = "policy.activated";
///     const VERSION: u32 = 1;
/// }
/// ```
///
/// A version of 0 stops the build:
///
/// ```compile_fail
/// use dovetail_events::envelope::{Event, SchemaVersion};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Unversioned;
/// impl Event for Unversioned {
///     const TYPE: &'static str = "unversioned";
///     const VERSION: u32 = 0;
/// }
///
/// let _ = SchemaVersion::of::<Unversioned>();
/// ```
pub trait Event: Serialize + DeserializeOwned {
    /// The event type, such as `policy.activated`.
    const TYPE: &'static str;
    /// The schema version this Rust type describes; 1 for the first.
    const VERSION: u32;
}
