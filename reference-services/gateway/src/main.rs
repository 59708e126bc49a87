//! The gateway's binary: configuration from `--config <file>` and the environment, then
//! [`dovetail_gateway::Application`] until Ctrl-C or SIGTERM.

use dovetail_gateway::{Application, GatewayConfig, config::ENV_PREFIX};
use dovetail_service_kit::{Shutdown, cli, shutdown_on_signal};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cli::init_tracing("info");
    let file = cli::config_file("dovetail-gateway", ENV_PREFIX)?;
    let config: GatewayConfig = dovetail_service_kit::config::load(file.as_deref(), ENV_PREFIX)?;
    let app = Application::build(config).await?;
    tracing::info!("gateway listening on http://{}", app.local_addr());
    let shutdown = Shutdown::new();
    shutdown_on_signal(shutdown.clone());
    app.run_until_stopped(shutdown).await
}
