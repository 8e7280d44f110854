//! What must survive a restart, in `state.dir/state.json`: per printer the event-feed cursor
//! and which job was running and which end was announced, so a restarted gateway neither
//! replays events nor announces a finished job twice. Written atomically.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PrinterMemory {
    /// `created` of the newest published feed event.
    pub events_after: Option<f64>,
    /// Keys of the published events whose `created` equals `events_after`.
    pub events_seen: Vec<String>,
    /// The job that was running when last seen.
    pub active_job: Option<i64>,
    /// The last job whose end was published on `job/finished`.
    pub announced_job: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Memory {
    /// Keyed by printer uuid; a printer here has had discovery published.
    pub printers: BTreeMap<String, PrinterMemory>,
}

pub struct Store {
    path: PathBuf,
    saved: Memory,
}

impl Store {
    /// Opens (creating the directory when needed) and loads the state file. A corrupt file
    /// is moved aside with a warning rather than stopping the service.
    pub fn open(dir: &Path) -> Result<(Store, Memory)> {
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create the state directory {} (set state.dir to a writable directory)",
                dir.display()
            )
        })?;
        let path = dir.join("state.json");
        let memory = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Memory>(&bytes) {
                Ok(m) => m,
                Err(e) => {
                    let aside = dir.join("state.json.corrupt");
                    tracing::warn!(
                        "{} is not readable ({e}); moved to {} and starting fresh",
                        path.display(),
                        aside.display()
                    );
                    let _ = std::fs::rename(&path, &aside);
                    Memory::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Memory::default(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let store = Store {
            path,
            saved: memory.clone(),
        };
        store.check_writable()?;
        Ok((store, memory))
    }

    fn check_writable(&self) -> Result<()> {
        let probe = self.path.with_extension("probe");
        std::fs::write(&probe, b"").with_context(|| {
            format!(
                "the state directory {} is not writable (set state.dir, or fix its owner)",
                self.path.parent().unwrap_or(Path::new(".")).display()
            )
        })?;
        let _ = std::fs::remove_file(probe);
        Ok(())
    }

    /// Writes `memory` when it differs from what is on disk: temp file, fsync, rename.
    pub fn save(&mut self, memory: &Memory) -> Result<()> {
        if *memory == self.saved {
            return Ok(());
        }
        write_atomically(&self.path, &serde_json::to_vec_pretty(memory)?)?;
        self.saved = memory.clone();
        Ok(())
    }
}

/// Replaces `path` with `bytes` so a crash leaves either the old or the new file, mode 0600.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    // A leftover from a crash could carry a wider mode than the one set at creation.
    let _ = std::fs::remove_file(&tmp);
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corrupt_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, mut memory) = Store::open(dir.path()).unwrap();
        memory.printers.entry("u".into()).or_default().events_after = Some(12.5);
        store.save(&memory).unwrap();
        let (_, loaded) = Store::open(dir.path()).unwrap();
        assert_eq!(loaded, memory);
        std::fs::write(dir.path().join("state.json"), b"{not json").unwrap();
        let (_, fresh) = Store::open(dir.path()).unwrap();
        assert_eq!(fresh, Memory::default());
        assert!(dir.path().join("state.json.corrupt").exists());
    }
}
