//! What is read of a printer even when the list shows no change: its feed on the
//! `connect.feed_interval` schedule, and Connect's job list when a job ended or appeared
//! somewhere the list does not show (the feed named it, or the gateway was stopped).

use tokio::time::Instant;

use crate::bridge::effects::Effects;
use crate::bridge::printer::{Ctx, PrinterEntry};
use crate::connect::model::FeedEvent;

impl PrinterEntry {
    /// Asks for the printer's feed and starts the read unless one runs.
    pub fn feed_read(&mut self, fx: &mut Effects, now: Instant) {
        let Some(live) = self.runtime.as_mut() else {
            return;
        };
        live.feed.request(now);
        fx.read(live.start_feed_read(&self.uuid, self.record.feed.after, now));
    }

    /// A feed read is done: the next scheduled one is a whole interval later.
    pub(super) fn feed_was_read(&mut self, cx: &mut Ctx, now: Instant) {
        if let Some(live) = self.runtime.as_mut()
            && live.feed_next.is_some()
        {
            live.feed_next = Some(now + cx.settings.feed_interval);
        }
    }

    /// Feed events that name a job the gateway has not accounted for (one that started and
    /// ended between two polls) call for a read of the job list.
    pub(super) fn jobs_named_in(&mut self, cx: &mut Ctx, events: &[FeedEvent], now: Instant) {
        let unknown = events
            .iter()
            .filter_map(|e| e.raw.get("job_id").and_then(serde_json::Value::as_i64))
            .any(|id| self.record.jobs.is_unknown(id));
        if unknown {
            self.job_list_read(cx.fx, now);
        }
    }

    /// Asks for the printer's job list from the last job accounted for, and starts the read
    /// unless one runs.
    pub fn job_list_read(&mut self, fx: &mut Effects, now: Instant) {
        let Some(live) = self.runtime.as_mut() else {
            return;
        };
        live.job_reads.list.request(now);
        live.start_job_list_read(fx, &self.uuid, self.record.jobs.boundary(), now);
    }
}
