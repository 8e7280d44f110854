//! What the list does not carry, read only when it can have changed: a printer's job queues
//! and cameras, the cameras' pictures, and account-wide data (printer types, Connect's
//! version, unseen notifications). Pure decisions; the reads are made by the shell.

mod catch_up;
pub mod notifications;
pub mod unavailable;

use std::time::Duration;

use tokio::time::Instant;

use crate::bridge::reads::Read;
use crate::bridge::schedule::Due;
use crate::connect::model::{CameraList, Queue};
use crate::payloads::QueueFields;

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

/// A printer's job queue and download queue, as shown in `P/state`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueInfo {
    /// The queue fields of `P/state` (null until first read).
    pub fields: QueueFields,
    /// What the queues were last read for (feed signature and `job_queue_count`): they are
    /// read again only when that changes.
    pub read_for: Option<String>,
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
    pub fn step(&mut self, key: String, empty: bool, budget: &mut u32, now: Instant) -> QueueStep {
        let retry = self
            .failed_at
            .is_some_and(|t| now.duration_since(t) >= EXTRAS_RETRY);
        if (self.read_for.as_deref() == Some(key.as_str()) && !retry) || self.due.is_running() {
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

/// One camera of a printer, as the gateway follows it.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraFeed {
    pub id: String,
    pub name: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub fetched_at: Option<Instant>,
    pub fetching: bool,
    /// The last picture was too large to publish (warned about once).
    pub too_large: bool,
}

/// A printer's cameras.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cameras {
    /// `None`: not listed yet.
    pub list: Option<Vec<CameraFeed>>,
    /// The running job the cameras were last listed for.
    pub listed_for: Option<i64>,
    pub listed_at: Option<Instant>,
    pub failed_at: Option<Instant>,
    pub listing: bool,
    /// Connect said a camera is gone: list again (keeping the others meanwhile).
    pub relist: bool,
}

impl Cameras {
    /// Whether to list the printer's cameras now: when first seen and when a new job starts
    /// (a print is when people look) if the last list is older than [`CAMERAS_RELIST`].
    pub fn wants_list(&self, running_job: Option<i64>, now: Instant) -> bool {
        if self.listing {
            return false;
        }
        let new_job = running_job.is_some()
            && running_job != self.listed_for
            && self
                .listed_at
                .is_none_or(|t| now.duration_since(t) >= CAMERAS_RELIST);
        let retry = self
            .failed_at
            .is_some_and(|t| now.duration_since(t) >= EXTRAS_RETRY);
        self.list.is_none() || self.relist || new_job || retry
    }

    pub fn start_list(&mut self, running_job: Option<i64>) {
        self.listed_for = running_job;
        self.listing = true;
    }

    /// The list came back; keeps what is known of cameras that stay. Returns `(id, name)` of
    /// each camera now listed.
    pub fn on_list(&mut self, result: Option<CameraList>, now: Instant) -> Vec<(String, String)> {
        self.listing = false;
        let Some(list) = result else {
            // Keep the cameras known so far; look again later.
            self.list.get_or_insert_with(Vec::new);
            self.failed_at = Some(now);
            return self.named();
        };
        let old = self.list.take().unwrap_or_default();
        self.list = Some(
            list.cameras
                .iter()
                .map(|c| {
                    let id = c.id_string();
                    old.iter()
                        .find(|o| o.id == id)
                        .cloned()
                        .unwrap_or_else(|| CameraFeed {
                            name: c.name.clone().unwrap_or_else(|| format!("Camera {id}")),
                            id,
                            etag: None,
                            last_modified: None,
                            fetched_at: None,
                            fetching: false,
                            too_large: false,
                        })
                })
                .collect(),
        );
        self.listed_at = Some(now);
        self.failed_at = None;
        self.relist = false;
        self.named()
    }

    pub fn named(&self) -> Vec<(String, String)> {
        self.list
            .iter()
            .flatten()
            .map(|c| (c.id.clone(), c.name.clone()))
            .collect()
    }

    pub fn fetching(&self) -> usize {
        self.list.iter().flatten().filter(|c| c.fetching).count()
    }

    pub fn camera_mut(&mut self, id: &str) -> Option<&mut CameraFeed> {
        self.list.iter_mut().flatten().find(|c| c.id == id)
    }
}

/// Account-wide data: read once and then rarely.
#[derive(Debug, Default)]
pub struct Account {
    /// Connect's printer types by id (`None`: not read yet), and when they were last asked.
    pub printer_types:
        Option<std::collections::HashMap<String, crate::connect::model::PrinterType>>,
    pub types_asked_at: Option<Instant>,
    pub types_reading: bool,
    pub server_version: Option<crate::connect::model::ServerVersion>,
    pub version_due: bool,
    pub version_reading: bool,
    pub unseen: Option<u64>,
    pub unseen_due: bool,
    pub unseen_read_at: Option<Instant>,
    pub unseen_reading: bool,
    /// Which notifications were published (persisted), and whether the list is being read.
    pub notifications: crate::bridge::account::notifications::NotificationCursor,
    pub notifications_reading: bool,
    /// The unseen count moved while the list was being read: read it again after.
    pub notifications_again: bool,
    /// A feed catch-up hit the page cap (said once, not for every printer of a farm).
    pub feed_cap_told: bool,
    /// The notifications list was not read while it answered 404: the next unseen count is
    /// taken as a move.
    pub notifications_skipped: bool,
    /// Optional endpoints that answered 404, left alone for an hour.
    pub unavailable: crate::bridge::account::unavailable::Unavailable,
}

impl crate::bridge::core::Core {
    /// Starts the snapshot fetches that are due: every `camera.interval` while the printer is
    /// busy, every `camera.idle_interval` otherwise; none while Connect is unreachable.
    pub fn snapshot_reads(&mut self, now: Instant) {
        if !self.s.camera.enabled || !self.health.reachable {
            return;
        }
        let mut fetching: usize = self
            .registry
            .entries()
            .filter_map(|e| e.live.as_ref())
            .map(|l| l.cameras.fetching())
            .sum();
        let mut fetches = Vec::new();
        'printers: for entry in self.registry.entries_mut() {
            let Some(live) = entry.live.as_mut() else {
                continue;
            };
            let interval = if live.printer.effective_state().is_active() {
                self.s.camera.interval
            } else {
                self.s.camera.idle_interval
            };
            for camera in live.cameras.list.iter_mut().flatten() {
                if fetching >= SNAPSHOT_FETCHES {
                    break 'printers;
                }
                let due = camera
                    .fetched_at
                    .is_none_or(|t| now.duration_since(t) >= interval);
                if camera.fetching || !due {
                    continue;
                }
                camera.fetching = true;
                camera.fetched_at = Some(now);
                fetching += 1;
                fetches.push(Read::Snapshot {
                    uuid: entry.uuid.clone(),
                    camera: camera.id.clone(),
                    etag: camera.etag.clone(),
                    last_modified: camera.last_modified.clone(),
                });
            }
        }
        for read in fetches {
            self.read(read);
        }
    }
}
