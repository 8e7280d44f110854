//! systemd's side of the loop: the watchdog it feeds and the `Type=notify` messages.

use std::time::Duration;

use tokio::time::Instant;

/// systemd's watchdog (`WatchdogSec=`): fed at half its period by the event loop, and between
/// printers during a long poll, so only a loop that really hangs gets the service restarted.
pub(super) struct Watchdog {
    every: Option<Duration>,
    last: Instant,
}

impl Watchdog {
    /// The event loop's tick for feeding it, if there is a watchdog.
    pub(super) fn interval(&self) -> Option<tokio::time::Interval> {
        self.every.map(|every| {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        })
    }

    pub(super) fn from_env() -> Watchdog {
        Watchdog {
            // (At least 10 ms: a zero interval would panic on an absurd WATCHDOG_USEC.)
            every: sd_notify::watchdog_enabled()
                .map(|period| (period / 2).max(Duration::from_millis(10))),
            last: Instant::now(),
        }
    }

    pub(super) fn feed(&mut self) {
        if self.every.is_some() {
            notify_systemd(&[sd_notify::NotifyState::Watchdog]);
            self.last = Instant::now();
        }
    }

    pub(super) fn feed_if_due(&mut self) {
        if self.every.is_some_and(|every| self.last.elapsed() >= every) {
            self.feed();
        }
    }
}

/// Waits for the next watchdog tick; never, without a watchdog.
pub(super) async fn tick_of(watchdog: &mut Option<tokio::time::Interval>) {
    match watchdog {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// A message for systemd (`Type=notify`); nothing when not run by systemd.
pub(super) fn notify_systemd(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::debug!("cannot notify systemd: {e}");
    }
}
