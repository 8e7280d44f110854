//! Jobs starting and ending: exactly one `P/job/finished` per job that ends on a watched
//! printer, however late Connect's job record catches up.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::schedule::backoff;
use crate::connect::model::{Job, Printer};
use crate::payloads;

/// A job record that still says "running" after the printer moved on is read again with
/// backoff from this...
const LAG_RETRY_FIRST: Duration = Duration::from_secs(5);
/// ...to this apart...
const LAG_RETRY_CAP: Duration = Duration::from_secs(300);
/// ...for this long after the end was noticed; then the end is given up (logged).
pub const LAG_GIVE_UP_SECONDS: f64 = 2.0 * 3600.0;
/// Ended jobs waiting for their record at most (the oldest is given up beyond).
const MAX_ENDING: usize = 32;

/// A job the printer no longer runs, whose end is not announced yet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EndingJob {
    pub id: i64,
    /// Unix seconds when the gateway noticed the end.
    pub noticed: f64,
}

/// What is persisted of a printer's jobs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct JobRecord {
    /// The job that was running when last seen.
    pub active_job: Option<i64>,
    /// The last job whose end was published on `job/finished`.
    pub announced_job: Option<i64>,
    /// Jobs that ended and whose record in Connect has not said how yet.
    pub ending_jobs: Vec<EndingJob>,
    /// The job the printer's list entry showed last (running or not).
    pub last_job: Option<i64>,
}

/// Reads of job records: in flight, and when each ending job is tried again.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobReads {
    pub in_flight: std::collections::BTreeSet<i64>,
    retry: BTreeMap<i64, (u32, Instant)>,
}

impl JobRecord {
    /// A printer seen for the first time: a job it shows as ended ended before the gateway
    /// knew the printer, and is never announced.
    pub fn first_seen(&mut self, printer: &Printer) {
        let current = printer.job_info.as_ref().and_then(|j| j.id);
        if !payloads::job_running(printer) {
            self.announced_job = current;
        }
        self.last_job = current;
    }

    /// Notices from the list entry that a job ended or started.
    pub fn observe(&mut self, printer: &Printer, wall: f64) {
        let current = printer.job_info.as_ref().and_then(|j| j.id);
        let running = payloads::job_running(printer);
        if let Some(active) = self.active_job
            && (current != Some(active) || !running)
        {
            self.active_job = None;
            self.ended(active, wall);
        }
        // A job the list never showed running (it started and ended between two polls, or
        // while Connect or the gateway was down) ended too. Not on the first look after an
        // upgrade from a state file without `last_job`: that job may be long over.
        if !running
            && let Some(id) = current
            && self.last_job.is_some()
            && self.last_job != Some(id)
        {
            self.ended(id, wall);
        }
        if current.is_some() {
            self.last_job = current;
        }
        if running
            && let Some(id) = current
            && self.active_job != Some(id)
        {
            self.active_job = Some(id);
            // It runs after all (the list said otherwise for a moment).
            self.ending_jobs.retain(|e| e.id != id);
        }
    }

    fn ended(&mut self, id: i64, wall: f64) {
        if self.announced_job == Some(id) || self.ending_jobs.iter().any(|e| e.id == id) {
            return;
        }
        self.ending_jobs.push(EndingJob { id, noticed: wall });
        if self.ending_jobs.len() > MAX_ENDING {
            let gone = self.ending_jobs.remove(0);
            tracing::warn!(
                "job {} ended long ago without a final state: not announced",
                gone.id
            );
        }
    }

    /// The ending jobs whose record should be read now.
    pub fn reads_due(&self, reads: &JobReads, now: Instant) -> Vec<i64> {
        self.ending_jobs
            .iter()
            .map(|e| e.id)
            .filter(|id| !reads.in_flight.contains(id))
            .filter(|id| reads.retry.get(id).is_none_or(|(_, at)| *at <= now))
            .collect()
    }

    /// Connect's record of job `id` (`None`: it is gone from Connect, or the read failed:
    /// `failed`). Returns the job to announce, if this read settles an ending job.
    pub fn on_record(
        &mut self,
        reads: &mut JobReads,
        id: i64,
        record: JobRead<'_>,
        now: Instant,
        wall: f64,
    ) -> JobVerdict {
        let Some(at) = self.ending_jobs.iter().position(|e| e.id == id) else {
            return JobVerdict::NotEnding;
        };
        let noticed = self.ending_jobs[at].noticed;
        let settle = |this: &mut Self, reads: &mut JobReads| {
            this.ending_jobs.remove(at);
            reads.retry.remove(&id);
        };
        match record {
            JobRead::Found(job) if job.state.as_ref().is_some_and(|s| s.is_final()) => {
                settle(self, reads);
                if self.announced_job == Some(id) {
                    return JobVerdict::AlreadyAnnounced;
                }
                self.announced_job = Some(id);
                JobVerdict::Finished
            }
            JobRead::Found(job) if !job.state.as_ref().is_some_and(|s| s.is_running()) => {
                settle(self, reads);
                JobVerdict::NotAnnounced(
                    job.state
                        .as_ref()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or("none".into()),
                )
            }
            JobRead::Gone => {
                settle(self, reads);
                JobVerdict::Vanished
            }
            // Connect's record lags the printer (or could not be read): again later.
            JobRead::Found(_) | JobRead::Failed => {
                if wall - noticed > LAG_GIVE_UP_SECONDS {
                    settle(self, reads);
                    return JobVerdict::GaveUp;
                }
                let attempt = reads.retry.get(&id).map_or(0, |(n, _)| n + 1);
                let wait = backoff(LAG_RETRY_FIRST, attempt, LAG_RETRY_CAP);
                reads.retry.insert(id, (attempt, now + wait));
                JobVerdict::Later
            }
        }
    }
}

/// What a read of a job record found.
#[derive(Debug, Clone, Copy)]
pub enum JobRead<'a> {
    Found(&'a Job),
    /// 404: Connect no longer has the job.
    Gone,
    Failed,
}

/// What a job record read means for an ending job.
#[derive(Debug, Clone, PartialEq)]
pub enum JobVerdict {
    /// Publish `job/finished` now.
    Finished,
    AlreadyAnnounced,
    /// It ended in a state that is neither final nor running: not announced.
    NotAnnounced(String),
    Vanished,
    /// Still running in Connect's record after [`LAG_GIVE_UP_SECONDS`]: given up.
    GaveUp,
    /// Read again later.
    Later,
    /// Not an ending job (a detail read).
    NotEnding,
}
