//! One registry of printers: a [`PrinterEntry`] per uuid holding what survives a restart
//! ([`PrinterRecord`], in `state.dir/state.json`) and what is live. Topic ids are assigned
//! here, once, and persisted.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::bridge::account::{Cameras, QueueInfo};
use crate::bridge::printer::feed::{FeedCursor, RecentEvents};
use crate::bridge::printer::jobs::{JobReads, JobRecord};
use crate::bridge::reads::Read;
use crate::bridge::schedule::Due;
use crate::connect::model::{Job, Printer};
use crate::discovery::PrinterDevice;
use crate::payloads::StatePayload;
use crate::topics::{is_reserved, slug};

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
}

/// `state.dir/state.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Memory {
    /// Keyed by printer uuid; a printer here has had discovery published.
    pub printers: BTreeMap<String, PrinterRecord>,
    /// Connect's notifications already published.
    pub notifications: crate::bridge::account::notifications::NotificationCursor,
    /// The `homeassistant.mode` discovery was last published in (text: a state file from
    /// a later version may hold a mode this one does not know).
    pub discovery_mode: Option<String>,
}

/// What the gateway knows of a printer while it runs.
#[derive(Debug, Clone)]
pub struct Live {
    /// The printer as the last list showed it.
    pub printer: Printer,
    /// The detail (file, objects) of the job last read; see [`Live::current_detail`].
    pub job_detail: Option<Job>,
    /// The detail is to be read again (a command changed the job's objects); until then the
    /// one read before is shown.
    pub detail_stale: bool,
    pub job_reads: JobReads,
    /// Published at least once (see `Core::render`).
    pub introduced: bool,
    /// The published `P/state` without `updated`, `P/job` and `P/availability`: only changes
    /// go to the session (the outbox would drop the rest, after the trip).
    pub shown_state: Option<StatePayload>,
    pub shown_job: Option<serde_json::Value>,
    pub shown_online: Option<bool>,
    /// What, when it changes, calls for a look at the events feed.
    pub signature: Option<String>,
    pub feed: Due,
    /// When the feed is read next even if nothing changes (`connect.feed_interval`); placed
    /// after the first read.
    pub feed_next: Option<Instant>,
    /// When the feed was last read, and whether the read in flight is from a rewound cursor.
    pub feed_read_at: Option<Instant>,
    pub feed_rewound: bool,
    pub recent_events: RecentEvents,
    /// The discovery last published.
    pub device: Option<PrinterDevice>,
    pub cameras: Cameras,
    pub queue: QueueInfo,
    /// `supported-commands`: what the controls and the commands' checks go by.
    pub supported: crate::bridge::printer::controls::SupportedInfo,
    pub files: crate::bridge::printer::files::PrintFiles,
    pub preview: crate::bridge::printer::files::Preview,
    /// What the live channel said of it (empty while the channel does not cover it).
    pub pushed: crate::bridge::live::Pushed,
    /// Per kind of request ("events", "job"), the error last logged: a failure is logged when
    /// it starts or changes, and once when it ends.
    pub failing: HashMap<&'static str, String>,
}

impl Live {
    pub fn new(printer: Printer, now: Instant) -> Live {
        Live {
            printer,
            job_detail: None,
            detail_stale: false,
            job_reads: JobReads::default(),
            introduced: false,
            shown_state: None,
            shown_job: None,
            shown_online: None,
            signature: None,
            // Catch up with the feed from the stored cursor on the first look.
            feed: Due::now(now),
            feed_next: None,
            feed_read_at: None,
            feed_rewound: false,
            recent_events: RecentEvents::default(),
            device: None,
            cameras: Cameras::default(),
            queue: QueueInfo::default(),
            supported: crate::bridge::printer::controls::SupportedInfo::new(now),
            files: Default::default(),
            preview: Default::default(),
            pushed: Default::default(),
            failing: HashMap::new(),
        }
    }

    /// Reads in flight whose result the printer's first publication shows: the feed cursor,
    /// the cameras, the current job's detail.
    pub fn first_reads_pending(&self) -> bool {
        let current = self.printer.job_info.as_ref().and_then(|j| j.id);
        self.feed.is_running()
            || self.supported.due.due.is_running()
            || self.cameras.listing
            || self.queue.due.is_running()
            || current.is_some_and(|j| self.job_reads.in_flight.contains(&j))
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
    pub fn start_job_list_read(
        &mut self,
        uuid: &str,
        after: Option<i64>,
        now: Instant,
    ) -> Option<Read> {
        self.job_reads.list.start(now).then(|| Read::Jobs {
            uuid: uuid.to_string(),
            after,
        })
    }

    /// Everything is to be published again (on new topics).
    pub fn forget_shown(&mut self) {
        self.shown_state = None;
        self.shown_job = None;
        self.shown_online = None;
        self.device = None;
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
    pub live: Option<Live>,
    /// Successful list polls in a row that did not show it, and since when.
    pub missing: u32,
    pub missing_since: Option<Instant>,
    /// Known before this poll (from the state file or an earlier poll): a printer seen for
    /// the first time ever is not.
    pub known: bool,
}

impl PrinterEntry {
    pub fn id(&self) -> Option<&str> {
        self.record.id.as_deref()
    }
}

/// Every printer the gateway knows, by uuid, and which topic id belongs to which.
#[derive(Debug, Default)]
pub struct Registry {
    entries: BTreeMap<String, PrinterEntry>,
    by_id: HashMap<String, String>,
    /// `mqtt.printer_ids` keys that name several listed printers: none of them takes it.
    clashes: Vec<IdClash>,
}

/// A `mqtt.printer_ids` name that several printers share: which id it asks for, and which
/// printers (uuids) would have got it.
#[derive(Debug, Clone, PartialEq)]
pub struct IdClash {
    pub name: String,
    pub id: String,
    pub uuids: Vec<String>,
}

impl std::fmt::Display for IdClash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "mqtt.printer_ids.{:?} = {:?} matches {} printers named {:?} ({}): none of them \
             takes it (each keeps the id of its name); key it by uuid instead",
            self.name,
            self.id,
            self.uuids.len(),
            self.name,
            self.uuids.join(", ")
        )
    }
}

/// A printer whose topic id changed: its old topics hold stale retained values.
#[derive(Debug, Clone, PartialEq)]
pub struct Renamed {
    pub uuid: String,
    pub old: String,
    pub new: String,
}

impl Registry {
    pub fn from_memory(memory: Memory) -> Registry {
        let mut registry = Registry::default();
        for (uuid, mut record) in memory.printers {
            if let Some(id) = &record.id {
                if registry.by_id.contains_key(id) {
                    // Two printers on one id (an earlier version let an override take the
                    // id of a printer missing from the list): the first keeps it, the other
                    // gets a new one when it is listed; the topics are the holder's.
                    record.id = None;
                    record.id_name = None;
                } else if !is_reserved(id) {
                    registry.by_id.insert(id.clone(), uuid.clone());
                }
                // A reserved id stays in the record, owned by nobody: the printer is given
                // a new one when listed, and its topics there are cleared as a rename's.
            }
            registry.entries.insert(
                uuid.clone(),
                PrinterEntry {
                    uuid,
                    record,
                    live: None,
                    missing: 0,
                    missing_since: None,
                    known: true,
                },
            );
        }
        registry
    }

    /// What goes into the state file.
    pub fn memory(&self) -> Memory {
        Memory {
            notifications: Default::default(),
            discovery_mode: None,
            printers: self
                .entries
                .iter()
                .map(|(uuid, e)| (uuid.clone(), e.record.clone()))
                .collect(),
        }
    }

    pub fn get(&self, uuid: &str) -> Option<&PrinterEntry> {
        self.entries.get(uuid)
    }

    pub fn get_mut(&mut self, uuid: &str) -> Option<&mut PrinterEntry> {
        self.entries.get_mut(uuid)
    }

    pub fn contains(&self, uuid: &str) -> bool {
        self.entries.contains_key(uuid)
    }

    /// The printer that publishes as `id`.
    pub fn by_id(&self, id: &str) -> Option<&PrinterEntry> {
        self.entries.get(self.by_id.get(id)?)
    }

    pub fn entries(&self) -> impl Iterator<Item = &PrinterEntry> {
        self.entries.values()
    }

    pub fn entries_mut(&mut self) -> impl Iterator<Item = &mut PrinterEntry> {
        self.entries.values_mut()
    }

    /// The `mqtt.printer_ids` names that the last [`Registry::assign_ids`] found on several
    /// printers.
    pub fn clashes(&self) -> &[IdClash] {
        &self.clashes
    }

    /// Whether the topics of `id` belong to no printer but (maybe) `uuid`: a printer that
    /// lost its id or is removed clears only topics no other printer took over, and never the
    /// bridge's own.
    pub fn topics_free_for(&self, id: &str, uuid: &str) -> bool {
        !is_reserved(id) && self.by_id.get(id).is_none_or(|holder| holder == uuid)
    }

    pub fn remove(&mut self, uuid: &str) -> Option<PrinterEntry> {
        let entry = self.entries.remove(uuid)?;
        if let Some(id) = entry.id()
            && self.by_id.get(id).map(String::as_str) == Some(uuid)
        {
            self.by_id.remove(id);
        }
        Some(entry)
    }

    /// Gives each listed printer its topic id: the one it has, unless it was renamed in
    /// Connect or `overrides` (by uuid or name) says otherwise. New and renamed printers get
    /// the configured id, else the slug of their name, with a short uuid suffix when another
    /// printer the gateway knows (listed or not) has it. New printers are taken in uuid order,
    /// so the same account gets the same ids on a fresh start.
    pub fn assign_ids(
        &mut self,
        printers: &[&Printer],
        overrides: &BTreeMap<String, String>,
    ) -> Vec<Renamed> {
        let mut sorted: Vec<&Printer> = printers.to_vec();
        sorted.sort_by(|a, b| a.uuid.cmp(&b.uuid));
        let mut renamed = Vec::new();
        // A name override that several printers match would give them one id: it is a
        // clash, and none of them takes it.
        let mut clashes: Vec<IdClash> = Vec::new();
        for p in &sorted {
            let Some((name, id)) = p
                .name
                .as_ref()
                .and_then(|n| overrides.get_key_value(n))
                .filter(|_| !overrides.contains_key(&p.uuid))
            else {
                continue;
            };
            match clashes.iter_mut().find(|c| &c.name == name) {
                Some(c) => c.uuids.push(p.uuid.clone()),
                None => clashes.push(IdClash {
                    name: name.clone(),
                    id: id.clone(),
                    uuids: vec![p.uuid.clone()],
                }),
            }
        }
        clashes.retain(|c| c.uuids.len() > 1);
        let chosen = |p: &Printer| {
            overrides
                .get(&p.uuid)
                .or_else(|| {
                    p.name
                        .as_ref()
                        .filter(|n| !clashes.iter().any(|c| &c.name == *n))
                        .and_then(|n| overrides.get(n))
                })
                .cloned()
        };
        // The operator's choices first, so a slug never takes an id the operator chose.
        for p in &sorted {
            if let Some(id) = chosen(p)
                && self.entries.get(&p.uuid).and_then(PrinterEntry::id) != Some(id.as_str())
            {
                // When it was another printer's id, that printer gets a new one below (its
                // entry no longer owns the id).
                self.set_id(p, id, None, &mut renamed);
            } else if chosen(p).is_some()
                && let Some(e) = self.entries.get_mut(&p.uuid)
            {
                e.record.id_name = None;
            }
        }
        for p in &sorted {
            if chosen(p).is_some() {
                continue;
            }
            let name = p.name.clone().unwrap_or_default();
            let entry = self.entries.get(&p.uuid);
            let keep = entry.is_some_and(|e| {
                e.id().is_some_and(|id| self.by_id.get(id) == Some(&p.uuid))
                    && e.record.id_name.as_deref() == Some(name.as_str())
            });
            if !keep {
                let id = self.fresh_id(p);
                self.set_id(p, id, Some(name), &mut renamed);
            }
        }
        self.clashes = clashes;
        renamed
    }

    fn fresh_id(&self, p: &Printer) -> String {
        let taken = |id: &str| is_reserved(id) || self.by_id.get(id).is_some_and(|u| u != &p.uuid);
        let base = slug(p.name.as_deref().unwrap_or(""));
        let short: String = p
            .uuid
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let short = &short[short.len().saturating_sub(6)..];
        let base = if base.is_empty() {
            format!("printer_{short}")
        } else {
            base
        };
        if !taken(&base) {
            return base;
        }
        let mut id = format!("{base}_{short}");
        let mut n = 2;
        while taken(&id) {
            id = format!("{base}_{short}_{n}");
            n += 1;
        }
        id
    }

    fn set_id(
        &mut self,
        p: &Printer,
        id: String,
        id_name: Option<String>,
        renamed: &mut Vec<Renamed>,
    ) {
        let entry = self
            .entries
            .entry(p.uuid.clone())
            .or_insert_with(|| PrinterEntry {
                uuid: p.uuid.clone(),
                record: PrinterRecord::default(),
                live: None,
                missing: 0,
                missing_since: None,
                known: false,
            });
        let old = entry.record.id.replace(id.clone());
        entry.record.id_name = id_name;
        if let Some(old) = old.filter(|o| *o != id) {
            if self.by_id.get(&old) == Some(&p.uuid) {
                self.by_id.remove(&old);
            }
            renamed.push(Renamed {
                uuid: p.uuid.clone(),
                old,
                new: id.clone(),
            });
        }
        if let Some(holder) = self.by_id.insert(id.clone(), p.uuid.clone())
            && holder != p.uuid
            && let Some(other) = self.entries.get_mut(&holder)
        {
            // The operator gave this id to `p`: the printer that had it (listed or not) no
            // longer publishes there, and is given a new id when it is listed.
            other.record.id = None;
            other.record.id_name = None;
            if let Some(live) = other.live.as_mut() {
                live.forget_shown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printer(uuid: &str, name: &str) -> Printer {
        Printer {
            uuid: uuid.into(),
            name: Some(name.into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_fresh_start_gives_the_ids_earlier_versions_gave() {
        let a = printer("00000000-0000-4000-8000-0000000000aa", "MK4");
        let b = printer("00000000-0000-4000-8000-0000000000bb", "mk4");
        let c = printer("00000000-0000-4000-8000-0000000000cc", "###");
        let d = printer("00000000-0000-4000-8000-0000000000dd", "Left");
        let mut overrides = BTreeMap::new();
        overrides.insert("Left".to_string(), "mk4".to_string());
        let mut registry = Registry::default();
        let renamed = registry.assign_ids(&[&d, &b, &c, &a], &overrides);
        assert!(renamed.is_empty());
        let id = |p: &Printer| registry.get(&p.uuid).unwrap().id().unwrap().to_string();
        assert_eq!(id(&d), "mk4");
        assert_eq!(id(&a), "mk4_0000aa");
        assert_eq!(id(&b), "mk4_0000bb");
        assert_eq!(id(&c), "printer_0000cc");
        assert_eq!(registry.by_id("mk4").unwrap().uuid, d.uuid);
    }

    #[test]
    fn an_id_is_kept_when_a_namesake_comes_or_goes() {
        let a = printer("00000000-0000-4000-8000-0000000000aa", "MK4");
        let b = printer("00000000-0000-4000-8000-0000000000bb", "MK4");
        let none = BTreeMap::new();
        let mut registry = Registry::default();
        registry.assign_ids(&[&b], &none);
        assert_eq!(registry.get(&b.uuid).unwrap().id(), Some("mk4"));
        // A namesake whose uuid sorts first arrives: it does not take the id.
        assert!(registry.assign_ids(&[&a, &b], &none).is_empty());
        assert_eq!(registry.get(&a.uuid).unwrap().id(), Some("mk4_0000aa"));
        assert_eq!(registry.get(&b.uuid).unwrap().id(), Some("mk4"));
        // The holder goes away: the namesake keeps its own.
        registry.remove(&b.uuid);
        assert!(registry.assign_ids(&[&a], &none).is_empty());
        assert_eq!(registry.get(&a.uuid).unwrap().id(), Some("mk4_0000aa"));
        assert!(registry.by_id("mk4").is_none());
    }

    #[test]
    fn an_override_removed_gives_the_printer_its_name_back() {
        let a = printer("00000000-0000-4000-8000-0000000000aa", "MK4");
        let mut overrides = BTreeMap::new();
        overrides.insert(a.uuid.clone(), "left".to_string());
        let mut registry = Registry::default();
        registry.assign_ids(&[&a], &overrides);
        assert_eq!(registry.get(&a.uuid).unwrap().id(), Some("left"));
        let renamed = registry.assign_ids(&[&a], &BTreeMap::new());
        assert_eq!(
            renamed,
            [Renamed {
                uuid: a.uuid.clone(),
                old: "left".into(),
                new: "mk4".into()
            }]
        );
    }
}
