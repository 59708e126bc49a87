//! The kit's errors at a service's start ([`StartError`]) and at its stop ([`RunError`]),
//! each saying what to change or what failed.

use std::path::PathBuf;

use crate::config::ConfigError;
use crate::store::StoreError;

/// Why a service could not start: its arguments, configuration, data directory, events
/// transport or store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The command line is not `<binary> [--config <file.toml>]`.
    #[error("{usage}")]
    Usage {
        /// How to call the binary.
        usage: String,
    },
    /// The configuration cannot be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A data directory cannot be created.
    #[error("cannot create the data directory {path}")]
    DataDirectory {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The embedded bus cannot be opened.
    #[error("cannot open the embedded bus")]
    Bus(#[source] dovetail_events::bus::BusError),
    /// The AWS clients cannot be configured from the environment.
    #[cfg(feature = "aws")]
    #[error(transparent)]
    Aws(#[from] crate::aws::AwsConfigError),
    /// The configuration asks for something this build leaves out.
    #[error(
        "{setting} needs the `aws` feature of the service, and this build has none: \
             build it with that feature, or change {setting}"
    )]
    NotBuilt {
        /// The setting, such as `storage.backend = dynamodb`.
        setting: &'static str,
    },
    /// DynamoDB storage is configured with the embedded bus.
    #[error(
        "storage.backend = dynamodb needs AWS clients: set events.backend = aws too \
             (the stack's --aws switch sets both)"
    )]
    DynamoDbWithoutAws,
    /// The service's store cannot be opened.
    #[error("cannot open the service's store")]
    Store(#[source] StoreError),
}

impl From<StoreError> for StartError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

impl From<dovetail_outbox::OutboxError> for StartError {
    fn from(error: dovetail_outbox::OutboxError) -> Self {
        Self::Store(error.into())
    }
}

/// What failed while a service ran or stopped: its HTTP server, consumers or relay. The
/// others were still stopped in order.
#[derive(Debug)]
pub struct RunError {
    /// What failed (`the HTTP server`, `consumer <name>`, `the relay`) and how.
    pub failures: Vec<(String, Box<dyn std::error::Error + Send + Sync + 'static>)>,
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (index, (what, error)) in self.failures.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{what} failed: {error}")?;
            let mut source = error.source();
            while let Some(cause) = source {
                write!(f, ": {cause}")?;
                source = cause.source();
            }
        }
        Ok(())
    }
}

impl std::error::Error for RunError {}
