//! The innermost service of a downstream's stack: one HTTP attempt with reqwest, under
//! the call's timeout capped by the request's deadline, with the deadline header set to
//! the time that remains. Every HTTP answer is passed up whatever its status; the layers
//! above judge it ([`Answer::is_downstream_failure`]) and [`classify`] turns the statuses
//! a composed section cannot use into [`CallError`]s.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::StatusCode;
use dovetail_http::deadline::Deadline;
use tower::Service;

use super::Answer;
use crate::CallError;

/// One attempt at a call, as it goes down the stack.
#[derive(Debug)]
pub(crate) struct Attempt {
    pub(crate) request: reqwest::Request,
    pub(crate) deadline: Deadline,
    pub(crate) idempotent: bool,
}

impl Attempt {
    /// A copy for a retry; `None` when the body cannot be copied (a stream).
    pub(crate) fn try_clone(&self) -> Option<Self> {
        Some(Self {
            request: self.request.try_clone()?,
            deadline: self.deadline,
            idempotent: self.idempotent,
        })
    }
}

/// Sends an [`Attempt`] and reads the whole answer.
#[derive(Debug, Clone)]
pub(crate) struct HttpClient {
    pub(crate) client: reqwest::Client,
    pub(crate) call_timeout: Duration,
}

impl Service<Attempt> for HttpClient {
    type Response = Answer;
    type Error = CallError;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, CallError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), CallError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, attempt: Attempt) -> Self::Future {
        let Attempt {
            mut request,
            deadline,
            ..
        } = attempt;
        let deadline = deadline.capped(self.call_timeout);
        deadline.insert_into(request.headers_mut());
        let client = self.client.clone();
        Box::pin(async move {
            let exchange = async {
                let response = client.execute(request).await.map_err(transport)?;
                let status = response.status();
                let headers = response.headers().clone();
                let body = response.bytes().await.map_err(transport)?;
                Ok::<_, CallError>(Answer {
                    status,
                    headers,
                    body,
                })
            };
            tokio::time::timeout_at(deadline.instant(), exchange)
                .await
                .map_err(|_| CallError::Timeout)?
        })
    }
}

fn transport(error: reqwest::Error) -> CallError {
    if error.is_timeout() {
        CallError::Timeout
    } else {
        CallError::Transport(Box::new(error))
    }
}

/// The answer a section can use, or why not: 401 and 403 are [`CallError::Forbidden`],
/// 5xx and 429 [`CallError::Failed`].
pub(crate) fn classify(answer: Answer) -> Result<Answer, CallError> {
    match answer.status {
        status @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
            Err(CallError::Forbidden { status })
        }
        status if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => {
            Err(CallError::Failed { status })
        }
        _ => Ok(answer),
    }
}
