//! A printer's event feed: which events are new, from a cursor that survives restarts and
//! Connect's clock going back.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::connect::client::FeedBatch;
use crate::connect::model::FeedEvent;

/// How many published event keys each printer remembers (to recognise old events when the
/// feed is re-read after Connect's clock went back).
const RECENT_EVENTS: usize = 256;
/// How far back a re-read after a clock jump goes, at most.
const MAX_REWIND_SECONDS: f64 = 86_400.0;

/// Where a printer's feed was read up to; persisted.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct FeedCursor {
    /// `created` of the newest published feed event (`None`: never read).
    #[serde(rename = "events_after")]
    pub after: Option<f64>,
    /// Keys of the published events whose `created` equals `after`.
    #[serde(rename = "events_seen")]
    pub seen: Vec<String>,
}

impl FeedCursor {
    /// `event`, at the cursor's time, was published: its key is among those seen, or its
    /// [`FeedEvent::legacy_key`] is (a cursor saved by an earlier version; the events that
    /// version took for one were published once, and are not replayed now).
    fn has_seen(&self, event: &FeedEvent, key: &str) -> bool {
        self.seen.iter().any(|k| k == key) || self.seen.contains(&event.legacy_key())
    }
}

/// The last published events, by a 64-bit hash of their keys: 2 KiB per printer at most,
/// whatever the events hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecentEvents(VecDeque<u64>);

impl RecentEvents {
    fn hash(key: &str) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        h.finish()
    }

    pub fn contains(&self, key: &str) -> bool {
        self.0.contains(&Self::hash(key))
    }

    pub fn remember(&mut self, key: &str) {
        if self.0.len() == RECENT_EVENTS {
            self.0.pop_front();
        }
        self.0.push_back(Self::hash(key));
    }
}

/// What a feed page means.
#[derive(Debug, PartialEq)]
pub enum FeedOutcome {
    /// These events are new, oldest first (the cursor has moved past them).
    Publish(Vec<FeedEvent>),
    /// Connect's clock is behind the cursor: read again from `from` (the cursor was moved
    /// there) and pass that batch with `rewound` set.
    Reread { from: f64, server_now: f64 },
}

/// Takes a batch read from the cursor. `rewound`: it was read from a [`FeedOutcome::Reread`]
/// position; `since_last_read`: seconds since the printer's previous feed read, if any.
///
/// The first read of a printer ever only places the cursor after the newest event: history is
/// not replayed. When Connect's clock is behind the cursor (it went back, or a jump forward
/// was corrected), new events carry older times than the cursor: the feed is then re-read
/// from Connect's "now" minus the time since the last read, and the keys of recently
/// published events keep old ones from being published again.
pub fn accept(
    cursor: &mut FeedCursor,
    recent: &mut RecentEvents,
    batch: FeedBatch,
    rewound: bool,
    since_last_read: Option<f64>,
) -> FeedOutcome {
    let Some(mut after) = cursor.after else {
        // An empty feed means everything that appears later is new (our clock and Connect's
        // may differ, so "now" would be a guess).
        let newest = batch.events.last().map(|e| e.created);
        cursor.after = Some(newest.unwrap_or(0.0));
        cursor.seen = batch
            .events
            .iter()
            .filter(|e| Some(e.created) == newest)
            .map(FeedEvent::key)
            .collect();
        for e in &batch.events {
            recent.remember(&e.key());
        }
        return FeedOutcome::Publish(Vec::new());
    };
    if !rewound
        && let Some(now) = batch.server_now
        && now + 1.0 < after
    {
        let since = since_last_read.unwrap_or(0.0);
        let from = now - (since + 60.0).min(MAX_REWIND_SECONDS);
        cursor.after = Some(from);
        cursor.seen.clear();
        return FeedOutcome::Reread {
            from,
            server_now: now,
        };
    }
    let mut new_events = Vec::new();
    for event in batch.events {
        let key = event.key();
        // After a clock jump events stamped ahead of the cursor may be old ones: the keys of
        // what was published recently say which.
        let new = !recent.contains(&key)
            && if rewound {
                event.created >= after
            } else {
                event.created > after || (event.created == after && !cursor.has_seen(&event, &key))
            };
        if !new {
            continue;
        }
        if event.created > after {
            after = event.created;
            cursor.seen.clear();
        }
        recent.remember(&key);
        cursor.seen.push(key);
        cursor.after = Some(after);
        new_events.push(event);
    }
    FeedOutcome::Publish(new_events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(name: &str, created: f64) -> FeedEvent {
        FeedEvent::from_value(json!({"event": name, "created": created})).unwrap()
    }

    fn batch(events: &[(&str, f64)], server_now: Option<f64>) -> FeedBatch {
        FeedBatch {
            events: events.iter().map(|(n, c)| event(n, *c)).collect(),
            server_now,
            capped: false,
        }
    }

    fn names(outcome: FeedOutcome) -> Vec<String> {
        match outcome {
            FeedOutcome::Publish(events) => events.into_iter().map(|e| e.event).collect(),
            other => panic!("expected events, got {other:?}"),
        }
    }

    #[test]
    fn the_first_read_places_the_cursor_without_replaying_history() {
        let mut cursor = FeedCursor::default();
        let mut recent = RecentEvents::default();
        let first = batch(&[("A", 10.0), ("B", 20.0)], Some(30.0));
        assert_eq!(
            names(accept(&mut cursor, &mut recent, first, false, None)),
            Vec::<String>::new()
        );
        assert_eq!(cursor.after, Some(20.0));
        let next = batch(&[("B", 20.0), ("C", 25.0)], Some(30.0));
        assert_eq!(
            names(accept(&mut cursor, &mut recent, next, false, Some(5.0))),
            ["C"]
        );
        assert_eq!(cursor.after, Some(25.0));
    }

    #[test]
    fn events_with_the_cursor_time_are_told_apart_by_key() {
        let mut cursor = FeedCursor {
            after: Some(20.0),
            seen: vec![event("B", 20.0).key()],
        };
        let mut recent = RecentEvents::default();
        let b = batch(&[("B", 20.0), ("B2", 20.0)], Some(21.0));
        assert_eq!(
            names(accept(&mut cursor, &mut recent, b, false, None)),
            ["B2"]
        );
        assert_eq!(cursor.seen.len(), 2);
    }

    #[test]
    fn a_clock_behind_the_cursor_asks_for_a_reread_that_skips_what_was_published() {
        let mut cursor = FeedCursor::default();
        let mut recent = RecentEvents::default();
        accept(
            &mut cursor,
            &mut recent,
            batch(&[("OLD", 1000.0)], Some(1000.0)),
            false,
            None,
        );
        // Connect's clock went back 500 s: a new event carries an older time than the cursor.
        let read = batch(&[], Some(500.0));
        let outcome = accept(&mut cursor, &mut recent, read, false, Some(30.0));
        assert_eq!(
            outcome,
            FeedOutcome::Reread {
                from: 410.0,
                server_now: 500.0
            }
        );
        assert_eq!(cursor.after, Some(410.0));
        let again = batch(&[("NEW", 480.0), ("OLD", 1000.0)], Some(500.0));
        assert_eq!(
            names(accept(&mut cursor, &mut recent, again, true, None)),
            ["NEW"]
        );
    }

    fn file_changed(created: f64, path: &str) -> FeedEvent {
        FeedEvent::from_value(json!({
            "event": "FILE_CHANGED", "created": created, "job_id": null,
            "data": {"path": path, "action": "ADDED"},
        }))
        .unwrap()
    }

    fn paths(outcome: FeedOutcome) -> Vec<String> {
        match outcome {
            FeedOutcome::Publish(events) => events
                .iter()
                .map(|e| {
                    e.raw["data"]["path"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
                .collect(),
            other => panic!("expected events, got {other:?}"),
        }
    }

    #[test]
    fn events_of_one_second_that_differ_only_in_data_are_each_published() {
        let mut cursor = FeedCursor {
            after: Some(10.0),
            seen: Vec::new(),
        };
        let mut recent = RecentEvents::default();
        let both = FeedBatch {
            events: vec![
                file_changed(20.0, "/usb/a.bgcode"),
                file_changed(20.0, "/usb/b.bgcode"),
            ],
            server_now: Some(21.0),
            capped: false,
        };
        assert_eq!(
            paths(accept(&mut cursor, &mut recent, both.clone(), false, None)),
            ["/usb/a.bgcode", "/usb/b.bgcode"]
        );
        // Read again: neither is new.
        assert_eq!(
            paths(accept(&mut cursor, &mut recent, both, false, None)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_same_fields_in_another_order_are_the_same_event() {
        let a =
            FeedEvent::from_value(json!({"event": "E", "created": 1.0, "data": {"x": 1, "y": 2}}));
        let b =
            FeedEvent::from_value(json!({"data": {"y": 2, "x": 1}, "created": 1.0, "event": "E"}));
        assert_eq!(a.unwrap().key(), b.unwrap().key());
    }

    #[test]
    fn a_cursor_saved_by_the_previous_version_replays_and_loses_nothing() {
        // state.json as the previous version wrote it: keys without `data`.
        let saved = r#"{"events_after": 20.0, "events_seen": ["20|FILE_CHANGED|||"]}"#;
        let mut cursor: FeedCursor = serde_json::from_str(saved).unwrap();
        // A restart: nothing is remembered but the cursor.
        let mut recent = RecentEvents::default();
        let read = FeedBatch {
            events: vec![
                file_changed(20.0, "/usb/a.bgcode"),
                file_changed(25.0, "/usb/c.bgcode"),
            ],
            server_now: Some(30.0),
            capped: false,
        };
        assert_eq!(
            paths(accept(&mut cursor, &mut recent, read, false, Some(60.0))),
            ["/usb/c.bgcode"],
            "the event the cursor names is not replayed, the later one is published"
        );
        assert_eq!(cursor.after, Some(25.0));
        assert_eq!(cursor.seen, [file_changed(25.0, "/usb/c.bgcode").key()]);
    }
}
