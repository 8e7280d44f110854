//! `state.dir/state.json`: what must survive a restart (the bridge's registry decides what),
//! read at start and written atomically, off the event loop.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub struct Store {
    path: PathBuf,
    /// What the file holds (`None` after a failed write: unknown, write again).
    saved: Option<Vec<u8>>,
    /// The write running in the background, if any (see [`Store::save_soon`]).
    writing: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Store {
    /// Opens (creating the directory when needed) and loads the state file. A corrupt file
    /// is moved aside with a warning rather than stopping the service.
    pub fn open<T: DeserializeOwned + Default + Serialize>(dir: &Path) -> Result<(Store, T)> {
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create the state directory {} (set state.dir to a writable directory)",
                dir.display()
            )
        })?;
        let path = dir.join("state.json");
        let memory = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<T>(&bytes) {
                Ok(m) => m,
                Err(e) => {
                    let aside = dir.join("state.json.corrupt");
                    tracing::warn!(
                        "{} is not readable ({e}); moved to {} and starting fresh",
                        path.display(),
                        aside.display()
                    );
                    let _ = std::fs::rename(&path, &aside);
                    T::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => T::default(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let store = Store {
            path,
            saved: serde_json::to_vec_pretty(&memory).ok(),
            writing: None,
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

    /// Writes `memory` when it differs from what is on disk: temp file, fsync, rename. Waits
    /// for a write started by [`Store::save_soon`] first.
    pub fn save(&mut self, memory: &impl Serialize) -> Result<()> {
        if let Some(writing) = self.writing.take() {
            self.finished(writing.join());
        }
        let bytes = serde_json::to_vec_pretty(memory)?;
        if self.saved.as_ref() == Some(&bytes) {
            return Ok(());
        }
        write_atomically(&self.path, &bytes)?;
        self.saved = Some(bytes);
        Ok(())
    }

    /// Like [`Store::save`], but the file is written (and fsynced, which can take
    /// milliseconds) on a thread of its own, so the event loop goes on serving commands.
    /// While a write runs, newer changes wait for the next call.
    pub fn save_soon(&mut self, memory: &impl Serialize) -> Result<()> {
        if let Some(writing) = self.writing.take_if(|w| w.is_finished()) {
            self.finished(writing.join());
        }
        if self.writing.is_some() {
            return Ok(());
        }
        let bytes = serde_json::to_vec_pretty(memory)?;
        if self.saved.as_ref() == Some(&bytes) {
            return Ok(());
        }
        let path = self.path.clone();
        let written = bytes.clone();
        let writing = std::thread::Builder::new()
            .name("state-file".into())
            .spawn(move || write_atomically(&path, &written))
            .context("cannot start writing the state file")?;
        self.writing = Some(writing);
        self.saved = Some(bytes);
        Ok(())
    }

    fn finished(&mut self, result: std::thread::Result<Result<()>>) {
        let error = match result {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(_) => anyhow::anyhow!("the write stopped"),
        };
        tracing::warn!("cannot save the state file: {error:#}");
        self.saved = None;
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
    use std::collections::BTreeMap;

    #[test]
    fn round_trip_and_corrupt_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, mut memory): (Store, BTreeMap<String, f64>) =
            Store::open(dir.path()).unwrap();
        memory.insert("u".into(), 12.5);
        store.save(&memory).unwrap();
        let (_, loaded): (Store, BTreeMap<String, f64>) = Store::open(dir.path()).unwrap();
        assert_eq!(loaded, memory);
        std::fs::write(dir.path().join("state.json"), b"{not json").unwrap();
        let (_, fresh): (Store, BTreeMap<String, f64>) = Store::open(dir.path()).unwrap();
        assert!(fresh.is_empty());
        assert!(dir.path().join("state.json.corrupt").exists());
    }
}
