//! What a service's `main` needs besides the service: logging, the `--config` argument,
//! and the events transport its configuration names.

use crate::StartError;
use std::path::PathBuf;

use crate::config::{EventsBackend, EventsConfig};
use crate::events::Transport;

/// Logs to stderr, filtered by `RUST_LOG` (default `default`, such as `info`).
pub fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The file of `--config <file>`, if given; `binary` and `env_prefix` go into the usage
/// message.
///
/// # Errors
/// On any other argument.
pub fn config_file(binary: &str, env_prefix: &str) -> Result<Option<PathBuf>, StartError> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next(), args.next()) {
        (None, _, _) => Ok(None),
        (Some("--config"), Some(path), None) => Ok(Some(PathBuf::from(path))),
        _ => Err(StartError::Usage {
            usage: format!(
                "usage: {binary} [--config <file.toml>] (every setting can also come from \
                 {env_prefix}__<FIELD>[__<SUBFIELD>] variables)"
            ),
        }),
    }
}

/// The transport `events` names: the embedded bus at its path, or AWS clients from the
/// environment.
///
/// # Errors
/// When the bus cannot be opened, or AWS is asked for without the `aws` feature or
/// without a region.
pub fn transport(events: &EventsConfig) -> Result<Transport, StartError> {
    match events.backend {
        EventsBackend::Embedded => {
            if let Some(dir) = events
                .bus_path
                .parent()
                .filter(|dir| !dir.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir).map_err(|source| StartError::DataDirectory {
                    path: dir.to_owned(),
                    source,
                })?;
            }
            let bus = dovetail_events::bus::EmbeddedBus::open(&events.bus_path)
                .map_err(StartError::Bus)?;
            Ok(Transport::Embedded(bus))
        }
        #[cfg(feature = "aws")]
        EventsBackend::Aws => Ok(Transport::Aws(crate::aws::AwsClients::from_env()?)),
        #[cfg(not(feature = "aws"))]
        EventsBackend::Aws => Err(StartError::NotBuilt {
            setting: "events.backend = aws",
        }),
    }
}
