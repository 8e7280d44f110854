//! `state.dir/state.json`: what must survive a restart (the bridge's registry decides what),
//! read at start and written atomically, off the event loop.

use std::hash::Hasher;
use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub struct Store<T> {
    path: PathBuf,
    /// What the file holds, as the fingerprint of its bytes (`None` after a failed write:
    /// unknown, write again). Most polls change nothing, so what is to be saved is compared
    /// with it first. A copy of a farm's state kept to compare with, and the copy made for
    /// each comparison, were a third of the heap at 1,000 printers.
    saved: Option<Fingerprint>,
    /// The write running in the background, if any (see [`Store::save_soon`]).
    writing: Option<std::thread::JoinHandle<Result<()>>>,
    of: PhantomData<fn() -> T>,
}

/// The length and a hash of a file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint(usize, u64);

impl Fingerprint {
    fn of(bytes: &[u8]) -> Fingerprint {
        let mut hasher = std::hash::DefaultHasher::new();
        hasher.write(bytes);
        Fingerprint(bytes.len(), hasher.finish())
    }
}

impl<T: DeserializeOwned + Default + Serialize> Store<T> {
    /// Opens (creating the directory when needed) and loads the state file. A corrupt file
    /// is moved aside with a warning rather than stopping the service.
    pub fn open(dir: &Path) -> Result<(Store<T>, T)> {
        Self::open_file(dir, "state.json")
    }

    /// [`Store::open`] of the file `name` in `dir` (another file the service keeps there).
    pub fn open_file(dir: &Path, name: &str) -> Result<(Store<T>, T)> {
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create the state directory {} (set state.dir to a writable directory)",
                dir.display()
            )
        })?;
        sweep_leftovers(dir);
        let path = dir.join(name);
        let memory = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<T>(&bytes) {
                Ok(m) => m,
                Err(e) => {
                    let aside = dir.join(format!("{name}.corrupt"));
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
            saved: Some(Fingerprint::of(&serde_json::to_vec(&memory)?)),
            writing: None,
            of: PhantomData,
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
    /// `memory` may be `T` or a view of the same shape that borrows it.
    pub fn save(&mut self, memory: &impl Serialize) -> Result<()> {
        self.save_after(memory, || Ok(()))
    }

    /// [`Store::save`], once `before` succeeded (what must be on disk no later than this
    /// state: the journal of events it records as made). Blocks while `before` does.
    pub fn save_after(
        &mut self,
        memory: &impl Serialize,
        before: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        self.save_bytes_after(serde_json::to_vec(memory)?, before)
    }

    /// [`Store::save_after`] of what `memory` was serialized to (`serde_json::to_vec`): the
    /// state can be serialized where it lives and written on another thread.
    pub fn save_bytes_after(
        &mut self,
        bytes: Vec<u8>,
        before: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        if let Some(writing) = self.writing.take() {
            self.finished(writing.join());
        }
        let print = Fingerprint::of(&bytes);
        if self.saved == Some(print) {
            return Ok(());
        }
        before()?;
        write_atomically(&self.path, &bytes)?;
        self.saved = Some(print);
        Ok(())
    }

    /// Like [`Store::save`], but the file is written (and fsynced, which can take
    /// milliseconds) on a thread of its own, so the event loop goes on serving commands.
    /// While a write runs, newer changes wait for the next call.
    pub fn save_soon(&mut self, memory: &impl Serialize) -> Result<()> {
        self.save_soon_after(memory, || || Ok(()))
    }

    /// [`Store::save_soon`], the write waiting on that thread for what `before` returns to
    /// succeed. `before` itself runs here, only when a write starts.
    pub fn save_soon_after<B>(
        &mut self,
        memory: &impl Serialize,
        before: impl FnOnce() -> B,
    ) -> Result<()>
    where
        B: FnOnce() -> Result<()> + Send + 'static,
    {
        if let Some(writing) = self.writing.take_if(|w| w.is_finished()) {
            self.finished(writing.join());
        }
        if self.writing.is_some() {
            return Ok(());
        }
        let bytes = serde_json::to_vec(memory)?;
        let print = Fingerprint::of(&bytes);
        if self.saved == Some(print) {
            return Ok(());
        }
        let path = self.path.clone();
        let before = before();
        let writing = std::thread::Builder::new()
            .name("state-file".into())
            .spawn(move || {
                before()?;
                write_atomically(&path, &bytes)
            })
            .context("cannot start writing the state file")?;
        self.writing = Some(writing);
        self.saved = Some(print);
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

/// Runs file I/O on tokio's threads for blocking work, for async code: a slow disk, a network
/// file system or a FIFO then holds up no runtime thread. A panic in `work` goes on in the
/// caller.
pub async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => anyhow::anyhow!("the file operation did not run: {e}"),
        })
}

/// Replaces `path` with `bytes` so a crash leaves either the old or the new file, mode 0600.
///
/// Every write has a temporary file of its own (`.NAME.PID.N.tmp` beside `path`): the service
/// and `login` or `check` may write the same file at the same moment, and with a shared name
/// one would rename the other's half-written bytes into place, or fail.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("cannot write {}: not a file name", path.display()))?;
    let (tmp, mut file) = create_temporary(dir, &name.to_string_lossy())?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))
        .and_then(|()| {
            drop(file);
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot replace {}", path.display()))
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Removes the temporary files of writes that a crash interrupted (`.NAME.PID.N.tmp` of a
/// process that no longer runs; they may hold a refresh token), and the fixed-name ones of
/// earlier versions. A write of a running `login` or `check` is left alone.
pub fn sweep_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = match name.strip_suffix(".tmp") {
            Some("state" | "auth") => true,
            Some(rest) if rest.starts_with('.') => {
                let mut parts = rest.rsplitn(3, '.');
                let (_n, pid) = (parts.next(), parts.next());
                pid.and_then(|p| p.parse::<u32>().ok())
                    .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
            }
            _ => false,
        };
        if stale && std::fs::remove_file(entry.path()).is_ok() {
            tracing::debug!("removed {name}, left by an interrupted write");
        }
    }
}

/// Creates a new, private temporary file for [`write_atomically`]. Never opens an existing
/// one: it could be another write's, or a crashed process's leftover with a wider mode.
fn create_temporary(dir: &Path, name: &str) -> Result<(PathBuf, std::fs::File)> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = WRITES.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot write {}", tmp.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn leftovers_of_crashed_writes_are_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let crashed = dir.path().join(".auth.json.4000000000.3.tmp");
        let ours = dir
            .path()
            .join(format!(".auth.json.{}.3.tmp", std::process::id()));
        let old = dir.path().join("state.tmp");
        let other = dir.path().join("notes.tmp");
        for f in [&crashed, &ours, &old, &other] {
            std::fs::write(f, b"x").unwrap();
        }
        let _: (Store<_>, BTreeMap<String, f64>) = Store::open(dir.path()).unwrap();
        assert!(!crashed.exists() && !old.exists());
        assert!(ours.exists(), "a write in progress is left alone");
        assert!(other.exists());
    }

    #[test]
    fn round_trip_and_corrupt_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, mut memory): (Store<_>, BTreeMap<String, f64>) =
            Store::open(dir.path()).unwrap();
        memory.insert("u".into(), 12.5);
        store.save(&memory).unwrap();
        let (_, loaded): (Store<_>, BTreeMap<String, f64>) = Store::open(dir.path()).unwrap();
        assert_eq!(loaded, memory);
        std::fs::write(dir.path().join("state.json"), b"{not json").unwrap();
        let (_, fresh): (Store<_>, BTreeMap<String, f64>) = Store::open(dir.path()).unwrap();
        assert!(fresh.is_empty());
        assert!(dir.path().join("state.json.corrupt").exists());
    }

    #[test]
    fn only_a_change_is_written_and_a_file_loaded_counts_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        // A file of an older version, pretty-printed: what it holds is what counts.
        std::fs::write(&path, b"{\n  \"u\": 1.0\n}").unwrap();
        let (mut store, mut memory): (Store<_>, BTreeMap<String, f64>) =
            Store::open(dir.path()).unwrap();
        let modified = || std::fs::metadata(&path).unwrap().modified().unwrap();
        fn written(
            store: &mut Store<BTreeMap<String, f64>>,
            memory: &BTreeMap<String, f64>,
        ) -> bool {
            let before = std::cell::Cell::new(false);
            store
                .save_after(memory, || {
                    before.set(true);
                    Ok(())
                })
                .unwrap();
            before.get()
        }
        assert!(!written(&mut store, &memory), "unchanged: not written");
        memory.insert("v".into(), 2.0);
        assert!(written(&mut store, &memory));
        let at = modified();
        assert!(!written(&mut store, &memory));
        assert_eq!(modified(), at);
        // A write refused (what must be on disk first is not) leaves the file as it was:
        // the same state is written at the next call.
        memory.insert("w".into(), 3.0);
        let refused = store.save_after(&memory, || anyhow::bail!("the journal is not on disk"));
        assert!(refused.is_err());
        assert!(written(&mut store, &memory), "not on disk yet");
        let (_, loaded): (Store<_>, BTreeMap<String, f64>) = Store::open(dir.path()).unwrap();
        assert_eq!(loaded, memory);
    }

    /// The service and `login` (or `check`) can write auth.json at the same moment: a reader
    /// must always find one write, whole, and every write must succeed.
    #[test]
    fn concurrent_writers_never_mix_their_bytes() {
        const WRITERS: usize = 6;
        const WRITES: usize = 15;
        fn content(writer: usize, write: usize) -> Vec<u8> {
            // Large enough that a write is still going on when another one starts.
            let fill = format!("{writer}-{write};").repeat(50_000);
            serde_json::to_vec(&serde_json::json!({
                "writer": writer,
                "write": write,
                "fill": fill,
            }))
            .unwrap()
        }
        fn identify(bytes: &[u8]) -> Result<(usize, usize), String> {
            let value: serde_json::Value = serde_json::from_slice(bytes)
                .map_err(|e| format!("{} bytes that do not parse: {e}", bytes.len()))?;
            let id = (
                value["writer"].as_u64().unwrap_or(u64::MAX) as usize,
                value["write"].as_u64().unwrap_or(u64::MAX) as usize,
            );
            if bytes == content(id.0, id.1) {
                Ok(id)
            } else {
                Err(format!("{id:?} parses but is not what was written"))
            }
        }

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        write_atomically(&path, &content(0, 0)).unwrap();
        let writing = std::sync::atomic::AtomicBool::new(true);
        let (failures, reads) = std::thread::scope(|s| {
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let mut bad = Vec::new();
                        let mut reads = 0;
                        while writing.load(std::sync::atomic::Ordering::Relaxed) {
                            let found = std::fs::read(&path).map_err(|e| e.to_string());
                            if let Err(e) = found.and_then(|bytes| identify(&bytes)) {
                                bad.push(e);
                            }
                            reads += 1;
                        }
                        (bad, reads)
                    })
                })
                .collect();
            let writers: Vec<_> = (0..WRITERS)
                .map(|writer| {
                    let path = &path;
                    s.spawn(move || {
                        (0..WRITES)
                            .filter_map(|write| {
                                write_atomically(path, &content(writer, write))
                                    .err()
                                    .map(|e| format!("writer {writer}: {e:#}"))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let mut failures: Vec<String> = writers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect();
            writing.store(false, std::sync::atomic::Ordering::Relaxed);
            let mut reads = 0;
            for reader in readers {
                let (bad, n) = reader.join().unwrap();
                failures.extend(bad.into_iter().map(|b| format!("a reader found {b}")));
                reads += n;
            }
            (failures, reads)
        });
        assert!(reads > 0);
        let (found, written): (Vec<_>, Vec<_>) =
            failures.iter().partition(|f| f.starts_with("a reader"));
        assert!(
            failures.is_empty(),
            "{} failed writes, the first: {:?}; {} of {reads} reads found no whole write, the \
             first: {:?}",
            written.len(),
            written.first(),
            found.len(),
            found.first()
        );
        // Whole, and the last write of one of the writers.
        let (_, write) = identify(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(write, WRITES - 1);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["auth.json"]);
    }
}
