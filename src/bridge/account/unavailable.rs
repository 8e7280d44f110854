//! Optional endpoints Connect answers 404 for (an account without notifications, a Connect
//! that dropped or never had an endpoint): said once, asked again hourly instead of at every
//! poll, and listed in `bridge/info.unavailable`.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::connect::client::ConnectError;
use crate::payloads::iso;

/// How long an endpoint that answered 404 is left alone.
pub const REST: Duration = Duration::from_secs(3600);

/// The account's endpoints that answered 404, by kind (`"notifications"`, `"queue"`...) and
/// printer uuid (empty for the account's own endpoints).
#[derive(Debug, Default)]
pub struct Unavailable {
    resting: BTreeMap<(&'static str, String), Rest>,
    /// The kinds warned about, until they answer again.
    told: HashSet<&'static str>,
}

#[derive(Debug, Clone, Copy)]
struct Rest {
    /// When the first 404 came (Unix seconds).
    since: f64,
    /// Not asked before this.
    until: Instant,
}

impl Unavailable {
    /// Whether the `kind` read (of printer `uuid`, or `""`) is left alone for now.
    pub fn resting(&self, kind: &'static str, uuid: &str, now: Instant) -> bool {
        self.resting
            .get(&(kind, uuid.to_string()))
            .is_some_and(|r| now < r.until)
    }

    /// Takes a read's outcome; `true` when it was a 404 (the caller then logs nothing of its
    /// own: the first 404 of a kind is warned about here, the next ones are not). Any other
    /// answer ends the rest (a failure other than 404 is the caller's to log).
    pub fn observe<T>(
        &mut self,
        kind: &'static str,
        uuid: &str,
        result: &Result<T, ConnectError>,
        now: Instant,
        wall: f64,
    ) -> bool {
        let key = (kind, uuid.to_string());
        let Err(ConnectError::Api { status: 404, .. }) = result else {
            if self.resting.remove(&key).is_some() && !self.any(kind) {
                self.told.remove(kind);
                tracing::info!("Connect no longer answers 404 for {kind}");
            }
            return false;
        };
        let since = self.resting.get(&key).map_or(wall, |r| r.since);
        self.resting.insert(
            key,
            Rest {
                since,
                until: now + REST,
            },
        );
        if self.told.insert(kind) {
            let whose = if uuid.is_empty() {
                String::new()
            } else {
                format!(" (printer {uuid})")
            };
            tracing::warn!(
                "Connect answers 404 for {kind}{whose}: asked again hourly, see \
                 bridge/info.unavailable"
            );
        } else {
            tracing::debug!("Connect still answers 404 for {kind} ({uuid})");
        }
        true
    }

    fn any(&self, kind: &'static str) -> bool {
        self.resting.keys().any(|(k, _)| *k == kind)
    }

    /// Printer `uuid` is gone: its endpoints are nobody's concern any more.
    pub fn forget_printer(&mut self, uuid: &str) {
        self.resting.retain(|(_, u), _| u != uuid);
        let kinds: HashSet<&'static str> = self.resting.keys().map(|(k, _)| *k).collect();
        self.told.retain(|k| kinds.contains(k));
    }

    /// `bridge/info.unavailable`: `{"notifications": "404 since <time>"}`, and for a
    /// printer's endpoint how many printers it is.
    pub fn info(&self) -> Value {
        let mut by_kind: BTreeMap<&'static str, (f64, usize, bool)> = BTreeMap::new();
        for ((kind, uuid), rest) in &self.resting {
            let entry = by_kind.entry(kind).or_insert((rest.since, 0, false));
            entry.0 = entry.0.min(rest.since);
            entry.1 += 1;
            entry.2 |= !uuid.is_empty();
        }
        let mut info = Map::new();
        for (kind, (since, n, per_printer)) in by_kind {
            let mut text = format!("404 since {}", iso(since).unwrap_or_default());
            if per_printer {
                let s = if n == 1 { "" } else { "s" };
                text.push_str(&format!(" ({n} printer{s})"));
            }
            info.insert(kind.to_string(), Value::String(text));
        }
        Value::Object(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_found() -> Result<(), ConnectError> {
        Err(ConnectError::Api {
            status: 404,
            code: None,
            message: "Not Found".into(),
            retry_after: None,
            body: None,
        })
    }

    #[test]
    fn a_404_rests_the_endpoint_for_an_hour_and_an_answer_ends_it() {
        let t0 = Instant::now();
        let mut u = Unavailable::default();
        assert!(u.observe("notifications", "", &not_found(), t0, 1_800_000_000.0));
        assert!(u.resting("notifications", "", t0 + REST - Duration::from_secs(1)));
        assert!(!u.resting("notifications", "", t0 + REST));
        assert_eq!(
            u.info(),
            serde_json::json!({"notifications": "404 since 2027-01-15T08:00:00Z"})
        );
        // Still 404 an hour later: the rest starts again, the time it began stays.
        assert!(u.observe(
            "notifications",
            "",
            &not_found(),
            t0 + REST,
            1_800_003_600.0
        ));
        assert!(u.resting("notifications", "", t0 + REST));
        assert_eq!(u.info()["notifications"], "404 since 2027-01-15T08:00:00Z");
        assert!(!u.observe("notifications", "", &Ok(()), t0 + REST * 2, 0.0));
        assert_eq!(u.info(), serde_json::json!({}));
    }

    #[test]
    fn other_failures_are_not_a_rest_and_end_one() {
        let t0 = Instant::now();
        let mut u = Unavailable::default();
        let down: Result<(), _> = Err(ConnectError::Transport("reset".into()));
        assert!(!u.observe("queue", "a", &down, t0, 0.0));
        assert!(!u.resting("queue", "a", t0));
        u.observe("queue", "a", &not_found(), t0, 1_800_000_000.0);
        assert!(!u.observe("queue", "a", &down, t0 + REST, 0.0));
        assert_eq!(u.info(), serde_json::json!({}));
    }

    #[test]
    fn a_printers_endpoint_rests_for_that_printer_and_counts_in_the_info() {
        let t0 = Instant::now();
        let mut u = Unavailable::default();
        u.observe("queue", "a", &not_found(), t0, 1_800_000_000.0);
        u.observe("queue", "b", &not_found(), t0, 1_800_000_060.0);
        assert!(u.resting("queue", "a", t0) && !u.resting("queue", "c", t0));
        assert_eq!(
            u.info()["queue"],
            "404 since 2027-01-15T08:00:00Z (2 printers)"
        );
        u.forget_printer("a");
        u.forget_printer("b");
        assert_eq!(u.info(), serde_json::json!({}));
    }
}
