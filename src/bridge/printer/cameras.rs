//! A printer's cameras: listed when first seen and when a job starts, pictures on a schedule.

use tokio::time::Instant;

use crate::bridge::schedule::{CAMERAS_RELIST, EXTRAS_RETRY};

use crate::connect::model::CameraList;

/// One camera of a printer, as the gateway follows it.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraFeed {
    pub id: String,
    pub name: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub fetched_at: Option<Instant>,
    pub fetching: bool,
    /// The last picture was too large to publish (warned about once).
    pub too_large: bool,
}

/// A printer's cameras.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cameras {
    /// `None`: not listed yet.
    pub list: Option<Vec<CameraFeed>>,
    /// The running job the cameras were last listed for.
    pub listed_for: Option<i64>,
    pub listed_at: Option<Instant>,
    pub failed_at: Option<Instant>,
    pub listing: bool,
    /// Connect said a camera is gone: list again (keeping the others meanwhile).
    pub relist: bool,
}

impl Cameras {
    /// Whether to list the printer's cameras now: when first seen and when a new job starts
    /// (a print is when people look) if the last list is older than [`CAMERAS_RELIST`].
    pub fn wants_list(&self, running_job: Option<i64>, now: Instant) -> bool {
        if self.listing {
            return false;
        }
        let new_job = running_job.is_some()
            && running_job != self.listed_for
            && self
                .listed_at
                .is_none_or(|t| now.duration_since(t) >= CAMERAS_RELIST);
        let retry = self
            .failed_at
            .is_some_and(|t| now.duration_since(t) >= EXTRAS_RETRY);
        self.list.is_none() || self.relist || new_job || retry
    }

    pub fn start_list(&mut self, running_job: Option<i64>) {
        self.listed_for = running_job;
        self.listing = true;
    }

    /// The list came back; keeps what is known of cameras that stay. Returns `(id, name)` of
    /// each camera now listed.
    pub fn on_list(&mut self, result: Option<CameraList>, now: Instant) -> Vec<(String, String)> {
        self.listing = false;
        let Some(list) = result else {
            // Keep the cameras known so far; look again later.
            self.list.get_or_insert_with(Vec::new);
            self.failed_at = Some(now);
            return self.named();
        };
        let old = self.list.take().unwrap_or_default();
        self.list = Some(
            list.cameras
                .iter()
                .map(|c| {
                    let id = c.id_string();
                    old.iter()
                        .find(|o| o.id == id)
                        .cloned()
                        .unwrap_or_else(|| CameraFeed {
                            name: c.name.clone().unwrap_or_else(|| format!("Camera {id}")),
                            id,
                            etag: None,
                            last_modified: None,
                            fetched_at: None,
                            fetching: false,
                            too_large: false,
                        })
                })
                .collect(),
        );
        self.listed_at = Some(now);
        self.failed_at = None;
        self.relist = false;
        self.named()
    }

    pub fn named(&self) -> Vec<(String, String)> {
        self.list
            .iter()
            .flatten()
            .map(|c| (c.id.clone(), c.name.clone()))
            .collect()
    }

    pub fn fetching(&self) -> usize {
        self.list.iter().flatten().filter(|c| c.fetching).count()
    }

    pub fn camera_mut(&mut self, id: &str) -> Option<&mut CameraFeed> {
        self.list.iter_mut().flatten().find(|c| c.id == id)
    }
}
