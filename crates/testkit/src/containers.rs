//! Docker fallback (feature `testcontainers`): starts a missing backend in a container.
//!
//! Used only when the environment names no endpoint and `DOVETAIL_REQUIRE_BACKENDS` is
//! unset. Containers are named `dovetail-testkit-<backend>` and reused across test runs
//! (`ReuseDirective::Always`), so only the first test run pays for the start; remove them
//! with `docker rm -f dovetail-testkit-aws dovetail-testkit-redis dovetail-testkit-opensearch`.

use std::time::{Duration, Instant};

use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{GenericImage, ImageExt, ReuseDirective};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OnceCell;

use crate::Backend;

static AWS: OnceCell<String> = OnceCell::const_new();
static REDIS: OnceCell<String> = OnceCell::const_new();
static OPENSEARCH: OnceCell<String> = OnceCell::const_new();

/// Starts (or reuses) the container for `backend` and returns its endpoint.
pub(crate) async fn start(backend: Backend) -> Result<String, String> {
    let cell = match backend {
        Backend::Aws => &AWS,
        Backend::Redis => &REDIS,
        Backend::OpenSearch => &OPENSEARCH,
    };
    cell.get_or_try_init(|| start_container(backend))
        .await
        .cloned()
}

async fn start_container(backend: Backend) -> Result<String, String> {
    let (image, port, scheme) = match backend {
        Backend::Aws => (
            GenericImage::new("motoserver/moto", "5.1.0")
                .with_exposed_port(5000.tcp())
                .with_wait_for(WaitFor::message_on_stderr("Running on")),
            5000,
            "http",
        ),
        Backend::Redis => (
            GenericImage::new("redis", "7.4")
                .with_exposed_port(6379.tcp())
                .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections")),
            6379,
            "redis",
        ),
        Backend::OpenSearch => (
            GenericImage::new("opensearchproject/opensearch", "2.19.1")
                .with_exposed_port(9200.tcp()),
            9200,
            "http",
        ),
    };
    let mut request = image
        .with_container_name(format!("dovetail-testkit-{}", short_name(backend)))
        .with_reuse(ReuseDirective::Always)
        .with_startup_timeout(Duration::from_secs(180));
    if backend == Backend::OpenSearch {
        request = request
            .with_env_var("discovery.type", "single-node")
            .with_env_var("DISABLE_SECURITY_PLUGIN", "true")
            .with_env_var("DISABLE_INSTALL_DEMO_CONFIG", "true")
            .with_env_var("OPENSEARCH_JAVA_OPTS", "-Xms512m -Xmx512m");
    }
    let container = request
        .start()
        .await
        .map_err(|error| format!("could not start a {backend} container: {error}"))?;
    let host_port = container
        .get_host_port_ipv4(port)
        .await
        .map_err(|error| format!("the {backend} container exposes no port {port}: {error}"))?;
    if backend == Backend::OpenSearch {
        wait_for_http(host_port, Duration::from_secs(180)).await?;
    }
    Ok(format!("{scheme}://127.0.0.1:{host_port}"))
}

fn short_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Aws => "aws",
        Backend::Redis => "redis",
        Backend::OpenSearch => "opensearch",
    }
}

/// Polls `GET /` until the server answers 200.
async fn wait_for_http(port: u16, limit: Duration) -> Result<(), String> {
    let started = Instant::now();
    loop {
        if http_ok(port).await {
            return Ok(());
        }
        if started.elapsed() > limit {
            return Err(format!(
                "nothing answered 200 on 127.0.0.1:{port} within {limit:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn http_ok(port: u16) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let request = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0_u8; 12];
    stream.read_exact(&mut head).await.is_ok() && head.ends_with(b"200")
}
