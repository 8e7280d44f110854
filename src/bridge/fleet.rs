//! Decisions over the whole fleet at once, each bounded per poll: whose scheduled feed read
//! is due, whose free space is read, which cameras' pictures are fetched.

use std::time::Duration;

use tokio::time::Instant;

use crate::bridge::Settings;
use crate::bridge::account::Account;
use crate::bridge::account::catch_up::feed_quota;
use crate::bridge::effects::Effects;
use crate::bridge::poll::Poll;
use crate::bridge::reads::Read;
use crate::bridge::registry::Registry;
use crate::bridge::schedule::SNAPSHOT_FETCHES;

/// The feeds whose scheduled read is due (by the next half poll), most overdue first, at
/// most [`feed_quota`] of them. A printer whose first read is done gets its first scheduled
/// read placed evenly over the interval among those placed with it, so a fleet started at
/// once does not come due at once.
pub fn scheduled_feed_reads(
    registry: &mut Registry,
    poll: &Poll,
    settings: &Settings,
    fx: &mut Effects,
    now: Instant,
    tick: Duration,
) {
    let every = settings.feed_interval;
    if every.is_zero() {
        return;
    }
    let unplaced: Vec<String> = registry
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
        if let Some(live) = registry.get_mut(uuid).and_then(|e| e.runtime.as_mut()) {
            live.feed_next = Some(now + every.mul_f64((i + 1) as f64 / k));
        }
    }
    let printers = registry.entries().filter(|e| e.runtime.is_some()).count();
    let horizon = now + tick / 2;
    let mut due: Vec<(Instant, String)> = registry
        .entries()
        .filter(|e| poll.is_listed(&e.uuid) || poll.is_rejected(&e.uuid))
        .filter_map(|e| {
            let live = e.runtime.as_ref()?;
            let next = live.feed_next.filter(|t| *t <= horizon)?;
            (!live.feed.is_requested() && !live.feed.is_running()).then(|| (next, e.uuid.clone()))
        })
        .collect();
    due.sort();
    for (_, uuid) in due.into_iter().take(feed_quota(printers, tick, every)) {
        if let Some(entry) = registry.get_mut(&uuid) {
            entry.feed_read(fx, now);
        }
    }
}

/// Starts the storage reads that are due, after every printer of the poll had its turn, with
/// what is left of the poll's request budget.
pub fn storage_reads(
    registry: &mut Registry,
    poll: &mut Poll,
    account: &Account,
    fx: &mut Effects,
    now: Instant,
) {
    for entry in registry.entries_mut() {
        // A printer missing from this list (not removed yet) is not asked about.
        let Some(live) = entry
            .runtime
            .as_mut()
            .filter(|_| poll.is_listed(&entry.uuid))
        else {
            continue;
        };
        if !account.unavailable.resting("storages", &entry.uuid, now) {
            fx.read(live.start_storage_read(&entry.uuid, &mut poll.budget, now));
        }
    }
}

/// Starts the snapshot fetches that are due: every `camera.interval` while the printer is
/// busy, every `camera.idle_interval` otherwise, at most [`SNAPSHOT_FETCHES`] at a time.
pub fn snapshot_reads(
    registry: &mut Registry,
    settings: &Settings,
    fx: &mut Effects,
    now: Instant,
) {
    let mut fetching: usize = registry
        .entries()
        .filter_map(|e| e.runtime.as_ref())
        .map(|l| l.cameras.fetching())
        .sum();
    'printers: for entry in registry.entries_mut() {
        let Some(live) = entry.runtime.as_mut() else {
            continue;
        };
        let interval = if live.printer.effective_state().is_active() {
            settings.camera.interval
        } else {
            settings.camera.idle_interval
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
            fx.read(Read::Snapshot {
                uuid: entry.uuid.clone(),
                camera: camera.id.clone(),
                etag: camera.etag.clone(),
                last_modified: camera.last_modified.clone(),
            });
        }
    }
}
