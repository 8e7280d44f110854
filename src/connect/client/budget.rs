//! The gateway's one request budget for Connect (`connect.max_requests_per_second`, with a
//! burst): every request takes its turn from it, so a farm's start-up cannot hammer Connect,
//! and a 429 pauses and slows every request, not only the one that got it.
//!
//! [`Budget`] decides (no clock of its own: times come in); [`SharedBudget`] is the handle the
//! client's requests wait on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// How long every request waits after a 429 that says nothing of when to come back.
pub const PAUSE_WITHOUT_RETRY_AFTER: Duration = Duration::from_secs(10);
/// The longest pause a 429 makes, whatever its `Retry-After`: the gateway must look again
/// (the same limit as the poll's longest backoff).
pub const MAX_PAUSE: Duration = Duration::from_secs(300);
/// After a 429 the budget runs at half the rate (a quarter after a second one, at most
/// [`MAX_SLOWDOWN`] times slower) until this long passes without another.
pub const SLOWED_FOR: Duration = Duration::from_secs(300);
/// The slowest a run of 429s makes the budget: this many times below the configured rate.
pub const MAX_SLOWDOWN: u32 = 16;

/// Who is asking: the printer list and commands are served before reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Camera lists, queues, jobs, feeds, snapshots...: wait for their turn.
    Read,
    /// The printer list: what keeps every printer's state current. It takes its turn without
    /// waiting behind reads (the reads after it wait longer); during a 429's pause it is not
    /// sent but fails at once, so the poll shows Connect refusing and backs off.
    List,
    /// A command a user sent: never held back by the budget (`commands.max_per_second`
    /// limits them); it still counts, so reads after it wait longer.
    Write,
}

/// A token bucket kept as the time the next request is "due" (GCRA): a request may go
/// `burst - 1` intervals before that; each one pushes it one interval on. Requests reserve
/// their turn, so those waiting go in the order they came.
#[derive(Debug)]
pub struct Budget {
    /// The configured interval between requests (`None`: no limit).
    interval: Option<Duration>,
    burst: u32,
    /// When the next request is due at the (current) rate.
    due: Instant,
    /// No request (but a write) before this: Connect answered 429.
    paused_until: Option<Instant>,
    /// The rate is divided by this after 429s.
    slowdown: u32,
    /// The last 429, for [`SLOWED_FOR`].
    last_refusal: Option<Instant>,
}

impl Budget {
    /// `per_second` 0 (or not finite) means no limit; `burst` is at least 1.
    pub fn new(per_second: f64, burst: u32, now: Instant) -> Budget {
        let interval = (per_second.is_finite() && per_second > 0.0)
            .then(|| Duration::from_secs_f64(1.0 / per_second));
        Budget {
            interval,
            burst: burst.max(1),
            due: now,
            paused_until: None,
            slowdown: 1,
            last_refusal: None,
        }
    }

    /// The interval between requests now, slowed after 429s.
    fn current_interval(&self) -> Option<Duration> {
        self.interval.map(|i| i * self.slowdown)
    }

    /// Takes a turn for a request in `lane` asked at `now`: the time it may go (`now` when at
    /// once). The turn is taken whatever the answer: the caller waits until then.
    pub fn take(&mut self, lane: Lane, now: Instant) -> Instant {
        if self
            .last_refusal
            .is_some_and(|t| now.saturating_duration_since(t) >= SLOWED_FOR)
        {
            self.slowdown = 1;
            self.last_refusal = None;
        }
        let paused = self.paused_until.filter(|&t| t > now);
        let Some(interval) = self.current_interval() else {
            return match lane {
                Lane::Write => now,
                Lane::Read | Lane::List => paused.unwrap_or(now),
            };
        };
        let start = self.due.max(now);
        let tolerance = interval * (self.burst - 1);
        match lane {
            Lane::Read => {
                let start = start.max(paused.unwrap_or(now));
                self.due = start + interval;
                (start.checked_sub(tolerance).unwrap_or(now)).max(now)
            }
            Lane::List => {
                self.due = start + interval;
                paused.unwrap_or(now)
            }
            Lane::Write => {
                self.due = start + interval;
                now
            }
        }
    }

    /// Whether a request whose turn came at `now` must wait again: Connect answered 429
    /// meanwhile. It waits until [`Budget::take`] says (a new turn).
    pub fn is_paused(&self, lane: Lane, now: Instant) -> bool {
        lane != Lane::Write && self.paused_for(now).is_some()
    }

    /// How much of a 429's pause is left at `now`.
    pub fn paused_for(&self, now: Instant) -> Option<Duration> {
        self.paused_until
            .filter(|&t| t > now)
            .map(|t| t.duration_since(now))
    }

    /// Connect answered 429 at `now`: every request but writes waits `retry_after` (or
    /// [`PAUSE_WITHOUT_RETRY_AFTER`]), and the rate halves. Returns the pause.
    pub fn refused(&mut self, now: Instant, retry_after: Option<Duration>) -> Duration {
        let pause = retry_after
            .unwrap_or(PAUSE_WITHOUT_RETRY_AFTER)
            .min(MAX_PAUSE);
        let until = now + pause;
        self.paused_until = Some(self.paused_until.map_or(until, |t| t.max(until)));
        // Several requests in flight get the 429 together: that is one refusal.
        let fresh = self
            .last_refusal
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
        if fresh {
            self.slowdown = (self.slowdown * 2).min(MAX_SLOWDOWN);
        }
        self.last_refusal = Some(now);
        // After the pause the budget starts from empty, not with a burst.
        if let Some(interval) = self.current_interval() {
            let refill = until + interval * (self.burst - 1);
            self.due = self.due.max(refill);
        }
        pause
    }

    /// How many times below the configured rate the budget runs now (1: not slowed).
    pub fn slowdown(&self) -> u32 {
        self.slowdown
    }
}

/// The budget shared by every clone of a client.
#[derive(Debug, Clone)]
pub struct SharedBudget(Arc<Mutex<Budget>>);

impl SharedBudget {
    pub fn new(per_second: f64, burst: u32) -> SharedBudget {
        SharedBudget(Arc::new(Mutex::new(Budget::new(
            per_second,
            burst,
            Instant::now(),
        ))))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Budget> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a request's turn in `lane`. The list, during a 429's pause, gets how long
    /// the pause lasts instead: it is not sent.
    pub async fn turn(&self, lane: Lane) -> Result<(), Duration> {
        loop {
            let at = {
                let mut budget = self.lock();
                if lane == Lane::List
                    && let Some(left) = budget.paused_for(Instant::now())
                {
                    return Err(left);
                }
                budget.take(lane, Instant::now())
            };
            tokio::time::sleep_until(at).await;
            if !self.lock().is_paused(lane, Instant::now()) {
                return Ok(());
            }
        }
    }

    /// Connect answered 429: see [`Budget::refused`].
    pub fn refused(&self, retry_after: Option<Duration>) {
        let (pause, slowdown) = {
            let mut budget = self.lock();
            let pause = budget.refused(Instant::now(), retry_after);
            (pause, budget.slowdown())
        };
        tracing::warn!(
            "Connect answered 429 (too many requests): every read waits {} s, then goes at \
             1/{slowdown} of connect.max_requests_per_second for {} minutes",
            pause.as_secs_f64().ceil(),
            SLOWED_FOR.as_secs() / 60,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_burst_goes_at_once_then_one_per_interval() {
        let t0 = Instant::now();
        let mut b = Budget::new(5.0, 3, t0);
        let turns: Vec<Duration> = (0..6).map(|_| b.take(Lane::Read, t0) - t0).collect();
        assert_eq!(turns, [ms(0), ms(0), ms(0), ms(200), ms(400), ms(600)]);
        // Two seconds later the bucket is full again, no fuller.
        let t1 = t0 + Duration::from_secs(3);
        let turns: Vec<Duration> = (0..4).map(|_| b.take(Lane::Read, t1) - t1).collect();
        assert_eq!(turns, [ms(0), ms(0), ms(0), ms(200)]);
    }

    #[test]
    fn over_any_window_no_more_than_the_burst_plus_the_rate() {
        let t0 = Instant::now();
        let mut b = Budget::new(5.0, 20, t0);
        let mut sent = Vec::new();
        // Asks in clumps at odd times, far more than the budget.
        for i in 0..400u64 {
            let now = t0 + ms(i * 37 % 1000 + i * 10);
            sent.push(b.take(Lane::Read, now));
        }
        sent.sort();
        for (i, &start) in sent.iter().enumerate() {
            let window = Duration::from_secs(10);
            let within = sent[i..]
                .iter()
                .take_while(|&&t| t < start + window)
                .count();
            assert!(within <= 20 + 50, "{within} requests in 10 s from #{i}");
        }
    }

    #[test]
    fn the_list_and_writes_do_not_wait_behind_reads_but_count() {
        let t0 = Instant::now();
        let mut b = Budget::new(5.0, 1, t0);
        assert_eq!(b.take(Lane::Read, t0), t0);
        assert_eq!(b.take(Lane::Read, t0), t0 + ms(200));
        assert_eq!(b.take(Lane::List, t0), t0);
        assert_eq!(b.take(Lane::Write, t0), t0);
        // The list and the write took the turns at 400 and 600 ms.
        assert_eq!(b.take(Lane::Read, t0), t0 + ms(800));
    }

    #[test]
    fn a_429_pauses_every_read_and_the_list_and_halves_the_rate() {
        let t0 = Instant::now();
        let mut b = Budget::new(10.0, 5, t0);
        assert_eq!(
            b.refused(t0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        let resume = t0 + Duration::from_secs(2);
        assert!(b.is_paused(Lane::Read, t0 + ms(1999)));
        assert!(b.is_paused(Lane::List, t0));
        assert!(!b.is_paused(Lane::Write, t0));
        assert_eq!(b.paused_for(t0 + ms(500)), Some(ms(1500)));
        assert_eq!(b.take(Lane::Write, t0), t0);
        assert_eq!(b.take(Lane::List, t0 + ms(10)), resume);
        // After the pause no burst: one request per (doubled) interval.
        let first = b.take(Lane::Read, t0 + ms(20));
        let second = b.take(Lane::Read, t0 + ms(20));
        assert!(first >= resume, "{:?}", first - t0);
        assert_eq!(second - first, ms(200));
        assert_eq!(b.slowdown(), 2);
        // Responses in flight that all got the 429 count once.
        b.refused(t0 + ms(30), None);
        assert_eq!(b.slowdown(), 2);
        // Another one later: slower still, never below 1/16.
        for s in 1..10 {
            b.refused(t0 + Duration::from_secs(3 * s), Some(ms(1)));
        }
        assert_eq!(b.slowdown(), MAX_SLOWDOWN);
        // Five quiet minutes later, the configured rate again.
        let later = t0 + Duration::from_secs(30) + SLOWED_FOR + Duration::from_secs(60);
        let a = b.take(Lane::Read, later);
        let _ = (0..10).map(|_| b.take(Lane::Read, later)).last();
        let c = b.take(Lane::Read, later);
        assert_eq!(b.slowdown(), 1);
        assert_eq!(c - a, ms(100) * 11 - ms(100) * 4, "{:?}", c - a);
    }

    #[test]
    fn a_429_pauses_five_minutes_at_most() {
        let t0 = Instant::now();
        let mut b = Budget::new(5.0, 20, t0);
        assert_eq!(b.refused(t0, Some(Duration::from_secs(3600))), MAX_PAUSE);
        assert_eq!(b.paused_for(t0), Some(MAX_PAUSE));
    }

    #[test]
    fn without_a_limit_only_a_429_holds_requests() {
        let t0 = Instant::now();
        let mut b = Budget::new(0.0, 1, t0);
        for _ in 0..100 {
            assert_eq!(b.take(Lane::Read, t0), t0);
        }
        b.refused(t0, None);
        assert_eq!(b.take(Lane::Read, t0), t0 + PAUSE_WITHOUT_RETRY_AFTER);
        assert_eq!(b.take(Lane::Write, t0), t0);
    }
}
