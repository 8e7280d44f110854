//! The files on a printer's storage, and how Connect names their previews.

use sha2::{Digest, Sha256};

use super::world::Printer;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FileInfo {
    pub name: String,
    pub path: String,
    pub display_name: String,
    pub size: u64,
    pub m_time: i64,
    /// Names the file in its preview's URL.
    pub hash: String,
}

impl FileInfo {
    /// A bare name is stored under `/usb/`; a path is taken as it is.
    pub fn for_path(name_or_path: &str, m_time: i64) -> FileInfo {
        let trimmed = name_or_path.trim();
        let (path, name) = match trimmed.rsplit_once('/') {
            Some((_, name)) => (trimmed.to_string(), name.to_string()),
            None => (format!("/usb/{trimmed}"), trimmed.to_string()),
        };
        let display_name = match name.rsplit_once('.') {
            Some((stem, _)) if !stem.is_empty() => stem.to_string(),
            _ => name.clone(),
        };
        // A made-up but stable size, so files look different from one another.
        let size = 18_000 + name.bytes().map(u64::from).sum::<u64>() * 97;
        let hash = path_hash(&path);
        FileInfo {
            name,
            path,
            display_name,
            size,
            m_time,
            hash,
        }
    }

    /// Where Connect serves the file's thumbnail (relative to its base URL).
    pub fn preview_url(&self, team_id: i64) -> String {
        format!("/app/teams/{team_id}/files/{}/preview", self.hash)
    }
}

/// Connect names a file by a hash of its content; the simulator's files have none, so the
/// path stands in: the same file keeps its hash across restarts, two files never share one.
fn path_hash(path: &str) -> String {
    Sha256::digest(path.as_bytes())
        .iter()
        .take(20)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a new printer finds on its USB stick: a few files sliced for its model.
pub(crate) fn starter_files(model: &str, m_time: i64) -> Vec<FileInfo> {
    [
        "Shape-Box_0.4n_0.2mm_PLA_{M}_12m.bgcode",
        "calibration-cube_{M}.bgcode",
        "3DBenchy_0.4n_0.2mm_PLA_{M}_1h5m.bgcode",
        "phone-stand_0.4n_0.2mm_PETG_{M}_2h.bgcode",
    ]
    .iter()
    .map(|f| FileInfo::for_path(&f.replace("{M}", model), m_time))
    .collect()
}

impl Printer {
    /// The file stored at exactly `path`.
    pub fn file(&self, path: &str) -> Option<&FileInfo> {
        self.files.iter().find(|f| f.path == path)
    }

    /// Stores a file (a bare name under `/usb/`) and returns its path; a path already stored
    /// is left as it is.
    pub fn add_file(&mut self, name_or_path: &str, m_time: i64) -> String {
        let file = FileInfo::for_path(name_or_path, m_time);
        let path = file.path.clone();
        if self.file(&path).is_none() {
            self.files.push(file);
        }
        path
    }

    /// Deletes the file at `path` (a bare name: under `/usb/`); `false` when there is none.
    pub fn remove_file(&mut self, name_or_path: &str) -> bool {
        let path = FileInfo::for_path(name_or_path, 0).path;
        let before = self.files.len();
        self.files.retain(|f| f.path != path);
        self.files.len() != before
    }

    /// The file with this preview hash: on the storage, or behind a job or a planned job
    /// (Connect keeps the preview of a printed file after the file is deleted).
    pub fn file_by_hash(&self, hash: &str) -> Option<&FileInfo> {
        self.files
            .iter()
            .chain(self.jobs.iter().map(|j| &j.file))
            .chain(self.queue.iter().map(|q| &q.file))
            .find(|f| f.hash == hash)
    }
}
