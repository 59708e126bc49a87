//! [`ConsumerReport`]: what a consumer did between its start and its drain.

/// Counts of what happened to the messages a consumer received, returned when it stops.
///
/// Every received message ends in exactly one of `handled`, `retried`, `dead_lettered`,
/// `failed`, `released` or `abandoned`.
///
/// # Example
/// ```
/// use dovetail_events::consumer::ConsumerReport;
///
/// let report = ConsumerReport::default();
/// assert_eq!(report.settled(), 0);
/// assert!(report.is_clean());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerReport {
    /// Messages received from the transport.
    pub received: u64,
    /// Messages the handler processed (`Ok`); they were acknowledged (for SQS, deleted,
    /// unless counted in `delete_failures` too).
    pub handled: u64,
    /// Messages that failed retriably (or whose handler panicked) and were left for
    /// redelivery after a backoff.
    pub retried: u64,
    /// Messages sent to the dead-letter queue with a reason (rejected by the handler, or
    /// undecodable) and acknowledged.
    pub dead_lettered: u64,
    /// Messages that should have gone to the dead-letter queue but could not (none is
    /// configured, or sending failed): left to the queue's redrive policy.
    pub failed: u64,
    /// FIFO messages released unhandled because an earlier message of their group failed
    /// or the consumer was draining; they are redelivered in order.
    pub released: u64,
    /// Messages still held when the drain timed out (their handler was running, or, in a
    /// FIFO group, they waited behind one that was); the transport redelivers them.
    pub abandoned: u64,
    /// Acknowledgements (deletes) the transport refused or that failed; those messages
    /// are redelivered although handled.
    pub delete_failures: u64,
    /// Visibility extensions sent for slow handlers (heartbeats).
    pub visibility_extensions: u64,
}

impl ConsumerReport {
    /// Messages whose fate was decided: everything received except those abandoned.
    pub fn settled(&self) -> u64 {
        self.handled + self.retried + self.dead_lettered + self.failed + self.released
    }

    /// Whether nothing went wrong that an operator should look at: no failures, no
    /// abandoned handlers, no failed deletes.
    pub fn is_clean(&self) -> bool {
        self.failed == 0 && self.abandoned == 0 && self.delete_failures == 0
    }
}
