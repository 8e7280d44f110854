//! What the list does not carry, read only when it can have changed: a printer's job queues
//! and cameras, the cameras' pictures, and account-wide data (printer types, Connect's
//! version, unseen notifications). Pure decisions; the reads are made by the shell.

mod catch_up;
pub mod notifications;
pub mod unavailable;

use tokio::time::Instant;

use crate::bridge::reads::Read;
use crate::bridge::schedule::SNAPSHOT_FETCHES;

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
        if !self.settings.camera.enabled || !self.health.reachable {
            return;
        }
        let mut fetching: usize = self
            .registry
            .entries()
            .filter_map(|e| e.runtime.as_ref())
            .map(|l| l.cameras.fetching())
            .sum();
        let mut fetches = Vec::new();
        'printers: for entry in self.registry.entries_mut() {
            let Some(live) = entry.runtime.as_mut() else {
                continue;
            };
            let interval = if live.printer.effective_state().is_active() {
                self.settings.camera.interval
            } else {
                self.settings.camera.idle_interval
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
