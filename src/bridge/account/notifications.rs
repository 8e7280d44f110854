//! Connect's notifications (account-wide: a print failed, a printer needs attention...): each
//! new one published once on `B/bridge/notification`, across restarts.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::bridge::account::Account;
use crate::bridge::effects::Effects;
use crate::bridge::reads::Read;
use crate::connect::model::Notification;
use crate::message::Message;
use crate::payloads::iso;
use crate::topics::Topics;

/// Published ids above the floor remembered at most; beyond, the floor rises.
const MAX_SEEN: usize = 512;

/// Which notifications were published; persisted in the state file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct NotificationCursor {
    /// Every notification up to this id is old: published, or there before the gateway
    /// first read the list. `None` until that first read.
    pub floor: Option<i64>,
    /// Published ids above the floor, ascending.
    pub seen: Vec<i64>,
}

impl NotificationCursor {
    /// Where the next read may stop paging: the newest id known.
    pub fn newest(&self) -> Option<i64> {
        self.seen.last().copied().or(self.floor)
    }

    /// Takes a read of the list: returns the new notifications, oldest first. The first read
    /// ever only places the floor (history is not replayed).
    pub fn accept(&mut self, mut list: Vec<Notification>) -> Vec<Notification> {
        let Some(floor) = self.floor else {
            self.floor = Some(list.iter().map(|n| n.id).max().unwrap_or(0));
            return Vec::new();
        };
        list.retain(|n| n.id > floor && self.seen.binary_search(&n.id).is_err());
        list.sort_by_key(|n| n.id);
        list.dedup_by_key(|n| n.id);
        for n in &list {
            if let Err(at) = self.seen.binary_search(&n.id) {
                self.seen.insert(at, n.id);
            }
        }
        while self.seen.len() > MAX_SEEN {
            self.floor = Some(self.seen.remove(0));
        }
        list
    }
}

impl Account {
    /// The unseen count moved (or the list was never read): read the list.
    pub(super) fn notifications_moved(&mut self, unseen: u64, fx: &mut Effects, now: Instant) {
        let moved = self.unseen != Some(unseen)
            || self.notifications.floor.is_none()
            || self.notifications_skipped;
        self.unseen = Some(unseen);
        if !moved {
            return;
        }
        // A read in flight may have missed what moved the count: asked again after it.
        self.notifications_read.request(now);
        self.read_notifications(fx, now);
    }

    /// Reads the list, unless it answered 404 less than an hour ago (then the next unseen
    /// count read after that hour reads it).
    fn read_notifications(&mut self, fx: &mut Effects, now: Instant) {
        if self.unavailable.resting("notifications", "", now) {
            self.notifications_skipped = true;
            self.notifications_read.cancel();
            return;
        }
        if self.notifications_read.start(now) {
            self.notifications_skipped = false;
            let after = self.notifications.newest();
            fx.read(Read::Notifications { after });
        }
    }

    pub(super) fn on_notifications(
        &mut self,
        result: Result<Vec<Notification>, crate::connect::client::ConnectError>,
        topics: &Topics,
        printer_id: impl Fn(&str) -> Option<String>,
        fx: &mut Effects,
        now: Instant,
        wall: f64,
    ) {
        self.notifications_read.finish();
        let missing = self
            .unavailable
            .observe("notifications", "", &result, now, wall);
        match result {
            Ok(list) => {
                let topic = topics.bridge_notification();
                for n in self.notifications.accept(list) {
                    if let Some(shard) = self.shard {
                        let mine = match n.printer_uuid.as_deref() {
                            Some(uuid) => shard.owns(uuid),
                            None => shard.k == 1,
                        };
                        if !mine {
                            continue;
                        }
                    }
                    let printer = n.printer_uuid.as_deref().and_then(&printer_id);
                    let payload = notification_payload(&n, printer);
                    fx.publish(Message::event(topic.clone(), payload.to_string()));
                }
            }
            Err(_) if missing => self.notifications_skipped = true,
            Err(e) => {
                tracing::warn!("cannot read Connect's notifications: {e}");
                // The next move of the unseen count tries again, or at once when it moved
                // while this read was out.
                self.unseen = None;
            }
        }
        self.read_notifications(fx, now);
    }
}

/// A notification as `B/bridge/notification` shows it; `printer` is its printer's topic id.
fn notification_payload(n: &Notification, printer: Option<String>) -> Value {
    json!({
        "event_type": "notification",
        "id": n.id,
        "printer_uuid": n.printer_uuid,
        "printer": printer,
        "printer_name": n.printer_name,
        "severity": n.severity,
        "category": n.category,
        "name": n.name,
        "text": n.text,
        "job_id": n.job_id,
        "job_name": n.job_name,
        "created": n.created.and_then(iso),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(id: i64) -> Notification {
        Notification::from_value(json!({"id": id, "text": format!("n{id}")})).unwrap()
    }

    fn ids(list: Vec<Notification>) -> Vec<i64> {
        list.into_iter().map(|n| n.id).collect()
    }

    #[test]
    fn the_first_read_replays_nothing_then_each_new_one_once() {
        let mut c = NotificationCursor::default();
        assert!(c.accept(vec![n(3), n(2), n(1)]).is_empty());
        assert_eq!(c.floor, Some(3));
        assert_eq!(ids(c.accept(vec![n(5), n(4), n(3), n(2)])), [4, 5]);
        assert!(c.accept(vec![n(5), n(4), n(3)]).is_empty());
        // Out of order: a lower id that was not published yet still is.
        assert_eq!(ids(c.accept(vec![n(7), n(6), n(5)])), [6, 7]);
        // A restart keeps the cursor (it is in the state file).
        let json = serde_json::to_string(&c).unwrap();
        let mut again: NotificationCursor = serde_json::from_str(&json).unwrap();
        assert!(again.accept(vec![n(7), n(6), n(5), n(4)]).is_empty());
    }

    #[test]
    fn an_empty_first_list_places_the_floor_at_zero() {
        let mut c = NotificationCursor::default();
        assert!(c.accept(Vec::new()).is_empty());
        assert_eq!(ids(c.accept(vec![n(1)])), [1]);
    }

    #[test]
    fn memory_is_bounded_and_the_floor_rises() {
        let mut c = NotificationCursor {
            floor: Some(0),
            seen: Vec::new(),
        };
        let all: Vec<Notification> = (1..=600).map(n).collect();
        assert_eq!(c.accept(all.clone()).len(), 600);
        assert_eq!(c.seen.len(), MAX_SEEN);
        assert_eq!(c.floor, Some(600 - MAX_SEEN as i64));
        assert!(c.accept(all).is_empty(), "none again");
    }
}
