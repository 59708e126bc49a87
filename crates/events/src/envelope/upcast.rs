//! Upcasters: the steps that turn a payload of an old schema version into the next one.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde_json::Value;
use thiserror::Error;

use super::decode::DecodeError;
use super::event::Event;
use super::names::EventType;
use super::version::SchemaVersion;

/// One step, from version n to n + 1 of an event type's payload.
type Step = Box<dyn Fn(Value) -> Result<Value, UpcastError> + Send + Sync>;

/// The upcasters of a consumer: for each event type, a step from each old version to the
/// next. [`Envelope::decode`](super::Envelope::decode) chains them (v1 → v2 → v3) until
/// the payload has the version of the Rust type it decodes into.
///
/// Build it once at start-up and share it (it is `Send + Sync`; wrap it in an `Arc`).
///
/// ```
/// use dovetail_events::envelope::{Event, UpcastError, Upcasters};
/// use serde_json::{Value, json};
///
/// /// v1 had `amount`; v2 added the currency; v3 renamed `amount` to `limit`.
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct CoverageChanged { limit: String, currency: String }
/// impl Event for CoverageChanged {
///     const TYPE: &'static str = "policy.coverage-changed";
///     const VERSION: u32 = 3;
/// }
///
/// let mut upcasters = Upcasters::new();
/// upcasters.register::<CoverageChanged>(1, |mut payload| {
///     let fields = payload.as_object_mut().ok_or_else(|| UpcastError::new("not an object"))?;
///     fields.insert("currency".into(), json!("EUR"));
///     Ok(payload)
/// })?;
/// upcasters.register::<CoverageChanged>(2, |mut payload| {
///     let fields = payload.as_object_mut().ok_or_else(|| UpcastError::new("not an object"))?;
///     let amount = fields.remove("amount").ok_or_else(|| UpcastError::new("no `amount`"))?;
///     fields.insert("limit".into(), amount);
///     Ok(payload)
/// })?;
///
/// // Registering a step twice is refused.
/// assert!(upcasters.register::<CoverageChanged>(1, Ok).is_err());
/// # Ok::<(), dovetail_events::envelope::RegisterError>(())
/// ```
#[derive(Default)]
pub struct Upcasters {
    /// Steps by event type, then by the version they start from.
    steps: HashMap<EventType, BTreeMap<u32, Step>>,
}

impl Upcasters {
    /// No upcasters: every event decodes only at its current version.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the step that turns a payload of `E` at version `from` into version
    /// `from + 1`.
    ///
    /// # Errors
    ///
    /// [`RegisterError::Duplicate`] when a step from `from` is already registered for
    /// `E::TYPE`; [`RegisterError::NotBelowCurrent`] when `from` is not below `E::VERSION`
    /// (the step would produce a version the code does not know);
    /// [`RegisterError::ZeroVersion`] when `from` is 0.
    pub fn register<E: Event>(
        &mut self,
        from: u32,
        step: impl Fn(Value) -> Result<Value, UpcastError> + Send + Sync + 'static,
    ) -> Result<(), RegisterError> {
        let current = SchemaVersion::of::<E>().get();
        if from == 0 {
            return Err(RegisterError::ZeroVersion {
                event_type: E::TYPE,
            });
        }
        if from >= current {
            return Err(RegisterError::NotBelowCurrent {
                event_type: E::TYPE,
                from,
                current,
            });
        }
        let steps = self.steps.entry(EventType::of::<E>()).or_default();
        if steps.contains_key(&from) {
            return Err(RegisterError::Duplicate {
                event_type: E::TYPE,
                from,
            });
        }
        steps.insert(from, Box::new(step));
        Ok(())
    }

    /// Upcasts `payload` of `event_type` from version `from` to version `to`, one step at
    /// a time.
    pub(crate) fn upcast(
        &self,
        event_type: &EventType,
        from: SchemaVersion,
        to: SchemaVersion,
        mut payload: Value,
    ) -> Result<Value, DecodeError> {
        let steps = self.steps.get(event_type);
        let mut version = from;
        while version < to {
            let step = steps
                .and_then(|steps| steps.get(&version.get()))
                .ok_or_else(|| DecodeError::MissingUpcaster {
                    event_type: event_type.clone(),
                    from: version,
                    to,
                })?;
            payload = step(payload).map_err(|source| DecodeError::Upcast {
                event_type: event_type.clone(),
                from: version,
                source,
            })?;
            // `version < to`, so there is a next one.
            version = version.next().unwrap_or(to);
        }
        Ok(payload)
    }
}

impl fmt::Debug for Upcasters {
    /// The registered steps, as `type: [from versions]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut types: Vec<_> = self.steps.iter().collect();
        types.sort_by_key(|(event_type, _)| *event_type);
        f.debug_map()
            .entries(
                types.into_iter().map(|(event_type, steps)| {
                    (event_type.as_str(), steps.keys().collect::<Vec<_>>())
                }),
            )
            .finish()
    }
}

/// Why an upcaster step could not turn a payload into the next version: the error an
/// upcaster returns.
///
/// ### Handling
///
/// Upcasters make it; [`Envelope::decode`](super::Envelope::decode) returns it as the
/// source of [`DecodeError::Upcast`], which says what to do.
///
/// ```
/// use dovetail_events::envelope::UpcastError;
///
/// let err = UpcastError::new("no `amount` field");
/// assert_eq!(err.to_string(), "no `amount` field");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct UpcastError {
    message: String,
}

impl UpcastError {
    /// An error with a message that says what is wrong with the old payload.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Why an upcaster step could not be registered.
///
/// ### Handling
///
/// Every variant is a programming error found at start-up: fix the registration.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// A step from this version of this type is already registered.
    ///
    /// ### Handling
    ///
    /// Remove one of the two registrations: each version has exactly one way forward.
    #[error("an upcaster for {event_type} from v{from} is already registered")]
    Duplicate {
        /// The event type.
        event_type: &'static str,
        /// The version the step starts from.
        from: u32,
    },

    /// The step would produce a version the Rust type does not describe.
    ///
    /// ### Handling
    ///
    /// Register steps from 1 up to `Event::VERSION - 1` only, or raise `Event::VERSION`.
    #[error(
        "an upcaster for {event_type} from v{from} would produce v{}, but the current version is v{current}",
        u64::from(*from) + 1
    )]
    NotBelowCurrent {
        /// The event type.
        event_type: &'static str,
        /// The version the step starts from.
        from: u32,
        /// `Event::VERSION`.
        current: u32,
    },

    /// Version 0 does not exist.
    ///
    /// ### Handling
    ///
    /// Versions start at 1: register the first step from 1.
    #[error("an upcaster for {event_type} starts from v0, but versions start at 1")]
    ZeroVersion {
        /// The event type.
        event_type: &'static str,
    },
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Renamed;
    impl Event for Renamed {
        const TYPE: &'static str = "thing.renamed";
        const VERSION: u32 = 3;
    }

    fn add_field(name: &'static str) -> impl Fn(Value) -> Result<Value, UpcastError> {
        move |mut payload| {
            payload
                .as_object_mut()
                .ok_or_else(|| UpcastError::new("not an object"))?
                .insert(name.to_owned(), json!(true));
            Ok(payload)
        }
    }

    fn version(n: u32) -> SchemaVersion {
        SchemaVersion::new(n).unwrap()
    }

    fn renamed() -> EventType {
        EventType::of::<Renamed>()
    }

    #[test]
    fn chains_steps_in_order() {
        let mut upcasters = Upcasters::new();
        upcasters.register::<Renamed>(2, add_field("v3")).unwrap();
        upcasters.register::<Renamed>(1, add_field("v2")).unwrap();
        let payload = upcasters
            .upcast(&renamed(), version(1), version(3), json!({}))
            .unwrap();
        assert_eq!(payload, json!({ "v2": true, "v3": true }));
        let payload = upcasters
            .upcast(&renamed(), version(2), version(3), json!({}))
            .unwrap();
        assert_eq!(payload, json!({ "v3": true }));
    }

    #[test]
    fn leaves_a_current_payload_alone() {
        let payload = Upcasters::new()
            .upcast(&renamed(), version(3), version(3), json!({ "x": 1 }))
            .unwrap();
        assert_eq!(payload, json!({ "x": 1 }));
    }

    #[test]
    fn refuses_a_second_step_from_the_same_version() {
        let mut upcasters = Upcasters::new();
        upcasters.register::<Renamed>(1, Ok).unwrap();
        let err = upcasters.register::<Renamed>(1, Ok).unwrap_err();
        assert_eq!(
            err.to_string(),
            "an upcaster for thing.renamed from v1 is already registered"
        );
    }

    #[test]
    fn refuses_steps_at_or_beyond_the_current_version() {
        let mut upcasters = Upcasters::new();
        let err = upcasters.register::<Renamed>(3, Ok).unwrap_err();
        assert_eq!(
            err.to_string(),
            "an upcaster for thing.renamed from v3 would produce v4, but the current version is v3"
        );
        assert!(matches!(
            upcasters.register::<Renamed>(u32::MAX, Ok),
            Err(RegisterError::NotBelowCurrent { from: u32::MAX, .. })
        ));
    }

    #[test]
    fn refuses_version_zero() {
        let err = Upcasters::new().register::<Renamed>(0, Ok).unwrap_err();
        assert_eq!(
            err.to_string(),
            "an upcaster for thing.renamed starts from v0, but versions start at 1"
        );
    }

    #[test]
    fn says_which_step_is_missing() {
        let mut upcasters = Upcasters::new();
        upcasters.register::<Renamed>(1, add_field("v2")).unwrap();
        let err = upcasters
            .upcast(&renamed(), version(1), version(3), json!({}))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no upcaster registered for thing.renamed from v2 (needed to reach v3)"
        );
    }

    #[test]
    fn says_which_step_failed() {
        let mut upcasters = Upcasters::new();
        upcasters.register::<Renamed>(1, add_field("v2")).unwrap();
        let err = upcasters
            .upcast(&renamed(), version(1), version(2), json!([]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "upcasting thing.renamed from v1 to v2 failed"
        );
        let source = std::error::Error::source(&err).unwrap();
        assert_eq!(source.to_string(), "not an object");
    }

    #[test]
    fn debug_lists_the_steps() {
        let mut upcasters = Upcasters::new();
        upcasters.register::<Renamed>(2, Ok).unwrap();
        upcasters.register::<Renamed>(1, Ok).unwrap();
        assert_eq!(format!("{upcasters:?}"), r#"{"thing.renamed": [1, 2]}"#);
    }

    #[test]
    fn is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Upcasters>();
    }
}
