//! The simulated Connect's state and every state transition.
//!
//! Transitions live on [`Printer`] and are the only code that appends feed events, so the feed
//! always tells what happened to the printer, whoever (test script, scenario, HTTP command)
//! made it happen.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::controls::Chamber;
use super::files::FileInfo;
use super::scenario::Autopilot;
use super::{Fault, FaultRule, PrinterSpec, RecordedRequest};

pub(crate) const MAX_EVENTS_PER_PRINTER: usize = 10_000;
pub(crate) const MAX_JOBS_PER_PRINTER: usize = 1_000;
pub(crate) const MAX_RECORDED_REQUESTS: usize = 100_000;
const FIRST_JOB_ID: i64 = 100;
const FIRST_COMMAND_ID: i64 = 1_075_300;
const FIRST_CAMERA_ID: i64 = 1_001;
const FIRST_PLANNED_JOB_ID: i64 = 5_000;
const FIRST_DIALOG_ID: i64 = 1;
/// How much later than `created` Connect stamps `server_time` on an event.
const SERVER_LAG_US: i64 = 18_734;

pub(crate) fn real_now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Microseconds to Connect's float seconds.
pub(crate) fn secs(us: i64) -> f64 {
    us as f64 / 1e6
}

/// Connect's clock: real wall-clock time plus a scripted offset (a clock jump), made strictly
/// increasing so that events created in one burst keep the order they happened in when
/// sorted by `created`.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    last_us: i64,
    offset_us: i64,
}

impl Clock {
    pub fn tick(&mut self) -> i64 {
        let us = self.now_us().max(self.last_us + 1);
        self.last_us = us;
        us
    }

    /// The time now by this clock, without advancing it.
    pub fn now_us(&self) -> i64 {
        real_now_us().saturating_add(self.offset_us)
    }

    /// Makes the clock jump: it may go backwards, past times it already gave out.
    pub fn set_offset(&mut self, offset_us: i64) {
        self.offset_us = offset_us;
        self.last_us = i64::MIN + 1;
    }
}

/// What transitions need besides the printer itself: the clock and the id counters.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub clock: Clock,
    next_job_id: i64,
    next_command_id: i64,
    next_planned_job_id: i64,
    next_dialog_id: i64,
    next_notification_id: i64,
    /// The account's notifications, oldest first (at most [`MAX_NOTIFICATIONS`]).
    pub notifications: VecDeque<Notice>,
    /// What `GET /app/notifications/unseen` answers: each new notification adds one.
    pub unseen: u64,
}

/// Notifications kept, at most.
const MAX_NOTIFICATIONS: usize = 200;

/// One of the account's notifications (`GET /app/notifications`).
#[derive(Debug, Clone)]
pub(crate) struct Notice {
    pub id: i64,
    pub created_us: i64,
    pub category: String,
    pub name: String,
    pub severity: String,
    pub text: String,
    pub printer_uuid: Option<String>,
    pub printer_name: Option<String>,
    pub job: Option<(i64, String, String)>,
}

impl Ctx {
    fn new() -> Ctx {
        Ctx {
            clock: Clock::default(),
            next_job_id: FIRST_JOB_ID,
            next_command_id: FIRST_COMMAND_ID,
            next_planned_job_id: FIRST_PLANNED_JOB_ID,
            next_dialog_id: FIRST_DIALOG_ID,
            next_notification_id: 1,
            notifications: VecDeque::new(),
            unseen: 0,
        }
    }

    /// Adds a notification (unseen) and returns its id.
    pub fn notify(&mut self, mut notice: Notice) -> i64 {
        notice.id = bump(&mut self.next_notification_id);
        notice.created_us = self.clock.tick();
        let id = notice.id;
        self.notifications.push_back(notice);
        while self.notifications.len() > MAX_NOTIFICATIONS {
            self.notifications.pop_front();
        }
        self.unseen += 1;
        id
    }

    pub fn command_id(&mut self) -> i64 {
        bump(&mut self.next_command_id)
    }

    pub fn job_id(&mut self) -> i64 {
        bump(&mut self.next_job_id)
    }
}

fn bump(counter: &mut i64) -> i64 {
    let id = *counter;
    *counter += 1;
    id
}

/// Who made a transition: becomes the event's `source` (and `command`, `command_id`).
#[derive(Debug, Clone)]
pub(crate) struct Cause {
    pub source: &'static str,
    pub command: Option<(&'static str, i64)>,
}

impl Cause {
    pub const FIRMWARE: Cause = Cause::source("FIRMWARE");
    pub const CONNECT: Cause = Cause::source("CONNECT");

    pub const fn source(source: &'static str) -> Cause {
        Cause {
            source,
            command: None,
        }
    }

    pub fn command(name: &'static str, id: i64) -> Cause {
        Cause {
            source: "CONNECT_USER",
            command: Some((name, id)),
        }
    }
}

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

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JobObject {
    pub name: String,
    pub polygon: Vec<[f64; 2]>,
    pub canceled: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub id: i64,
    pub state: String,
    pub file: FileInfo,
    pub duration_s: f64,
    /// 0..100
    pub progress: f64,
    pub time_printing: f64,
    /// `None` while there is no estimate yet (Connect then shows -1).
    pub time_remaining: Option<f64>,
    pub started_us: i64,
    pub ended_us: Option<i64>,
    pub objects: Vec<JobObject>,
    pub material: String,
    pub weight_g: f64,
    pub reason: Option<Value>,
    pub mode: String,
    /// Until then (real time, µs) Connect's record of the ended job still says PRINTING.
    pub record_lags_until_us: Option<i64>,
}

impl Job {
    pub fn is_active(&self) -> bool {
        matches!(self.state.as_str(), "PRINTING" | "PAUSED")
    }

    /// The job as Connect's record shows it now: a lagging record of an ended job still says
    /// PRINTING.
    pub fn as_recorded(&self) -> std::borrow::Cow<'_, Job> {
        match self.record_lags_until_us {
            Some(until) if real_now_us() < until => {
                let mut shown = self.clone();
                shown.state = "PRINTING".to_string();
                shown.ended_us = None;
                std::borrow::Cow::Owned(shown)
            }
            _ => std::borrow::Cow::Borrowed(self),
        }
    }
}

/// What to print: the input to [`Printer::start_job`].
#[derive(Debug, Clone)]
pub(crate) struct NewJob {
    pub file: String,
    pub duration_s: f64,
    pub objects: Vec<String>,
    pub material: Option<String>,
}

impl NewJob {
    pub fn new(file: &str, duration_s: f64, objects: &[&str]) -> NewJob {
        NewJob {
            file: file.to_string(),
            duration_s: duration_s.max(1.0),
            objects: objects.iter().map(|o| o.to_string()).collect(),
            material: None,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct PlannedJob {
    pub id: i64,
    pub file: FileInfo,
    pub set_ready: bool,
    pub created_us: i64,
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
    state_before_dialog: Option<String>,
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
    fn new(number: u64, uuid: String, spec: PrinterSpec, now_us: i64) -> Printer {
        let sn = if spec.sn.is_empty() {
            format!("SN-SIM-{number:04}")
        } else {
            spec.sn
        };
        let m_time = now_us / 1_000_000 - 86_400;
        let files = super::files::starter_files(&spec.model, m_time);
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
        self.last_sent = (!online).then(|| super::live::tree(self, now));
        self.online = online;
        self.last_online_us = now;
        let job_id = self.active_job().map(|j| j.id);
        let state = self.effective_state().to_string();
        self.emit_as(ctx, "STATE_CHANGED", &Cause::CONNECT, &state, job_id, None);
    }

    /// Starts a job: printer PRINTING, `job_info` = the new job. A job still running is
    /// abandoned (UNKNOWN) first.
    pub fn start_job(&mut self, ctx: &mut Ctx, new: NewJob, cause: &Cause) -> i64 {
        self.end_active_job(ctx, "UNKNOWN", cause);
        self.dialog = None;
        self.state_before_dialog = None;
        self.state_reason = None;
        let id = ctx.job_id();
        let now = ctx.clock.tick();
        let file = self
            .files
            .iter()
            .find(|f| f.path == new.file || f.name == new.file)
            .cloned()
            .unwrap_or_else(|| FileInfo::for_path(&new.file, now / 1_000_000 - 3_600));
        if !self.files.iter().any(|f| f.path == file.path) {
            self.files.push(file.clone());
        }
        let objects = new
            .objects
            .iter()
            .enumerate()
            .map(|(i, name)| JobObject {
                name: name.clone(),
                polygon: square_at(i),
                canceled: false,
            })
            .collect();
        let weight_g = (new.duration_s / 60.0 * 1.7 * 100.0).round() / 100.0;
        self.jobs.push_back(Job {
            id,
            state: "PRINTING".to_string(),
            file: file.clone(),
            duration_s: new.duration_s,
            progress: 0.0,
            time_printing: 0.0,
            time_remaining: Some(new.duration_s),
            started_us: now,
            ended_us: None,
            objects,
            material: new.material.unwrap_or_else(|| self.material.clone()),
            weight_g,
            reason: None,
            mode: self.model.clone(),
            record_lags_until_us: None,
        });
        while self.jobs.len() > MAX_JOBS_PER_PRINTER {
            self.jobs.pop_front();
        }
        self.job_info = Some(id);
        self.state = "PRINTING".to_string();
        self.emit(ctx, "STATE_CHANGED", cause, Some(id), None);
        let data = json!({
            "path": file.path,
            "display_name": file.name,
            "size": file.size,
            "m_time": file.m_time,
        });
        self.emit(ctx, "JOB_INFO", cause, Some(id), Some(data));
        id
    }

    /// Sets the running job's progress; its times follow from the job's duration.
    pub fn set_progress(&mut self, progress: f64) {
        if !progress.is_finite() {
            return;
        }
        if let Some(job) = self.active_job_mut() {
            job.progress = progress.clamp(0.0, 100.0);
            job.time_printing = (job.duration_s * job.progress / 100.0).round();
            job.time_remaining = Some((job.duration_s - job.time_printing).max(0.0));
        }
    }

    /// Ends the running job with `job_state` and moves the printer to the matching state.
    /// A state that is not an end state (PRINTING, PAUSED) ends the job as UNKNOWN.
    pub fn finish_job(&mut self, ctx: &mut Ctx, job_state: &str, cause: &Cause) {
        let job_state = match job_state {
            "PRINTING" | "PAUSED" | "" => "UNKNOWN",
            other => other,
        };
        let printer_state = match job_state {
            "FIN_ERROR" => "ERROR",
            "FIN_STOPPED" => "STOPPED",
            _ => "FINISHED",
        };
        self.end_active_job(ctx, job_state, cause);
        self.set_state(ctx, printer_state, cause);
    }

    /// A job that starts and ends between two looks at the printer list: the printer is back
    /// in the state it had, showing the job it showed (only the feed, the job list and the
    /// notifications tell). Returns the job's id.
    pub fn quick_job(&mut self, ctx: &mut Ctx, new: NewJob, job_state: &str) -> i64 {
        let (state, shown) = (self.state.clone(), self.job_info);
        let id = self.start_job(ctx, new, &Cause::FIRMWARE);
        if let Some(job) = self.active_job_mut() {
            job.progress = 100.0;
            job.time_printing = job.duration_s.round();
        }
        self.finish_job(ctx, job_state, &Cause::FIRMWARE);
        self.set_state(ctx, &state, &Cause::FIRMWARE);
        self.job_info = shown;
        id
    }

    fn end_active_job(&mut self, ctx: &mut Ctx, job_state: &str, cause: &Cause) {
        let record_lag = self.record_lag;
        let Some(job) = self.active_job_mut() else {
            return;
        };
        job.state = job_state.to_string();
        job.ended_us = Some(ctx.clock.tick());
        job.time_remaining = None;
        if !record_lag.is_zero() {
            job.record_lags_until_us = Some(
                real_now_us().saturating_add(i64::try_from(record_lag.as_micros()).unwrap_or(0)),
            );
        }
        if job_state == "FIN_OK" {
            job.progress = 100.0;
        }
        let id = job.id;
        let (file_name, final_state) = (job.file.name.clone(), job.state.clone());
        let data = json!({
            "state": job.state,
            "path": job.file.path,
            "display_name": job.file.name,
            "progress": (job.progress * 10.0).round() / 10.0,
            "time_printing": job.time_printing.round(),
        });
        self.emit(ctx, "JOB_INFO", cause, Some(id), Some(data));
        let (severity, name, verb) = match job_state {
            "FIN_OK" => ("SUCCESS", "JOB_FINISHED", "finished"),
            "FIN_ERROR" => ("ERROR", "JOB_FAILED", "failed"),
            "FIN_STOPPED" => ("WARNING", "JOB_STOPPED", "was stopped"),
            _ => ("INFO", "JOB_ENDED", "ended"),
        };
        let notice = Notice {
            id: 0,
            created_us: 0,
            category: "JOB".into(),
            name: name.into(),
            severity: severity.into(),
            text: format!("Print of {file_name} {verb}"),
            printer_uuid: Some(self.uuid.clone()),
            printer_name: Some(self.name.clone()),
            job: Some((id, file_name, final_state)),
        };
        ctx.notify(notice);
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

    pub fn cancel_object(&mut self, object_id: i64) -> Result<(), String> {
        let job = self
            .active_job_mut()
            .ok_or_else(|| "There is no running job".to_string())?;
        let object = usize::try_from(object_id)
            .ok()
            .and_then(|i| job.objects.get_mut(i))
            .ok_or_else(|| format!("Job {} has no object with id {object_id}", job.id))?;
        object.canceled = true;
        Ok(())
    }

    pub fn queue_job(
        &mut self,
        ctx: &mut Ctx,
        path: &str,
        set_ready: bool,
        position: Option<usize>,
    ) -> i64 {
        let id = bump(&mut ctx.next_planned_job_id);
        let now = ctx.clock.tick();
        let planned = PlannedJob {
            id,
            file: FileInfo::for_path(path, now / 1_000_000 - 600),
            set_ready,
            created_us: now,
        };
        let at = position.unwrap_or(self.queue.len()).min(self.queue.len());
        self.queue.insert(at, planned);
        id
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

/// A 30 mm square per object, laid out in rows of four on the bed.
fn square_at(i: usize) -> Vec<[f64; 2]> {
    let cx = 50.0 + 45.0 * (i % 4) as f64;
    let cy = 60.0 + 45.0 * ((i / 4) % 4) as f64;
    vec![
        [cx - 15.0, cy - 15.0],
        [cx + 15.0, cy - 15.0],
        [cx + 15.0, cy + 15.0],
        [cx - 15.0, cy + 15.0],
    ]
}

fn complete_dialog(ctx: &mut Ctx, dialog: Value) -> Value {
    let mut map = match dialog {
        Value::Object(map) => map,
        Value::String(text) => Map::from_iter([("text".to_string(), json!(text))]),
        other => Map::from_iter([("text".to_string(), json!(other.to_string()))]),
    };
    if !map.contains_key("id") {
        map.insert("id".into(), json!(bump(&mut ctx.next_dialog_id)));
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

pub(crate) struct World {
    pub printers: Vec<Printer>,
    pub ctx: Ctx,
    pub cameras: Vec<Camera>,
    /// Oldest first, capped at [`MAX_RECORDED_REQUESTS`].
    pub requests: VecDeque<RecordedRequest>,
    pub token: Option<String>,
    /// Connect's fault rules, tried in order (see `Simulator::add_fault`).
    pub faults: Vec<FaultRule>,
    pub started_us: i64,
    /// For the `at` of recorded requests.
    pub started: Instant,
    /// Seconds of simulated time `step` has advanced.
    pub sim_time: f64,
    next_printer_number: u64,
    next_camera_id: i64,
    next_request_seq: u64,
}

impl World {
    pub fn new(token: Option<String>) -> World {
        World {
            printers: Vec::new(),
            ctx: Ctx::new(),
            cameras: Vec::new(),
            requests: VecDeque::new(),
            token,
            faults: Vec::new(),
            started_us: real_now_us(),
            started: Instant::now(),
            sim_time: 0.0,
            next_printer_number: 1,
            next_camera_id: FIRST_CAMERA_ID,
            next_request_seq: 0,
        }
    }

    pub fn printer(&self, uuid: &str) -> Option<&Printer> {
        self.printers.iter().find(|p| p.uuid == uuid)
    }

    pub fn printer_mut(&mut self, uuid: &str) -> Option<&mut Printer> {
        self.printers.iter_mut().find(|p| p.uuid == uuid)
    }

    /// The printer and the context its transitions need, borrowed together.
    pub fn printer_ctx(&mut self, uuid: &str) -> Option<(&mut Printer, &mut Ctx)> {
        let World { printers, ctx, .. } = self;
        let printer = printers.iter_mut().find(|p| p.uuid == uuid)?;
        Some((printer, ctx))
    }

    /// Adds a printer (manual when `pilot` is `None`) and returns its uuid. The very first
    /// printer gets a camera.
    pub fn add_printer(
        &mut self,
        spec: PrinterSpec,
        pilot: Option<Autopilot>,
    ) -> Result<String, String> {
        let mut number = self.next_printer_number;
        let uuid = match spec.uuid.clone() {
            Some(uuid) if self.printer(&uuid).is_some() => {
                return Err(format!("a printer with uuid {uuid} already exists"));
            }
            Some(uuid) if uuid.trim().is_empty() => return Err("empty uuid".to_string()),
            Some(uuid) => uuid,
            None => loop {
                let uuid = format!("00000000-0000-4000-8000-{number:012}");
                if self.printer(&uuid).is_none() {
                    break uuid;
                }
                number += 1;
            },
        };
        self.next_printer_number = number + 1;
        let now = self.ctx.clock.tick();
        let mut printer = Printer::new(number, uuid.clone(), spec, now);
        printer.pilot = pilot;
        let first = number == 1;
        self.printers.push(printer);
        if first {
            self.add_camera(&uuid);
        }
        Ok(uuid)
    }

    pub fn remove_printer(&mut self, uuid: &str) -> bool {
        let before = self.printers.len();
        self.printers.retain(|p| p.uuid != uuid);
        self.cameras.retain(|c| c.printer_uuid != uuid);
        self.printers.len() != before
    }

    pub fn add_camera(&mut self, uuid: &str) -> Option<i64> {
        self.printer(uuid)?;
        let id = bump(&mut self.next_camera_id);
        let name = if self.cameras.iter().any(|c| c.printer_uuid == uuid) {
            format!("Camera {id}")
        } else {
            "Buddy3D Camera".to_string()
        };
        self.cameras.push(Camera {
            id,
            printer_uuid: uuid.to_string(),
            name,
            min_bytes: 0,
        });
        Some(id)
    }

    /// The fault for a request to `path` under `/app/`, counting down the rule that gives it.
    pub fn take_fault(&mut self, path: &str) -> Option<Fault> {
        let fault = self
            .faults
            .iter_mut()
            .find_map(|r| r.hit(path).then(|| r.fault.clone()))?;
        self.faults.retain(|r| r.remaining != Some(0));
        Some(fault)
    }

    /// Records a request; returns its `seq` for [`World::answered`].
    pub fn record(&mut self, mut request: RecordedRequest) -> u64 {
        self.next_request_seq += 1;
        request.seq = self.next_request_seq;
        let seq = request.seq;
        self.requests.push_back(request);
        while self.requests.len() > MAX_RECORDED_REQUESTS {
            self.requests.pop_front();
        }
        seq
    }

    /// Notes how a recorded request was answered.
    pub fn answered(&mut self, seq: u64, status: u16, took: Duration) {
        if let Some(r) = self.requests.iter_mut().rev().find(|r| r.seq == seq) {
            r.status = Some(status);
            r.took = Some(took);
        }
    }

    /// Advances simulated time: printers with an autopilot run their script, every printer's
    /// heaters and chamber follow their targets.
    pub fn step(&mut self, dt: f64) {
        if !dt.is_finite() || dt <= 0.0 {
            return;
        }
        self.sim_time += dt;
        let now = self.sim_time;
        let World { printers, ctx, .. } = self;
        for printer in printers.iter_mut() {
            if let Some(mut pilot) = printer.pilot.take() {
                pilot.step(printer, ctx, now, dt);
                printer.pilot = Some(pilot);
            }
            printer.advance(dt);
        }
    }
}
