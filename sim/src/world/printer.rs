//! One printer as Connect knows it, and the transitions of its state, its feed and its dialog.

use std::collections::VecDeque;

use serde_json::{Map, Value, json};

use super::clock::secs;
use super::context::{Cause, Ctx, Notice};
use super::job::{Job, PlannedJob};
use crate::controls::Chamber;
use crate::files::FileInfo;
use crate::options::PrinterSpec;
use crate::scenario::Autopilot;

pub(crate) const MAX_EVENTS_PER_PRINTER: usize = 10_000;
/// How much later than `created` Connect stamps `server_time` on an event.
const SERVER_LAG_US: i64 = 18_734;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Temps {
    pub nozzle: f64,
    pub bed: f64,
    pub target_nozzle: f64,
    pub target_bed: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Axes {
    pub x: f64,
    pub y: f64,
    pub z: f64,
}

/// One feed event, stored as the JSON Connect returns.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub created_us: i64,
    pub name: String,
    pub json: Map<String, Value>,
}

#[derive(Debug, Clone)]
pub(crate) struct Camera {
    pub id: i64,
    pub printer_uuid: String,
    pub name: String,
    /// Snapshots are padded to at least this many bytes.
    pub min_bytes: usize,
}

pub(crate) struct Printer {
    /// 1 for the first printer added, 2 for the next...: drives made-up serials and addresses.
    pub number: u64,
    pub uuid: String,
    pub name: String,
    pub location: String,
    pub sn: String,
    pub model: String,
    pub printer_type: String,
    pub printer_type_name: String,
    pub firmware: String,
    pub team_id: i64,
    pub team_name: String,
    /// Connect's `printer_state`; kept while offline.
    pub state: String,
    pub online: bool,
    pub last_online_us: i64,
    /// While offline: the live broker's topics as the printer last sent them (they stay
    /// retained as they were, see `live.rs`).
    pub last_sent: Option<std::collections::BTreeMap<String, String>>,
    pub state_reason: Option<String>,
    pub temps: Temps,
    pub axes: Axes,
    pub speed: i64,
    pub flow: i64,
    pub nozzle_diameter: f64,
    pub material: String,
    /// Printers with a chamber (the CORE One) only.
    pub chamber: Option<Chamber>,
    /// A command set a heater's target: a manual printer's temperatures then follow their
    /// targets as time advances (scripted temperatures stay as scripted otherwise).
    pub heating: bool,
    /// The job shown as `job_info`: the running one, or the last one until the printer is
    /// set ready/idle.
    pub job_info: Option<i64>,
    pub dialog: Option<Value>,
    pub(super) state_before_dialog: Option<String>,
    /// Buttons pressed with DIALOG_ACTION: (dialog id, button as the dialog spells it).
    pub dialog_answers: Vec<(i64, String)>,
    /// Oldest first.
    pub jobs: VecDeque<Job>,
    /// In the order they happened; `created_us` strictly increasing unless the clock jumped
    /// backwards (see `Clock::set_offset`).
    pub events: VecDeque<Event>,
    pub queue: Vec<PlannedJob>,
    pub files: Vec<FileInfo>,
    /// `None`: a manual printer, only changed by scripting and commands.
    pub pilot: Option<Autopilot>,
    /// Fields laid over the rendered printer JSON, to serve what Connect might send one day.
    pub overrides: serde_json::Map<String, Value>,
    /// Left out of the fleet list (a glitch in Connect's list), still answering on its own.
    pub hidden: bool,
    /// How long Connect's record of each job ending from now on keeps saying PRINTING.
    pub record_lag: std::time::Duration,
}

impl Printer {
    pub(super) fn new(number: u64, uuid: String, spec: PrinterSpec, now_us: i64) -> Printer {
        let sn = if spec.sn.is_empty() {
            format!("SN-SIM-{number:04}")
        } else {
            spec.sn
        };
        let m_time = now_us / 1_000_000 - 86_400;
        let files = crate::files::starter_files(&spec.model, m_time);
        let chamber = Chamber::for_model(&spec.model);
        Printer {
            number,
            uuid,
            name: spec.name,
            location: "Workshop".to_string(),
            sn,
            model: spec.model,
            printer_type: spec.printer_type,
            printer_type_name: spec.printer_type_name,
            firmware: spec.firmware,
            team_id: 1,
            team_name: "Team One".to_string(),
            state: "IDLE".to_string(),
            online: true,
            last_online_us: now_us,
            last_sent: None,
            state_reason: None,
            temps: Temps {
                nozzle: 24.0,
                bed: 23.5,
                target_nozzle: 0.0,
                target_bed: 0.0,
            },
            axes: Axes {
                x: 245.0,
                y: 0.0,
                z: 10.0,
            },
            speed: 100,
            flow: 100,
            nozzle_diameter: 0.4,
            material: "PLA".to_string(),
            chamber,
            heating: false,
            job_info: None,
            dialog: None,
            state_before_dialog: None,
            dialog_answers: Vec::new(),
            overrides: serde_json::Map::new(),
            hidden: false,
            record_lag: std::time::Duration::ZERO,
            jobs: VecDeque::new(),
            events: VecDeque::new(),
            queue: Vec::new(),
            files,
            pilot: None,
        }
    }

    /// OFFLINE when Connect has lost the printer, else `printer_state`.
    pub fn effective_state(&self) -> &str {
        if self.online { &self.state } else { "OFFLINE" }
    }

    pub fn job(&self, id: i64) -> Option<&Job> {
        self.jobs.iter().rev().find(|j| j.id == id)
    }

    pub fn job_mut(&mut self, id: i64) -> Option<&mut Job> {
        self.jobs.iter_mut().rev().find(|j| j.id == id)
    }

    /// The job `job_info` shows, running or ended.
    pub fn info_job(&self) -> Option<&Job> {
        self.job_info.and_then(|id| self.job(id))
    }

    pub fn active_job(&self) -> Option<&Job> {
        self.info_job().filter(|j| j.is_active())
    }

    pub fn active_job_mut(&mut self) -> Option<&mut Job> {
        let id = self.job_info?;
        self.job_mut(id).filter(|j| j.is_active())
    }

    /// Appends a feed event stamped with the printer's current `printer_state`.
    pub fn emit(
        &mut self,
        ctx: &mut Ctx,
        event: &str,
        cause: &Cause,
        job_id: Option<i64>,
        data: Option<Value>,
    ) -> i64 {
        let state = self.state.clone();
        self.emit_as(ctx, event, cause, &state, job_id, data)
    }

    fn emit_as(
        &mut self,
        ctx: &mut Ctx,
        event: &str,
        cause: &Cause,
        state: &str,
        job_id: Option<i64>,
        data: Option<Value>,
    ) -> i64 {
        let created_us = ctx.clock.tick();
        let mut json = Map::new();
        json.insert(
            "server_time".into(),
            json!(secs(created_us + SERVER_LAG_US)),
        );
        json.insert("event".into(), json!(event));
        json.insert("source".into(), json!(cause.source));
        json.insert("state".into(), json!(state));
        if let Some((command, id)) = cause.command {
            json.insert("command".into(), json!(command));
            json.insert("command_id".into(), json!(id));
        }
        if let Some(job_id) = job_id {
            json.insert("job_id".into(), json!(job_id));
        }
        json.insert("created".into(), json!(secs(created_us)));
        if let Some(data) = data {
            json.insert("data".into(), data);
        }
        self.events.push_back(Event {
            created_us,
            name: event.to_string(),
            json,
        });
        while self.events.len() > MAX_EVENTS_PER_PRINTER {
            self.events.pop_front();
        }
        created_us
    }

    /// Appends a raw event; `extra`'s keys are merged in (all but `created`, which keeps the
    /// feed in time order), a non-object `extra` becomes `data`.
    pub fn push_event(&mut self, ctx: &mut Ctx, event: &str, extra: Value) {
        let (data, merge) = match extra {
            Value::Object(map) => (None, map),
            Value::Null => (None, Map::new()),
            other => (Some(other), Map::new()),
        };
        let job_id = self.active_job().map(|j| j.id);
        self.emit(ctx, event, &Cause::FIRMWARE, job_id, data);
        if let Some(last) = self.events.back_mut() {
            for (key, value) in merge {
                if key != "created" {
                    last.json.insert(key, value);
                }
            }
        }
    }

    /// Sets `printer_state`; a no-op (no event) when it does not change. The running job
    /// follows the printer (see `Simulator::set_state`).
    pub fn set_state(&mut self, ctx: &mut Ctx, state: &str, cause: &Cause) -> bool {
        self.set_state_with(ctx, state, cause, None)
    }

    fn set_state_with(
        &mut self,
        ctx: &mut Ctx,
        state: &str,
        cause: &Cause,
        data: Option<Value>,
    ) -> bool {
        if self.state == state {
            return false;
        }
        if self.state == "ATTENTION" {
            self.dialog = None;
            self.state_before_dialog = None;
        }
        match state {
            "PAUSED" | "PRINTING" => {
                if let Some(job) = self.active_job_mut() {
                    job.state = state.to_string();
                }
            }
            "FINISHED" => self.end_active_job(ctx, "FIN_OK", cause),
            "STOPPED" => self.end_active_job(ctx, "FIN_STOPPED", cause),
            "ERROR" => self.end_active_job(ctx, "FIN_ERROR", cause),
            "IDLE" | "READY" => {
                self.end_active_job(ctx, "UNKNOWN", cause);
                self.job_info = None;
                self.state_reason = None;
            }
            _ => {}
        }
        self.state = state.to_string();
        let job_id = self.job_info;
        self.emit(ctx, "STATE_CHANGED", cause, job_id, data);
        true
    }

    pub fn set_online(&mut self, ctx: &mut Ctx, online: bool) {
        if self.online == online {
            return;
        }
        let now = ctx.clock.tick();
        // An offline printer sends nothing: what it sent last stays on the live broker.
        self.last_sent = (!online).then(|| crate::live::tree(self, now));
        self.online = online;
        self.last_online_us = now;
        let job_id = self.active_job().map(|j| j.id);
        let state = self.effective_state().to_string();
        self.emit_as(ctx, "STATE_CHANGED", &Cause::CONNECT, &state, job_id, None);
    }

    /// Shows a dialog (printer ATTENTION) or takes it away (printer back to where it was).
    pub fn set_dialog(&mut self, ctx: &mut Ctx, dialog: Option<Value>, cause: &Cause) {
        match dialog {
            Some(dialog) => {
                let dialog = complete_dialog(ctx, dialog);
                let data = json!({ "dialog": dialog });
                if self.state == "ATTENTION" {
                    self.dialog = Some(dialog);
                    let job_id = self.job_info;
                    self.emit(ctx, "STATE_CHANGED", cause, job_id, Some(data));
                } else {
                    let before = self.state.clone();
                    let title = dialog.get("title").and_then(Value::as_str).unwrap_or("");
                    ctx.notify(Notice {
                        id: 0,
                        created_us: 0,
                        category: "PRINTER".into(),
                        name: "ATTENTION".into(),
                        severity: "WARNING".into(),
                        text: format!("{} needs attention: {title}", self.name),
                        printer_uuid: Some(self.uuid.clone()),
                        printer_name: Some(self.name.clone()),
                        job: self.job_info.map(|id| {
                            let name = self
                                .job(id)
                                .map(|j| j.file.name.clone())
                                .unwrap_or_default();
                            let state = self.job(id).map(|j| j.state.clone()).unwrap_or_default();
                            (id, name, state)
                        }),
                    });
                    self.set_state_with(ctx, "ATTENTION", cause, Some(data));
                    self.dialog = Some(dialog);
                    self.state_before_dialog = Some(before);
                }
            }
            None => {
                if self.state != "ATTENTION" {
                    self.dialog = None;
                    return;
                }
                let back = self.state_before_dialog.take().unwrap_or_else(|| {
                    let running = self.active_job().is_some();
                    if running { "PRINTING" } else { "IDLE" }.to_string()
                });
                self.set_state(ctx, &back, cause);
            }
        }
    }

    /// The feed, newest `created` first (as Connect sorts it, also after a clock jump): events
    /// with `from_us <= created < to_us`, optionally only the named ones.
    pub fn feed(
        &self,
        from_us: i64,
        to_us: Option<i64>,
        names: &[&str],
        offset: usize,
        limit: usize,
    ) -> Vec<&Event> {
        let mut matching: Vec<&Event> = self
            .events
            .iter()
            .rev()
            .filter(|e| e.created_us >= from_us && to_us.is_none_or(|to| e.created_us < to))
            .filter(|e| names.is_empty() || names.contains(&e.name.as_str()))
            .collect();
        // Already in order unless the clock jumped; a stable sort keeps ties newest first.
        matching.sort_by_key(|e| std::cmp::Reverse(e.created_us));
        matching.into_iter().skip(offset).take(limit).collect()
    }
}

fn complete_dialog(ctx: &mut Ctx, dialog: Value) -> Value {
    let mut map = match dialog {
        Value::Object(map) => map,
        Value::String(text) => Map::from_iter([("text".to_string(), json!(text))]),
        other => Map::from_iter([("text".to_string(), json!(other.to_string()))]),
    };
    if !map.contains_key("id") {
        map.insert("id".into(), json!(ctx.dialog_id()));
    }
    for (key, default) in [
        ("code", Value::Null),
        ("title", json!("Attention")),
        ("text", json!("")),
        ("buttons", json!([])),
        ("key", Value::Null),
    ] {
        map.entry(key).or_insert(default);
    }
    Value::Object(map)
}
