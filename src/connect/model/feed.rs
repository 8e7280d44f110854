//! A printer's event feed (`/events`).

use serde::Deserialize;
use serde_json::Value;

use super::envelope::Pager;

/// One entry of a printer's event feed. Kept whole (`raw`) so `P/event` passes on every field.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    pub event: String,
    pub created: f64,
    pub raw: serde_json::Map<String, Value>,
}

impl FeedEvent {
    /// Events have no id: the key is made of the whole event, so two events that differ in
    /// any field (two `FILE_CHANGED` of one second with other `data`) are two events. The
    /// fields are hashed in key order (serde_json's map is sorted), so the order Connect
    /// sends them in does not matter.
    pub fn key(&self) -> String {
        use sha2::{Digest, Sha256};
        let whole = serde_json::to_vec(&self.raw).unwrap_or_default();
        let digest = Sha256::digest(&whole);
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}|{}|#{hex}", self.created, self.event)
    }

    /// The key earlier versions saved in `state.json` (without `data`, `job_id` and the
    /// rest): a cursor saved by one of them still says which events were published.
    pub fn legacy_key(&self) -> String {
        let field = |k: &str| self.raw.get(k).map(|v| v.to_string()).unwrap_or_default();
        format!(
            "{}|{}|{}|{}|{}",
            self.created,
            self.event,
            field("state"),
            field("command_id"),
            field("transfer_id")
        )
    }

    /// Parses one feed entry; `None` for entries without an `event` name or `created` time.
    pub fn from_value(v: Value) -> Option<FeedEvent> {
        let Value::Object(raw) = v else { return None };
        let event = raw.get("event")?.as_str()?.to_string();
        let created = raw.get("created")?.as_f64()?;
        if !created.is_finite() {
            return None;
        }
        Some(FeedEvent {
            event,
            created,
            raw,
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct EventPage {
    #[serde(default)]
    pub events: Vec<Value>,
    #[serde(default)]
    pub pager: Pager,
}
