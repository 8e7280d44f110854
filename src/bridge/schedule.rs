//! When reads happen: one small type for "due, running, retry later" instead of a flag per
//! read, and the backoff that spreads retries out.

use std::time::Duration;

use tokio::time::Instant;

/// A request for extras (queue, cameras, printer types) that failed is tried again this late,
/// so an endpoint Connect does not have costs no request per poll.
pub const EXTRAS_RETRY: Duration = Duration::from_secs(600);
/// A printer's cameras are listed again when a job starts at most this often; printer types
/// are asked again this often while a printer's type is missing from them.
pub const CAMERAS_RELIST: Duration = Duration::from_secs(3600);
/// Requests for extras (queues, camera lists) one poll may make; a farm's first poll spreads
/// them over the next polls instead of making thousands of requests at once.
pub const EXTRAS_PER_TICK: u32 = 64;
/// Camera snapshots fetched at the same time, at most.
pub const SNAPSHOT_FETCHES: usize = 4;
/// Unseen notifications are read (when a printer's state changed) at most once per this
/// many active poll intervals: every 30 s by default.
pub const NOTIFICATIONS_EVERY_POLLS: u32 = 6;

/// A read that is asked for when something changed or a timer ran out, runs at most once at
/// a time, and may be retried later. A request made while the read runs is kept: the read is
/// due again as soon as the running one finished.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Due {
    at: Option<Instant>,
    running: bool,
}

impl Due {
    /// Due at once.
    pub fn now(now: Instant) -> Due {
        Due {
            at: Some(now),
            running: false,
        }
    }

    /// Due no later than `at` (an earlier request stands).
    pub fn request(&mut self, at: Instant) {
        self.at = Some(self.at.map_or(at, |t| t.min(at)));
    }

    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Asked for, running or not.
    pub fn is_requested(&self) -> bool {
        self.at.is_some()
    }

    /// When it is due next, if it is not running.
    pub fn next(&self) -> Option<Instant> {
        self.at.filter(|_| !self.running)
    }

    /// Starts the read when it is due and not running; true when the caller should make it.
    pub fn start(&mut self, now: Instant) -> bool {
        if self.running || self.at.is_none_or(|t| t > now) {
            return false;
        }
        self.at = None;
        self.running = true;
        true
    }

    /// The read finished (either way).
    pub fn finish(&mut self) {
        self.running = false;
    }

    /// The read failed: finished, and due again at `at` unless asked for sooner.
    pub fn retry(&mut self, at: Instant) {
        self.finish();
        self.request(at);
    }

    /// Nothing asked for any more.
    pub fn cancel(&mut self) {
        self.at = None;
    }
}

/// A [`Due`] whose failures back off: due again `base` after the first, doubling up to `cap`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Retried {
    pub due: Due,
    failures: u32,
}

impl Retried {
    pub fn now(now: Instant) -> Retried {
        Retried {
            due: Due::now(now),
            failures: 0,
        }
    }

    pub fn succeeded(&mut self) {
        self.due.finish();
        self.failures = 0;
    }

    pub fn failed(&mut self, now: Instant, base: Duration, cap: Duration) {
        let wait = backoff(base, self.failures, cap);
        self.failures += 1;
        self.due.retry(now + wait);
    }

    pub fn has_failed(&self) -> bool {
        self.failures > 0
    }
}

/// `base` × 2^`attempt`, at most `cap`.
pub fn backoff(base: Duration, attempt: u32, cap: Duration) -> Duration {
    base.saturating_mul(1u32 << attempt.min(16)).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_while_running_makes_it_due_again_after() {
        let t0 = Instant::now();
        let mut due = Due::now(t0);
        assert!(due.start(t0));
        assert!(!due.start(t0), "never twice at once");
        due.request(t0);
        assert!(!due.start(t0), "still running");
        due.finish();
        assert!(due.start(t0), "the request made meanwhile stands");
        due.finish();
        assert!(!due.start(t0 + Duration::from_secs(3600)), "nothing asked");
    }

    #[test]
    fn a_retry_waits_unless_asked_sooner() {
        let t0 = Instant::now();
        let mut due = Due::now(t0);
        assert!(due.start(t0));
        due.retry(t0 + Duration::from_secs(600));
        assert!(!due.start(t0 + Duration::from_secs(599)));
        due.request(t0 + Duration::from_secs(10));
        assert!(!due.start(t0 + Duration::from_secs(9)));
        assert!(due.start(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(5), 0, s(300)), s(5));
        assert_eq!(backoff(s(5), 3, s(300)), s(40));
        assert_eq!(backoff(s(5), 40, s(300)), s(300));
    }
}
