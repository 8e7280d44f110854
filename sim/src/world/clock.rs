//! Connect's clock: real time, with a scripted offset, never giving the same microsecond twice.

use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn real_now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Microseconds to Connect's float seconds.
pub(crate) fn secs(us: i64) -> f64 {
    us as f64 / 1e6
}

/// Connect's clock: real wall-clock time plus a scripted offset (a clock jump), made strictly
/// increasing so that events created in one burst keep the order they happened in when
/// sorted by `created`.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    last_us: i64,
    offset_us: i64,
}

impl Clock {
    pub fn tick(&mut self) -> i64 {
        let us = self.now_us().max(self.last_us + 1);
        self.last_us = us;
        us
    }

    /// The time now by this clock, without advancing it.
    pub fn now_us(&self) -> i64 {
        real_now_us().saturating_add(self.offset_us)
    }

    /// Makes the clock jump: it may go backwards, past times it already gave out.
    pub fn set_offset(&mut self, offset_us: i64) {
        self.offset_us = offset_us;
        self.last_us = i64::MIN + 1;
    }
}
