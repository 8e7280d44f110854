//! A printer's job queue and download queue, read when its state, job or queue count moves.

use tokio::time::Instant;

use crate::bridge::schedule::{Due, EXTRAS_RETRY};
use crate::connect::model::Queue;
use crate::payloads::QueueFields;

/// A printer's job queue and download queue, as shown in `P/state`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueInfo {
    /// The queue fields of `P/state` (null until first read).
    pub fields: QueueFields,
    /// What the queues were last read for (feed signature and `job_queue_count`, hashed):
    /// they are read again only when that changes.
    pub read_for: Option<u64>,
    pub due: Due,
    pub failed_at: Option<Instant>,
}

/// What the queue needs this poll.
#[derive(Debug, PartialEq)]
pub enum QueueStep {
    Nothing,
    /// Connect's list says no job is planned: both queues are empty (the download queue holds
    /// planned jobs too), no request needed.
    Empty,
    Read,
}

impl QueueInfo {
    /// Decides whether the queues must be read for `key`, spending from `budget`.
    pub fn step(&mut self, key: u64, empty: bool, budget: &mut u32, now: Instant) -> QueueStep {
        let retry = self
            .failed_at
            .is_some_and(|t| now.duration_since(t) >= EXTRAS_RETRY);
        if (self.read_for == Some(key) && !retry) || self.due.is_running() {
            return QueueStep::Nothing;
        }
        if empty {
            self.read_for = Some(key);
            self.failed_at = None;
            self.fields = queue_fields(&Queue::default(), &Queue::default());
            return QueueStep::Empty;
        }
        if *budget < 2 {
            return QueueStep::Nothing; // next poll
        }
        *budget -= 2;
        self.read_for = Some(key);
        self.due = Due::now(now);
        self.due.start(now);
        QueueStep::Read
    }

    pub fn on_read(&mut self, result: Result<(Queue, Queue), ()>, now: Instant) {
        self.due.finish();
        match result {
            Ok((queue, downloads)) => {
                self.fields = queue_fields(&queue, &downloads);
                self.failed_at = None;
            }
            Err(()) => self.failed_at = Some(now),
        }
    }
}

fn queue_fields(queue: &Queue, downloads: &Queue) -> QueueFields {
    let count = |q: &Queue| q.pager.total.unwrap_or(q.planned_jobs.len() as u64);
    QueueFields {
        queue_count: Some(count(queue)),
        queue_next: queue.planned_jobs.first().and_then(|j| j.label()),
        download_queue_count: Some(count(downloads)),
        download_queue_next: downloads.planned_jobs.first().and_then(|j| j.label()),
    }
}
