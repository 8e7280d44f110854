//! Jobs starting and ending: exactly one `P/job/finished` per job that ends on a watched
//! printer, however briefly it ran and however late Connect's job record catches up.
//!
//! The printer list shows one job at a time; Connect's job list (newest first) is the record
//! of every job. It is read from the last job accounted for whenever the list shows a job
//! end or a new job, the feed names a job not seen yet, or the gateway starts: a job that
//! started and ended between two polls, or while the gateway was stopped, is found there.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::bridge::schedule::{Due, backoff};
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
/// Announced job ids remembered (a job is never announced twice): more than one read of the
/// job list can bring back (5 pages of 20).
const MAX_ANNOUNCED: usize = 128;

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
    /// Every job up to this id is accounted for: announced, ending, running, or ended before
    /// the gateway first saw the printer (0: the printer had no job then). `None` until the
    /// first read of Connect's job list places it.
    #[serde(rename = "jobs_seen_up_to")]
    pub seen_up_to: Option<i64>,
    /// The last jobs announced on `job/finished`, oldest first.
    #[serde(rename = "announced_jobs")]
    pub announced: Vec<i64>,
}

/// Reads of job records: in flight, and when each ending job is tried again; and the read
/// of the printer's job list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobReads {
    pub in_flight: std::collections::BTreeSet<i64>,
    retry: BTreeMap<i64, (u32, Instant)>,
    pub list: Due,
    /// Failed reads of the job list in a row: the next one waits longer each time.
    pub list_failures: u32,
    /// The list was read (or failed) at least once in this run.
    pub listed: bool,
}

impl JobReads {
    /// The job list could not be read: again after `base` doubling with each failure, at
    /// most [`LAG_RETRY_CAP`] (meanwhile the ended jobs' own records are read).
    pub fn list_failed(&mut self, base: Duration, now: Instant) {
        let wait = backoff(base, self.list_failures, LAG_RETRY_CAP);
        self.list_failures = self.list_failures.saturating_add(1);
        self.list.retry(now + wait);
    }
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
        // Without a job in the list, the first read of the job list places the boundary.
        self.seen_up_to = current;
    }

    /// Every job up to this id is accounted for (see [`JobRecord::seen_up_to`]); a state
    /// file from before the job list was read gives what it knew.
    pub fn boundary(&self) -> Option<i64> {
        self.seen_up_to.or_else(|| {
            [self.announced_job, self.last_job, self.active_job]
                .into_iter()
                .flatten()
                .max()
        })
    }

    pub fn is_announced(&self, id: i64) -> bool {
        self.announced_job == Some(id) || self.announced.contains(&id)
    }

    /// Records that job `id` was announced.
    pub fn announced(&mut self, id: i64) {
        self.announced_job = Some(id);
        if !self.announced.contains(&id) {
            self.announced.push(id);
            if self.announced.len() > MAX_ANNOUNCED {
                self.announced.remove(0);
            }
        }
        self.ending_jobs.retain(|e| e.id != id);
    }

    /// A job id the feed or a command named: whether the job list should be read (a job
    /// the gateway has not accounted for).
    pub fn is_unknown(&self, id: i64) -> bool {
        self.boundary().is_some_and(|b| id > b)
            && self.active_job != Some(id)
            && !self.ending_jobs.iter().any(|e| e.id == id)
    }

    /// Notices from the list entry that a job ended or started. Returns true when the job
    /// list should be read: a job ended, or a new one appeared (others may have run in
    /// between).
    pub fn observe(&mut self, printer: &Printer, wall: f64) -> bool {
        let current = printer.job_info.as_ref().and_then(|j| j.id);
        let running = payloads::job_running(printer);
        // A state file from before the job list was read: the boundary is what it knew, not
        // what this look at the list changes.
        self.seen_up_to = self.seen_up_to.or(self.boundary());
        let before = (self.last_job, self.ending_jobs.len());
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
        let after = (self.last_job, self.ending_jobs.len());
        after.1 > before.1 || (after.0 != before.0 && after.0 > self.boundary())
    }

    fn ended(&mut self, id: i64, wall: f64) {
        if self.is_announced(id) || self.ending_jobs.iter().any(|e| e.id == id) {
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

    /// The ending jobs whose record should be read now (none while the job list is read:
    /// it tells how most of them ended).
    pub fn reads_due(&self, reads: &JobReads, now: Instant) -> Vec<i64> {
        if reads.list.is_running() {
            return Vec::new();
        }
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
        if reads.list.is_running() {
            // The job list being read settles it, in order with the jobs before it.
            return JobVerdict::NotEnding;
        }
        let noticed = self.ending_jobs[at].noticed;
        let settle = |this: &mut Self, reads: &mut JobReads| {
            this.ending_jobs.remove(at);
            reads.retry.remove(&id);
        };
        match record {
            JobRead::Found(job) if job.state.as_ref().is_some_and(|s| s.is_final()) => {
                settle(self, reads);
                if self.is_announced(id) {
                    return JobVerdict::AlreadyAnnounced;
                }
                self.announced(id);
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

impl JobRecord {
    /// Connect's job list from the boundary on (`jobs` oldest first): returns the jobs to
    /// announce, oldest first. The first read ever only places the boundary (jobs that
    /// ended before the gateway saw the printer are never announced). A job the list still
    /// shows running while the printer has moved on is lagging: its record is read again with
    /// backoff ([`JobRecord::reads_due`]).
    pub fn on_list(
        &mut self,
        reads: &mut JobReads,
        jobs: &[Job],
        now: Instant,
        wall: f64,
    ) -> Vec<Job> {
        reads.list.finish();
        reads.list_failures = 0;
        let newest = jobs.iter().map(|j| j.id).max();
        let Some(boundary) = self.boundary() else {
            self.seen_up_to = Some(newest.unwrap_or(0));
            return Vec::new();
        };
        let mut announce = Vec::new();
        for job in jobs {
            let ending = self.ending_jobs.iter().any(|e| e.id == job.id);
            if (job.id <= boundary && !ending)
                || self.is_announced(job.id)
                || self.active_job == Some(job.id)
            {
                continue;
            }
            let state = job.state.as_ref();
            if state.is_some_and(|s| s.is_final()) {
                reads.retry.remove(&job.id);
                self.announced(job.id);
                announce.push(job.clone());
            } else if state.is_some_and(|s| s.is_running()) {
                // The printer does not run it (or it would be the active job): the record
                // lags, or the job only just started. Its record is read again later.
                self.ended(job.id, wall);
                reads
                    .retry
                    .entry(job.id)
                    .or_insert((0, now + LAG_RETRY_FIRST));
            } else {
                self.ending_jobs.retain(|e| e.id != job.id);
                reads.retry.remove(&job.id);
                tracing::info!(
                    "job {} ended in state {} (not announced)",
                    job.id,
                    state.map_or("none", |s| s.as_str())
                );
            }
        }
        self.seen_up_to = Some(boundary.max(newest.unwrap_or(boundary)));
        // Retries of jobs no longer ending (announced, or running after all) are forgotten.
        reads
            .retry
            .retain(|id, _| self.ending_jobs.iter().any(|e| e.id == *id));
        announce
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
