//! The policy service's binary: configuration from `--config <file>` and the
//! environment, then [`dovetail_policy::Application`] until Ctrl-C or SIGTERM.

use std::path::PathBuf;

use dovetail_policy::{Application, PolicyConfig, config::ENV_PREFIX};
use dovetail_service_kit::config::EventsBackend;
use dovetail_service_kit::events::Transport;
use dovetail_service_kit::{Shutdown, shutdown_on_signal};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let file = config_file()?;
    let config: PolicyConfig = dovetail_service_kit::config::load(file.as_deref(), ENV_PREFIX)?;
    let transport = match config.events.backend {
        EventsBackend::Embedded => Transport::Embedded(dovetail_events::bus::EmbeddedBus::open(
            &config.events.bus_path,
        )?),
        #[cfg(feature = "aws")]
        EventsBackend::Aws => Transport::Aws(dovetail_service_kit::aws::AwsClients::from_env()?),
        #[cfg(not(feature = "aws"))]
        EventsBackend::Aws => anyhow::bail!("events.backend = aws needs the `aws` feature"),
    };
    let app = Application::build(config, &transport).await?;
    tracing::info!("policy service listening on http://{}", app.local_addr());
    let shutdown = Shutdown::new();
    shutdown_on_signal(shutdown.clone());
    app.run_until_stopped(shutdown).await
}

/// `--config <file>`, if given.
fn config_file() -> anyhow::Result<Option<PathBuf>> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (None, _) => Ok(None),
        (Some("--config"), Some(path)) => Ok(Some(PathBuf::from(path))),
        _ => anyhow::bail!(
            "usage: dovetail-policy [--config <file.toml>] (settings also from DOVETAIL_POLICY__* variables)"
        ),
    }
}
