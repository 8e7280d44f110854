//! The live channel in the core: what Connect pushes ([`crate::connect::live::LiveEvent`])
//! lands in the registry, laid over the printer the REST list showed, and goes through the
//! same decisions as a poll's view of it ([`Core::look`]): `P/state` at once (at most once a
//! second per printer), and a state or job change asks for the job and the feed right away.
//! While the channel covers every busy printer the fleet is polled at the idle interval.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::bridge::core::Core;
use crate::bridge::printer::Pushed;
use crate::connect::live::LiveEvent;
use crate::connect::model::Printer;
use crate::payloads::iso;

/// A printer's values are looked at no more often than this (its `P/state` at most once).
pub const LIVE_MIN_GAP: Duration = Duration::from_secs(1);
/// Values that arrive together (a printer's telemetry) are taken together: the first one
/// waits this long for the rest.
pub const LIVE_GATHER: Duration = Duration::from_millis(100);

/// The channel as `bridge/info.live` shows it.
#[derive(Debug, Clone, Default)]
pub struct Channel {
    pub enabled: bool,
    pub connected: bool,
    /// When `connected` last changed (ISO 8601).
    pub since: Option<String>,
    pub last_error: Option<String>,
    /// Printers whose subscription the broker acknowledged on this connection.
    pub subscribed: BTreeSet<String>,
}

impl Channel {
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

impl Core {
    /// What the channel said. Values are taken at once; the printers they change are looked
    /// at by [`Core::live_flush`] when [`Core::live_due`] says.
    ///
    /// Returns `Some(wait)` when the next poll should come within `wait`: the channel
    /// dropped and busy printers depend on the poll again.
    pub fn live_event(&mut self, now: Instant, wall: f64, event: LiveEvent) -> Option<Duration> {
        match event {
            LiveEvent::Up => {
                self.channel.connected = true;
                self.channel.since = iso(wall);
                self.live_info_due.get_or_insert(now);
            }
            LiveEvent::Down { error } => {
                let was = std::mem::replace(&mut self.channel.connected, false);
                if was || self.channel.since.is_none() {
                    self.channel.since = iso(wall);
                }
                self.channel.last_error = Some(error);
                self.channel.subscribed.clear();
                // The list's values count again: what the channel said may be stale by now.
                for entry in self.registry.entries_mut() {
                    if let Some(live) = entry.runtime.as_mut() {
                        live.pushed = Pushed::default();
                    }
                }
                self.live_dirty.clear();
                self.live_info_due.get_or_insert(now);
                let busy = self.registry.entries().any(|e| {
                    e.runtime
                        .as_ref()
                        .is_some_and(|l| l.printer.effective_state().is_active())
                });
                return (was && busy).then_some(self.settings.active_poll_interval);
            }
            LiveEvent::Subscribed { uuid } => {
                self.channel.subscribed.insert(uuid);
                self.live_info_due.get_or_insert(now);
            }
            LiveEvent::Refused { uuid } => {
                self.channel.last_error =
                    Some(format!("the subscription to printer {uuid} was refused"));
                self.unfollow(&uuid, now);
            }
            LiveEvent::Unsubscribed { uuid } => self.unfollow(&uuid, now),
            LiveEvent::Value {
                uuid,
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
                let live = self
                    .registry
                    .get_mut(&uuid)
                    .and_then(|e| e.runtime.as_mut())?;
                match live.pushed.apply(&topic, &payload, now) {
                    Ok(true) => {
                        self.live_dirty.entry(uuid).or_insert(now);
                    }
                    Ok(false) => {}
                    Err(e) => tracing::debug!("live value of printer {uuid} ignored: {e}"),
                }
            }
        }
        None
    }

    /// The channel no longer speaks for the printer: the list's values count again.
    fn unfollow(&mut self, uuid: &str, now: Instant) {
        self.channel.subscribed.remove(uuid);
        if let Some(live) = self.registry.get_mut(uuid).and_then(|e| e.runtime.as_mut()) {
            live.pushed = Pushed::default();
        }
        self.live_dirty.remove(uuid);
        self.live_info_due.get_or_insert(now);
    }

    /// When [`Core::live_flush`] has something to do.
    pub fn live_due(&self) -> Option<Instant> {
        let printers = self.live_dirty.iter().map(|(uuid, since)| {
            let looked = self
                .registry
                .get(uuid)
                .and_then(|e| e.runtime.as_ref())
                .and_then(|l| l.pushed.looked_at);
            let gathered = *since + LIVE_GATHER;
            looked.map_or(gathered, |t| gathered.max(t + LIVE_MIN_GAP))
        });
        let info = self.live_info_due.map(|t| t + LIVE_GATHER);
        printers.chain(info).min()
    }

    /// Looks at the printers whose values changed and whose turn it is, and publishes
    /// `bridge/info` when the channel's status changed.
    pub fn live_flush(&mut self, now: Instant, wall: f64) {
        if self.live_info_due.is_some_and(|t| t + LIVE_GATHER <= now) {
            self.live_info_due = None;
            if let Some(auth) = self.last_auth.clone() {
                self.publish_info(auth);
            }
        }
        let ready: Vec<String> = self
            .live_dirty
            .iter()
            .filter(|(uuid, since)| {
                let looked = self
                    .registry
                    .get(uuid)
                    .and_then(|e| e.runtime.as_ref())
                    .and_then(|l| l.pushed.looked_at);
                **since + LIVE_GATHER <= now && looked.is_none_or(|t| t + LIVE_MIN_GAP <= now)
            })
            .map(|(uuid, _)| uuid.clone())
            .collect();
        for uuid in ready {
            self.live_dirty.remove(&uuid);
            let Some(live) = self
                .registry
                .get_mut(&uuid)
                .and_then(|e| e.runtime.as_mut())
            else {
                continue;
            };
            live.pushed.looked_at = Some(now);
            if !self.channel.covers(&uuid) {
                continue;
            }
            let printer = live.pushed.overlay(live.printer.clone());
            if printer != live.printer {
                self.look(now, wall, printer);
            }
        }
    }

    /// A list requested at `requested` is being processed: of what the channel said, only
    /// what came since counts over it (see [`Pushed::list_requested`]).
    pub(super) fn list_requested(&mut self, printers: &[Printer], requested: Instant) {
        for p in printers {
            if let Some(live) = self
                .registry
                .get_mut(&p.uuid)
                .and_then(|e| e.runtime.as_mut())
            {
                live.pushed.list_requested = Some(requested);
            }
        }
    }

    /// The printers the channel is to follow: every one bridged now.
    pub fn live_printers(&self) -> BTreeSet<String> {
        self.registry
            .entries()
            .filter(|e| e.runtime.is_some())
            .map(|e| e.uuid.clone())
            .collect()
    }

    /// Whether the channel covers every busy printer, so the poll can go at the idle pace.
    pub(super) fn live_covers_busy(&self) -> bool {
        self.channel.connected
            && self.registry.entries().all(|e| {
                e.runtime.as_ref().is_none_or(|l| {
                    !l.printer.effective_state().is_active() || self.channel.covers(&e.uuid)
                })
            })
    }
}
