//! A downstream on loopback whose behaviour a test switches, and which counts its calls
//! and keeps the headers they carried.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use dovetail_bff::{BreakerConfig, Downstream, DownstreamConfig, RetryConfig};

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Ok = 0,
    Hang = 1,
    Fail = 2,
    Forbidden = 3,
    /// Every other call, from the first, takes 800 ms; the others answer at once.
    SlowOdd = 4,
}

#[derive(Clone, Default)]
struct Shared {
    mode: Arc<AtomicU8>,
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
}

pub struct TestServer {
    pub url: String,
    shared: Shared,
}

impl TestServer {
    pub async fn start(mode: Mode) -> Self {
        let shared = Shared::default();
        shared.mode.store(mode as u8, Ordering::SeqCst);
        let app = Router::new().fallback(answer).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, shared }
    }

    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Counts calls from zero again (the slow-odd mode's next call is slow).
    pub fn reset_calls(&self) {
        self.shared.calls.store(0, Ordering::SeqCst);
    }

    pub fn calls(&self) -> usize {
        self.shared.calls.load(Ordering::SeqCst)
    }

    pub fn last_headers(&self) -> HeaderMap {
        self.shared.seen.lock().unwrap().last().cloned().unwrap()
    }

    /// A downstream to this server: no retries, a breaker that does not open, a long
    /// call timeout (the request's deadline binds).
    pub fn config(&self, name: &str) -> DownstreamConfig {
        DownstreamConfig {
            call_timeout: Duration::from_secs(10),
            retry: RetryConfig {
                max_retries: 0,
                ..RetryConfig::default()
            },
            breaker: BreakerConfig {
                failure_threshold: 1000,
                open_for: Duration::from_secs(1),
            },
            ..DownstreamConfig::new(name, &self.url)
        }
    }

    pub fn downstream(&self, name: &str) -> Downstream {
        Downstream::new(self.config(name)).unwrap()
    }
}

async fn answer(State(shared): State<Shared>, uri: Uri, headers: HeaderMap) -> Response {
    let call = shared.calls.fetch_add(1, Ordering::SeqCst);
    shared.seen.lock().unwrap().push(headers);
    match shared.mode.load(Ordering::SeqCst) {
        0 => Json(serde_json::json!({ "path": uri.path() })).into_response(),
        4 => {
            if call % 2 == 0 {
                tokio::time::sleep(Duration::from_millis(800)).await;
            }
            Json(serde_json::json!({ "path": uri.path(), "call": call })).into_response()
        }
        1 => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK.into_response()
        }
        2 => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        _ => StatusCode::FORBIDDEN.into_response(),
    }
}
