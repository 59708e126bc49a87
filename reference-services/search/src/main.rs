//! The search service's binary: configuration from `--config <file>` and the
//! environment, then [`dovetail_search::Application`] until Ctrl-C or SIGTERM.

use dovetail_search::{Application, SearchConfig, config::ENV_PREFIX};
use dovetail_service_kit::{Shutdown, cli, shutdown_on_signal};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cli::init_tracing("info");
    let file = cli::config_file("dovetail-search", ENV_PREFIX)?;
    let config: SearchConfig = dovetail_service_kit::config::load(file.as_deref(), ENV_PREFIX)?;
    let transport = cli::transport(&config.events)?;
    let app = Application::build(config, &transport).await?;
    tracing::info!("search service listening on http://{}", app.local_addr());
    let shutdown = Shutdown::new();
    shutdown_on_signal(shutdown.clone());
    app.run_until_stopped(shutdown).await
}
