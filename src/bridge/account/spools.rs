//! What the bridge knows of Spoolman (`spoolman.url`): its spool list, which every printer's
//! "Spool" select offers, and how the reports of used filament stand (`bridge/info`).

use serde_json::{Value, json};

use crate::spoolman::{Report, Spool, SpoolmanEvent};

#[derive(Debug, Default)]
pub struct Spools {
    /// The spools not archived, as last read (`None`: not read yet).
    pub list: Option<Vec<Spool>>,
    /// Why the last read of the list failed (`None` once one succeeded).
    pub list_error: Option<String>,
    /// Uses not reported yet, and why the first one waits.
    pub pending: usize,
    pub pending_error: Option<String>,
    pub reported: u64,
    pub given_up: u64,
    pub last_given_up: Option<String>,
}

/// What an event from Spoolman changed, for the printers.
#[derive(Debug, Default, PartialEq)]
pub struct Changed {
    /// The select's options (a spool added, renamed or archived): every discovery.
    pub labels: bool,
    /// A spool's remaining weight: the `P/state` of the printers that use it.
    pub remaining: bool,
}

impl Spools {
    pub fn find(&self, id: u64) -> Option<&Spool> {
        self.list.as_ref()?.iter().find(|s| s.id == id)
    }

    /// The select's options: the spools' labels (none until the list is read).
    pub fn labels(&self) -> Vec<String> {
        self.list
            .iter()
            .flatten()
            .map(|s| s.label.clone())
            .collect()
    }

    pub fn on_event(&mut self, event: SpoolmanEvent) -> Changed {
        match event {
            SpoolmanEvent::Listed(Ok(list)) => {
                self.list_error = None;
                let before = self.list.replace(list);
                let now = self.list.as_deref().unwrap_or_default();
                let labels = |l: &[Spool]| {
                    l.iter()
                        .map(|s| (s.id, s.label.clone()))
                        .collect::<Vec<_>>()
                };
                let remaining = |l: &[Spool]| {
                    l.iter()
                        .map(|s| s.remaining_g.map(f64::to_bits))
                        .collect::<Vec<_>>()
                };
                match before {
                    None => Changed {
                        labels: true,
                        remaining: true,
                    },
                    Some(before) => Changed {
                        labels: labels(&before) != labels(now),
                        remaining: remaining(&before) != remaining(now),
                    },
                }
            }
            SpoolmanEvent::Listed(Err(why)) => {
                self.list_error = Some(why);
                Changed::default()
            }
            SpoolmanEvent::Reported(Report { given_up, .. }) => {
                match given_up {
                    None => self.reported += 1,
                    Some(why) => {
                        self.given_up += 1;
                        self.last_given_up = Some(why);
                    }
                }
                Changed::default()
            }
            SpoolmanEvent::Pending { count, error } => {
                self.pending = count;
                self.pending_error = error;
                Changed::default()
            }
        }
    }

    /// `bridge/info`'s `spoolman`.
    pub fn info(&self, url: &str) -> Value {
        json!({
            "url": crate::config::redact_url(url),
            "reachable": self.list.is_some() && self.list_error.is_none(),
            "spools": self.list.as_ref().map(Vec::len),
            "last_error": self.list_error,
            "pending": self.pending,
            "pending_error": self.pending_error,
            "reported": self.reported,
            "given_up": self.given_up,
            "last_given_up": self.last_given_up,
        })
    }
}
