//! Decisions over the whole fleet at once, each bounded per poll: whose scheduled feed read
//! is due, whose free space is read, which cameras' pictures are fetched.

use std::time::Duration;

use tokio::time::Instant;

use crate::bridge::Settings;
use crate::bridge::account::catch_up::feed_quota;
use crate::bridge::account::{Account, SupportedPool};
use crate::bridge::core::{REMOVE_AFTER_MISSING_INTERVALS, REMOVE_AFTER_MISSING_POLLS};
use crate::bridge::effects::Effects;
use crate::bridge::poll::Poll;
use crate::bridge::printer::FIRST_PUBLICATION_WAIT;
use crate::bridge::reads::Read;
use crate::bridge::registry::Registry;
use crate::bridge::schedule::SNAPSHOT_FETCHES;
use crate::message::Message;

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
/// what is left of the poll's request budget. A printer whose free space is the last of its
/// start-up reads (`cameras`: whether they count) does not wait for the budget: a farm's
/// first polls spend it all on cameras and supported commands, and no printer would be
/// fully known before every camera was listed.
pub fn storage_reads(
    registry: &mut Registry,
    poll: &mut Poll,
    account: &Account,
    fx: &mut Effects,
    now: Instant,
    cameras: bool,
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
            let mut unlimited = u32::MAX;
            let last = !live.storage.read_once && live.known_but_storage(cameras);
            let budget = if last {
                &mut unlimited
            } else {
                &mut poll.budget
            };
            fx.read(live.start_storage_read(&entry.uuid, budget, now));
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

/// When the first publication of a printer waiting for its first reads is due anyway
/// ([`FIRST_PUBLICATION_WAIT`] after it was first seen), if one waits.
pub fn introduce_due(registry: &Registry, account: &Account, wall: f64) -> Option<Duration> {
    let types = account.types_reading();
    registry
        .entries()
        .filter_map(|e| e.runtime.as_ref()?.introduction_deadline(types))
        .filter(|t| t.is_finite())
        .map(|t| t - wall)
        .reduce(f64::min)
        .map(|left| Duration::from_secs_f64(left.clamp(0.0, FIRST_PUBLICATION_WAIT)))
}

/// Gives the printers waiting for a `supported-commands` read of their printer type and
/// firmware the list that came back (at once rather than at the next poll); returns them.
pub fn take_shared_supported(
    registry: &mut Registry,
    pool: &SupportedPool,
    now: Instant,
) -> Vec<String> {
    let mut served = Vec::new();
    for entry in registry.entries_mut() {
        if let Some(live) = entry.runtime.as_mut()
            && live.take_shared_supported(pool, now)
        {
            served.push(entry.uuid.clone());
        }
    }
    served
}

/// Removes the printers gone from the (filtered) list for long enough: their discovery and
/// topics are cleared. Returns their uuids.
pub fn remove_missing(
    registry: &mut Registry,
    settings: &Settings,
    poll: &Poll,
    fx: &mut Effects,
    now: Instant,
) -> Vec<String> {
    // Polls come 300 ms apart after a command: a count alone would remove a printer
    // missing from the list for a second (and Home Assistant would delete its device).
    let long_enough = settings.poll_interval * REMOVE_AFTER_MISSING_INTERVALS;
    let mut gone = Vec::new();
    for entry in registry.entries_mut() {
        // Unreadable this time is not gone: keep its entities (named in bridge/info).
        let seen = poll.is_listed(&entry.uuid) || poll.is_rejected(&entry.uuid);
        if entry.count_missing(seen, now) >= REMOVE_AFTER_MISSING_POLLS
            && entry
                .missing_since
                .is_some_and(|since| now.duration_since(since) >= long_enough)
        {
            gone.push(entry.uuid.clone());
        }
    }
    gone.retain(|uuid| {
        let Some(mut entry) = registry.remove(uuid) else {
            return false;
        };
        match &entry.runtime {
            Some(_) => tracing::info!(
                "printer {} is gone from Connect: removing it",
                entry.display_name()
            ),
            None => tracing::info!("printer {uuid} is no longer bridged: removing it"),
        }
        // Discovery first, then the states: Home Assistant must not be left with entities
        // whose state topic was emptied.
        entry.finish_migration(fx);
        if let Some(discovery) = &settings.discovery {
            for topic in discovery.printer_topics(&entry.uuid, &entry.record.cameras) {
                fx.publish(Message::Clear { topic });
            }
        }
        if let Some(id) = entry.id().map(str::to_string) {
            let free = registry.topics_free_for(&id, uuid);
            fx.publish_all(entry.cleared_topics(&settings.topics, &id, free));
        }
        true
    });
    gone
}
