//! The core's Spoolman inputs (`spoolman.url`): a printer's spool chosen on `P/spool`, what
//! the Spoolman worker says, and the ended jobs' filament handed to it.

use crate::bridge::core::Core;

impl Core {
    /// A message on `P/spool`: the printer's Spoolman spool (without `spoolman.url`, none).
    pub fn select_spool(&mut self, printer_id: &str, payload: &[u8], wall: f64) {
        if self.settings.spoolman.is_none() {
            return;
        }
        let Some(uuid) = self.registry.by_id(printer_id).map(|e| e.uuid.clone()) else {
            return;
        };
        if let Some((entry, mut cx)) = self.printer(&uuid) {
            entry.select_spool(&mut cx, payload, wall);
        }
    }

    /// What the Spoolman worker said: a new list changes every printer's "Spool" select (the
    /// printers are rendered again one by one, [`Core::take_renders`]), a spool's weight the
    /// `P/state` of the printers that use it; `bridge/info` shows how the reports stand.
    pub fn on_spoolman(&mut self, event: crate::spoolman::SpoolmanEvent) {
        let changed = self.account.spools.on_event(event);
        for entry in self.registry.entries_mut() {
            let Some(live) = entry.runtime.as_mut().filter(|l| l.introduced) else {
                continue;
            };
            if changed.labels {
                live.discovery_inputs = None;
            }
            if changed.labels || (changed.remaining && entry.record.spool.is_some()) {
                self.fx.renders.push(entry.uuid.clone());
            }
        }
        if let Some(auth) = self.health.last_auth.clone() {
            self.publish_info(auth);
        }
    }

    /// The ended jobs' filament for Spoolman, since the last call.
    pub fn take_spool_uses(&mut self) -> Vec<crate::spoolman::Use> {
        std::mem::take(&mut self.fx.spool_uses)
    }
}
