//! What the broker was last told, kept for the web page: `bridge/info` and, per printer, its
//! state, availability and last event. The bridge's shell shows it every message it hands
//! to the broker ([`Board::observe`]); the page reads it through a `watch` channel. Pure: no
//! I/O, no clock.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::message::Message;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Board {
    base: String,
    /// The last `bridge/info` (`None` until the first poll is done).
    pub info: Option<Value>,
    /// By topic id.
    pub printers: BTreeMap<String, PrinterRow>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrinterRow {
    /// `state` of `P/state` (`IDLE`, `PRINTING`, `OFFLINE`...).
    pub state: Option<String>,
    /// `P/availability`: online or offline.
    pub online: Option<bool>,
    /// The last `P/event`: its `event` and `created` (Unix seconds).
    pub last_event: Option<(String, Option<f64>)>,
}

impl Board {
    pub fn new(base_topic: &str) -> Board {
        Board {
            base: base_topic.to_string(),
            ..Default::default()
        }
    }

    /// Takes in what is about to be published; true when anything shown changed.
    pub fn observe(&mut self, messages: &[Message]) -> bool {
        // Each message says whether it changed the board: no copy of the whole board per
        // flush (it runs for every batch the shell hands to the broker).
        messages
            .iter()
            .fold(false, |changed, message| self.take(message) | changed)
    }

    /// Takes in one message; true when it changed what the page shows.
    fn take(&mut self, message: &Message) -> bool {
        let Some(rest) = message
            .topic()
            .strip_prefix(self.base.as_str())
            .and_then(|r| r.strip_prefix('/'))
        else {
            return false;
        };
        let payload = match message {
            Message::Retain { payload, .. } | Message::Event { payload, .. } => Some(payload),
            _ => None,
        };
        let json = || payload.and_then(|p| serde_json::from_slice::<Value>(p).ok());
        let parts: Vec<&str> = rest.split('/').collect();
        match (parts.as_slice(), message) {
            (["bridge", "info"], Message::Retain { .. }) => replace(&mut self.info, json()),
            (["bridge", ..], _) => false,
            // A printer removed: its availability is cleared with its other topics.
            ([id, "availability"], Message::Clear { .. }) => self.printers.remove(*id).is_some(),
            ([id, "availability"], Message::Retain { payload, .. }) => {
                let online = Some(payload.as_slice() == b"online");
                self.change_row(id, |row| replace(&mut row.online, online))
            }
            ([id, "state"], Message::Retain { .. }) => {
                let state =
                    json().and_then(|v| v.get("state").and_then(Value::as_str).map(str::to_string));
                self.change_row(id, |row| replace(&mut row.state, state))
            }
            ([id, "event"], Message::Event { .. }) => {
                let Some(v) = json() else {
                    return false;
                };
                let name = v
                    .get("event")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string();
                let created = v.get("created").and_then(Value::as_f64);
                self.change_row(id, |row| {
                    replace(&mut row.last_event, Some((name, created)))
                })
            }
            _ => false,
        }
    }

    /// Changes printer `id`'s row (made if new); true when the board changed.
    fn change_row(&mut self, id: &str, change: impl FnOnce(&mut PrinterRow) -> bool) -> bool {
        let new = !self.printers.contains_key(id);
        change(self.printers.entry(id.to_string()).or_default()) | new
    }
}

/// Sets `slot` to `value`; true when that changed it.
fn replace<T: PartialEq>(slot: &mut T, value: T) -> bool {
    let changed = *slot != value;
    *slot = value;
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Kind;

    #[test]
    fn keeps_info_state_availability_and_the_last_event() {
        let mut board = Board::new("pc");
        let changed = board.observe(&[
            Message::retain(Kind::Data, "pc/bridge/info".into(), r#"{"version":"1"}"#),
            Message::retain(Kind::Data, "pc/mk4/availability".into(), "online"),
            Message::retain(Kind::Data, "pc/mk4/state".into(), r#"{"state":"PRINTING"}"#),
            Message::event(
                "pc/mk4/event".into(),
                r#"{"event":"JOB_INFO","created":5.0}"#,
            ),
            Message::retain(Kind::Data, "other/x/state".into(), r#"{"state":"IDLE"}"#),
        ]);
        assert!(changed);
        assert_eq!(board.info.as_ref().unwrap()["version"], "1");
        let row = &board.printers["mk4"];
        assert_eq!(row.state.as_deref(), Some("PRINTING"));
        assert_eq!(row.online, Some(true));
        assert_eq!(row.last_event, Some(("JOB_INFO".into(), Some(5.0))));
        assert_eq!(board.printers.len(), 1);
        // Nothing new: no change; garbage is tolerated.
        assert!(!board.observe(&[Message::retain(
            Kind::Data,
            "pc/mk4/availability".into(),
            "online"
        )]));
        board.observe(&[Message::retain(Kind::Data, "pc/mk4/state".into(), "{oops")]);
        assert_eq!(board.printers["mk4"].state, None);
        board.observe(&[Message::Clear {
            topic: "pc/mk4/availability".into(),
        }]);
        assert!(board.printers.is_empty());
    }
}
