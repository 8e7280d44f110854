//! Supported-command lists shared by the printers that have the same one (a farm's printers
//! of one model and firmware): one copy, not one per printer, and one read of Connect per
//! printer type and firmware, not one per printer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::connect::model::SupportedCommand;

/// A read for a kind that has not come back after this long (its printer left the account
/// while it waited, say) no longer holds the kind's other printers back.
pub const READ_HOLDS_FOR: Duration = Duration::from_secs(600);

/// What a printer's list depends on: its printer type and firmware. Printers that do not
/// say both read their own.
pub type Kind = (String, String);

/// The distinct supported-commands lists in use, and the one read for each printer type and
/// firmware.
#[derive(Debug, Default)]
pub struct SupportedPool {
    lists: Vec<Arc<Vec<SupportedCommand>>>,
    /// The list last read for a printer of that kind.
    by_kind: HashMap<Kind, Arc<Vec<SupportedCommand>>>,
    /// Kinds whose list is being read, since when: their other printers wait for it.
    reading: HashMap<Kind, Instant>,
}

impl SupportedPool {
    pub fn intern(&mut self, list: Vec<SupportedCommand>) -> Arc<Vec<SupportedCommand>> {
        // Lists no printer holds any more go (the pool's own references are all that is left).
        self.by_kind.retain(|_, l| Arc::strong_count(l) > 2);
        self.lists.retain(|l| Arc::strong_count(l) > 1);
        if let Some(same) = self.lists.iter().find(|l| ***l == list) {
            return same.clone();
        }
        let list = Arc::new(list);
        self.lists.push(list.clone());
        list
    }

    /// The list read for a printer of `kind`, if one was.
    pub fn of_kind(&self, kind: &Kind) -> Option<Arc<Vec<SupportedCommand>>> {
        self.by_kind.get(kind).cloned()
    }

    pub fn is_reading(&self, kind: &Kind, now: Instant) -> bool {
        self.reading
            .get(kind)
            .is_some_and(|&t| now.saturating_duration_since(t) < READ_HOLDS_FOR)
    }

    /// A read for a printer of `kind` started at `now`.
    pub fn reading(&mut self, kind: Kind, now: Instant) {
        self.reading.insert(kind, now);
    }

    /// The read for a printer of `kind` came back: with its list (shared from now on), or
    /// failed (the kind's other printers read their own).
    pub fn read(&mut self, kind: &Kind, list: Option<Arc<Vec<SupportedCommand>>>) {
        self.reading.remove(kind);
        if let Some(list) = list {
            self.by_kind.insert(kind.clone(), list);
        }
    }
}
