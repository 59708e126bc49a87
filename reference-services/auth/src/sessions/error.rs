//! [`SessionStoreError`]: why a session store could not answer.

/// Why a [`SessionStore`](super::SessionStore) could not answer. It never carries a
/// token, a digest or a password: only which store and what it was doing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionStoreError {
    /// The store is unreachable or failed (Redis refused the connection or timed out,
    /// the SQLite file could not be written).
    ///
    /// ### Handling
    /// Fail closed: log-in, refresh and log-out answer 503 with `Retry-After`. Access
    /// tokens already issued keep working at the other services, which verify them
    /// offline.
    #[error("the {backend} session store failed while {operation}")]
    Backend {
        /// `SQLite` or `Redis`.
        backend: &'static str,
        /// What the store was doing, e.g. `rotating a refresh token`.
        operation: &'static str,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A record does not have the shape this code writes.
    ///
    /// ### Handling
    /// 503 and an error log: the store was written by something else.
    #[error("the {backend} session store holds a malformed record: {reason}")]
    Corrupt {
        /// `SQLite` or `Redis`.
        backend: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl SessionStoreError {
    pub(super) fn backend(
        backend: &'static str,
        operation: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Backend {
            backend,
            operation,
            source: Box::new(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn display_names_store_and_operation_and_keeps_the_cause_as_source() {
        let error = SessionStoreError::backend(
            "Redis",
            "rotating a refresh token",
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"),
        );
        assert_eq!(
            error.to_string(),
            "the Redis session store failed while rotating a refresh token"
        );
        assert_eq!(error.source().unwrap().to_string(), "refused");
    }
}
