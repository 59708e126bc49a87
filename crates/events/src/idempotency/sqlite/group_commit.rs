//! Group commit for the SQLite idempotency store: the operations that arrive while one
//! transaction runs share the next one.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::backend;
use crate::idempotency::{IdempotencyError, StoreOperation};

/// What an operation sends its caller once its batch's transaction ended: its result, or
/// the commit's failure.
type Answer = Box<dyn FnOnce(Option<&BatchFailed>) + Send>;

/// An operation, run on the connection inside the batch's transaction (or told why it
/// could not run), answering what to send once the transaction ended.
type Job = Box<dyn FnOnce(Result<&Connection, &BatchFailed>) -> Answer + Send>;

/// One connection, and the operations waiting for their transaction.
#[derive(Debug)]
pub(super) struct GroupCommit {
    connection: Mutex<Connection>,
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    jobs: Vec<Job>,
    /// Whether a task on the blocking pool is running batches (and will take these).
    draining: bool,
}

impl std::fmt::Debug for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiting")
            .field("jobs", &self.jobs.len())
            .field("draining", &self.draining)
            .finish()
    }
}

/// Why a whole batch failed: its transaction could not begin or commit.
#[derive(Debug, Clone)]
pub(super) struct BatchFailed(Arc<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for BatchFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the transaction of a batch of operations failed")
    }
}

impl std::error::Error for BatchFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl BatchFailed {
    fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(error))
    }
}

impl GroupCommit {
    pub(super) fn new(connection: Connection) -> Self {
        Self {
            connection: Mutex::new(connection),
            waiting: Mutex::new(Waiting::default()),
        }
    }

    /// Runs `work` in the next batch's transaction and answers its result once the
    /// transaction committed: a result is never answered for writes that did not commit.
    ///
    /// `work` shares the transaction with the other operations of its batch, without a
    /// savepoint of its own (two statements more per operation): when it answers an
    /// error, it must have written nothing. The store's operations each write with one
    /// statement, their last, which SQLite applies whole or not at all. A `work` that
    /// panics rolls the whole batch back, and every operation of it answers an error.
    pub(super) async fn run<T, F>(
        self: &Arc<Self>,
        operation: StoreOperation,
        work: F,
    ) -> Result<T, IdempotencyError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, IdempotencyError> + Send + 'static,
    {
        let (send, answer) = oneshot::channel();
        let job: Job = Box::new(move |connection| {
            let result = match connection {
                Ok(connection) => work(connection),
                Err(failed) => Err(backend(operation, failed.clone())),
            };
            Box::new(move |ended: Option<&BatchFailed>| {
                let result = match (result, ended) {
                    (Ok(_), Some(failed)) => Err(backend(operation, failed.clone())),
                    (result, _) => result,
                };
                let _ = send.send(result);
            })
        });
        let lead = {
            let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
            waiting.jobs.push(job);
            !std::mem::replace(&mut waiting.draining, true)
        };
        if lead {
            let this = Arc::clone(self);
            tokio::task::spawn_blocking(move || this.drain());
        }
        answer.await.map_err(|_| {
            backend(
                operation,
                std::io::Error::other("the store's blocking task stopped"),
            )
        })?
    }

    /// Runs batches until none is waiting.
    fn drain(&self) {
        let connection = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            let jobs = {
                let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
                if waiting.jobs.is_empty() {
                    waiting.draining = false;
                    return;
                }
                std::mem::take(&mut waiting.jobs)
            };
            batch(&connection, jobs);
        }
    }
}

/// Runs `jobs` in one `BEGIN IMMEDIATE` transaction, then answers each.
fn batch(connection: &Connection, jobs: Vec<Job>) {
    if let Err(error) = connection.execute_batch("BEGIN IMMEDIATE") {
        let failed = BatchFailed::new(error);
        for job in jobs {
            job(Err(&failed))(Some(&failed));
        }
        return;
    }
    let ran = catch_unwind(AssertUnwindSafe(|| {
        jobs.into_iter()
            .map(|job| job(Ok(connection)))
            .collect::<Vec<Answer>>()
    }));
    let (answers, ended) = match ran {
        Ok(answers) => match connection.execute_batch("COMMIT") {
            Ok(()) => (answers, None),
            Err(error) => {
                // Still open if COMMIT failed: end it, so the next batch can begin.
                let _ = connection.execute_batch("ROLLBACK");
                (answers, Some(BatchFailed::new(error)))
            }
        },
        Err(_) => {
            // Every job's answer was dropped with the unwinding: each caller gets an
            // error, and nothing of the batch commits.
            let _ = connection.execute_batch("ROLLBACK");
            (Vec::new(), None)
        }
    };
    for answer in answers {
        answer(ended.as_ref());
    }
}
