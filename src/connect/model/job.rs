//! Jobs: `/jobs`, a job's detail (its file, cancelable objects), and the planned queue.

use serde::Deserialize;
use serde_json::Value;

use super::envelope::Pager;

connect_enum!(
    /// State of a job.
    JobState {
        Printing = "PRINTING",
        Paused = "PAUSED",
        FinOk = "FIN_OK",
        FinError = "FIN_ERROR",
        FinStopped = "FIN_STOPPED",
        FinHarvested = "FIN_HARVESTED",
        Unknown = "UNKNOWN",
    }
);

impl JobState {
    pub fn is_running(&self) -> bool {
        matches!(self, Self::Printing | Self::Paused)
    }

    /// The end states that `job/finished` and the "Print finished" event report.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::FinOk | Self::FinError | Self::FinStopped)
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct JobFile {
    pub name: Option<String>,
    pub path: Option<String>,
    pub display_name: Option<String>,
    pub size: Option<u64>,
    pub m_time: Option<f64>,
    pub preview_url: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct JobData {
    pub material: Option<String>,
    pub weight: Option<f64>,
    pub cost: Option<f64>,
    pub tool: Option<i64>,
    pub layer_height: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct CancelableObject {
    pub id: i64,
    pub name: Option<String>,
    #[serde(default)]
    pub canceled: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Cancelable {
    #[serde(default)]
    pub objects: Vec<CancelableObject>,
}

/// A job from `/jobs` or `/jobs/{id}` (the detail adds `file` and `cancelable`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Job {
    pub id: i64,
    pub state: Option<JobState>,
    pub progress: Option<f64>,
    pub time_printing: Option<f64>,
    pub time_remaining: Option<f64>,
    pub mode: Option<String>,
    pub source: Option<String>,
    pub ts_started: Option<f64>,
    pub ts_ended: Option<f64>,
    pub file: Option<JobFile>,
    #[serde(default)]
    pub files: Vec<JobFile>,
    pub data: Option<JobData>,
    pub cancelable: Option<Cancelable>,
    pub reason: Option<Value>,
}

impl Job {
    pub fn file(&self) -> Option<&JobFile> {
        self.file.as_ref().or_else(|| self.files.first())
    }

    pub fn file_name(&self) -> Option<&str> {
        let f = self.file()?;
        f.display_name.as_deref().or(f.name.as_deref())
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct JobList {
    #[serde(default)]
    pub jobs: Vec<Job>,
    #[serde(default)]
    pub pager: Pager,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct PlannedJob {
    pub id: Option<i64>,
    pub path: Option<String>,
    pub set_ready: Option<bool>,
    pub position: Option<i64>,
    pub file: Option<JobFile>,
}

impl PlannedJob {
    /// What a person calls the job: the file's display name, else its name, else the path.
    pub fn label(&self) -> Option<String> {
        let file = self.file.as_ref();
        file.and_then(|f| f.display_name.clone())
            .or_else(|| file.and_then(|f| f.name.clone()))
            .or_else(|| self.path.clone())
            .or_else(|| file.and_then(|f| f.path.clone()))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Queue {
    #[serde(default)]
    pub planned_jobs: Vec<PlannedJob>,
    #[serde(default)]
    pub pager: Pager,
}
