//! The live channel in the core: what Connect pushes ([`crate::connect::live::LiveEvent`])
//! lands in the registry, laid over the printer the REST list showed, and goes through the
//! same decisions as a poll's view of it (`PrinterEntry::update`): `P/state` at once (at most once a
//! second per printer), and a state or job change asks for the job and the feed right away.
//! While the channel covers every busy printer the fleet is polled at the idle interval.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::bridge::Core;
use crate::bridge::printer::Pushed;
use crate::bridge::registry::Registry;
use crate::connect::live::LiveEvent;
use crate::connect::model::Printer;
use crate::payloads::iso;

/// A printer's values are looked at no more often than this (its `P/state` at most once).
pub const LIVE_MIN_GAP: Duration = Duration::from_secs(1);
/// Values that arrive together (a printer's telemetry) are taken together: the first one
/// waits this long for the rest.
pub const LIVE_GATHER: Duration = Duration::from_millis(100);
/// Turns are due on a grid of this step (from the channel's first event): printers whose
/// turns are close are looked at in one wake of the loop, not one wake each. A farm's
/// printers send their values within a few milliseconds of each other.
pub const LIVE_STEP: Duration = Duration::from_millis(50);

/// The channel as `bridge/info.live` shows it.
#[derive(Debug, Clone, Default)]
pub struct Channel {
    pub enabled: bool,
    pub connected: bool,
    /// When `connected` last changed (ISO 8601).
    pub since: Option<String>,
    pub last_error: Option<String>,
    /// Printers whose subscription the broker acknowledged on this connection (looked up
    /// for every printer's turn: hashed, not compared a dozen times down a tree).
    pub subscribed: HashSet<String, std::hash::BuildHasherDefault<ahash::AHasher>>,
    /// Printers whose pushed values changed since they were last looked at, by turn (see
    /// [`turn`]: fixed from the first change on, until the printer is looked at), first due
    /// first: what is due is found without a scan. A printer whose values were dropped since
    /// (it was removed, or the channel stopped speaking for it) may still be here: its turn
    /// is checked when it comes.
    turns: BTreeSet<(Instant, String)>,
    /// `bridge/info` is to show the channel's new status (since then).
    info_due: Option<Instant>,
    /// Where the grid of [`LIVE_STEP`] starts: the channel's first event.
    origin: Option<Instant>,
}

impl Channel {
    /// The channel as `connect.live` (`enabled`) sets it up, not connected yet.
    pub fn new(enabled: bool) -> Channel {
        Channel {
            enabled,
            ..Default::default()
        }
    }

    /// Whether the printer's values come from the channel now.
    pub fn covers(&self, uuid: &str) -> bool {
        self.connected && self.subscribed.contains(uuid)
    }

    pub fn info(&self) -> Value {
        json!({
            "enabled": self.enabled,
            "connected": self.connected,
            "since": self.since,
            "last_error": self.last_error,
            "printers_subscribed": self.subscribed.len(),
        })
    }
}

impl Channel {
    /// What the channel said. Values are taken at once; the printers they change are looked
    /// at when [`Channel::due`] says (see [`Core::live_flush`]).
    ///
    /// Returns `Some(())` when the next poll should come soon: the channel dropped and busy
    /// printers depend on the poll again.
    pub fn on_event(
        &mut self,
        registry: &mut Registry,
        now: Instant,
        wall: f64,
        event: LiveEvent,
    ) -> Option<()> {
        self.origin.get_or_insert(now);
        match event {
            LiveEvent::Up => {
                self.connected = true;
                self.since = iso(wall);
                self.info_due.get_or_insert(now);
            }
            LiveEvent::Down { error } => {
                let was = std::mem::replace(&mut self.connected, false);
                if was || self.since.is_none() {
                    self.since = iso(wall);
                }
                self.last_error = Some(error);
                self.subscribed.clear();
                // The list's values count again: what the channel said may be stale by now.
                for entry in registry.entries_mut() {
                    if let Some(live) = entry.runtime.as_mut() {
                        live.pushed = Pushed::default();
                    }
                }
                self.turns.clear();
                self.info_due.get_or_insert(now);
                let busy = registry.entries().any(|e| {
                    e.runtime
                        .as_ref()
                        .is_some_and(|l| l.printer.effective_state().is_active())
                });
                return (was && busy).then_some(());
            }
            LiveEvent::Subscribed { uuid } => {
                self.subscribed.insert(uuid);
                self.info_due.get_or_insert(now);
            }
            LiveEvent::Refused { uuid } => {
                self.last_error = Some(format!("the subscription to printer {uuid} was refused"));
                self.unfollow(registry, &uuid, now);
            }
            LiveEvent::Unsubscribed { uuid } => self.unfollow(registry, &uuid, now),
            LiveEvent::Value {
                topic,
                payload,
                retained,
            } => {
                // What the broker kept may be from long ago (a dialog of a printer that went
                // offline since): the list says how the printer is now.
                if retained {
                    return None;
                }
                // Values of a printer not bridged (yet) are not kept.
                let uuid = topic.uuid();
                let live = registry.get_mut(uuid).and_then(|e| e.runtime.as_mut())?;
                match live.pushed.apply(topic.value(), &payload, now) {
                    // The first change since the printer was looked at gives it its turn.
                    Ok(true) if live.pushed.changed_since.is_none() => {
                        live.pushed.changed_since = Some(now);
                        if let Some(at) = turn(&live.pushed) {
                            self.turns.insert((at, uuid.to_string()));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!("live value of printer {uuid} ignored: {e}"),
                }
            }
        }
        None
    }

    /// The channel no longer speaks for the printer: the list's values count again.
    fn unfollow(&mut self, registry: &mut Registry, uuid: &str, now: Instant) {
        self.subscribed.remove(uuid);
        if let Some(live) = registry.get_mut(uuid).and_then(|e| e.runtime.as_mut()) {
            live.pushed = Pushed::default();
        }
        self.info_due.get_or_insert(now);
    }

    /// When a printer's pushed values are to be looked at, or `bridge/info` to show the
    /// channel's new status.
    pub fn due(&self) -> Option<Instant> {
        let printers = self.turns.first().map(|(at, _)| *at);
        let info = self.info_due.map(|t| t + LIVE_GATHER);
        let due = printers.into_iter().chain(info).min()?;
        Some(match self.origin {
            Some(origin) => on_grid(origin, due),
            None => due,
        })
    }

    /// Whether `bridge/info` is to show the channel's new status now.
    pub fn info_ready(&mut self, now: Instant) -> bool {
        let ready = self.info_due.is_some_and(|t| t + LIVE_GATHER <= now);
        if ready {
            self.info_due = None;
        }
        ready
    }

    /// The next printer whose pushed values changed and whose turn has come, with the turn:
    /// [`Core::live_flush`] checks it is still the printer's ([`is_turn`]).
    fn next_turn(&mut self, now: Instant) -> Option<(Instant, String)> {
        if self.turns.first().is_some_and(|(at, _)| *at <= now) {
            self.turns.pop_first()
        } else {
            None
        }
    }

    /// Whether the channel covers every busy printer, so the poll can go at the idle pace.
    pub fn covers_busy(&self, registry: &Registry) -> bool {
        self.connected
            && registry.entries().all(|e| {
                e.runtime.as_ref().is_none_or(|l| {
                    !l.printer.effective_state().is_active() || self.covers(&e.uuid)
                })
            })
    }
}

/// The core's side of the channel: what the shell hands it and asks of it.
impl Core {
    /// What the live channel said. Values are taken at once; the printers they change are
    /// looked at by [`Core::live_flush`] when [`Core::live_due`] says.
    ///
    /// Returns `Some(wait)` when the next poll should come within `wait`: the channel
    /// dropped and busy printers depend on the poll again.
    pub fn live_event(&mut self, now: Instant, wall: f64, event: LiveEvent) -> Option<Duration> {
        self.channel
            .on_event(&mut self.registry, now, wall, event)
            .map(|()| self.settings.active_poll_interval)
    }

    /// When [`Core::live_flush`] has something to do.
    pub fn live_due(&self) -> Option<Instant> {
        self.channel.due()
    }

    /// Looks at the printers whose values changed and whose turn it is, and publishes
    /// `bridge/info` when the channel's status changed.
    pub fn live_flush(&mut self, now: Instant, wall: f64) {
        if self.channel.info_ready(now)
            && let Some(auth) = self.health.last_auth.clone()
        {
            self.publish_info(auth);
        }
        // One printer at a time, each looked up once: a farm's looks come by the thousand.
        while let Some((at, uuid)) = self.channel.next_turn(now) {
            let covered = self.channel.covers(&uuid);
            let Some((entry, mut cx)) = self.printer(&uuid) else {
                continue;
            };
            let Some(live) = entry.runtime.as_mut() else {
                continue;
            };
            if !is_turn(&mut live.pushed, at, now) {
                continue; // dropped since, or the turn of values dropped since
            }
            // A printer the channel no longer covers is not looked at: the poll's view counts.
            if covered {
                entry.update_pushed(&mut cx, now, wall);
            }
        }
    }

    /// The printers the channel is to follow: every one bridged now.
    pub fn live_printers(&self) -> BTreeSet<String> {
        followed(&self.registry)
    }
}

/// When a printer whose values changed is looked at: once the values that came with the
/// first had time to arrive, and at most once per [`LIVE_MIN_GAP`].
fn turn(pushed: &Pushed) -> Option<Instant> {
    let gathered = pushed.changed_since? + LIVE_GATHER;
    Some(
        pushed
            .looked_at
            .map_or(gathered, |t| gathered.max(t + LIVE_MIN_GAP)),
    )
}

/// Whether `at` is the turn of the printer's pushed values now; if so, they are taken as
/// looked at.
fn is_turn(pushed: &mut Pushed, at: Instant, now: Instant) -> bool {
    if turn(pushed) != Some(at) {
        return false;
    }
    pushed.changed_since = None;
    pushed.looked_at = Some(now);
    true
}

/// The first time on the grid of [`LIVE_STEP`] from `origin` that is not before `at`.
fn on_grid(origin: Instant, at: Instant) -> Instant {
    let step = LIVE_STEP.as_nanos();
    let since = at.saturating_duration_since(origin).as_nanos();
    let steps = since.div_ceil(step);
    u64::try_from(steps * step)
        .ok()
        .and_then(|nanos| origin.checked_add(Duration::from_nanos(nanos)))
        .unwrap_or(at)
}

/// A list requested at `requested` is being processed: of what the channel said, only what
/// came since counts over it (see [`Pushed::list_requested`]).
pub fn list_requested(registry: &mut Registry, printers: &[Printer], requested: Instant) {
    for p in printers {
        if let Some(live) = registry.get_mut(&p.uuid).and_then(|e| e.runtime.as_mut()) {
            live.pushed.list_requested = Some(requested);
        }
    }
}

/// The printers the channel is to follow: every one bridged now.
pub fn followed(registry: &Registry) -> BTreeSet<String> {
    registry
        .entries()
        .filter(|e| e.runtime.is_some())
        .map(|e| e.uuid.clone())
        .collect()
}
