//! Retries of idempotent calls only, with full-jitter exponential backoff that never
//! sleeps past the deadline, within a [`TpsBudget`] that caps the extra load.

use std::sync::Arc;
use std::time::Duration;

use tower::retry::Policy;
use tower::retry::budget::{Budget, TpsBudget};

use super::Answer;
use super::client::Attempt;
use crate::CallError;

/// How a downstream's idempotent calls are retried.
///
/// A call is idempotent when it is a GET or HEAD, or carries an `Idempotency-Key`;
/// no other call is ever sent twice. Retries are made on downstream failures (a 5xx, a
/// 429, a connection error, a per-call timeout) while the request's deadline leaves time
/// for the backoff, and while the budget has retries left.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryConfig {
    /// Retries of one call at most (0: none).
    pub max_retries: u32,
    /// The first backoff's ceiling; it doubles with each retry. The delay is drawn
    /// uniformly below the ceiling (full jitter).
    pub base_backoff: Duration,
    /// The ceiling's ceiling.
    pub max_backoff: Duration,
    /// Retries allowed per call made, over the last ten seconds: 0.2 caps the extra
    /// load at 20%.
    pub budget_ratio: f32,
    /// Retries per second allowed on top of the ratio, so a quiet downstream can still
    /// be retried.
    pub min_retries_per_sec: u32,
}

impl Default for RetryConfig {
    /// Two retries, backoff from 20 ms to 200 ms, at most 20% extra load (plus one
    /// retry a second).
    fn default() -> Self {
        Self {
            max_retries: 2,
            base_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            budget_ratio: 0.2,
            min_retries_per_sec: 1,
        }
    }
}

impl RetryConfig {
    /// The budget this configuration describes.
    pub(crate) fn budget(&self) -> TpsBudget {
        TpsBudget::new(
            Duration::from_secs(10),
            self.min_retries_per_sec,
            self.budget_ratio.clamp(0.0, 1000.0),
        )
    }

    /// The backoff before retry number `retry` (0 for the first): a uniform draw below
    /// `min(max_backoff, base_backoff * 2^retry)`.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .base_backoff
            .saturating_mul(1 << retry.min(16))
            .min(self.max_backoff);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(..=nanos))
    }
}

/// The tower retry policy of one call (cloned per call: it counts that call's retries).
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    pub(crate) config: RetryConfig,
    pub(crate) budget: Arc<TpsBudget>,
    pub(crate) retries: u32,
}

impl Policy<Attempt, Answer, CallError> for RetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        attempt: &mut Attempt,
        result: &mut Result<Answer, CallError>,
    ) -> Option<Self::Future> {
        if !attempt.idempotent
            || !super::breaker::failed(result)
            || self.retries >= self.config.max_retries
        {
            return None;
        }
        let delay = self.config.backoff(self.retries);
        if delay >= attempt.deadline.remaining() {
            return None;
        }
        if !self.budget.withdraw() {
            tracing::debug!("retry budget spent; not retrying");
            return None;
        }
        self.retries += 1;
        Some(tokio::time::sleep(delay))
    }

    fn clone_request(&mut self, attempt: &Attempt) -> Option<Attempt> {
        if attempt.idempotent {
            attempt.try_clone()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_stays_under_its_doubling_ceiling() {
        let config = RetryConfig::default();
        for retry in 0..8 {
            let ceiling = (config.base_backoff * (1 << retry)).min(config.max_backoff);
            for _ in 0..100 {
                assert!(config.backoff(retry) <= ceiling);
            }
        }
    }
}
