//! What the broker is owed, as a plain state machine with no I/O (the MQTT session in
//! [`crate::mqtt`] drives it).
//!
//! - Retained values are kept: an unchanged value is not sent again, and every (re)connect
//!   or Home Assistant birth message sends them all again.
//! - Discovery is kept only until it is handed over: it is most of what a farm's gateway
//!   would hold, and the bridge renders it again from the printers' state after a
//!   (re)connect or a birth message (see [`crate::mqtt::Link`]). Only its topics are kept,
//!   so that [`Outbox::clear_all`] clears them. While it waits (no connection, a long queue)
//!   it is kept deflated.
//! - A cleared topic is owed until the broker acknowledged the clear; a value set after the
//!   clear replaces it, so a topic cleared and set again while the broker was away ends up set.
//! - Events (feed events, job ends, command replies) are owed until their PubAck. When the
//!   connection drops, everything not acknowledged goes back in front of the queue in the order
//!   it was made, so each reaches the broker at least once and in order (with a clean
//!   session the broker forgets what it had not acknowledged).
//! - Every change to the events owed is also told as an [`Owing`] record
//!   ([`Outbox::take_owing`]), for the journal that keeps them across a restart
//!   ([`crate::journal`]); [`Outbox::restore`] takes them back at the next start.
//! - Camera pictures are replaceable: QoS 0, only the last one per topic is kept, and it is
//!   sent again after a reconnect.
//!
//! The session takes messages only through [`Outbox::poll_transmit`], at most [`WINDOW`]
//! unacknowledged at a time, and reports the packet id each was written with and each ack
//! ([`Outbox::on_sent`], [`Outbox::on_acked`]), in the order it took them.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use crate::message::{Kind, Message};
use stored::Stored;

mod stored;

/// Messages written and not yet acknowledged, at most: what a dropped connection can have
/// to send again, and far below the 65,535 packet ids, so an id is never reused before its
/// ack. A farm's live channel decides some 200 messages every 50 ms: they go in one write.
pub const WINDOW: usize = 1024;
/// Once the window is full, nothing more is handed over until it is down to this. Refilled
/// at every ack instead, a full window went out a few messages at a time, as the broker's
/// acks came in small segments: a write (and a broker wake) per handful.
pub const REFILL_AT: usize = WINDOW / 2;
/// Discovery waiting behind a queue this long is kept deflated.
const PLAIN_QUEUE: usize = 256;
/// The maps looked up for every message hash with aHash: std's SipHash resists keys chosen
/// to collide, which the outbox's own topics and packet ids do not need, and was 3 to 4 % of
/// a farm's gateway CPU.
type Hashing = std::hash::BuildHasherDefault<ahash::AHasher>;

/// Events kept while the broker is away (or slower than the gateway); beyond it the oldest
/// are dropped with a warning.
pub const MAX_OWED_EVENTS: usize = 10_000;

/// A change to the events owed, for the journal (see [`crate::journal`]). Ids order the
/// events: the journal gives them back in that order at the next start.
#[derive(Debug, Clone, PartialEq)]
pub enum Owing {
    /// A new event is owed.
    Added {
        id: u64,
        topic: String,
        payload: Vec<u8>,
    },
    /// Event `id` is owed no more: the broker acknowledged it, or it was dropped.
    Settled { id: u64 },
}

/// One publish for the connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Transmit {
    pub topic: String,
    /// Shared with what the outbox keeps (a retained value, a picture): not a copy.
    pub payload: Bytes,
    /// QoS 1 when true, else QoS 0.
    pub acknowledged: bool,
    pub retain: bool,
}

/// What waits to be handed over. Retained values and pictures are named by topic and read
/// from the maps when handed over, so the latest value goes and repeats coalesce.
#[derive(Debug)]
enum Queued {
    Retained(String),
    Clear { topic: String, seq: u64 },
    Image(String),
    Event(Event),
}

#[derive(Debug, Clone)]
struct Event {
    seq: u64,
    topic: String,
    payload: Vec<u8>,
}

/// What must happen when a handed-over publish is acknowledged.
#[derive(Debug)]
enum Owed {
    Nothing,
    Clear { topic: String, seq: u64 },
    Event(Event),
}

#[derive(Debug)]
struct Handed {
    acknowledged: bool,
    owed: Owed,
}

#[derive(Debug, Default)]
pub struct Outbox {
    /// `B/bridge/state`: `online` goes first on every connection.
    status_topic: String,
    connected: bool,
    /// Discovery not handed over yet, kept deflated (see [`stored`]).
    discovery: BTreeMap<String, Stored>,
    /// Every discovery topic set and not cleared.
    discovery_topics: BTreeSet<String>,
    /// Retained data by topic. A hash map: every publish looks its topic up two or three
    /// times, and a farm's 10,000 topics share long prefixes (a sorted map compared them
    /// a dozen times a lookup, a cache miss each). Walked in topic order ([`Outbox::data_topics`]).
    data: HashMap<String, Stored, Hashing>,
    /// Topics whose clear the broker has not acknowledged, with the clear's sequence number.
    clears: BTreeMap<String, u64>,
    images: BTreeMap<String, Arc<Vec<u8>>>,
    queue: VecDeque<Queued>,
    /// Retained and picture topics in `queue` (each at most once).
    queued: HashSet<String, Hashing>,
    /// Events in `queue`.
    queued_events: usize,
    /// Taken by the session, its packet id not yet reported ([`Outbox::on_sent`]).
    handed: VecDeque<Handed>,
    /// Written at QoS 1, waiting for the PubAck, by packet id.
    unacked: HashMap<u16, Handed, Hashing>,
    /// The window filled and is not down to [`REFILL_AT`] yet.
    window_full: bool,
    seq: u64,
    dropped: u64,
    /// Topics already warned about as unpublishable.
    refused: HashSet<String>,
    /// Changes to the events owed not yet taken by [`Outbox::take_owing`].
    owing: Vec<Owing>,
}

impl Outbox {
    pub fn new(status_topic: &str) -> Outbox {
        Outbox {
            status_topic: status_topic.to_string(),
            ..Default::default()
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Takes a message from the bridge. One that no broker would take (a topic with a
    /// wildcard, a packet over [`MAX_PACKET_BYTES`]) is dropped with a warning: handed to
    /// the connection it would stop the messages behind it or break it, again and again.
    pub fn push(&mut self, message: Message) {
        if let Some(why) = message.unpublishable() {
            let topic = message.topic().to_string();
            if self.refused.len() < 1024 && self.refused.insert(topic.clone()) {
                tracing::warn!("not publishing on {topic:?}: {why}");
            }
            return;
        }
        match message {
            Message::Retain {
                kind,
                topic,
                payload,
            } => self.retain(kind, topic, payload),
            Message::Clear { topic } => self.clear(topic),
            Message::Event { topic, payload } => self.event(topic, payload),
            Message::Image { topic, payload } => {
                self.images.insert(topic.clone(), payload);
                if self.connected {
                    self.enqueue_topic(topic, Queued::Image);
                }
            }
            Message::Forget { topic } => {
                self.images.remove(&topic);
            }
        }
    }

    fn retain(&mut self, kind: Kind, topic: String, payload: Vec<u8>) {
        if payload.is_empty() {
            return self.clear(topic);
        }
        match kind {
            Kind::Discovery => {
                if self.discovery.get(&topic).is_some_and(|s| s.is(&payload)) {
                    return;
                }
                self.data.remove(&topic);
                if !self.discovery_topics.contains(&topic) {
                    self.discovery_topics.insert(topic.clone());
                }
                // Discovery that waits is kept deflated; one that goes out at once (a short
                // queue: at most PLAIN_QUEUE of them are kept plain) is kept as it came.
                // Deflated only to be inflated a moment later, it was a quarter of a farm's
                // start.
                let waits = !self.connected || self.queue.len() >= PLAIN_QUEUE;
                self.discovery
                    .insert(topic.clone(), Stored::new(payload, waits));
            }
            // A topic is data or discovery, never both: one already data is only replaced.
            Kind::Data => match self.data.get_mut(&topic) {
                Some(stored) if stored.is(&payload) => return,
                Some(stored) => *stored = Stored::new(payload, false),
                None => {
                    self.discovery.remove(&topic);
                    self.discovery_topics.remove(&topic);
                    self.data.insert(topic.clone(), Stored::new(payload, false));
                }
            },
        }
        // The value replaces a clear not yet acknowledged: that clear must not be sent again.
        self.clears.remove(&topic);
        if self.connected {
            self.enqueue_topic(topic, Queued::Retained);
        }
    }

    fn clear(&mut self, topic: String) {
        self.discovery.remove(&topic);
        self.discovery_topics.remove(&topic);
        self.data.remove(&topic);
        self.images.remove(&topic);
        self.seq += 1;
        self.clears.insert(topic.clone(), self.seq);
        if self.connected {
            self.queue.push_back(Queued::Clear {
                topic,
                seq: self.seq,
            });
        }
    }

    fn event(&mut self, topic: String, payload: Vec<u8>) {
        self.seq += 1;
        self.owing.push(Owing::Added {
            id: self.seq,
            topic: topic.clone(),
            payload: payload.clone(),
        });
        self.enqueue_event(self.seq, topic, payload);
    }

    fn enqueue_event(&mut self, seq: u64, topic: String, payload: Vec<u8>) {
        if self.queued_events >= MAX_OWED_EVENTS {
            self.drop_oldest_event();
        }
        self.queue.push_back(Queued::Event(Event {
            seq,
            topic,
            payload,
        }));
        self.queued_events += 1;
    }

    /// An event the journal kept from an earlier run, with the id the journal holds it
    /// under: owed again, before anything newer (call before any [`Outbox::push`]). Not
    /// told back as [`Owing::Added`]: the journal has it.
    pub fn restore(&mut self, id: u64, topic: String, payload: Vec<u8>) {
        let event = Message::Event { topic, payload };
        if let Some(why) = event.unpublishable() {
            tracing::warn!("not publishing on {:?}: {why}", event.topic());
            self.owing.push(Owing::Settled { id });
            return;
        }
        if let Message::Event { topic, payload } = event {
            self.seq = self.seq.max(id);
            self.enqueue_event(id, topic, payload);
        }
    }

    /// The changes to the events owed since the last call, in order.
    pub fn take_owing(&mut self) -> Vec<Owing> {
        std::mem::take(&mut self.owing)
    }

    /// Every event owed, oldest first, with its id (for rewriting the journal).
    pub fn owed(&self) -> Vec<(u64, &str, &[u8])> {
        let handed = self.handed.iter().chain(self.unacked.values());
        let mut owed: Vec<(u64, &str, &[u8])> = handed
            .filter_map(|h| match &h.owed {
                Owed::Event(e) => Some(e),
                _ => None,
            })
            .chain(self.queue.iter().filter_map(|q| match q {
                Queued::Event(e) => Some(e),
                _ => None,
            }))
            .map(|e| (e.seq, e.topic.as_str(), e.payload.as_slice()))
            .collect();
        owed.sort_by_key(|(id, _, _)| *id);
        owed
    }

    fn drop_oldest_event(&mut self) {
        if let Some(at) = self
            .queue
            .iter()
            .position(|q| matches!(q, Queued::Event(_)))
        {
            if let Some(Queued::Event(e)) = self.queue.remove(at) {
                self.owing.push(Owing::Settled { id: e.seq });
            }
            self.queued_events -= 1;
            self.dropped += 1;
            if self.dropped == 1 || self.dropped.is_power_of_two() {
                tracing::warn!(
                    "MQTT broker away or slow for too long: {} queued message(s) dropped so far \
                     (at most {MAX_OWED_EVENTS} are kept)",
                    self.dropped
                );
            }
        }
    }

    fn enqueue_topic(&mut self, topic: String, make: fn(String) -> Queued) {
        if self.queued.insert(topic.clone()) {
            self.queue.push_back(make(topic));
        }
    }

    /// Home Assistant came back: every retained value and the last pictures again (the
    /// bridge renders discovery again).
    pub fn republish(&mut self) {
        if !self.connected {
            return; // the next connection sends everything anyway
        }
        let mut retained: Vec<String> = self.discovery.keys().cloned().collect();
        retained.extend(self.data_topics());
        for topic in retained {
            self.enqueue_topic(topic, Queued::Retained);
        }
        let images: Vec<String> = self.images.keys().cloned().collect();
        for topic in images {
            self.enqueue_topic(topic, Queued::Image);
        }
    }

    fn retained_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self.discovery_topics.iter().cloned().collect();
        topics.extend(self.data_topics());
        topics
    }

    /// The retained data's topics, in order.
    fn data_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self.data.keys().cloned().collect();
        topics.sort_unstable();
        topics
    }

    /// Clears every retained topic published (`demo` leaves nothing behind).
    pub fn clear_all(&mut self) {
        for topic in self.retained_topics() {
            self.clear(topic);
        }
    }

    /// A ConnAck: `online` first, then discovery not handed over yet, owed clears, data and
    /// pictures, then the events still owed, oldest first.
    pub fn on_connected(&mut self) {
        self.connected = true;
        self.data.insert(
            self.status_topic.clone(),
            Stored::new(b"online".to_vec(), false),
        );
        self.clears.remove(&self.status_topic);
        let events: Vec<Queued> = self
            .queue
            .drain(..)
            .filter(|q| matches!(q, Queued::Event(_)))
            .collect();
        self.queued.clear();
        let status = self.status_topic.clone();
        self.enqueue_topic(status, Queued::Retained);
        let discovery: Vec<String> = self.discovery.keys().cloned().collect();
        for topic in discovery {
            self.enqueue_topic(topic, Queued::Retained);
        }
        let clears: Vec<(String, u64)> = self.clears.iter().map(|(t, s)| (t.clone(), *s)).collect();
        for (topic, seq) in clears {
            self.queue.push_back(Queued::Clear { topic, seq });
        }
        for topic in self.data_topics() {
            self.enqueue_topic(topic, Queued::Retained);
        }
        let images: Vec<String> = self.images.keys().cloned().collect();
        for topic in images {
            self.enqueue_topic(topic, Queued::Image);
        }
        self.queue.extend(events);
    }

    /// The connection dropped: every event handed over and not acknowledged is owed again, in its original order, ahead of newer ones.
    pub fn on_disconnected(&mut self) {
        self.connected = false;
        let mut owed: Vec<Event> = Vec::new();
        for handed in self
            .handed
            .drain(..)
            .chain(self.unacked.drain().map(|(_, h)| h))
        {
            if let Owed::Event(e) = handed.owed {
                owed.push(e);
            }
        }
        for queued in self.queue.drain(..) {
            if let Queued::Event(e) = queued {
                owed.push(e);
            }
        }
        self.queued.clear();
        owed.sort_by_key(|e| e.seq);
        self.queued_events = owed.len();
        self.queue.extend(owed.into_iter().map(Queued::Event));
        while self.queued_events > MAX_OWED_EVENTS {
            self.drop_oldest_event();
        }
    }

    /// The next publish to write, when connected and the window allows: once full, only
    /// after it is down to [`REFILL_AT`].
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let in_flight = self.handed.len() + self.unacked.len();
        self.window_full = in_flight >= WINDOW || (self.window_full && in_flight > REFILL_AT);
        if !self.connected || self.window_full {
            return None;
        }
        while let Some(queued) = self.queue.pop_front() {
            let (transmit, owed) = match queued {
                Queued::Retained(topic) => {
                    self.queued.remove(&topic);
                    if let Some(stored) = self.discovery.remove(&topic) {
                        // Not kept once sent: the bridge renders it again when it is owed again.
                        let payload = stored.shared();
                        (Self::transmit(topic, payload, true, true), Owed::Nothing)
                    } else if let Some(stored) = self.data.get(&topic) {
                        let payload = stored.shared();
                        (Self::transmit(topic, payload, true, true), Owed::Nothing)
                    } else {
                        continue; // cleared since: its clear is queued behind
                    }
                }
                Queued::Clear { topic, seq } => {
                    if self.clears.get(&topic) != Some(&seq) {
                        continue; // set again (or cleared again) since
                    }
                    (
                        Self::transmit(topic.clone(), Bytes::new(), true, true),
                        Owed::Clear { topic, seq },
                    )
                }
                Queued::Image(topic) => {
                    self.queued.remove(&topic);
                    let Some(image) = self.images.get(&topic) else {
                        continue;
                    };
                    let payload = stored::picture(image);
                    (Self::transmit(topic, payload, false, false), Owed::Nothing)
                }
                Queued::Event(event) => {
                    self.queued_events -= 1;
                    (
                        Self::transmit(
                            event.topic.clone(),
                            Bytes::from(event.payload.clone()),
                            true,
                            false,
                        ),
                        Owed::Event(event),
                    )
                }
            };
            self.handed.push_back(Handed {
                acknowledged: transmit.acknowledged,
                owed,
            });
            return Some(transmit);
        }
        None
    }

    fn transmit(topic: String, payload: Bytes, acknowledged: bool, retain: bool) -> Transmit {
        Transmit {
            topic,
            payload,
            acknowledged,
            retain,
        }
    }

    /// The oldest publish taken was written with packet id `pkid` (0 at QoS 0).
    pub fn on_sent(&mut self, pkid: u16) {
        let Some(handed) = self.handed.pop_front() else {
            tracing::debug!("a publish the outbox did not hand over was written (pkid {pkid})");
            return;
        };
        if handed.acknowledged {
            if let Some(old) = self.unacked.insert(pkid, handed) {
                // Only when an id is reused before its ack (it is not under WINDOW):
                // keep the older one owed rather than lose it.
                if let Owed::Event(e) = old.owed {
                    self.queued_events += 1;
                    self.queue.push_front(Queued::Event(e));
                }
            }
        }
    }

    /// The broker acknowledged packet `pkid`.
    pub fn on_acked(&mut self, pkid: u16) {
        let Some(handed) = self.unacked.remove(&pkid) else {
            return;
        };
        match handed.owed {
            Owed::Clear { topic, seq } if self.clears.get(&topic) == Some(&seq) => {
                self.clears.remove(&topic);
            }
            Owed::Event(e) => self.owing.push(Owing::Settled { id: e.seq }),
            _ => {}
        }
    }

    /// How many of the acks owed must come before the outbox has more to hand over (its
    /// window down to [`REFILL_AT`]), or, when nothing waits for the window, all of them:
    /// until then an ack changes nothing but the outbox's own books.
    pub fn acks_awaited(&self) -> usize {
        if self.window_full {
            let in_flight = self.handed.len() + self.unacked.len();
            in_flight.saturating_sub(REFILL_AT).min(self.unacked.len())
        } else {
            self.unacked.len()
        }
    }

    /// Nothing waits and nothing is unacknowledged.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.handed.is_empty() && self.unacked.is_empty()
    }

    /// Events not yet acknowledged by the broker.
    pub fn owed_events(&self) -> usize {
        self.queued_events
            + self
                .handed
                .iter()
                .chain(self.unacked.values())
                .filter(|h| matches!(h.owed, Owed::Event(_)))
                .count()
    }

    /// The retained value of `topic` the outbox holds, if any (discovery only until it is
    /// handed over).
    pub fn retained(&self, topic: &str) -> Option<Cow<'_, [u8]>> {
        self.discovery
            .get(topic)
            .or(self.data.get(topic))
            .map(Stored::bytes)
    }

    /// Bytes the retained values hold: `(discovery not handed over yet, data)`.
    pub fn retained_bytes(&self) -> (usize, usize) {
        let discovery = self.discovery.values().map(Stored::held).sum();
        (discovery, self.data.values().map(Stored::held).sum())
    }
}

#[cfg(test)]
mod tests;
