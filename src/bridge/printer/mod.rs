//! One printer: its persisted record, its runtime view, and every decision about it.

mod cameras;
mod catch_up;
pub mod commands;
pub mod controls;
pub mod days;
pub mod feed;
pub mod files;
pub mod jobs;
mod observe;
mod pushed;
mod queue;
mod render;
mod results;
pub mod spool;
pub mod stats;
mod storage;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::bridge::Settings;
use crate::bridge::account::Account;
use crate::bridge::effects::Effects;
use crate::bridge::printer::feed::{FeedCursor, RecentEvents};
use crate::bridge::printer::jobs::{JobReads, JobRecord};
use crate::bridge::reads::Read;
use crate::bridge::schedule::Due;
use crate::connect::model::{Job, Printer};
use crate::message::{Kind, Message};
use crate::topics::Topics;
pub use cameras::Cameras;
pub use pushed::{BadValue, Pushed};
pub use queue::{QueueInfo, QueueStep};
pub use storage::StorageSpace;

/// What survives a restart, per printer.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PrinterRecord {
    /// The topic id (`P`), assigned once.
    pub id: Option<String>,
    /// The Connect name `id` was made from; `None` when the operator chose the id
    /// (`mqtt.printer_ids`). A printer renamed in Connect gets a new id.
    pub id_name: Option<String>,
    #[serde(flatten)]
    pub feed: FeedCursor,
    #[serde(flatten)]
    pub jobs: JobRecord,
    /// The dialog last announced on `P/event` (its id, or title and text), while shown.
    pub announced_dialog: Option<String>,
    /// The cameras in the printer's discovery `(id, name)`, to remove their entities even
    /// after a restart.
    pub cameras: Vec<(String, String)>,
    /// Its totals (`P/stats`), counted with each job announced.
    pub stats: stats::Totals,
    /// Its Spoolman spool (`P/spool`), whose used weight its jobs add to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spool: Option<u64>,
}

/// What the gateway knows of a printer while it runs.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The printer as the last list showed it.
    pub printer: Printer,
    /// The detail (file, objects) of the job last read; see [`Runtime::current_detail`].
    pub job_detail: Option<Job>,
    /// The detail is to be read again (a command changed the job's objects); until then the
    /// one read before is shown.
    pub detail_stale: bool,
    pub job_reads: JobReads,
    /// Published at least once (see `PrinterEntry::render`).
    pub introduced: bool,
    /// When (wall clock) it was first seen in this run: its first publication waits for its
    /// first reads at most [`FIRST_PUBLICATION_WAIT`] after that.
    pub first_seen: Option<f64>,
    /// The published `P/state` without `updated`, `P/job` (their fingerprints, see
    /// `render.rs`) and `P/availability`: only changes go to the session (the outbox would
    /// drop the rest, after the trip).
    pub shown_state: Option<u64>,
    pub shown_job: Option<u64>,
    pub shown_online: Option<bool>,
    /// `P/stats` went out with the totals as they are.
    pub shown_stats: bool,
    /// The part of the day's use not counted yet: its bucket, since when, and when the
    /// printer was last seen in it (see `PrinterEntry::track_use`).
    pub use_since: Option<(days::Bucket, f64, f64)>,
    /// The statistics that seed the totals were asked for in this run (see
    /// `PrinterEntry::seed_reads`).
    pub seed_asked: bool,
    /// What, when it changes, calls for a look at the events feed.
    pub signature: Option<u64>,
    pub feed: Due,
    /// When the feed is read next even if nothing changes (`connect.feed_interval`); placed
    /// after the first read.
    pub feed_next: Option<Instant>,
    /// When the feed was last read, and whether the read in flight is from a rewound cursor.
    pub feed_read_at: Option<Instant>,
    pub feed_rewound: bool,
    pub recent_events: RecentEvents,
    /// The discovery last published, as a hash of its [`crate::discovery::PrinterDevice`]
    /// (the controls' state lists alone were kilobytes a printer).
    pub shown_device: Option<u64>,
    /// A hash of what discovery takes from the printer's own view (name, model, firmware,
    /// job, dialog buttons, features) when it was last compared. While it stays the same,
    /// a new view from the list or the live channel does not build the discovery again to
    /// compare it; anything else discovery shows changes through a read or a shared list,
    /// which clears it.
    pub discovery_inputs: Option<u64>,
    pub cameras: Cameras,
    pub queue: QueueInfo,
    /// `supported-commands`: what the controls and the commands' checks go by.
    pub supported: crate::bridge::printer::controls::SupportedInfo,
    pub files: crate::bridge::printer::files::PrintFiles,
    /// Free space on its storages.
    pub storage: StorageSpace,
    pub preview: crate::bridge::printer::files::Preview,
    /// What the live channel said of it (empty while the channel does not cover it).
    pub pushed: Pushed,
    /// Per kind of request ("events", "job"), the error last logged: a failure is logged when
    /// it starts or changes, and once when it ends.
    pub failing: HashMap<&'static str, String>,
}

/// A printer's first publication waits for the first reads it shows (feed cursor, cameras,
/// controls, free space...) at most this long; then it goes with what is known, and again as
/// they come back. A farm's start, whose reads wait for the request budget
/// (`connect.max_requests_per_second`), still has every `P/state` on the broker at once.
pub const FIRST_PUBLICATION_WAIT: f64 = 1.0;

impl Runtime {
    /// Whether its first publication should still wait for the first reads at `wall`.
    pub fn waits_for_first_reads(&self, wall: f64, types_reading: bool) -> bool {
        self.introduction_deadline(types_reading)
            .is_some_and(|t| wall < t)
    }

    /// When (wall clock) its first publication, waiting for its first reads, goes anyway;
    /// `None` when it is not waiting (published, or nothing to wait for).
    pub fn introduction_deadline(&self, types_reading: bool) -> Option<f64> {
        let waiting = !self.introduced && (self.first_reads_pending() || types_reading);
        waiting.then(|| {
            self.first_seen
                .map_or(f64::INFINITY, |t| t + FIRST_PUBLICATION_WAIT)
        })
    }

    pub fn new(printer: Printer, now: Instant) -> Runtime {
        Runtime {
            printer,
            job_detail: None,
            detail_stale: false,
            job_reads: JobReads::default(),
            introduced: false,
            first_seen: None,
            shown_state: None,
            shown_job: None,
            shown_online: None,
            shown_stats: false,
            use_since: None,
            seed_asked: false,
            signature: None,
            // Catch up with the feed from the stored cursor on the first look.
            feed: Due::now(now),
            feed_next: None,
            feed_read_at: None,
            feed_rewound: false,
            recent_events: RecentEvents::default(),
            shown_device: None,
            discovery_inputs: None,
            cameras: Cameras::default(),
            queue: QueueInfo::default(),
            supported: crate::bridge::printer::controls::SupportedInfo::new(now),
            files: Default::default(),
            storage: StorageSpace::new(now),
            preview: Default::default(),
            pushed: Default::default(),
            failing: HashMap::new(),
        }
    }

    /// Reads in flight whose result the printer's first publication shows: the feed cursor,
    /// the cameras, the supported commands, the queues, the free space, the current job's
    /// detail.
    pub fn first_reads_pending(&self) -> bool {
        let current = self.printer.job_info.as_ref().and_then(|j| j.id);
        self.feed.is_running()
            || self.supported.due.due.is_running()
            || self.cameras.listing
            || self.queue.due.is_running()
            || self.storage.due.due.is_running()
            || current.is_some_and(|j| self.job_reads.in_flight.contains(&j))
    }

    /// Whether every start-up read of the printer is back (answered, or failed and to be
    /// tried again later): its first publication, supported commands, queues, job list, free
    /// space, and cameras when `cameras` are on. A farm's start spreads these over several polls.
    pub fn is_known(&self, cameras: bool) -> bool {
        let storage = self.storage.read_once || self.storage.due.has_failed();
        storage && self.known_but_storage(cameras)
    }

    /// Whether every start-up read but the free space is back (see [`Runtime::is_known`]).
    pub fn known_but_storage(&self, cameras: bool) -> bool {
        let supported = self.supported.list.is_some() || self.supported.due.has_failed();
        // Read (or failed) once: a later read in flight does not make it unknown again.
        let queue = self.queue.fields.queue_count.is_some() || self.queue.failed_at.is_some();
        let listed = self.cameras.list.is_some() || self.cameras.failed_at.is_some();
        self.introduced && supported && queue && self.job_reads.listed && (!cameras || listed)
    }

    /// The detail of the job the printer shows now, if it was read: never another job's
    /// (a "Cancel object" must not name the previous job's objects).
    pub fn current_detail(&self) -> Option<&Job> {
        let current = self.printer.job_info.as_ref().and_then(|j| j.id)?;
        self.job_detail.as_ref().filter(|d| d.id == current)
    }

    /// Starts the feed read asked for (from the cursor `from`), unless one runs.
    pub fn start_feed_read(&mut self, uuid: &str, from: Option<f64>, now: Instant) -> Option<Read> {
        if !self.feed.start(now) {
            return None;
        }
        self.feed_rewound = false;
        Some(Read::Feed {
            uuid: uuid.to_string(),
            from,
            rewound: false,
        })
    }

    /// Starts the job-list read asked for (down to job `after`), unless one runs.
    ///
    /// While the list is read (or waits for its turn) it tells how the ended jobs ended, so
    /// the reads of their records asked for before are withdrawn: a record read then settles
    /// nothing. Only the job the printer runs keeps its read: its detail (file, objects) is
    /// not in the list. Without this, a farm whose jobs end faster than the request budget
    /// reads piles up record reads in the shell's line, one more with every job.
    pub fn start_job_list_read(
        &mut self,
        fx: &mut Effects,
        uuid: &str,
        after: Option<i64>,
        now: Instant,
    ) {
        if self.job_reads.list.start(now) {
            fx.read(Read::Jobs {
                uuid: uuid.to_string(),
                after,
            });
        }
        if !self.job_reads.list.is_running() {
            return;
        }
        let current = self.printer.job_info.as_ref().and_then(|j| j.id);
        let withdrawn: Vec<i64> = (self.job_reads.in_flight.iter().copied())
            .filter(|job| Some(*job) != current)
            .collect();
        for job in withdrawn {
            self.job_reads.in_flight.remove(&job);
            fx.withdrawn.push(Read::Job {
                uuid: uuid.to_string(),
                job,
            });
        }
    }

    /// Everything is to be published again (on new topics).
    pub fn forget_shown(&mut self) {
        self.shown_state = None;
        self.shown_job = None;
        self.shown_online = None;
        self.shown_device = None;
        self.shown_stats = false;
        self.discovery_inputs = None;
        // The thumbnail is fetched again for the new `P/job/preview`.
        self.preview = Default::default();
    }

    pub fn failed(&mut self, what: &'static str, error: &str) {
        let name = self.printer.display_name();
        if self.failing.get(what).map(String::as_str) != Some(error) {
            tracing::warn!("{name}: cannot read {what} ({error}); trying again later");
            self.failing.insert(what, error.to_string());
        } else {
            tracing::debug!("{name}: still cannot read {what}: {error}");
        }
    }

    pub fn succeeded(&mut self, what: &'static str) {
        if self.failing.remove(what).is_some() {
            tracing::info!("{}: {what} readable again", self.printer.display_name());
        }
    }
}

#[derive(Debug, Clone)]
pub struct PrinterEntry {
    pub uuid: String,
    pub record: PrinterRecord,
    /// `None` for a printer known from the state file and not seen in this run yet.
    pub runtime: Option<Box<Runtime>>,
    /// Successful list polls in a row that did not show it, and since when.
    pub missing: u32,
    pub missing_since: Option<Instant>,
    /// Known before this poll (from the state file or an earlier poll): a printer seen for
    /// the first time ever is not.
    pub known: bool,
    /// Discovery topics of the mode published before (`homeassistant.mode` changed), to
    /// clear once the new discovery is out (see `migration.rs`).
    pub old_discovery: Vec<String>,
}

impl PrinterEntry {
    pub fn new(uuid: String, record: PrinterRecord, known: bool) -> PrinterEntry {
        PrinterEntry {
            uuid,
            record,
            runtime: None,
            missing: 0,
            missing_since: None,
            known,
            old_discovery: Vec::new(),
        }
    }

    pub fn id(&self) -> Option<&str> {
        self.record.id.as_deref()
    }

    /// The name the logs give it.
    pub fn display_name(&self) -> String {
        match &self.runtime {
            Some(live) => live.printer.display_name().to_string(),
            None => self.uuid.clone(),
        }
    }

    /// Counts a successful poll that did (`seen`) or did not show the printer; returns how
    /// many in a row did not (since `missing_since`).
    pub fn count_missing(&mut self, seen: bool, now: Instant) -> u32 {
        if seen {
            self.missing = 0;
            self.missing_since = None;
        } else {
            self.missing += 1;
            self.missing_since.get_or_insert(now);
        }
        self.missing
    }

    /// The list sent the printer unreadable: it shows no live values, it is `offline`, and
    /// its feed, which may say what happened, is read at once.
    pub fn unreadable(&mut self, topics: &Topics, fx: &mut Effects, now: Instant) {
        let Some(id) = self.id().map(str::to_string) else {
            return;
        };
        let Some(live) = self.runtime.as_mut() else {
            return;
        };
        if live.shown_online != Some(false) {
            live.shown_online = Some(false);
            live.feed.request(now);
            fx.publish(Message::retain(
                Kind::Data,
                topics.availability(&id),
                "offline",
            ));
        }
        fx.read(live.start_feed_read(&self.uuid, self.record.feed.after, now));
    }

    /// The messages that empty the printer's topics under `id` (state, job, thumbnail,
    /// availability, pictures); `free`: no other printer publishes on them now. The bridge's
    /// own `B/bridge/state` is never among them.
    pub fn cleared_topics(&self, topics: &Topics, id: &str, free: bool) -> Vec<Message> {
        let mut out = Vec::new();
        let reserved = crate::topics::is_reserved(id);
        if !reserved && !free {
            return out;
        }
        for (camera, _) in &self.record.cameras {
            out.push(Message::Forget {
                topic: topics.camera(id, camera),
            });
        }
        if !reserved {
            out.push(Message::Clear {
                topic: topics.state(id),
            });
        }
        for topic in [
            topics.job(id),
            topics.job_preview(id),
            topics.stats(id),
            topics.job_finished_picture(id),
            topics.spool(id),
            topics.availability(id),
        ] {
            out.push(Message::Clear { topic });
        }
        out
    }

    /// Clears the old discovery topics of a mode switch, before the new discovery.
    pub fn finish_migration(&mut self, fx: &mut Effects) {
        for topic in std::mem::take(&mut self.old_discovery) {
            fx.publish(Message::Clear { topic });
        }
    }
}

/// What a printer's decisions read of the rest of the bridge, and where they put what they
/// decide. A decision takes its printer's entry and this; nothing else.
pub struct Ctx<'a> {
    pub settings: &'a Settings,
    /// Printer types, optional endpoints at rest, the shared supported-command lists, and
    /// the account reads a printer's change calls for.
    pub account: &'a mut Account,
    pub fx: &'a mut Effects,
    /// What is left of this poll's request budget for extras.
    pub budget: &'a mut u32,
    /// Connect answers, and its last list could read this printer.
    pub reachable: bool,
    /// Where payloads are written to be compared with what was shown: one buffer for every
    /// printer, so a payload that did not change costs no allocation.
    pub scratch: &'a mut Vec<u8>,
}
