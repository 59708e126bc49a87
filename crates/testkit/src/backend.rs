//! Which server a test needs, where to find it, and what to say when it is not there.

use std::fmt;
use std::time::Duration;

/// The environment variable that makes a missing backend fail the test at once, without
/// trying any fallback. `cargo xtask test` and CI set it.
pub const REQUIRE_BACKENDS: &str = "DOVETAIL_REQUIRE_BACKENDS";

const HOW_TO_START: &str = "Start the project's servers with `cargo xtask servers` and export \
     what it prints, or run the whole suite with `cargo xtask test` (it starts them); \
     `cargo xtask test --no-servers` runs only the tests that need none.";

/// A server that tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// DynamoDB, DynamoDB Streams, SNS and SQS: one AWS emulator (or real AWS).
    Aws,
    /// A Redis server.
    Redis,
    /// An OpenSearch node.
    OpenSearch,
}

impl Backend {
    /// The environment variables read for this backend's endpoint, first match wins.
    pub fn env_vars(self) -> &'static [&'static str] {
        match self {
            Self::Aws => &["AWS_ENDPOINT_URL"],
            Self::Redis => &["DOVETAIL_REDIS_URL"],
            Self::OpenSearch => &["DOVETAIL_OPENSEARCH_URL"],
        }
    }

    /// The endpoint from the environment, if one is set and not empty.
    pub fn endpoint_from_env(self) -> Option<String> {
        self.env_vars().iter().find_map(|var| {
            std::env::var(var)
                .ok()
                .filter(|value| !value.trim().is_empty())
        })
    }

    fn example(self) -> &'static str {
        match self {
            Self::Aws => "http://127.0.0.1:4566",
            Self::Redis => "redis://127.0.0.1:6379",
            Self::OpenSearch => "http://127.0.0.1:9200",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Aws => "AWS emulator (DynamoDB, DynamoDB Streams, SNS, SQS)",
            Self::Redis => "Redis",
            Self::OpenSearch => "OpenSearch",
        })
    }
}

/// Why a test cannot reach its backend.
///
/// ### Handling
/// A test fails with this message; it says which variable to set and how to start the
/// servers. Never turn it into a silent pass.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendUnavailable {
    /// No endpoint is configured.
    NotConfigured {
        /// The backend the test needs.
        backend: Backend,
        /// Why no fallback could provide one (e.g. no Docker), if one was tried.
        fallback: Option<String>,
    },
    /// An endpoint is configured but nothing answers there.
    Unreachable {
        /// The backend the test needs.
        backend: Backend,
        /// The configured endpoint.
        endpoint: String,
        /// What the connection attempt said.
        reason: String,
    },
}

impl fmt::Display for BackendUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotConfigured { backend, fallback } => {
                write!(
                    f,
                    "this test needs {backend}, and no endpoint is configured: set {} \
                     (for example {}). {HOW_TO_START}",
                    backend.env_vars().join(" or "),
                    backend.example(),
                )?;
                if let Some(fallback) = fallback {
                    write!(f, " (Docker fallback: {fallback})")?;
                }
                Ok(())
            }
            Self::Unreachable {
                backend,
                endpoint,
                reason,
            } => write!(
                f,
                "this test needs {backend} at {endpoint} ({}), but nothing answers there \
                 ({reason}). Start the server or correct the variable. {HOW_TO_START}",
                backend.env_vars().join(" or "),
            ),
        }
    }
}

impl std::error::Error for BackendUnavailable {}

/// Whether `DOVETAIL_REQUIRE_BACKENDS` is set to `1`, `true` or `yes`.
pub fn backends_required() -> bool {
    std::env::var(REQUIRE_BACKENDS).is_ok_and(|value| matches!(value.trim(), "1" | "true" | "yes"))
}

/// The endpoint of `backend`, checked to accept connections.
///
/// Reads the environment first. When nothing is set, `DOVETAIL_REQUIRE_BACKENDS` is not,
/// and the `testcontainers` feature is on, starts the backend in Docker.
///
/// # Errors
/// [`BackendUnavailable`] when no endpoint is configured (and no container could be
/// started), or when the configured endpoint does not accept connections.
pub async fn endpoint(backend: Backend) -> Result<String, BackendUnavailable> {
    if let Some(endpoint) = backend.endpoint_from_env() {
        check_reachable(backend, &endpoint).await?;
        return Ok(endpoint);
    }
    #[cfg(feature = "testcontainers")]
    if !backends_required() {
        return crate::containers::start(backend).await.map_err(|reason| {
            BackendUnavailable::NotConfigured {
                backend,
                fallback: Some(reason),
            }
        });
    }
    Err(BackendUnavailable::NotConfigured {
        backend,
        fallback: None,
    })
}

/// Like [`endpoint`], but a missing backend fails the calling test with the message.
///
/// # Panics
/// When the backend is unavailable; the message says how to start it.
pub async fn require(backend: Backend) -> String {
    match endpoint(backend).await {
        Ok(endpoint) => endpoint,
        Err(unavailable) => panic!("{unavailable}"),
    }
}

async fn check_reachable(backend: Backend, endpoint: &str) -> Result<(), BackendUnavailable> {
    let unreachable = |reason: String| BackendUnavailable::Unreachable {
        backend,
        endpoint: endpoint.to_owned(),
        reason,
    };
    let address = host_and_port(endpoint).ok_or_else(|| {
        unreachable("it is not a URL of the form scheme://host:port/...".to_owned())
    })?;
    match tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect(&address),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(unreachable(error.to_string())),
        Err(_) => Err(unreachable("no answer within 3 s".to_owned())),
    }
}

/// `host:port` of a URL, with the scheme's default port when none is given.
fn host_and_port(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    if authority.is_empty() {
        return None;
    }
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok());
    if has_port {
        return Some(authority.to_owned());
    }
    let port = match scheme {
        "http" => 80,
        "https" => 443,
        "redis" => 6379,
        "rediss" => 6380,
        _ => return None,
    };
    Some(format!("{authority}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_of_urls() {
        assert_eq!(
            host_and_port("http://127.0.0.1:4566").as_deref(),
            Some("127.0.0.1:4566")
        );
        assert_eq!(
            host_and_port("http://localhost/x").as_deref(),
            Some("localhost:80")
        );
        assert_eq!(
            host_and_port("redis://:pw@h:7000/0").as_deref(),
            Some("h:7000")
        );
        assert_eq!(
            host_and_port("rediss://cache").as_deref(),
            Some("cache:6380")
        );
        assert_eq!(host_and_port("127.0.0.1:4566"), None);
        assert_eq!(host_and_port("ftp://host"), None);
    }

    #[test]
    fn the_messages_say_what_to_set_and_how_to_start() {
        let message = BackendUnavailable::NotConfigured {
            backend: Backend::Redis,
            fallback: None,
        }
        .to_string();
        assert!(message.contains("DOVETAIL_REDIS_URL"), "{message}");
        assert!(message.contains("cargo xtask servers"), "{message}");
        let message = BackendUnavailable::Unreachable {
            backend: Backend::Aws,
            endpoint: "http://127.0.0.1:1".into(),
            reason: "connection refused".into(),
        }
        .to_string();
        assert!(message.contains("http://127.0.0.1:1"), "{message}");
        assert!(message.contains("connection refused"), "{message}");
    }

    #[tokio::test]
    async fn a_configured_endpoint_that_does_not_answer_is_reported() {
        // Bind and drop a listener so the port is (almost certainly) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .expect("bind a loopback port");
        let error = check_reachable(Backend::OpenSearch, &format!("http://127.0.0.1:{port}"))
            .await
            .expect_err("nothing listens there");
        assert!(
            matches!(error, BackendUnavailable::Unreachable { .. }),
            "{error}"
        );
    }
}
