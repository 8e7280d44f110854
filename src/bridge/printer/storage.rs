//! A printer's free storage space (`P/state.storage_free`): read when the printer is first
//! seen and again when its feed says its files changed; a failed read is tried again later.
//! The reads are started at the end of a poll (`fleet::storage_reads`), with what is left of
//! its request budget once every printer had its turn: the reads the controls need come
//! first.

use std::time::Duration;

use tokio::time::Instant;

use crate::bridge::printer::{Ctx, PrinterEntry, Runtime};
use crate::bridge::reads::Read;
use crate::bridge::schedule::Retried;
use crate::connect::client::ConnectError;
use crate::connect::model::Storage;

/// A failed read is tried again after this, doubling...
const RETRY: Duration = Duration::from_secs(60);
/// ...up to this.
const RETRY_MAX: Duration = Duration::from_secs(3600);

/// What the printer's storages hold, as last read.
#[derive(Debug, Clone)]
pub struct StorageSpace {
    pub due: Retried,
    /// Bytes free and in all on the storages a print can be written to (not read-only);
    /// `None` until read, or when Connect says of none.
    pub free: Option<u64>,
    pub total: Option<u64>,
    /// Connect answered at least once (maybe without sizes).
    pub read_once: bool,
}

impl StorageSpace {
    pub fn new(now: Instant) -> StorageSpace {
        StorageSpace {
            due: Retried::now(now),
            free: None,
            total: None,
            read_once: false,
        }
    }

    fn set(&mut self, storages: &[Storage]) {
        let writable = || storages.iter().filter(|s| !s.read_only);
        let sum = |sizes: Vec<Option<u64>>| -> Option<u64> {
            let known: Vec<u64> = sizes.into_iter().flatten().collect();
            (!known.is_empty()).then(|| known.iter().fold(0u64, |a, b| a.saturating_add(*b)))
        };
        self.free = sum(writable().map(|s| s.free_space).collect());
        self.total = sum(writable().map(|s| s.total_space).collect());
    }
}

impl Runtime {
    /// Starts the storage read when it is due, spending from the poll's `budget`.
    pub fn start_storage_read(
        &mut self,
        uuid: &str,
        budget: &mut u32,
        now: Instant,
    ) -> Option<Read> {
        if *budget == 0 {
            return None;
        }
        self.storage.due.due.start(now).then(|| {
            *budget -= 1;
            Read::Storages {
                uuid: uuid.to_string(),
            }
        })
    }
}

impl PrinterEntry {
    pub(super) fn on_storages(
        &mut self,
        cx: &mut Ctx,
        result: Result<Vec<Storage>, ConnectError>,
        now: Instant,
        wall: f64,
    ) {
        let missing = cx
            .account
            .unavailable
            .observe("storages", &self.uuid, &result, now, wall);
        let Some(live) = self.runtime.as_mut() else {
            return;
        };
        match result {
            Ok(storages) => {
                live.succeeded("storages");
                live.storage.due.succeeded();
                live.storage.read_once = true;
                live.storage.set(&storages);
            }
            Err(e) => {
                if !missing {
                    live.failed("storages", &e.to_string());
                }
                live.storage.due.failed(now, RETRY, RETRY_MAX);
            }
        }
        self.render(cx, wall);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(read_only: bool, free: Option<u64>, total: Option<u64>) -> Storage {
        Storage {
            name: None,
            read_only,
            free_space: free,
            total_space: total,
        }
    }

    #[test]
    fn free_space_is_the_writable_storages_and_unknown_stays_unknown() {
        let mut space = StorageSpace::new(Instant::now());
        space.set(&[
            storage(false, Some(100), Some(1000)),
            storage(true, Some(5), Some(5)),
            storage(false, Some(50), None),
        ]);
        assert_eq!((space.free, space.total), (Some(150), Some(1000)));
        space.set(&[storage(false, None, None)]);
        assert_eq!((space.free, space.total), (None, None), "never guessed");
        space.set(&[
            storage(false, Some(u64::MAX), None),
            storage(false, Some(9), None),
        ]);
        assert_eq!(space.free, Some(u64::MAX), "no overflow");
    }
}
