//! A flood on MQTT is never a flood on Connect: per printer, at most
//! `commands.max_per_second` commands (with a burst of `commands.burst`) reach Connect. Pure:
//! the shell asks, with the time, whether a printer's next command may go.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// How many seconds of a printer's rate may wait in its queue; more are refused at once.
const QUEUE_SECONDS: f64 = 5.0;

/// Commands that set a value: a newer one of the same name replaces one still waiting (the
/// last target wins).
pub fn sets_a_value(command: &str) -> bool {
    matches!(
        command,
        "SET_NOZZLE_TEMPERATURE"
            | "SET_HEATBED_TEMPERATURE"
            | "SET_SPEED"
            | "SET_FLOW"
            | "SET_CHAMBER_LED_INTENSITY"
    )
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One token bucket per printer.
#[derive(Debug, Clone)]
pub struct Throttle {
    /// Tokens per second (0: no limit).
    rate: f64,
    burst: f64,
    buckets: HashMap<String, Bucket>,
}

impl Throttle {
    pub fn new(max_per_second: f64, burst: u32) -> Throttle {
        Throttle {
            rate: max_per_second.max(0.0),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
        }
    }

    fn bucket(&mut self, printer: &str, now: Instant) -> &mut Bucket {
        let (rate, burst) = (self.rate, self.burst);
        let b = self.buckets.entry(printer.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at = now;
        b
    }

    /// Takes a token for `printer`'s next command, or says how long until one is there.
    pub fn take(&mut self, printer: &str, now: Instant) -> Result<(), Duration> {
        if self.rate == 0.0 {
            return Ok(());
        }
        let rate = self.rate;
        let b = self.bucket(printer, now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - b.tokens) / rate))
    }

    /// A token taken for a command that did not reach Connect after all (refused here).
    pub fn give_back(&mut self, printer: &str, now: Instant) {
        if self.rate == 0.0 {
            return;
        }
        let burst = self.burst;
        let b = self.bucket(printer, now);
        b.tokens = (b.tokens + 1.0).min(burst);
    }

    /// Command messages one printer may have waiting; more are answered `RATE_LIMITED` at
    /// once instead of waiting minutes for their turn.
    pub fn max_waiting(&self) -> usize {
        if self.rate == 0.0 {
            return usize::MAX;
        }
        (self.burst + self.rate * QUEUE_SECONDS).ceil() as usize
    }

    /// Printers not heard of for a minute forget their bucket (it is full again anyway).
    pub fn forget_idle(&mut self, now: Instant) {
        let full_after = Duration::from_secs_f64(self.burst / self.rate.max(0.001));
        self.buckets.retain(|_, b| {
            now.saturating_duration_since(b.at) < full_after.max(Duration::from_secs(60))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut t = Throttle::new(2.0, 5);
        for _ in 0..5 {
            assert!(t.take("a", t0).is_ok());
        }
        let wait = t.take("a", t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Another printer has its own bucket.
        assert!(t.take("b", t0).is_ok());
        assert!(t.take("a", t0 + Duration::from_millis(499)).is_err());
        assert!(t.take("a", t0 + Duration::from_millis(500)).is_ok());
        // Over 10 s, at most 5 + 2 x 10 go.
        let mut sent = 6;
        for ms in (500..10_500).step_by(10) {
            if t.take("a", t0 + Duration::from_millis(ms)).is_ok() {
                sent += 1;
            }
        }
        assert!(sent <= 5 + 20 + 1, "{sent}");
        assert!(sent >= 5 + 19, "{sent}");
        assert_eq!(t.max_waiting(), 15);
    }

    #[test]
    fn a_token_given_back_is_there_again_and_zero_means_no_limit() {
        let t0 = Instant::now();
        let mut t = Throttle::new(1.0, 1);
        assert!(t.take("a", t0).is_ok());
        assert!(t.take("a", t0).is_err());
        t.give_back("a", t0);
        assert!(t.take("a", t0).is_ok());
        let mut free = Throttle::new(0.0, 5);
        assert!((0..1000).all(|_| free.take("a", t0).is_ok()));
        assert_eq!(free.max_waiting(), usize::MAX);
    }

    #[test]
    fn only_setters_are_replaced_by_newer_values() {
        assert!(sets_a_value("SET_NOZZLE_TEMPERATURE"));
        assert!(sets_a_value("SET_SPEED"));
        assert!(!sets_a_value("MOVE"), "relative: every move counts");
        assert!(!sets_a_value("PAUSE_PRINT"));
    }
}
