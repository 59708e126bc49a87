//! The errors of a view and of a check.

use std::fmt;

use crate::bucket::BucketRange;
use crate::report::Side;

/// A backend's own error, kept opaque so that no third-party type is part of this
/// crate's API.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a [`View`](crate::View) could not answer: its backend failed. Built by the
/// implementation with [`ViewError::new`]; the check wraps it in
/// [`CheckError::View`] with the side, the operation and the range.
///
/// ```
/// use dovetail_consistency::ViewError;
///
/// let error = ViewError::new("SQLite", std::io::Error::other("disk I/O error"));
/// assert_eq!(error.to_string(), "the SQLite view failed");
/// assert_eq!(error.store(), "SQLite");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("the {store} view failed")]
pub struct ViewError {
    store: &'static str,
    #[source]
    source: BoxError,
}

impl ViewError {
    /// The error of the `store` implementation (`"memory"`, `"SQLite"`, `"DynamoDB"`,
    /// ...) caused by its backend's `source`.
    pub fn new(store: &'static str, source: impl Into<BoxError>) -> Self {
        Self {
            store,
            source: source.into(),
        }
    }

    /// Which implementation failed.
    pub fn store(&self) -> &'static str {
        self.store
    }
}

/// What the check was asking a view for when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ViewOperation {
    /// [`View::digest`](crate::View::digest).
    Digest,
    /// [`View::entries`](crate::View::entries).
    Entries,
}

impl fmt::Display for ViewOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Digest => "read the digest of",
            Self::Entries => "read the entries of",
        })
    }
}

/// Why a check did not finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// A view (the owner's or the replica's, as `side` says) could not be read.
    ///
    /// ### Handling
    /// Usually transient (the store is down or busy): run the check again in its next
    /// round. Nothing was repaired and the findings so far are dropped, since a partial
    /// report would understate the drift. The source says what the backend reported.
    #[error("the check could not {operation} {range} from the {side}")]
    View {
        /// Which side failed.
        side: Side,
        /// What the check was reading.
        operation: ViewOperation,
        /// Which range.
        range: BucketRange,
        /// The view's error.
        #[source]
        source: ViewError,
    },

    /// The [`CheckConfig`](crate::CheckConfig) cannot be used.
    ///
    /// ### Handling
    /// Not retriable: a programming or configuration error. Fix the configuration as the
    /// reason says.
    #[error("the check's configuration is invalid: {reason}")]
    InvalidConfig {
        /// What is wrong and how to fix it.
        reason: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn messages_name_what_failed_without_repeating_the_source() {
        let error = CheckError::View {
            side: Side::Replica,
            operation: ViewOperation::Entries,
            range: BucketRange::new(8, 16).expect("valid"),
            source: ViewError::new("memory", std::io::Error::other("connection reset")),
        };
        assert_eq!(
            error.to_string(),
            "the check could not read the entries of buckets 8..16 from the replica"
        );
        let view = error.source().expect("the view error");
        assert_eq!(view.to_string(), "the memory view failed");
        assert_eq!(
            view.source().map(ToString::to_string).as_deref(),
            Some("connection reset")
        );

        let invalid = CheckError::InvalidConfig {
            reason: "leaf_buckets is 0; use 1 or more",
        };
        assert_eq!(
            invalid.to_string(),
            "the check's configuration is invalid: leaf_buckets is 0; use 1 or more"
        );
    }
}
