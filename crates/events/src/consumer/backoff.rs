//! [`RetryBackoff`]: how long a retriable failure waits before its redelivery, from the
//! message's receive count.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;

/// The delay before a message that failed retriably is delivered again:
/// `min(base × 2^(receive_count − 1), max)`, optionally with jitter.
///
/// The receive count comes from the transport (SQS `ApproximateReceiveCount`), so the
/// backoff survives consumer restarts and is the same whichever consumer received the
/// message. With `jitter`, the delay is drawn uniformly from the upper half of that value
/// ("equal jitter"), which spreads a burst of failures without losing the growth.
///
/// SQS counts visibility timeouts in whole seconds, so the SQS consumer rounds the delay
/// up to a second and never beyond 12 hours.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use dovetail_events::consumer::RetryBackoff;
///
/// let backoff = RetryBackoff::new(Duration::from_secs(2), Duration::from_secs(60));
/// assert_eq!(backoff.delay(1), Duration::from_secs(2));
/// assert_eq!(backoff.delay(3), Duration::from_secs(8));
/// assert_eq!(backoff.delay(10), Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryBackoff {
    /// The delay after the first receive.
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
    /// Draw each delay from `[d/2, d]` instead of using `d`.
    pub jitter: bool,
}

impl RetryBackoff {
    /// A backoff from `base` doubling up to `max`, without jitter.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            jitter: false,
        }
    }

    /// The delay before redelivering a message that failed on its `receive_count`-th
    /// receive (a count of 0 is taken as 1).
    pub fn delay(&self, receive_count: u32) -> Duration {
        let full = self.full_delay(receive_count);
        if self.jitter {
            equal_jitter(full, RandomState::new().hash_one(receive_count))
        } else {
            full
        }
    }

    fn full_delay(&self, receive_count: u32) -> Duration {
        let doublings = receive_count.saturating_sub(1).min(63);
        let factor = 1u64 << doublings;
        let factor = u32::try_from(factor).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }
}

impl Default for RetryBackoff {
    /// One second, doubling up to five minutes, without jitter.
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(300))
    }
}

/// A delay in `[full/2, full]`, chosen by `random`.
fn equal_jitter(full: Duration, random: u64) -> Duration {
    let half = full / 2;
    let span = u64::try_from((full - half).as_millis()).unwrap_or(u64::MAX);
    let extra = if span == 0 { 0 } else { random % (span + 1) };
    half + Duration::from_millis(extra)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn doubles_from_the_base_and_stops_at_the_max() {
        let backoff = RetryBackoff::new(SECOND, 30 * SECOND);
        let delays: Vec<u64> = (0..=7)
            .map(|count| backoff.delay(count).as_secs())
            .collect();
        assert_eq!(delays, [1, 1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn huge_receive_counts_do_not_overflow() {
        let backoff = RetryBackoff::new(SECOND, Duration::from_secs(43_200));
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(43_200));
    }

    #[test]
    fn a_zero_base_retries_at_once() {
        let backoff = RetryBackoff::new(Duration::ZERO, SECOND);
        assert_eq!(backoff.delay(5), Duration::ZERO);
    }

    proptest! {
        #[test]
        fn jitter_stays_in_the_upper_half(count in 0u32..40, base_ms in 0u64..10_000, max_ms in 0u64..600_000) {
            let mut backoff = RetryBackoff::new(Duration::from_millis(base_ms), Duration::from_millis(max_ms));
            let full = backoff.delay(count);
            backoff.jitter = true;
            let jittered = backoff.delay(count);
            prop_assert!(jittered <= full);
            prop_assert!(jittered >= full / 2);
        }
    }
}
