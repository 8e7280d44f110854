//! A simulated Prusa Connect: a real HTTP server with an in-memory world of printers.
//!
//! prusa-connect-mqtt's tests, `demo` and `simulate` talk to it over TCP exactly as they would talk
//! to `connect.prusa3d.com`. Tests script it synchronously through [`Simulator`]; the `demo`
//! and `simulate` commands let scenario printers run by themselves through [`Simulator::step`]
//! (usually from [`run_ticker`]). Other processes (curl, Node-RED) can script it over HTTP
//! under `/_sim/` (see `admin.rs`).
//!
//! Layout: `world.rs` holds the state and every state transition (the only place that appends
//! feed events); `controls.rs` what commands change besides the state (heaters, filament,
//! chamber, dialog answers); `files.rs` a printer's files and their preview hashes;
//! `render.rs` turns it into Connect's JSON; `commands.rs` is `commands/sync` and
//! `commands/table.rs` the `supported-commands` table; `scenario.rs` drives the demo and farm
//! printers; `http.rs` and `admin.rs` are the HTTP edges; `live.rs` is the live channel (MQTT
//! over a websocket at `/mqtt`); `jpeg.rs` draws camera snapshots and file previews. `account/` is the
//! simulated Prusa Account (OAuth2 login and tokens), served by the same HTTP server so that
//! the gateway's `auth_url` can point at the simulator too.

mod account;
mod admin;
mod commands;
mod controls;
mod error;
mod files;
mod http;
mod jpeg;
mod live;
mod render;
mod scenario;
mod world;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;

use world::{Cause, NewJob, World, real_now_us};

pub use account::{
    AccountStats, CLIENT_ID, CODE_TTL, DEFAULT_ACCESS_TTL, REDIRECT_URI, REFRESH_TTL,
    STATIC_TOKEN_ACCOUNT_ID,
};
pub use http::REASON_TAGS;
pub use live::LiveStats;

/// Options for [`Simulator::new`].
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// `None`: any non-empty bearer token is accepted. `Some(t)`: only `t`.
    pub token: Option<String>,
    pub scenario: Scenario,
}

/// The printers a simulator starts with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Scenario {
    /// No printers; tests add their own with [`Simulator::add_printer`].
    #[default]
    Empty,
    /// "Busy MK4", "Core One" and "MINI" running a scripted day (one fails, one gets paused).
    Demo,
    /// `printers` printers named "Farm 001".., idling and printing in turn.
    Farm { printers: usize },
}

/// What a new printer looks like. `PrinterSpec::named("X")` gives an MK4 called X.
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterSpec {
    pub name: String,
    /// Connect's `printer_model`, e.g. "MK4IS".
    pub model: String,
    /// Connect's `printer_type`, e.g. "7.1.0".
    pub printer_type: String,
    pub printer_type_name: String,
    pub firmware: String,
    /// Empty: a serial number is made up from the printer's number.
    pub sn: String,
    /// `None`: the next deterministic uuid "00000000-0000-4000-8000-00000000000N".
    pub uuid: Option<String>,
}

impl Default for PrinterSpec {
    fn default() -> Self {
        PrinterSpec::named("Printer")
    }
}

impl PrinterSpec {
    /// An Original Prusa MK4 (input shaper) with the given name.
    pub fn named(name: &str) -> PrinterSpec {
        PrinterSpec {
            name: name.to_string(),
            model: "MK4IS".to_string(),
            printer_type: "7.1.0".to_string(),
            printer_type_name: "Original Prusa MK4".to_string(),
            firmware: "6.2.6+8948".to_string(),
            sn: String::new(),
            uuid: None,
        }
    }

    /// An Original Prusa MINI+ with the given name.
    pub fn mini(name: &str) -> PrinterSpec {
        PrinterSpec {
            model: "MINI".to_string(),
            printer_type: "2.1.0".to_string(),
            printer_type_name: "Original Prusa MINI+".to_string(),
            firmware: "6.2.6+8948".to_string(),
            ..PrinterSpec::named(name)
        }
    }

    /// A Prusa CORE One with the given name.
    pub fn core_one(name: &str) -> PrinterSpec {
        PrinterSpec {
            model: "COREONE".to_string(),
            printer_type: "7.2.0".to_string(),
            printer_type_name: "Prusa CORE One".to_string(),
            firmware: "6.3.2+9839".to_string(),
            ..PrinterSpec::named(name)
        }
    }

    /// An Original Prusa XL with the given name.
    pub fn xl(name: &str) -> PrinterSpec {
        PrinterSpec {
            model: "XL".to_string(),
            printer_type: "3.1.0".to_string(),
            printer_type_name: "Original Prusa XL".to_string(),
            firmware: "6.2.6+8948".to_string(),
            ..PrinterSpec::named(name)
        }
    }
}

/// A misbehaviour of the server. Connect's faults are set with [`Simulator::set_fault`] (every
/// `/app/` request) or [`Simulator::add_fault`] (some of them, see [`FaultRule`]); the account
/// server has its own switch, [`Simulator::set_account_fault`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and a JSON error body; the request has no effect.
    Status(u16),
    /// Answer 429 with `Retry-After`; the request has no effect.
    TooManyRequests { retry_after_s: u64 },
    /// Sleep this long, then answer normally (a client with a shorter timeout gives up first).
    Delay(Duration),
    /// Answer 200 with `{"printers": [oops`; the request has no effect.
    MalformedJson,
    /// Answer normally but with only the first half of the body.
    TruncatedJson,
    /// Close the connection without answering: not even a status line is sent, so the client
    /// sees a transport error ("connection closed before message completed"). The request
    /// has no effect.
    ConnectionReset,
}

impl Fault {
    /// The fault as `/_sim/fault` takes it, e.g. `{"kind": "status", "status": 503}`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Fault::Status(status) => json!({ "kind": "status", "status": status }),
            Fault::TooManyRequests { retry_after_s } => {
                json!({ "kind": "too_many_requests", "retry_after_s": retry_after_s })
            }
            Fault::Delay(d) => {
                json!({ "kind": "delay", "ms": u64::try_from(d.as_millis()).unwrap_or(u64::MAX) })
            }
            Fault::MalformedJson => json!({ "kind": "malformed_json" }),
            Fault::TruncatedJson => json!({ "kind": "truncated_json" }),
            Fault::ConnectionReset => json!({ "kind": "connection_reset" }),
        }
    }
}

/// Which `/app/` requests a [`FaultRule`] hits, by path (the query string is not looked at).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PathFilter {
    /// Every `/app/` request.
    #[default]
    Any,
    /// Only this exact path, e.g. `/app/printers` (the fleet list, not a printer's pages).
    Exactly(String),
    /// Paths containing this text, e.g. `/events` (every printer's feed).
    Containing(String),
}

impl PathFilter {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathFilter::Any => true,
            PathFilter::Exactly(p) => path == p,
            PathFilter::Containing(part) => path.contains(part.as_str()),
        }
    }
}

/// A fault for some of Connect's requests: "the next 3 list requests", "every feed request".
/// `FaultRule::new(Fault::Status(503)).on_path("/app/printers").times(3)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    pub fault: Fault,
    pub paths: PathFilter,
    /// How many more requests it hits; `None`: until it is cleared. A rule that reaches 0 is
    /// dropped.
    pub remaining: Option<u32>,
}

impl FaultRule {
    /// Every `/app/` request, until cleared.
    pub fn new(fault: Fault) -> FaultRule {
        FaultRule {
            fault,
            paths: PathFilter::Any,
            remaining: None,
        }
    }

    /// Only requests for exactly `path` (e.g. `/app/printers`).
    pub fn on_path(mut self, path: &str) -> FaultRule {
        self.paths = PathFilter::Exactly(path.to_string());
        self
    }

    /// Only requests whose path contains `part` (e.g. `/events`).
    pub fn on_paths_containing(mut self, part: &str) -> FaultRule {
        self.paths = PathFilter::Containing(part.to_string());
        self
    }

    /// Only the next `n` matching requests.
    pub fn times(mut self, n: u32) -> FaultRule {
        self.remaining = Some(n);
        self
    }

    /// Whether it hits a request for `path`; counts the hit down when it does.
    pub(crate) fn hit(&mut self, path: &str) -> bool {
        if self.remaining == Some(0) || !self.paths.matches(path) {
            return false;
        }
        if let Some(n) = &mut self.remaining {
            *n -= 1;
        }
        true
    }
}

/// One HTTP request the simulator received (admin requests under `/_sim/` excluded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?`; empty when there is none.
    pub query: String,
    pub authorization: Option<String>,
    /// The body as text (invalid UTF-8 replaced).
    pub body: String,
    /// When it arrived, since the simulator was created (JSON: seconds as a float), so tests
    /// can measure a client's backoff.
    #[serde(serialize_with = "as_secs")]
    pub at: Duration,
    /// The Connect fault it was answered with, if any (the account server's are not shown).
    #[serde(serialize_with = "fault_json")]
    pub fault: Option<Fault>,
    /// The status it was answered with (`None` while it is being handled).
    pub status: Option<u16>,
    /// How long the simulator took to answer it, from the moment it was read (JSON: seconds).
    #[serde(serialize_with = "opt_secs")]
    pub took: Option<Duration>,
    /// Numbers requests in arrival order.
    pub seq: u64,
}

fn opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    d.map(|d| d.as_secs_f64()).serialize(s)
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn fault_json<S: serde::Serializer>(f: &Option<Fault>, s: S) -> Result<S::Ok, S::Error> {
    f.as_ref().map(Fault::to_json).serialize(s)
}

/// A cheap, cloneable handle to one simulated Connect.
#[derive(Clone)]
pub struct Simulator {
    world: Arc<Mutex<World>>,
    account: Arc<Mutex<account::Accounts>>,
    live: Arc<live::Hub>,
}

impl Simulator {
    pub fn new(opts: SimOptions) -> Simulator {
        let mut world = World::new(opts.token);
        scenario::populate(&mut world, opts.scenario);
        Simulator {
            world: Arc::new(Mutex::new(world)),
            account: Arc::default(),
            live: Arc::default(),
        }
    }

    /// Serve until `shutdown` resolves. The caller binds the listener (tests use 127.0.0.1:0).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "simulated Prusa Connect listening");
        }
        use axum::serve::ListenerExt;
        // Without TCP_NODELAY small answers wait for the peer's delayed ACK (~40 ms).
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, http::router(self))
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Locks the world. A panic elsewhere while it was locked leaves it usable: every
    /// transition keeps it consistent step by step, and a test double must not cascade panics.
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        self.world
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Locks the account server's state; poisoning is ignored as for [`Simulator::world`].
    pub(crate) fn account(&self) -> MutexGuard<'_, account::Accounts> {
        self.account
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // --- scripting (tests, demo). Calls naming an unknown uuid panic: that is a bug in the
    // --- test script, and failing at the call beats a test timing out later.

    /// Adds a manual printer (its state never moved by [`Simulator::step`]) and returns its
    /// uuid. Panics if `spec.uuid` is already taken.
    #[track_caller]
    pub fn add_printer(&self, spec: PrinterSpec) -> String {
        match self.world().add_printer(spec, None) {
            Ok(uuid) => uuid,
            Err(e) => panic!("simulator: {e}"),
        }
    }

    /// Removes a printer, its jobs, feed and cameras. Unknown uuids are ignored.
    pub fn remove_printer(&self, uuid: &str) {
        self.world().remove_printer(uuid);
    }

    /// The uuids of all printers, in the order they were added.
    pub fn printers(&self) -> Vec<String> {
        self.world()
            .printers
            .iter()
            .map(|p| p.uuid.clone())
            .collect()
    }

    /// The uuid of the first printer with this name.
    pub fn printer_uuid(&self, name: &str) -> Option<String> {
        let world = self.world();
        world
            .printers
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.uuid.clone())
    }

    /// The printer's `printer_state` (kept while it is offline).
    pub fn printer_state(&self, uuid: &str) -> Option<String> {
        self.world().printer(uuid).map(|p| p.state.clone())
    }

    /// Sets `printer_state` (e.g. "IDLE", "READY", "PAUSED"); a STATE_CHANGED event is appended
    /// when it changes. "OFFLINE" is taken as `set_online(uuid, false)`. A running job follows:
    /// PAUSED/PRINTING pause and resume it, FINISHED/STOPPED/ERROR end it (FIN_OK/FIN_STOPPED/
    /// FIN_ERROR), IDLE/READY abandon it (UNKNOWN) and clear `job_info`.
    #[track_caller]
    pub fn set_state(&self, uuid: &str, state: &str) {
        self.script(uuid, |p, ctx| {
            if state == "OFFLINE" {
                p.set_online(ctx, false);
            } else {
                p.set_state(ctx, state, &Cause::FIRMWARE);
            }
        })
    }

    /// Connects or disconnects the printer: offline, `connect_state` is "OFFLINE" and
    /// `printer_state` keeps its last value.
    #[track_caller]
    pub fn set_online(&self, uuid: &str, online: bool) {
        self.script(uuid, |p, ctx| p.set_online(ctx, online))
    }

    /// Starts a job (printer PRINTING, progress 0, `time_remaining` = `duration_s`) and returns
    /// its id. `file_name` may be a bare name (stored under `/usb/`) or a path.
    #[track_caller]
    pub fn start_job(&self, uuid: &str, file_name: &str, duration_s: u64, objects: &[&str]) -> i64 {
        self.script(uuid, |p, ctx| {
            let job = NewJob::new(file_name, duration_s as f64, objects);
            p.start_job(ctx, job, &Cause::FIRMWARE)
        })
    }

    /// A job that starts and ends (`job_state`) between two looks at the printer list: the
    /// printer is back in its state, showing the job it showed. Only the feed, the job list
    /// and the notifications tell. Returns the job's id.
    #[track_caller]
    pub fn quick_job(&self, uuid: &str, file_name: &str, job_state: &str) -> i64 {
        self.script(uuid, |p, ctx| {
            let job = NewJob::new(file_name, 20.0, &[]);
            p.quick_job(ctx, job, job_state)
        })
    }

    /// Connect's record of each job that ends from now on keeps saying PRINTING this long
    /// (its job list and `/jobs/{id}`), while the printer list shows it ended.
    #[track_caller]
    pub fn set_record_lag(&self, uuid: &str, lag: Duration) {
        self.script(uuid, |p, _| p.record_lag = lag)
    }

    /// Sets the current job's progress (clamped to 0..100); `time_printing` and
    /// `time_remaining` follow from the job's duration.
    #[track_caller]
    pub fn set_progress(&self, uuid: &str, progress: f64) {
        self.script(uuid, |p, _| p.set_progress(progress))
    }

    #[track_caller]
    pub fn pause(&self, uuid: &str) {
        self.script(uuid, |p, ctx| {
            p.set_state(ctx, "PAUSED", &Cause::FIRMWARE);
        })
    }

    #[track_caller]
    pub fn resume(&self, uuid: &str) {
        self.script(uuid, |p, ctx| {
            p.set_state(ctx, "PRINTING", &Cause::FIRMWARE);
        })
    }

    /// Ends the current job with `job_state` ("FIN_OK", "FIN_ERROR", "FIN_STOPPED") and moves
    /// the printer to FINISHED, ERROR or STOPPED. `job_info` keeps the ended job until the
    /// printer is set READY/IDLE or starts another job.
    #[track_caller]
    pub fn finish_job(&self, uuid: &str, job_state: &str) {
        self.script(uuid, |p, ctx| {
            p.finish_job(ctx, job_state, &Cause::FIRMWARE)
        })
    }

    /// `Some(dialog)`: the printer shows it and goes ATTENTION (missing `id`, `code`, `title`,
    /// `text`, `buttons`, `key` are filled in). `None`: the dialog goes and the printer returns
    /// to the state it had before.
    #[track_caller]
    pub fn set_dialog(&self, uuid: &str, dialog: Option<serde_json::Value>) {
        self.script(uuid, |p, ctx| p.set_dialog(ctx, dialog, &Cause::FIRMWARE))
    }

    /// Lays `value` over field `key` of the printer's JSON (`Null` removes the override):
    /// for serving shapes the client must survive, like a field of an unexpected type.
    #[track_caller]
    pub fn override_field(&self, uuid: &str, key: &str, value: serde_json::Value) {
        self.script(uuid, |p, _| {
            if value.is_null() {
                p.overrides.remove(key);
            } else {
                p.overrides.insert(key.to_string(), value);
            }
        })
    }

    /// Sets the measured nozzle and bed temperatures. On a manual printer they then stay as
    /// set, also where a command had set a heater's target.
    #[track_caller]
    pub fn set_temps(&self, uuid: &str, nozzle: f64, bed: f64) {
        self.script(uuid, |p, _| {
            p.temps.nozzle = nozzle;
            p.temps.bed = bed;
            p.heating = false;
        })
    }

    /// Sets the target nozzle and bed temperatures (the measured ones stay as they are, as for
    /// [`Simulator::set_temps`]).
    #[track_caller]
    pub fn set_target_temps(&self, uuid: &str, nozzle: f64, bed: f64) {
        self.script(uuid, |p, _| {
            p.temps.target_nozzle = nozzle;
            p.temps.target_bed = bed;
            p.heating = false;
        })
    }

    /// The buttons pressed with DIALOG_ACTION, oldest first: (dialog id, the button as the
    /// dialog spells it). Empty for an unknown printer.
    pub fn dialog_answers(&self, uuid: &str) -> Vec<(i64, String)> {
        self.try_script(uuid, |p, _| p.dialog_answers.clone())
            .unwrap_or_default()
    }

    /// Stores a file on the printer (a bare name goes under `/usb/`) and returns its path, as
    /// `/files` and START_PRINT know it. A path already stored is left as it is.
    #[track_caller]
    pub fn add_file(&self, uuid: &str, path: &str) -> String {
        self.script(uuid, |p, ctx| {
            let m_time = ctx.clock.now_us().div_euclid(1_000_000);
            p.add_file(path, m_time)
        })
    }

    /// Deletes a file from the printer (a bare name: under `/usb/`); `false` when it had none.
    /// Jobs that printed it keep their file and its preview.
    #[track_caller]
    pub fn remove_file(&self, uuid: &str, path: &str) -> bool {
        self.script(uuid, |p, _| p.remove_file(path))
    }

    /// Appends a raw event to the printer's feed. The keys of `extra` (an object) are added to
    /// the event and may override `source`, `state`, `job_id`...; any other JSON value becomes
    /// the event's `data`.
    #[track_caller]
    pub fn push_event(&self, uuid: &str, event: &str, extra: serde_json::Value) {
        self.script(uuid, |p, ctx| p.push_event(ctx, event, extra))
    }

    /// Starts the first job of the printer's queue (as the printer does once it is ready) and
    /// returns the new job's id; `None` when the queue is empty.
    #[track_caller]
    pub fn start_next_queued(&self, uuid: &str, duration_s: u64) -> Option<i64> {
        self.script(uuid, |p, ctx| {
            if p.queue.is_empty() {
                return None;
            }
            let planned = p.queue.remove(0);
            let job = NewJob::new(&planned.file.name, duration_s as f64, &[]);
            Some(p.start_job(ctx, job, &Cause::CONNECT))
        })
    }

    /// The ids of the printer's cameras, in the order they were attached.
    pub fn camera_ids(&self, uuid: &str) -> Vec<i64> {
        let world = self.world();
        world
            .cameras
            .iter()
            .filter(|c| c.printer_uuid == uuid)
            .map(|c| c.id)
            .collect()
    }

    /// Makes every snapshot of `camera_id` at least `bytes` long (padding in JPEG comment
    /// segments, so it stays a valid picture that changes as before), like the large pictures
    /// of a real 1080p camera. 0 turns it off.
    pub fn set_snapshot_size(&self, camera_id: i64, bytes: usize) {
        if let Some(c) = self.world().cameras.iter_mut().find(|c| c.id == camera_id) {
            c.min_bytes = bytes;
        }
    }

    /// Adds a planned job to the printer's queue and returns its id.
    #[track_caller]
    pub fn queue_job(&self, uuid: &str, path: &str) -> i64 {
        self.script(uuid, |p, ctx| p.queue_job(ctx, path, false, None))
    }

    /// Attaches a (new) camera to the printer and returns its id. The first printer added to
    /// a simulator gets one by itself.
    #[track_caller]
    pub fn add_camera(&self, uuid: &str) -> i64 {
        match self.world().add_camera(uuid) {
            Some(id) => id,
            None => panic!("simulator: no printer with uuid {uuid}"),
        }
    }

    /// Every request received so far (last 100,000), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.world().requests.iter().cloned().collect()
    }

    pub fn clear_requests(&self) {
        self.world().requests.clear();
    }

    /// `None`: any non-empty bearer token is accepted. `Some(t)`: only `t`.
    pub fn set_token(&self, token: Option<&str>) {
        self.world().token = token.map(str::to_string);
    }

    /// `Some(fault)`: every `/app/` request gets it until further notice. `None`: Connect
    /// behaves again. Either way rules added with [`Simulator::add_fault`] are dropped.
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.world().faults = fault.map(FaultRule::new).into_iter().collect();
    }

    /// Adds a fault for some requests. Rules are tried in the order they were added and the
    /// first one that matches a request answers it, so `add_fault(503 on /app/printers,
    /// 3 times)` then `add_fault(500 on /app/printers, 2 times)` fails five list requests.
    pub fn add_fault(&self, rule: FaultRule) {
        self.world().faults.push(rule);
    }

    /// The fault rules still in force (counted-down rules that ran out are gone).
    pub fn faults(&self) -> Vec<FaultRule> {
        self.world().faults.clone()
    }

    /// `true`: the printer is left out of `GET /app/printers`, as when Connect's list
    /// glitches; it still exists and its own endpoints still answer. `false`: listed again.
    #[track_caller]
    pub fn hide_printer(&self, uuid: &str, hidden: bool) {
        self.script(uuid, |p, _| p.hidden = hidden)
    }

    /// Shifts Connect's clock by `seconds` (negative: backwards) from the real time, as when
    /// the server's clock jumps: events created from now on carry `created` (and
    /// `server_time`) shifted, and the feed's `pager.from`/`pager.to` follow. Earlier events
    /// keep their times, so after a backwards jump `created` is no longer in the order events
    /// happened. `0.0` puts the clock right again (itself a jump when it was off).
    pub fn set_clock_offset(&self, seconds: f64) {
        let us = if seconds.is_finite() {
            (seconds * 1e6).round() as i64
        } else {
            0
        };
        self.world().ctx.clock.set_offset(us);
    }

    /// The count `GET /app/notifications/unseen` answers (each new notification adds one).
    pub fn set_unseen(&self, n: u64) {
        self.world().ctx.unseen = n;
    }

    /// Adds an account notification (a job's end and a dialog make their own) and returns its
    /// id; `printer`: the uuid of the printer it is about.
    pub fn add_notification(&self, printer: Option<&str>, severity: &str, text: &str) -> i64 {
        let mut world = self.world();
        let printer_name = printer
            .and_then(|u| world.printer(u))
            .map(|p| p.name.clone());
        world.ctx.notify(world::Notice {
            id: 0,
            created_us: 0,
            category: "PRINTER".into(),
            name: "MESSAGE".into(),
            severity: severity.into(),
            text: text.into(),
            printer_uuid: printer.map(str::to_string),
            printer_name,
            job: None,
        })
    }

    /// The ids of the account's notifications, oldest first.
    pub fn notification_ids(&self) -> Vec<i64> {
        self.world()
            .ctx
            .notifications
            .iter()
            .map(|n| n.id)
            .collect()
    }

    // --- the account server (`/o/authorize/`, `/o/token/`, `/login/`, `/login/2fa/`)

    /// Adds a user who can log in with `email` (case-insensitive) and `password`. With
    /// `totp`, the login asks for a second factor and `totp` is the one code it accepts.
    /// Adding a known email again replaces its password and code and keeps its tokens.
    pub fn add_user(&self, email: &str, password: &str, totp: Option<&str>) {
        self.account().add_user(email, password, totp);
    }

    /// A new refresh token for the user, as if they had logged in in a browser. Panics on an
    /// unknown email.
    #[track_caller]
    pub fn issue_refresh_token(&self, email: &str) -> String {
        match self.account().issue_refresh_token(email, real_now_us()) {
            Some(token) => token,
            None => panic!("simulator: no user with email {email}"),
        }
    }

    /// Whether `token` would be accepted by `/o/token/` now (issued, not yet used or revoked,
    /// not expired).
    pub fn is_refresh_token_valid(&self, token: &str) -> bool {
        self.account().is_refresh_token_valid(token, real_now_us())
    }

    /// The lifetime of access tokens issued from now on ([`DEFAULT_ACCESS_TTL`] at first).
    pub fn set_access_ttl(&self, ttl: Duration) {
        self.account().access_ttl = ttl;
    }

    /// Revokes every refresh token, as "log out everywhere" does. Access tokens already
    /// issued stay valid until they expire: Connect checks their signature, not the account
    /// server.
    pub fn revoke_refresh_tokens(&self) {
        self.account().revoke_refresh_tokens();
    }

    /// Makes every access token issued so far expired now (their `exp` claims then lie).
    pub fn expire_access_tokens(&self) {
        self.account().expire_access_tokens(real_now_us());
    }

    /// A misbehaviour for every request under `/o/` and `/login/` (Connect's `/app/` is not
    /// affected). Error statuses come with HTML pages, as from the account server's proxy.
    pub fn set_account_fault(&self, fault: Option<Fault>) {
        self.account().fault = fault;
    }

    /// How long `/o/token/` waits before handling each request, so that tests can see
    /// whether a client ever has two token requests in progress at once.
    pub fn set_token_endpoint_delay(&self, delay: Duration) {
        self.account().token_delay = delay;
    }

    /// What the account server has seen so far.
    pub fn account_stats(&self) -> AccountStats {
        self.account().stats.clone()
    }

    // --- the live channel (`/mqtt`, see `live.rs`)

    /// Off: websocket upgrades are refused (503) and every session is dropped. On at start.
    pub fn set_live_enabled(&self, enabled: bool) {
        self.live.set_enabled(enabled);
    }

    /// On: every CONNECT is refused as a bad username or password (a user's wrong account).
    pub fn set_live_refuse_all(&self, refuse: bool) {
        self.live.set_refuse_all(refuse);
    }

    /// How often sessions send what changed (the printers' telemetry cadence; 1 s at start).
    /// Sessions started later use it.
    pub fn set_live_period(&self, period: Duration) {
        self.live.set_period(period);
    }

    /// Ends every live session (the clients may connect again).
    pub fn drop_live_connections(&self) {
        self.live.drop_all();
    }

    pub fn live_stats(&self) -> LiveStats {
        self.live.stats()
    }

    /// The printers some live session is subscribed to, with how many sessions are.
    pub fn live_subscriptions(&self) -> std::collections::BTreeMap<String, usize> {
        self.live.subscriptions()
    }

    /// Live sessions past their CONNECT.
    pub fn live_sessions(&self) -> usize {
        self.live.sessions()
    }

    /// Advances simulated time by `dt`: scenario printers run their script. Of the printers
    /// added with [`Simulator::add_printer`] only what commands started moves (heaters
    /// toward the targets SET_NOZZLE_TEMPERATURE and SET_HEATBED_TEMPERATURE set) and the
    /// chamber of a CORE One (warmer while printing).
    pub fn step(&self, dt: Duration) {
        self.world().step(dt.as_secs_f64());
    }

    /// Runs `f` on the printer, or gives `None` when there is no such printer.
    pub(crate) fn try_script<T>(
        &self,
        uuid: &str,
        f: impl FnOnce(&mut world::Printer, &mut world::Ctx) -> T,
    ) -> Option<T> {
        let mut world = self.world();
        let (printer, ctx) = world.printer_ctx(uuid)?;
        Some(f(printer, ctx))
    }

    #[track_caller]
    fn script<T>(
        &self,
        uuid: &str,
        f: impl FnOnce(&mut world::Printer, &mut world::Ctx) -> T,
    ) -> T {
        match self.try_script(uuid, f) {
            Some(value) => value,
            None => panic!("simulator: no printer with uuid {uuid}"),
        }
    }
}

/// Calls `sim.step(dt)` every `dt` of real time until `shutdown` resolves.
pub async fn run_ticker(sim: Simulator, dt: Duration, shutdown: impl Future<Output = ()>) {
    // tokio's interval panics on a zero period.
    let period = dt.max(Duration::from_millis(1));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick completes at once; skip it so the world starts where `new` left it.
    ticker.tick().await;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticker.tick() => sim.step(dt),
        }
    }
}
