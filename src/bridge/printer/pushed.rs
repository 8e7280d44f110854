//! What Connect's live channel said of one printer, laid over the list's view of it.

use std::collections::BTreeMap;

use serde_json::Value;

use tokio::time::Instant;

use crate::connect::model::{DialogInfo, JobInfo, JobState, Printer, PrinterState};

/// Jobs whose values are kept per printer.
const JOBS_KEPT: usize = 4;

/// One job's values on the channel (`jobs/<id>/data/...`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PushedJob {
    pub progress: Option<f64>,
    pub state: Option<JobState>,
    pub time_remaining: Option<f64>,
}

/// What the channel said of one printer, as far as the gateway shows it. Topics it does not
/// know, and values it cannot read, are left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pushed {
    pub state: Option<PrinterState>,
    pub online: Option<bool>,
    /// `data/current-job`; 0 (no job) is kept as 0.
    pub current_job: Option<i64>,
    pub progress: Option<f64>,
    pub material: Option<String>,
    pub axis_z: Option<f64>,
    pub nozzle: Option<f64>,
    pub nozzle_target: Option<f64>,
    pub bed: Option<f64>,
    pub bed_target: Option<f64>,
    pub chamber: Option<f64>,
    /// `None`: not said; `Some(None)`: no dialog shown.
    pub dialog: Option<Option<DialogInfo>>,
    pub jobs: BTreeMap<i64, PushedJob>,
    /// When each value came (by topic; `jobs/<id>` for a job's).
    pub received: BTreeMap<String, Instant>,
    /// When the list the printer was last seen in was requested: a value that came before
    /// that is in the list already (or was undone since), one that came after is newer than
    /// the list, however long the list took to arrive.
    pub list_requested: Option<Instant>,
    /// When the printer was last looked at for the channel.
    pub looked_at: Option<Instant>,
    /// Since when values changed that were not looked at yet.
    pub changed_since: Option<Instant>,
}

/// Why a value was not taken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{topic}: {why}")]
pub struct BadValue {
    pub topic: String,
    pub why: String,
}

impl Pushed {
    /// Takes one value; `Ok(true)` when it changed what is known.
    pub fn apply(&mut self, topic: &str, payload: &[u8], now: Instant) -> Result<bool, BadValue> {
        let text = std::str::from_utf8(payload)
            .map_err(|_| bad(topic, "not UTF-8"))?
            .trim();
        if let Some(rest) = topic.strip_prefix("jobs/") {
            return self.apply_job(topic, rest, text, now);
        }
        let changed = match topic {
            "data/state" => set(&mut self.state, PrinterState::parse(&word(topic, text)?)),
            "data/online" => set(
                &mut self.online,
                match text {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => return Err(bad(topic, "not 1 or 0")),
                },
            ),
            "data/current-job" => set(&mut self.current_job, int(topic, text)?),
            "data/job-progress" => set(&mut self.progress, number(topic, text)?),
            "data/material" => set(&mut self.material, word(topic, text)?),
            "data/axis-z" => set(&mut self.axis_z, number(topic, text)?),
            "data/temp/nozzle/current" => set(&mut self.nozzle, number(topic, text)?),
            "data/temp/nozzle/target" => set(&mut self.nozzle_target, number(topic, text)?),
            "data/temp/heatbed/current" => set(&mut self.bed, number(topic, text)?),
            "data/temp/heatbed/target" => set(&mut self.bed_target, number(topic, text)?),
            "data/temp/chamber/current" => set(&mut self.chamber, number(topic, text)?),
            "dialog" => set(&mut self.dialog, dialog(topic, text)?),
            // Per-tool values (the XL) and whatever else the channel carries: not shown.
            _ => return Ok(false),
        };
        self.received_now(topic, now);
        Ok(changed)
    }

    /// A job's value (`jobs/<id>/data/<value>`, `rest` after `jobs/`).
    fn apply_job(
        &mut self,
        topic: &str,
        rest: &str,
        text: &str,
        now: Instant,
    ) -> Result<bool, BadValue> {
        let mut parts = rest.split('/');
        let (Some(id), Some("data"), Some(value), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Ok(false);
        };
        let id = int(topic, id)?;
        let progress = (value == "progress")
            .then(|| number(topic, text))
            .transpose()?;
        let state = (value == "state").then(|| word(topic, text)).transpose()?;
        let remaining = (value == "time-remaining")
            .then(|| number(topic, text))
            .transpose()?;
        let mut changed = !self.jobs.contains_key(&id);
        let job = self.jobs.entry(id).or_default();
        if let Some(p) = progress {
            changed |= set(&mut job.progress, p);
        }
        if let Some(s) = state {
            changed |= set(&mut job.state, JobState::parse(&s));
        }
        if let Some(t) = remaining {
            changed |= set(&mut job.time_remaining, t);
        }
        self.received_now(&format!("jobs/{id}"), now);
        // Old jobs stay retained on the broker: keep only the latest few.
        while let Some((old, _)) = self.jobs.first_key_value()
            && self.jobs.len() > JOBS_KEPT
        {
            let old = *old;
            self.jobs.remove(&old);
            self.received.remove(&format!("jobs/{old}"));
            changed = true;
        }
        Ok(changed)
    }

    /// Value `key` came at `now` (no new key for a value that came before).
    fn received_now(&mut self, key: &str, now: Instant) {
        match self.received.get_mut(key) {
            Some(at) => *at = now,
            None => {
                self.received.insert(key.to_string(), now);
            }
        }
    }

    /// The values that came since the last list was requested: those that win over it.
    fn fresh(&self) -> Pushed {
        let fresh = |key: &str| {
            self.received
                .get(key)
                .is_some_and(|t| self.list_requested.is_none_or(|asked| *t >= asked))
        };
        Pushed {
            state: self.state.clone().filter(|_| fresh("data/state")),
            online: self.online.filter(|_| fresh("data/online")),
            current_job: self.current_job.filter(|_| fresh("data/current-job")),
            progress: self.progress.filter(|_| fresh("data/job-progress")),
            material: self.material.clone().filter(|_| fresh("data/material")),
            axis_z: self.axis_z.filter(|_| fresh("data/axis-z")),
            nozzle: self.nozzle.filter(|_| fresh("data/temp/nozzle/current")),
            nozzle_target: self
                .nozzle_target
                .filter(|_| fresh("data/temp/nozzle/target")),
            bed: self.bed.filter(|_| fresh("data/temp/heatbed/current")),
            bed_target: self
                .bed_target
                .filter(|_| fresh("data/temp/heatbed/target")),
            chamber: self.chamber.filter(|_| fresh("data/temp/chamber/current")),
            dialog: self.dialog.clone().filter(|_| fresh("dialog")),
            jobs: self
                .jobs
                .iter()
                .filter(|(id, _)| fresh(&format!("jobs/{id}")))
                .map(|(id, j)| (*id, j.clone()))
                .collect(),
            received: BTreeMap::new(),
            list_requested: None,
            looked_at: None,
            changed_since: None,
        }
    }

    /// The printer with the values that came since the last list was requested laid over
    /// it: a value the channel stopped updating never hides what a later list shows.
    pub fn overlay(&self, p: Printer) -> Printer {
        self.fresh().lay_over(p)
    }

    fn lay_over(&self, mut p: Printer) -> Printer {
        if let Some(state) = &self.state {
            p.printer_state = Some(state.clone());
        }
        match self.online {
            Some(false) => p.connect_state = Some(PrinterState::Offline),
            Some(true) if p.connect_state == Some(PrinterState::Offline) => {
                p.connect_state = p.printer_state.clone();
            }
            _ => {}
        }
        let temps = [
            self.nozzle,
            self.nozzle_target,
            self.bed,
            self.bed_target,
            self.chamber,
        ];
        if temps.iter().any(Option::is_some) {
            let t = p.temp.get_or_insert_with(Default::default);
            let fields = [
                &mut t.temp_nozzle,
                &mut t.target_nozzle,
                &mut t.temp_bed,
                &mut t.target_bed,
                &mut t.temp_chamber,
            ];
            for (field, value) in fields.into_iter().zip(temps) {
                if value.is_some() {
                    *field = value;
                }
            }
        }
        if let Some(z) = self.axis_z {
            p.axis_z = Some(z);
        }
        if let Some(m) = &self.material {
            p.filament.get_or_insert_with(Default::default).material = Some(m.clone());
        }
        if let Some(dialog) = &self.dialog {
            p.dialog_info = dialog.clone();
        }
        self.overlay_job(&mut p);
        p
    }

    /// The current job's values. A job the list does not show yet is taken only while the
    /// printer is busy with it: after a job ends the channel may go on naming it.
    fn overlay_job(&self, p: &mut Printer) {
        let listed_id = p.job_info.as_ref().and_then(|j| j.id);
        // Until the channel names the current job, its values are the listed job's.
        let Some(id) = self.current_job.or(listed_id).filter(|&id| id > 0) else {
            return;
        };
        let listed = listed_id == Some(id);
        if !listed && !p.effective_state().is_active() {
            return;
        }
        if !listed {
            p.job_info = Some(JobInfo {
                id: Some(id),
                ..Default::default()
            });
        }
        let Some(job) = p.job_info.as_mut() else {
            return;
        };
        let values = self.jobs.get(&id);
        if let Some(progress) = values.and_then(|j| j.progress).or(self.progress) {
            job.progress = Some(progress);
        }
        if let Some(state) = values.and_then(|j| j.state.clone()) {
            job.state = Some(state);
        }
        if let Some(t) = values.and_then(|j| j.time_remaining) {
            job.time_remaining = Some(t);
        }
    }
}

/// Sets `field` to `value`; whether that changed it.
fn set<T: PartialEq>(field: &mut Option<T>, value: T) -> bool {
    let changed = field.as_ref() != Some(&value);
    *field = Some(value);
    changed
}

fn bad(topic: &str, why: &str) -> BadValue {
    BadValue {
        topic: topic.to_string(),
        why: why.to_string(),
    }
}

fn number(topic: &str, text: &str) -> Result<f64, BadValue> {
    text.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .ok_or_else(|| bad(topic, "not a number"))
}

fn int(topic: &str, text: &str) -> Result<i64, BadValue> {
    text.parse::<i64>()
        .map_err(|_| bad(topic, "not a whole number"))
}

fn word(topic: &str, text: &str) -> Result<String, BadValue> {
    if text.is_empty() || text.len() > 64 {
        return Err(bad(topic, "empty or too long"));
    }
    Ok(text.to_string())
}

fn dialog(topic: &str, text: &str) -> Result<Option<DialogInfo>, BadValue> {
    if text.is_empty() || text == "null" {
        return Ok(None);
    }
    let value: Value = serde_json::from_str(text).map_err(|e| bad(topic, &e.to_string()))?;
    match value {
        Value::Object(ref o) if o.is_empty() => Ok(None),
        Value::Object(_) => serde_json::from_value(value)
            .map(Some)
            .map_err(|e| bad(topic, &e.to_string())),
        _ => Err(bad(topic, "not a JSON object")),
    }
}
