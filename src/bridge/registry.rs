//! One registry of printers: a [`PrinterEntry`] per uuid holding what survives a restart
//! ([`PrinterRecord`], in `state.dir/state.json`) and what is live. Topic ids are assigned
//! here, once, and persisted.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

pub use crate::bridge::printer::{PrinterEntry, PrinterRecord};
use crate::command::{CommandError, ErrorCode};
use crate::connect::model::Printer;
use crate::topics::{is_reserved, slug};

/// `state.dir/state.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct StateFile {
    /// Keyed by printer uuid; a printer here has had discovery published.
    pub printers: BTreeMap<String, PrinterRecord>,
    /// Connect's notifications already published.
    pub notifications: crate::bridge::account::notifications::NotificationCursor,
    /// The `homeassistant.mode` discovery was last published in (text: a state file from
    /// a later version may hold a mode this one does not know).
    pub discovery_mode: Option<String>,
}

/// [`StateFile`] as it is written, borrowed: a farm's records are not copied to be saved.
/// It serializes to what [`StateFile`] reads back.
#[derive(Serialize)]
pub struct StateFileView<'a> {
    printers: Records<'a>,
    notifications: &'a crate::bridge::account::notifications::NotificationCursor,
    discovery_mode: Option<String>,
}

/// The registry's records, as [`StateFile::printers`].
struct Records<'a>(&'a BTreeMap<String, PrinterEntry>);

impl Serialize for Records<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(uuid, e)| (uuid, &e.record)))
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
    pub fn from_state_file(memory: StateFile) -> Registry {
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
            registry
                .entries
                .insert(uuid.clone(), PrinterEntry::new(uuid, record, true));
        }
        registry
    }

    /// [`Registry::state_file`] without copying: the account's part is the caller's.
    pub fn state_view<'a>(
        &'a self,
        notifications: &'a crate::bridge::account::notifications::NotificationCursor,
        discovery_mode: Option<String>,
    ) -> StateFileView<'a> {
        StateFileView {
            printers: Records(&self.entries),
            notifications,
            discovery_mode,
        }
    }

    /// What goes into the state file.
    pub fn state_file(&self) -> StateFile {
        StateFile {
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

    /// The bridged printer a command for `id` goes to, or why there is none (`never_listed`:
    /// why no printer list came in yet, if none did).
    pub fn bridged_by_id(
        &self,
        id: &str,
        never_listed: Option<String>,
    ) -> Result<&PrinterEntry, CommandError> {
        if let Some(entry) = self.by_id(id)
            && entry.runtime.is_some()
        {
            return Ok(entry);
        }
        if let Some(why) = never_listed {
            // Which printers there are is not known yet: not the command's fault.
            return Err(CommandError::new(
                ErrorCode::ConnectError,
                format!("the printers are not known yet: {why}"),
            ));
        }
        let known: Vec<&str> = self
            .entries()
            .filter(|e| e.runtime.is_some())
            .filter_map(|e| e.id())
            .collect();
        Err(CommandError::new(
            ErrorCode::UnknownPrinter,
            format!("no printer {id:?} is bridged (known: {})", known.join(", ")),
        ))
    }

    pub fn entries(&self) -> impl Iterator<Item = &PrinterEntry> {
        self.entries.values()
    }

    /// The printers seen in this run and not published yet.
    /// Whether every start-up read of printer `uuid` is back (`cameras`: whether they count;
    /// see `Runtime::is_known`).
    pub fn is_known(&self, uuid: &str, cameras: bool) -> bool {
        let runtime = self.get(uuid).and_then(|e| e.runtime.as_ref());
        runtime.is_some_and(|r| r.is_known(cameras))
    }

    /// The published printers, each to render its discovery again (see
    /// [`crate::bridge::Core::discovery_again`]).
    pub fn forget_shown_discovery(&mut self) -> Vec<String> {
        self.entries_mut()
            .filter_map(|e| {
                let live = e.runtime.as_mut().filter(|l| l.introduced)?;
                live.shown_device = None;
                live.discovery_inputs = None;
                Some(e.uuid.clone())
            })
            .collect()
    }

    pub fn unpublished(&self) -> Vec<String> {
        self.entries()
            .filter(|e| e.runtime.as_ref().is_some_and(|l| !l.introduced))
            .map(|e| e.uuid.clone())
            .collect()
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
            .map(|c| c.to_ascii_lowercase())
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
            .or_insert_with(|| PrinterEntry::new(p.uuid.clone(), PrinterRecord::default(), false));
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
            if let Some(live) = other.runtime.as_mut() {
                live.forget_shown();
            }
        }
    }
}

/// Gives `printers` their topic ids (`overrides`: uuid or name -> id); a printer whose id
/// changed has its old topics cleared (unless another printer took them over) and everything
/// published again on the new ones.
pub fn assign_ids(
    registry: &mut Registry,
    printers: &[Printer],
    overrides: &BTreeMap<String, String>,
    topics: &crate::topics::Topics,
    fx: &mut crate::bridge::effects::Effects,
) {
    let clashes = registry.clashes().to_vec();
    let renamed = registry.assign_ids(&printers.iter().collect::<Vec<_>>(), overrides);
    if registry.clashes() != clashes {
        for clash in registry.clashes() {
            tracing::warn!("{clash}");
        }
    }
    for r in renamed {
        tracing::info!(
            "printer {} now publishes as {} (was {})",
            r.uuid,
            r.new,
            r.old
        );
        let free = registry.topics_free_for(&r.old, &r.uuid);
        if let Some(entry) = registry.get_mut(&r.uuid) {
            fx.publish_all(entry.cleared_topics(topics, &r.old, free));
            if let Some(live) = entry.runtime.as_mut() {
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

    /// A printer without a name is `printer_` and the end of its uuid, in lower case: topic
    /// ids are lower case whatever the uuid (the parser fuzz found an upper-case one).
    #[test]
    fn a_nameless_printer_with_an_upper_case_uuid_gets_a_lower_case_id() {
        let mut r = Registry::default();
        let p = Printer {
            uuid: "0000-ABCDEF".into(),
            ..Default::default()
        };
        r.assign_ids(&[&p], &BTreeMap::new());
        assert_eq!(
            r.get(&p.uuid).and_then(PrinterEntry::id),
            Some("printer_abcdef")
        );
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
