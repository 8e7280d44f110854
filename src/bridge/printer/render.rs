//! A printer's retained topics, rendered from its registry entry whenever something it
//! shows may have changed; unchanged values are dropped by the outbox.

use crate::bridge::core::Core;
use crate::connect::model::PrinterState;
use crate::discovery::{Controls, Features, PrinterDevice};
use crate::message::{Kind, Message};
use crate::payloads::{self, StatePayload, iso};

impl Core {
    /// Publishes a printer's retained topics that changed: `P/state`, `P/job`, discovery,
    /// and `P/availability` last (once it says `online`, the rest is there).
    pub(crate) fn render(&mut self, uuid: &str, wall: f64) {
        let reachable = self.health.reachable && !self.is_rejected(uuid);
        let firmware_latest = self
            .registry
            .get(uuid)
            .and_then(|e| e.runtime.as_ref())
            .and_then(|l| self.printer_type(&l.printer))
            .and_then(|t| t.stable_firmware.clone());
        let Some(entry) = self.registry.get_mut(uuid) else {
            return;
        };
        let id = entry.id().unwrap_or_default().to_string();
        let Some(live) = entry.runtime.as_mut() else {
            return;
        };
        // A printer's first publication waits for the reads in flight that it shows (the feed
        // cursor, cameras, the running job's objects): Home Assistant gets the whole device
        // at once, and once a printer is `online` its feed cursor is set.
        if !live.introduced && live.first_reads_pending() {
            return;
        }
        live.introduced = true;
        let printer = &live.printer;
        let online = reachable && printer.effective_state() != PrinterState::Offline;
        let mut state = payloads::state(printer, wall, &live.queue.fields);
        state.firmware_latest = firmware_latest;
        state.print_file = live.files.selected_label();
        if live.shown_state.as_ref() != Some(&state) {
            let with_time = StatePayload {
                updated: iso(wall),
                ..state.clone()
            };
            self.out.push(Message::retain(
                Kind::Data,
                self.settings.topics.state(&id),
                with_time.to_value().to_string(),
            ));
            live.shown_state = Some(state);
        }
        if let Some(job) = payloads::job(printer.job_info.as_ref(), live.current_detail())
            && live.shown_job.as_ref() != Some(&job)
        {
            self.out.push(Message::retain(
                Kind::Data,
                self.settings.topics.job(&id),
                job.to_string(),
            ));
            live.shown_job = Some(job);
        }
        let announce = live.shown_online != Some(online);
        live.shown_online = Some(online);
        self.render_discovery(uuid);
        if announce {
            self.out.push(Message::retain(
                Kind::Data,
                self.settings.topics.availability(&id),
                if online { "online" } else { "offline" },
            ));
        }
    }

    /// The printer's discovery, when what it shows changed; entities that went are removed.
    fn render_discovery(&mut self, uuid: &str) {
        let Some(discovery) = &self.settings.discovery else {
            return;
        };
        let model = self
            .registry
            .get(uuid)
            .and_then(|e| e.runtime.as_ref())
            .and_then(|l| self.model_name(&l.printer));
        let Some(entry) = self.registry.get_mut(uuid) else {
            return;
        };
        let id = entry.id().unwrap_or_default().to_string();
        let Some(live) = entry.runtime.as_mut() else {
            return;
        };
        let printer = &live.printer;
        let device = PrinterDevice {
            uuid: uuid.to_string(),
            id,
            name: printer.display_name().to_string(),
            model,
            serial: printer.sn.clone(),
            firmware: printer.firmware.clone(),
            configuration_url: self
                .settings
                .connect_url
                .join(&format!("/printer/{uuid}/dashboard"))
                .ok()
                .map(|u| u.to_string()),
            objects: live
                .current_detail()
                .filter(|_| payloads::job_running(printer))
                .and_then(|j| j.cancelable.as_ref())
                .map(|c| {
                    crate::discovery::object_labels(&c.objects)
                        .into_iter()
                        .zip(&c.objects)
                        .filter(|(_, o)| !o.canceled)
                        .map(|((_, label), _)| label)
                        .collect()
                })
                .unwrap_or_default(),
            cameras: live.cameras.named(),
            controls: Controls::new(
                live.supported
                    .list
                    .as_deref()
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
                &self.settings.allow,
                &printer.dialog_buttons(),
            )
            .with_files(
                &live
                    .files
                    .labels()
                    .into_iter()
                    .map(|(_, label)| label)
                    .collect::<Vec<_>>(),
            ),
            features: Features::of(printer),
        };
        if live.device.as_ref() == Some(&device) {
            return;
        }
        let messages = discovery.printer(&device);
        let migrating = self.migrating.remove(uuid).unwrap_or_default();
        for topic in migrating {
            self.out.push(Message::Clear { topic });
        }
        // Entities that went (a camera removed): their configs go too. After a restart the
        // state file knows which cameras the last discovery had.
        let old_cameras = match &live.device {
            Some(old) => old.cameras.clone(),
            None => entry.record.cameras.clone(),
        };
        for topic in discovery.printer_topics(uuid, &old_cameras) {
            if !messages.iter().any(|(t, _)| *t == topic) {
                self.out.push(Message::Clear { topic });
            }
        }
        for (topic, payload) in messages {
            self.out
                .push(Message::retain(Kind::Discovery, topic, payload.to_string()));
        }
        entry.record.cameras = device.cameras.clone();
        live.device = Some(device);
    }
}
