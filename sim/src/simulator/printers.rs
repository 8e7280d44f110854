//! Scripting printers: adding them, their state, jobs, dialogs, files, queue and cameras.
//! Calls naming an unknown uuid panic: that is a bug in the test script, and failing at the
//! call beats a test timing out later.

use std::time::Duration;

use super::Simulator;
use crate::options::PrinterSpec;
use crate::world::{Cause, NewJob};

impl Simulator {
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
}
