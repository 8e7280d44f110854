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
    /// When the last of them came.
    received: Option<Instant>,
}

/// The printer's own values (a job's are in its [`PushedJob`]), to tell when each came.
#[derive(Debug, Clone, Copy)]
enum Field {
    State,
    Online,
    CurrentJob,
    Progress,
    Material,
    AxisZ,
    Nozzle,
    NozzleTarget,
    Bed,
    BedTarget,
    Chamber,
    Dialog,
}

const FIELDS: usize = Field::Dialog as usize + 1;

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
    /// When each of the printer's values came, by [`Field`]: a value is found without a
    /// key to build or compare, for every value the channel says.
    received: [Option<Instant>; FIELDS],
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
        let (field, changed) = match topic {
            "data/state" => (
                Field::State,
                set(&mut self.state, PrinterState::parse(&word(topic, text)?)),
            ),
            "data/online" => (
                Field::Online,
                set(
                    &mut self.online,
                    match text {
                        "1" | "true" => true,
                        "0" | "false" => false,
                        _ => return Err(bad(topic, "not 1 or 0")),
                    },
                ),
            ),
            "data/current-job" => (
                Field::CurrentJob,
                set(&mut self.current_job, int(topic, text)?),
            ),
            "data/job-progress" => (
                Field::Progress,
                set(&mut self.progress, number(topic, text)?),
            ),
            "data/material" => (Field::Material, set(&mut self.material, word(topic, text)?)),
            "data/axis-z" => (Field::AxisZ, set(&mut self.axis_z, number(topic, text)?)),
            "data/temp/nozzle/current" => {
                (Field::Nozzle, set(&mut self.nozzle, number(topic, text)?))
            }
            "data/temp/nozzle/target" => (
                Field::NozzleTarget,
                set(&mut self.nozzle_target, number(topic, text)?),
            ),
            "data/temp/heatbed/current" => (Field::Bed, set(&mut self.bed, number(topic, text)?)),
            "data/temp/heatbed/target" => (
                Field::BedTarget,
                set(&mut self.bed_target, number(topic, text)?),
            ),
            "data/temp/chamber/current" => {
                (Field::Chamber, set(&mut self.chamber, number(topic, text)?))
            }
            "dialog" => (Field::Dialog, set(&mut self.dialog, dialog(topic, text)?)),
            // Per-tool values (the XL) and whatever else the channel carries: not shown.
            _ => return Ok(false),
        };
        self.received[field as usize] = Some(now);
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
        job.received = Some(now);
        // Old jobs stay retained on the broker: keep only the latest few.
        while self.jobs.len() > JOBS_KEPT {
            self.jobs.pop_first();
            changed = true;
        }
        Ok(changed)
    }

    /// What came so far is older than what the list shows from now on (a command Connect
    /// accepted): the values are kept, to tell a change, but laid over nothing.
    pub fn forget_received(&mut self) {
        self.received = [None; FIELDS];
        for job in self.jobs.values_mut() {
            job.received = None;
        }
    }

    /// Whether a value that came at `at` came since the last list was requested: such a
    /// value wins over the list.
    fn fresh_at(&self, at: Option<Instant>) -> bool {
        at.is_some_and(|t| self.list_requested.is_none_or(|asked| t >= asked))
    }

    /// `value`, when it came since the last list was requested.
    fn fresh<'a, T>(&self, value: &'a Option<T>, field: Field) -> Option<&'a T> {
        value
            .as_ref()
            .filter(|_| self.fresh_at(self.received[field as usize]))
    }

    /// The printer with the values that came since the last list was requested laid over
    /// it: a value the channel stopped updating never hides what a later list shows.
    pub fn overlay(&self, mut p: Printer) -> Printer {
        self.lay_over(&mut p);
        p
    }

    /// Lays the values that came since the last list was requested over `p` (see
    /// [`Pushed::overlay`]); whether that changed it.
    pub fn lay_over(&self, p: &mut Printer) -> bool {
        let mut changed = false;
        if let Some(state) = self.fresh(&self.state, Field::State) {
            changed |= put(&mut p.printer_state, state);
        }
        match self.fresh(&self.online, Field::Online) {
            Some(false) => changed |= put(&mut p.connect_state, &PrinterState::Offline),
            Some(true) if p.connect_state == Some(PrinterState::Offline) => {
                p.connect_state = p.printer_state.clone();
                changed |= p.connect_state != Some(PrinterState::Offline);
            }
            _ => {}
        }
        let temps = [
            self.fresh(&self.nozzle, Field::Nozzle),
            self.fresh(&self.nozzle_target, Field::NozzleTarget),
            self.fresh(&self.bed, Field::Bed),
            self.fresh(&self.bed_target, Field::BedTarget),
            self.fresh(&self.chamber, Field::Chamber),
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
                if let Some(value) = value {
                    changed |= put(field, value);
                }
            }
        }
        if let Some(z) = self.fresh(&self.axis_z, Field::AxisZ) {
            changed |= put(&mut p.axis_z, z);
        }
        if let Some(m) = self.fresh(&self.material, Field::Material) {
            let filament = p.filament.get_or_insert_with(Default::default);
            changed |= put(&mut filament.material, m);
        }
        if let Some(dialog) = self.fresh(&self.dialog, Field::Dialog)
            && p.dialog_info != *dialog
        {
            p.dialog_info = dialog.clone();
            changed = true;
        }
        self.overlay_job(p) || changed
    }

    /// The current job's values; whether they changed `p`. A job the list does not show
    /// yet is taken only while the printer is busy with it: after a job ends the channel
    /// may go on naming it.
    fn overlay_job(&self, p: &mut Printer) -> bool {
        let listed_id = p.job_info.as_ref().and_then(|j| j.id);
        // Until the channel names the current job, its values are the listed job's.
        let current = self.fresh(&self.current_job, Field::CurrentJob).copied();
        let Some(id) = current.or(listed_id).filter(|&id| id > 0) else {
            return false;
        };
        let listed = listed_id == Some(id);
        if !listed && !p.effective_state().is_active() {
            return false;
        }
        if !listed {
            p.job_info = Some(JobInfo {
                id: Some(id),
                ..Default::default()
            });
        }
        let Some(job) = p.job_info.as_mut() else {
            return !listed;
        };
        let values = self.jobs.get(&id).filter(|j| self.fresh_at(j.received));
        let mut changed = !listed;
        let progress = values.and_then(|j| j.progress);
        if let Some(progress) = progress.or(self.fresh(&self.progress, Field::Progress).copied()) {
            changed |= put(&mut job.progress, &progress);
        }
        if let Some(state) = values.and_then(|j| j.state.as_ref()) {
            changed |= put(&mut job.state, state);
        }
        if let Some(t) = values.and_then(|j| j.time_remaining) {
            changed |= put(&mut job.time_remaining, &t);
        }
        changed
    }
}

/// Sets `field` to a copy of `value` when it differs; whether it did.
fn put<T: PartialEq + Clone>(field: &mut Option<T>, value: &T) -> bool {
    if field.as_ref() == Some(value) {
        return false;
    }
    *field = Some(value.clone());
    true
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
