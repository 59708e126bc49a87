//! The auth service's binary: configuration from `--config <file>` and the environment,
//! then [`dovetail_auth::Application`] until Ctrl-C or SIGTERM.

use dovetail_auth::{Application, AuthConfig, config::ENV_PREFIX};
use dovetail_service_kit::{Shutdown, cli, shutdown_on_signal};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cli::init_tracing("info");
    let file = cli::config_file("dovetail-auth", ENV_PREFIX)?;
    let config: AuthConfig = dovetail_service_kit::config::load(file.as_deref(), ENV_PREFIX)?;
    let transport = cli::transport(&config.events)?;
    let app = Application::build(config, &transport).await?;
    tracing::info!("auth service listening on http://{}", app.local_addr());
    let shutdown = Shutdown::new();
    shutdown_on_signal(shutdown.clone());
    app.run_until_stopped(shutdown).await
}
