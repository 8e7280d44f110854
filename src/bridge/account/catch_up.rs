//! What is read even when the printer list shows no change: each printer's feed on the
//! `connect.feed_interval` schedule, and Connect's job list when a job ended or appeared
//! somewhere the list does not show (the feed named it, or the gateway was stopped).

use std::time::Duration;

use tokio::time::Instant;

use crate::bridge::core::Core;
use crate::connect::model::FeedEvent;

/// Scheduled feed reads one poll may make: `printers` × `tick` / `every`, rounded up, so the
/// fleet's reads are spread evenly over the interval (50 printers, a 30 s poll and 10 minutes:
/// 3 a poll).
pub fn feed_quota(printers: usize, tick: Duration, every: Duration) -> usize {
    if every.is_zero() || printers == 0 {
        return 0;
    }
    (printers as f64 * tick.as_secs_f64() / every.as_secs_f64()).ceil() as usize
}

impl Core {
    /// The feeds whose scheduled read is due (by the next half poll), most overdue first, at
    /// most [`feed_quota`] of them. A printer whose first read is done gets its first
    /// scheduled read placed evenly over the interval among those placed with it, so a
    /// fleet started at once does not come due at once.
    pub(crate) fn scheduled_feed_reads(&mut self, now: Instant, tick: Duration) {
        let every = self.settings.feed_interval;
        if every.is_zero() {
            return;
        }
        let unplaced: Vec<String> = self
            .registry
            .entries()
            .filter(|e| {
                e.runtime
                    .as_ref()
                    .is_some_and(|l| l.feed_next.is_none() && l.feed_read_at.is_some())
            })
            .map(|e| e.uuid.clone())
            .collect();
        let k = unplaced.len() as f64;
        for (i, uuid) in unplaced.iter().enumerate() {
            if let Some(live) = self.registry.get_mut(uuid).and_then(|e| e.runtime.as_mut()) {
                live.feed_next = Some(now + every.mul_f64((i + 1) as f64 / k));
            }
        }
        let printers = self
            .registry
            .entries()
            .filter(|e| e.runtime.is_some())
            .count();
        let horizon = now + tick / 2;
        let mut due: Vec<(Instant, String)> = self
            .registry
            .entries()
            .filter(|e| self.is_listed(&e.uuid) || self.is_rejected(&e.uuid))
            .filter_map(|e| {
                let live = e.runtime.as_ref()?;
                let next = live.feed_next.filter(|t| *t <= horizon)?;
                (!live.feed.is_requested() && !live.feed.is_running())
                    .then(|| (next, e.uuid.clone()))
            })
            .collect();
        due.sort();
        for (_, uuid) in due.into_iter().take(feed_quota(printers, tick, every)) {
            self.feed_read(&uuid, now);
        }
    }

    /// Asks for the printer's feed and starts the read unless one runs.
    pub(crate) fn feed_read(&mut self, uuid: &str, now: Instant) {
        let Some(entry) = self.registry.get_mut(uuid) else {
            return;
        };
        let Some(live) = entry.runtime.as_mut() else {
            return;
        };
        live.feed.request(now);
        let read = live.start_feed_read(uuid, entry.record.feed.after, now);
        if let Some(read) = read {
            self.read(read);
        }
    }

    /// A feed read is done: the next scheduled one is a whole interval later.
    pub(crate) fn feed_was_read(&mut self, uuid: &str, now: Instant) {
        let every = self.settings.feed_interval;
        if let Some(live) = self.registry.get_mut(uuid).and_then(|e| e.runtime.as_mut())
            && live.feed_next.is_some()
        {
            live.feed_next = Some(now + every);
        }
    }

    /// Feed events that name a job the gateway has not accounted for (one that started and
    /// ended between two polls) call for a read of the job list.
    pub(crate) fn jobs_named_in(&mut self, uuid: &str, events: &[FeedEvent], now: Instant) {
        let Some(entry) = self.registry.get(uuid) else {
            return;
        };
        let unknown = events
            .iter()
            .filter_map(|e| e.raw.get("job_id").and_then(serde_json::Value::as_i64))
            .any(|id| entry.record.jobs.is_unknown(id));
        if unknown {
            self.job_list_read(uuid, now);
        }
    }

    /// Asks for the printer's job list from the last job accounted for, and starts the read
    /// unless one runs.
    pub(crate) fn job_list_read(&mut self, uuid: &str, now: Instant) {
        let Some(entry) = self.registry.get_mut(uuid) else {
            return;
        };
        let Some(live) = entry.runtime.as_mut() else {
            return;
        };
        live.job_reads.list.request(now);
        let read = live.start_job_list_read(uuid, entry.record.jobs.boundary(), now);
        if let Some(read) = read {
            self.read(read);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_spreads_a_fleet_over_the_interval() {
        let s = Duration::from_secs;
        assert_eq!(feed_quota(50, s(30), s(600)), 3, "2.5 rounded up");
        assert_eq!(feed_quota(1, s(30), s(600)), 1);
        assert_eq!(feed_quota(500, s(30), s(600)), 25);
        assert_eq!(feed_quota(50, s(5), s(600)), 1);
        assert_eq!(feed_quota(0, s(30), s(600)), 0);
        assert_eq!(feed_quota(50, s(30), Duration::ZERO), 0, "off");
    }
}
