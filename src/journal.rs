//! `state.dir/owed.jsonl`: the events the broker has not acknowledged yet (feed events, job
//! ends, notifications, dialog events, device triggers, command replies), so that a restart,
//! an upgrade or a crash while the broker is away or slow loses none of them.
//!
//! One JSON record a line, appended as the [`Outbox`](crate::outbox::Outbox) tells of them
//! ([`Owing`]): an event owed, or one settled (acknowledged by the broker, or dropped beyond
//! [`MAX_OWED_EVENTS`]). When nothing is owed any more the file is emptied; when settled
//! records pile up it is rewritten with only the events owed. The state file's cursors say
//! which events were made; the session fsyncs this file before each state file write
//! ([`crate::mqtt::Publisher::sync_journal`]), so an event is never in neither.
//!
//! At start the events still owed are read back, in order, and delivered before anything
//! newer. A line that cannot be read (the torn last line of a write a crash interrupted) is
//! skipped with a warning.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::outbox::{MAX_OWED_EVENTS, Owing};
use crate::store::write_atomically;

/// The journal's name in `state.dir`.
pub const FILE: &str = "owed.jsonl";
/// Records in the file beyond twice the events owed, before it is rewritten with only those.
const COMPACT_SLACK: usize = 4096;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Record {
    Owed {
        id: u64,
        topic: String,
        payload: Payload,
    },
    Settled(u64),
}

/// Payloads are text (JSON or plain words); bytes that are not UTF-8 are kept as they are.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Payload {
    Text(String),
    Bytes(Vec<u8>),
}

impl Payload {
    fn of(bytes: &[u8]) -> Payload {
        match std::str::from_utf8(bytes) {
            Ok(text) => Payload::Text(text.to_string()),
            Err(_) => Payload::Bytes(bytes.to_vec()),
        }
    }

    fn into_bytes(self) -> Vec<u8> {
        match self {
            Payload::Text(text) => text.into_bytes(),
            Payload::Bytes(bytes) => bytes,
        }
    }
}

/// An event an earlier run still owed, under the id the journal now holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptEvent {
    pub id: u64,
    pub topic: String,
    pub payload: Vec<u8>,
}

pub struct Journal {
    path: PathBuf,
    /// Opened for appending; `None` while the file is not known to be right (a write failed):
    /// the next [`Journal::record`] asks for a rewrite.
    file: Option<File>,
    /// Records in the file.
    records: usize,
    /// Events the file holds as owed.
    owed: usize,
    /// What the last run owed, until [`Journal::take_kept`].
    kept: Vec<KeptEvent>,
    /// After a failed rewrite, the next is not tried before then (a full disk must not cost
    /// a rewrite and a warning at every change).
    retry_at: Option<std::time::Instant>,
}

/// How long a failed rewrite waits before the next try.
const RETRY: std::time::Duration = std::time::Duration::from_secs(10);

impl Journal {
    /// Reads what the last run still owed from the journal in `dir` and rewrites the file
    /// with only that, numbered from 1 in order. Beyond [`MAX_OWED_EVENTS`] the oldest are
    /// dropped, as the outbox would have.
    pub fn open(dir: &Path) -> Result<Journal> {
        let path = dir.join(FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let mut kept = read_records(&path, &bytes);
        if kept.len() > MAX_OWED_EVENTS {
            let dropped = kept.len() - MAX_OWED_EVENTS;
            tracing::warn!(
                "{} holds {} events owed to the MQTT broker: the oldest {dropped} are dropped \
                 (at most {MAX_OWED_EVENTS} are kept)",
                path.display(),
                kept.len()
            );
            kept.drain(..dropped);
        }
        for (n, event) in kept.iter_mut().enumerate() {
            event.id = n as u64 + 1;
        }
        if !kept.is_empty() {
            tracing::info!(
                "{} event(s) not acknowledged by the MQTT broker before the last stop are \
                 delivered first",
                kept.len()
            );
        }
        let owed: Vec<(u64, &str, &[u8])> = kept
            .iter()
            .map(|e| (e.id, e.topic.as_str(), e.payload.as_slice()))
            .collect();
        write_atomically(&path, &encode(&owed))?;
        let file = append_to(&path)?;
        Ok(Journal {
            path,
            file: Some(file),
            records: kept.len(),
            owed: kept.len(),
            kept,
            retry_at: None,
        })
    }

    /// What the last run still owed, oldest first (once).
    pub fn take_kept(&mut self) -> Vec<KeptEvent> {
        std::mem::take(&mut self.kept)
    }

    /// Appends `changes`; empties the file when nothing is owed any more. Returns true when
    /// the file wants rewriting with the events owed ([`Journal::rewrite`]): settled records
    /// piled up, or a write failed (tried again at the next change).
    pub fn record(&mut self, changes: &[Owing]) -> bool {
        if changes.is_empty() {
            return false;
        }
        if self.file.is_none() {
            return self.wants_rewrite();
        }
        let Some(file) = self.file.as_mut() else {
            return true;
        };
        let mut bytes = Vec::new();
        for change in changes {
            let record = match change {
                Owing::Added { id, topic, payload } => {
                    self.owed += 1;
                    Record::Owed {
                        id: *id,
                        topic: topic.clone(),
                        payload: Payload::of(payload),
                    }
                }
                Owing::Settled { id } => {
                    self.owed = self.owed.saturating_sub(1);
                    Record::Settled(*id)
                }
            };
            line(&mut bytes, &record);
        }
        self.records += changes.len();
        let written = if self.owed == 0 {
            // The common case with a broker that keeps up: nothing to keep.
            self.records = 0;
            file.set_len(0)
        } else {
            file.write_all(&bytes)
        };
        if let Err(e) = written {
            tracing::warn!(
                "cannot write {} ({e}): events owed to the MQTT broker may be lost if the \
                 gateway stops before it acknowledges them",
                self.path.display()
            );
            self.file = None;
            return true;
        }
        self.records > 2 * self.owed + COMPACT_SLACK
    }

    /// Replaces the file with `owed` (id, topic, payload), oldest first.
    pub fn rewrite(&mut self, owed: &[(u64, &str, &[u8])]) {
        self.file = None;
        let rewritten = write_atomically(&self.path, &encode(owed)).and_then(|()| {
            let file = append_to(&self.path)?;
            Ok(file)
        });
        match rewritten {
            Ok(file) => {
                self.file = Some(file);
                self.records = owed.len();
                self.owed = owed.len();
                self.retry_at = None;
            }
            Err(e) => {
                if self.retry_at.is_none() {
                    tracing::warn!(
                        "cannot rewrite {}: {e:#}; the state file is not saved until it can \
                         be (trying again every {RETRY:?})",
                        self.path.display()
                    );
                }
                self.retry_at = Some(std::time::Instant::now() + RETRY);
            }
        }
    }

    /// A write failed and the next rewrite is due.
    pub fn wants_rewrite(&self) -> bool {
        self.file.is_none() && self.retry_at.is_none_or(|t| std::time::Instant::now() >= t)
    }

    /// A handle on the file to fsync, so that what was appended so far survives a power
    /// loss (the state file is written after it).
    pub fn sync_handle(&self) -> Option<File> {
        self.file.as_ref().and_then(|f| f.try_clone().ok())
    }
}

fn append_to(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

fn line(bytes: &mut Vec<u8>, record: &Record) {
    // A record of strings, numbers and byte arrays always serializes.
    if serde_json::to_writer(&mut *bytes, record).is_ok() {
        bytes.push(b'\n');
    }
}

fn encode(owed: &[(u64, &str, &[u8])]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (id, topic, payload) in owed {
        let record = Record::Owed {
            id: *id,
            topic: topic.to_string(),
            payload: Payload::of(payload),
        };
        line(&mut bytes, &record);
    }
    bytes
}

/// The events owed according to the records in `bytes`, oldest first.
fn read_records(path: &Path, bytes: &[u8]) -> Vec<KeptEvent> {
    let mut owed = std::collections::BTreeMap::new();
    let mut unreadable = 0usize;
    for text in bytes.split(|b| *b == b'\n') {
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Record>(text) {
            Ok(Record::Owed { id, topic, payload }) => {
                owed.insert(id, (topic, payload.into_bytes()));
            }
            Ok(Record::Settled(id)) => {
                owed.remove(&id);
            }
            Err(_) => unreadable += 1,
        }
    }
    if unreadable > 0 {
        tracing::warn!(
            "{}: {unreadable} unreadable line(s) skipped (a write interrupted by a crash?); \
             the events on them, if any, are lost",
            path.display()
        );
    }
    owed.into_iter()
        .map(|(id, (topic, payload))| KeptEvent { id, topic, payload })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn added(id: u64, topic: &str, payload: &str) -> Owing {
        Owing::Added {
            id,
            topic: topic.into(),
            payload: payload.into(),
        }
    }

    fn kept(dir: &Path) -> Vec<(String, String)> {
        Journal::open(dir)
            .unwrap()
            .take_kept()
            .into_iter()
            .map(|e| (e.topic, String::from_utf8(e.payload).unwrap()))
            .collect()
    }

    #[test]
    fn what_is_owed_comes_back_in_order_and_settled_events_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        assert!(journal.take_kept().is_empty());
        journal.record(&[
            added(1, "pc/a/event", "1"),
            added(2, "pc/b/job/finished", "2"),
            added(3, "pc/a/event", "3"),
        ]);
        journal.record(&[Owing::Settled { id: 2 }]);
        drop(journal);
        let back = kept(dir.path());
        assert_eq!(
            back,
            [
                ("pc/a/event".to_string(), "1".to_string()),
                ("pc/a/event".to_string(), "3".to_string())
            ]
        );
        // Rewritten at start with new ids: a second start sees the same.
        assert_eq!(kept(dir.path()), back);
    }

    #[test]
    fn a_torn_last_line_and_garbage_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        journal.record(&[added(1, "pc/a/event", "one"), added(2, "pc/a/event", "two")]);
        drop(journal);
        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"not json\n\xff\xfe\n{\"owed\": {\"id\": 3, \"topic\": \"pc/a/ev");
        std::fs::write(&path, bytes).unwrap();
        let back = kept(dir.path());
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].1, "two");
    }

    #[test]
    fn the_file_is_emptied_when_nothing_is_owed_and_compacted_when_settled_records_pile_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let mut journal = Journal::open(dir.path()).unwrap();
        journal.record(&[added(1, "pc/a/event", "x")]);
        assert!(std::fs::metadata(&path).unwrap().len() > 0);
        assert!(!journal.record(&[Owing::Settled { id: 1 }]));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);

        // One event stays owed while thousands come and go.
        journal.record(&[added(2, "pc/a/event", "stays")]);
        let mut wants_rewrite = false;
        for id in 3..3 + COMPACT_SLACK as u64 {
            wants_rewrite |= journal.record(&[added(id, "pc/a/event", "goes")]);
            wants_rewrite |= journal.record(&[Owing::Settled { id }]);
            if wants_rewrite {
                break;
            }
        }
        assert!(wants_rewrite, "settled records pile up");
        journal.rewrite(&[(2, "pc/a/event", b"stays")]);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        drop(journal);
        assert_eq!(
            kept(dir.path()),
            [("pc/a/event".to_string(), "stays".to_string())]
        );
    }

    #[test]
    fn payloads_that_are_not_text_are_kept_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        journal.record(&[Owing::Added {
            id: 1,
            topic: "pc/a/event".into(),
            payload: vec![0xff, 0, 7],
        }]);
        drop(journal);
        let back = Journal::open(dir.path()).unwrap().take_kept();
        assert_eq!(back[0].payload, [0xff, 0, 7]);
    }

    #[test]
    fn beyond_the_cap_the_oldest_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        let changes: Vec<Owing> = (1..=MAX_OWED_EVENTS as u64 + 5)
            .map(|id| added(id, "pc/a/event", &id.to_string()))
            .collect();
        journal.record(&changes);
        drop(journal);
        let back = Journal::open(dir.path()).unwrap().take_kept();
        assert_eq!(back.len(), MAX_OWED_EVENTS);
        assert_eq!(back[0].payload, b"6");
        assert_eq!(back[0].id, 1);
    }

    /// A journal that cannot be written offers no handle to fsync (the session then refuses
    /// to let the state file be saved), and is tried again only after a pause.
    #[test]
    fn a_journal_that_cannot_be_written_holds_the_state_file_back() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let mut journal = Journal::open(&state).unwrap();
        assert!(journal.sync_handle().is_some());
        std::fs::remove_dir_all(&state).unwrap();
        journal.rewrite(&[(1, "pc/a/event", b"x")]);
        assert!(journal.sync_handle().is_none());
        assert!(!journal.wants_rewrite(), "not again at once");
        assert!(!journal.record(&[added(2, "pc/a/event", "y")]));
        // Writable again (after the pause): whole again.
        std::fs::create_dir(&state).unwrap();
        journal.retry_at = Some(std::time::Instant::now());
        assert!(journal.wants_rewrite());
        journal.rewrite(&[(1, "pc/a/event", b"x"), (2, "pc/a/event", b"y")]);
        assert!(journal.sync_handle().is_some());
        drop(journal);
        assert_eq!(kept(&state).len(), 2);
    }
}
