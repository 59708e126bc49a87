//! [`CircuitBreaker`] and its tower layer: after `failure_threshold` failures in a row a
//! downstream is not called for `open_for`; then one probe decides whether it closes.
//!
//! Our own, about a hundred lines: `tower-resilience` (0.13) exists but is pre-1.0 with
//! a fast-moving API and a dozen sub-crates, and the breaker must count exactly the
//! failures [`CallError::is_downstream_failure`] names and expose its state for metrics.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Layer, Service};

use crate::CallError;

/// When a [`CircuitBreaker`] opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Downstream failures in a row that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open before a probe is let through.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    /// Five failures in a row open it for five seconds.
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(5),
        }
    }
}

/// Where a [`CircuitBreaker`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls are made; failures are counted.
    Closed,
    /// Calls are refused with [`CallError::CircuitOpen`] without being made.
    Open,
    /// One probe call is in flight; its result closes or reopens the breaker.
    HalfOpen,
}

impl BreakerState {
    /// 0 closed, 1 half-open, 2 open: the breaker-state gauge.
    pub fn as_gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::HalfOpen => 1.0,
            Self::Open => 2.0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_since: Instant },
}

/// A circuit breaker: closed, open, half-open.
///
/// ```
/// use std::time::Duration;
/// use dovetail_bff::{BreakerConfig, BreakerState, CircuitBreaker};
///
/// let breaker = CircuitBreaker::new(BreakerConfig { failure_threshold: 2, open_for: Duration::from_secs(1) });
/// for _ in 0..2 {
///     breaker.try_acquire().expect("closed");
///     breaker.record(true);
/// }
/// assert_eq!(breaker.state(), BreakerState::Open);
/// assert!(breaker.try_acquire().is_err());
/// ```
#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: Mutex<State>,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where it stands.
    pub fn state(&self) -> BreakerState {
        match *self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Asks to make a call: closed lets it through; open refuses until `open_for` has
    /// passed, then lets one probe through (half-open); a probe lost for `open_for`
    /// (its caller gave up) lets another through.
    ///
    /// # Errors
    /// [`CallError::CircuitOpen`] when the call must not be made.
    pub fn try_acquire(&self) -> Result<(), CallError> {
        let mut state = self.lock();
        let now = Instant::now();
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } | State::HalfOpen { probe_since: until }
                if now >= until + self.probe_grace(&state) =>
            {
                *state = State::HalfOpen { probe_since: now };
                Ok(())
            }
            State::Open { .. } | State::HalfOpen { .. } => Err(CallError::CircuitOpen),
        }
    }

    fn probe_grace(&self, state: &State) -> Duration {
        match state {
            State::HalfOpen { .. } => self.config.open_for,
            _ => Duration::ZERO,
        }
    }

    /// Records a call's result: `failed` when the downstream failed.
    pub fn record(&self, failed: bool) {
        let mut state = self.lock();
        let open = State::Open {
            until: Instant::now() + self.config.open_for,
        };
        *state = match (*state, failed) {
            (State::Closed { .. } | State::HalfOpen { .. }, false) => State::Closed { failures: 0 },
            (State::Closed { failures }, true) if failures + 1 < self.config.failure_threshold => {
                State::Closed {
                    failures: failures + 1,
                }
            }
            (State::Closed { .. } | State::HalfOpen { .. }, true) => open,
            // A call made before the breaker opened: its result changes nothing.
            (open @ State::Open { .. }, _) => open,
        };
    }
}

/// Puts a [`CircuitBreaker`] in front of a service whose error is [`CallError`].
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer {
    breaker: Arc<CircuitBreaker>,
}

impl CircuitBreakerLayer {
    /// The layer of `breaker` (shared: keep a clone to read its state).
    pub fn new(breaker: Arc<CircuitBreaker>) -> Self {
        Self { breaker }
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreakerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService {
            inner,
            breaker: Arc::clone(&self.breaker),
        }
    }
}

/// The service [`CircuitBreakerLayer`] makes.
#[derive(Debug, Clone)]
pub struct CircuitBreakerService<S> {
    inner: S,
    breaker: Arc<CircuitBreaker>,
}

/// Whether a successful exchange still says the downstream is unhealthy (an HTTP
/// answer of 5xx or 429): what a [`CircuitBreakerService`] counts, with
/// [`CallError::is_downstream_failure`], as a failure.
pub trait DownstreamHealth {
    /// Whether this answer is a failure of the downstream.
    fn is_downstream_failure(&self) -> bool;
}

/// Whether `result` says the downstream failed.
pub(crate) fn failed<T: DownstreamHealth>(result: &Result<T, CallError>) -> bool {
    match result {
        Ok(answer) => answer.is_downstream_failure(),
        Err(error) => error.is_downstream_failure(),
    }
}

impl<S, R> Service<R> for CircuitBreakerService<S>
where
    S: Service<R, Error = CallError>,
    S::Response: DownstreamHealth + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = CallError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, CallError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), CallError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        if let Err(open) = self.breaker.try_acquire() {
            return Box::pin(std::future::ready(Err(open)));
        }
        let breaker = Arc::clone(&self.breaker);
        let call = self.inner.call(request);
        Box::pin(async move {
            let result = call.await;
            breaker.record(failed(&result));
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_probes_after_open_for_and_closes_on_success() {
        let breaker = CircuitBreaker::new(BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_secs(2),
        });
        breaker.record(true);
        breaker.record(true);
        breaker.record(false); // a success resets the count
        for _ in 0..3 {
            breaker.record(true);
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.try_acquire().is_err());
        tokio::time::advance(Duration::from_secs(2)).await;
        breaker.try_acquire().expect("a probe");
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(breaker.try_acquire().is_err(), "one probe at a time");
        breaker.record(true);
        assert_eq!(
            breaker.state(),
            BreakerState::Open,
            "a failed probe reopens"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        breaker.try_acquire().expect("a probe");
        breaker.record(false);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_probe_lets_another_through_after_open_for() {
        let breaker = CircuitBreaker::new(BreakerConfig {
            failure_threshold: 1,
            open_for: Duration::from_secs(1),
        });
        breaker.record(true);
        tokio::time::advance(Duration::from_secs(1)).await;
        breaker.try_acquire().expect("a probe, never answered");
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(breaker.try_acquire().is_err());
        tokio::time::advance(Duration::from_millis(500)).await;
        breaker.try_acquire().expect("another probe");
    }
}
