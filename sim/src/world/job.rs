//! Jobs: what a printer printed and has queued, and the transitions that start and end them.

use serde_json::{Value, json};

use super::clock::real_now_us;
use super::context::{Cause, Ctx, Notice};
use super::printer::Printer;
use crate::files::FileInfo;

pub(crate) const MAX_JOBS_PER_PRINTER: usize = 1_000;

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

impl Printer {
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

    pub(super) fn end_active_job(&mut self, ctx: &mut Ctx, job_state: &str, cause: &Cause) {
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
        let id = ctx.planned_job_id();
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
