//! Catching blocking calls on the async runtime: a named pipe (FIFO) whose reader blocks until
//! a task of the same runtime writes it, on a runtime of one thread, under a watchdog.

#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

/// How long a test on one thread may take before it counts as hung.
pub const WATCHDOG: Duration = Duration::from_secs(20);

/// Runs `test` on a runtime of one thread and fails when it has not finished within
/// [`WATCHDOG`]. A blocking call inside stops every task of that thread, the one that would
/// unblock it included: without the watchdog the test would hang forever. (The stuck thread is
/// left behind; it ends with the test binary.)
pub fn on_one_thread<T, F>(what: &str, test: impl FnOnce() -> F + Send + 'static) -> T
where
    F: Future<Output = T>,
    T: Send + 'static,
{
    let (done, result) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let _ = done.send(runtime.block_on(test()));
    });
    match result.recv_timeout(WATCHDOG) {
        Ok(value) => value,
        Err(RecvTimeoutError::Timeout) => panic!(
            "{what}: still running after {WATCHDOG:?}; a blocking call holds the runtime's only \
             thread, so the task that would unblock it never runs"
        ),
        Err(RecvTimeoutError::Disconnected) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the test thread ends after sending its result"),
        },
    }
}

/// Makes a named pipe at `path` (with the `mkfifo` command: no libc binding needed). Reading
/// it blocks until someone writes it.
pub fn make_fifo(path: &Path) -> PathBuf {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success(), "mkfifo {}", path.display());
    path.to_path_buf()
}

/// Writes `bytes` into the FIFO at `path` once someone opened it for reading, from a task of
/// the current runtime, then closes it (the reader sees the end of the file). Opening without
/// blocking fails while there is no reader, so this waits, asynchronously, for the reader.
pub fn write_fifo_when_read(path: &Path, bytes: impl Into<Vec<u8>>) -> tokio::task::JoinHandle<()> {
    let path = path.to_path_buf();
    let bytes = bytes.into();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + WATCHDOG;
        let mut sender = loop {
            match tokio::net::unix::pipe::OpenOptions::new().open_sender(&path) {
                Ok(sender) => break sender,
                Err(e) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "nobody read {}: {e}",
                        path.display()
                    );
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        sender.write_all(&bytes).await.expect("write the FIFO");
    })
}
