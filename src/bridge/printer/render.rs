//! A printer's retained topics, rendered from its entry whenever something it shows may
//! have changed; unchanged values are not sent again.

use std::hash::{Hash, Hasher};

use crate::bridge::Settings;
use crate::bridge::printer::{Ctx, PrinterEntry, Runtime};
use crate::connect::model::PrinterState;
use crate::discovery::{Controls, Features, PrinterDevice};
use crate::message::{Kind, Message};
use crate::payloads::{self, Fingerprint, iso, print_of};

impl PrinterEntry {
    /// Publishes the printer's retained topics that changed: discovery, `P/state`, `P/job`,
    /// `P/stats`, and `P/availability` last (once it says `online`, the rest is there).
    pub fn render(&mut self, cx: &mut Ctx, wall: f64) {
        let id = self.id().unwrap_or_default().to_string();
        let Some(live) = self.runtime.as_mut() else {
            return;
        };
        // A printer's first publication waits for the reads in flight that it shows (the feed
        // cursor, cameras, the running job's objects), for a second at most: Home Assistant
        // gets the whole device at once, and once a printer is `online` its feed cursor is set
        // (unless the read waits longer, for the request budget). Its model and latest
        // firmware are the printer types'.
        if live.waits_for_first_reads(wall, cx.account.types_reading()) {
            return;
        }
        live.introduced = true;
        // Discovery first: a select's state (a spool Spoolman just listed) must be one of the
        // options Home Assistant has, or it logs an error.
        self.render_discovery(cx, &id);
        let Some(live) = self.runtime.as_mut() else {
            return;
        };
        let printer = &live.printer;
        let online = cx.reachable && printer.effective_state() != PrinterState::Offline;
        let mut state = payloads::state(printer, wall, &live.queue.fields);
        state.firmware_latest = cx
            .account
            .printer_type(printer)
            .and_then(|t| t.stable_firmware.as_deref());
        state.print_file = live.files.selected_label();
        state.storage_free = live.storage.free;
        state.storage_total = live.storage.total;
        if cx.settings.spoolman.is_some() {
            super::spool::show(&mut state, self.record.spool, &cx.account.spools);
        }
        let topics = &cx.settings.topics;
        // Written once without its time into the shared buffer, to compare; when it changed,
        // the time is set on a copy of those bytes.
        state.write_json(cx.scratch);
        let print = print_of(cx.scratch);
        if live.shown_state != Some(print) {
            live.shown_state = Some(print);
            cx.fx.publish(Message::retain(
                Kind::Data,
                topics.state(&id),
                state.json_updated(cx.scratch, iso(wall)),
            ));
        }
        if let Some(job) = payloads::job(printer.job_info.as_ref(), live.current_detail()) {
            job.write_json(cx.scratch);
            let print = print_of(cx.scratch);
            if live.shown_job != Some(print) {
                live.shown_job = Some(print);
                cx.fx.publish(Message::retain(
                    Kind::Data,
                    topics.job(&id),
                    cx.scratch.as_slice(),
                ));
            }
        }
        if !live.shown_stats {
            live.shown_stats = true;
            cx.fx.publish(Message::retain(
                Kind::Data,
                topics.stats(&id),
                self.record.stats.payload().to_string(),
            ));
        }
        let announce = live.shown_online != Some(online);
        live.shown_online = Some(online);
        if announce {
            cx.fx.publish(Message::retain(
                Kind::Data,
                cx.settings.topics.availability(&id),
                if online { "online" } else { "offline" },
            ));
        }
    }

    /// The printer's discovery, when what it shows changed; entities that went are removed.
    fn render_discovery(&mut self, cx: &mut Ctx, id: &str) {
        let Some(discovery) = &cx.settings.discovery else {
            return;
        };
        let Some(live) = self.runtime.as_ref() else {
            return;
        };
        let model = cx.account.model_name(&live.printer);
        let inputs = inputs_print(id, live, model);
        if live.shown_device.is_some() && live.discovery_inputs == Some(inputs) {
            return;
        }
        let spools = cx
            .settings
            .spoolman
            .as_ref()
            .map(|_| cx.account.spools.labels());
        let device = device(
            cx.settings,
            &self.uuid,
            id,
            live,
            model.map(str::to_string),
            spools,
        );
        let print = hash(&device);
        if live.shown_device == Some(print) {
            if let Some(live) = self.runtime.as_mut() {
                live.discovery_inputs = Some(inputs);
            }
            return;
        }
        let messages = discovery.printer_json(&device);
        self.finish_migration(cx.fx);
        // Entities that went (a camera removed): their configs go too. The record keeps the
        // cameras the last discovery had (across restarts too, in the state file).
        for topic in discovery.printer_topics(&self.uuid, &self.record.cameras) {
            if !messages.iter().any(|(t, _)| *t == topic) {
                cx.fx.publish(Message::Clear { topic });
            }
        }
        for (topic, payload) in messages {
            cx.fx
                .publish(Message::retain(Kind::Discovery, topic, payload));
        }
        self.record.cameras = device.cameras;
        if let Some(live) = self.runtime.as_mut() {
            live.shown_device = Some(print);
            live.discovery_inputs = Some(inputs);
        }
    }
}

/// A value hashed, to tell whether it changed since the last look (with the fingerprints'
/// hasher: these hashes live only in memory, and every look at a printer makes several).
pub(super) fn hash(value: &impl Hash) -> u64 {
    let mut h = Fingerprint::default();
    value.hash(&mut h);
    h.finish()
}

/// What discovery takes from the printer's own view, hashed (see
/// [`Runtime::discovery_inputs`]): everything [`device`] reads of `live.printer`.
fn inputs_print(id: &str, live: &Runtime, model: Option<&str>) -> u64 {
    let p = &live.printer;
    let mut h = Fingerprint::default();
    (id, p.display_name(), model, &p.sn, &p.firmware).hash(&mut h);
    (
        p.job_info.as_ref().and_then(|j| j.id),
        payloads::job_running(p),
    )
        .hash(&mut h);
    for button in p.dialog_info.iter().flat_map(|d| &d.buttons) {
        button.as_str().hash(&mut h);
    }
    Features::of(p).hash(&mut h);
    h.finish()
}

/// What discovery shows of a printer now.
fn device(
    settings: &Settings,
    uuid: &str,
    id: &str,
    live: &Runtime,
    model: Option<String>,
    spools: Option<Vec<String>>,
) -> PrinterDevice {
    let printer = &live.printer;
    PrinterDevice {
        uuid: uuid.to_string(),
        id: id.to_string(),
        name: printer.display_name().to_string(),
        model,
        serial: printer.sn.clone(),
        firmware: printer.firmware.clone(),
        configuration_url: settings
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
            &settings.allow,
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
        spools,
    }
}
