//! [`TransportError`]: why a transport could not provision, publish to or consume from
//! a topic or subscription.

/// The SDK error (or other cause) behind a [`TransportError`], kept opaque so no
/// third-party error type is part of this crate's API.
pub type BoxedSource = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a [`Transport`](super::Transport) operation failed. `Display` says what was being
/// done; the cause is the error's [`source`](std::error::Error::source) (print the chain,
/// e.g. with `anyhow`'s `{:#}`, to see the broker's own reason).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// A topic, subscription or queue name the transport cannot use.
    ///
    /// ### Handling
    /// A deployment error: rename the consumer or topic as the reason says. Retrying
    /// cannot help.
    #[error("the name {name:?} is not usable: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// What the transport requires.
        reason: String,
    },
    /// The subscription describes nothing to consume (no topic), or asks for something the
    /// transport cannot do.
    ///
    /// ### Handling
    /// Fix the [`Subscription`](super::Subscription) as the reason says.
    #[error("invalid subscription {consumer:?}: {reason}")]
    InvalidSubscription {
        /// The subscription's consumer name.
        consumer: String,
        /// What is wrong.
        reason: String,
    },
    /// The embedded bus failed while doing `operation`.
    ///
    /// ### Handling
    /// See the source [`BusError`](crate::bus::BusError): a storage failure is an operator
    /// matter (disk, permissions); a subscription conflict means a subscription of that
    /// name exists with other settings.
    #[cfg(feature = "sqlite")]
    #[error("embedded bus: {operation}")]
    Bus {
        /// What was being done, such as `creating topic policy-events`.
        operation: String,
        /// The bus's error.
        #[source]
        source: crate::bus::BusError,
    },
    /// SNS or SQS refused or did not answer while doing `operation`.
    ///
    /// ### Handling
    /// Check the region, endpoint and permissions the source names; provisioning is
    /// idempotent, so retrying the whole start is safe.
    #[error("{operation}")]
    Aws {
        /// What was being done, such as `creating the SQS queue claim-service-policy-events`.
        operation: String,
        /// The SDK's error.
        #[source]
        source: BoxedSource,
    },
    /// A consumer stopped on an error it cannot carry on from (its subscription or queue
    /// is gone or unreachable).
    ///
    /// ### Handling
    /// Provision the subscription again (start the service again) and check the broker;
    /// its messages wait in the queue or subscription meanwhile.
    #[error("the consumer {consumer} stopped")]
    Consumer {
        /// The consumer part that stopped: its bus subscription or queue.
        consumer: String,
        /// The consumer runtime's error.
        #[source]
        source: BoxedSource,
    },
}

impl TransportError {
    #[cfg(feature = "sqlite")]
    pub(crate) fn bus(operation: impl Into<String>) -> impl FnOnce(crate::bus::BusError) -> Self {
        let operation = operation.into();
        move |source| Self::Bus { operation, source }
    }

    #[cfg(all(feature = "sns", feature = "sqs"))]
    pub(crate) fn aws<E>(operation: impl Into<String>) -> impl FnOnce(E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let operation = operation.into();
        move |source| Self::Aws {
            operation,
            source: Box::new(source),
        }
    }

    /// An answer that lacks what it must carry (an ARN, a URL).
    #[cfg(all(feature = "sns", feature = "sqs"))]
    pub(crate) fn incomplete(operation: impl Into<String>, missing: &str) -> Self {
        Self::Aws {
            operation: operation.into(),
            source: format!("the answer carried no {missing}").into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn display_says_what_was_done_and_the_source_says_why() {
        let error = TransportError::Consumer {
            consumer: "claim-service-policy-events".to_owned(),
            source: "the queue does not exist".into(),
        };
        assert_eq!(
            error.to_string(),
            "the consumer claim-service-policy-events stopped"
        );
        assert_eq!(
            error.source().map(ToString::to_string).as_deref(),
            Some("the queue does not exist")
        );
    }
}
