//! [`CatchPanic`]: a handler's future polled in the consumer's own task, its panic turned
//! into a retriable failure instead of a dead consumer.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::consumer::HandlerError;

/// Wraps a handler's future: a panic while it is polled completes it with
/// [`HandlerError::Retriable`] ("the handler panicked: ..."), and it is never polled
/// again. Polled in the handling task itself, it needs no task of its own, and it is
/// dropped (cancelled) with that task.
pub(super) struct CatchPanic<F> {
    inner: Option<Pin<Box<F>>>,
}

impl<F> CatchPanic<F> {
    pub(super) fn new(future: F) -> Self {
        Self {
            inner: Some(Box::pin(future)),
        }
    }
}

impl<F> Future for CatchPanic<F>
where
    F: Future<Output = Result<(), HandlerError>>,
{
    type Output = Result<(), HandlerError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(Err(HandlerError::retriable(
                "the handler was polled after it panicked",
            )));
        };
        match catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(panic) => {
                self.inner = None;
                Poll::Ready(Err(HandlerError::retriable(format!(
                    "the handler panicked: {}",
                    message(panic.as_ref())
                ))))
            }
        }
    }
}

/// The message a panic carried, when it is text.
fn message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_is_a_retriable_failure() {
        let outcome = CatchPanic::new(async {
            if std::hint::black_box(true) {
                panic!("the coverage limit overflowed");
            }
            Ok(())
        })
        .await;
        match outcome {
            Err(HandlerError::Retriable { reason }) => {
                assert_eq!(
                    reason,
                    "the handler panicked: the coverage limit overflowed"
                );
            }
            other => panic!("{other:?}"),
        }
        let fine = CatchPanic::new(async { Ok(()) }).await;
        assert!(fine.is_ok());
    }
}
