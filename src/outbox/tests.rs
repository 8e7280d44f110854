//! The outbox as the session drives it: transmits handed over, written with packet ids,
//! acknowledged, and connections dropped in between.

use super::*;
use crate::message::MAX_PACKET_BYTES;

const STATUS: &str = "pc/bridge/state";

/// A session as it runs: hands over what the outbox lets go, writes it with the next
/// packet id (0 at QoS 0), and acknowledges on request.
struct Broker {
    outbox: Outbox,
    next_pkid: u16,
    /// Written at QoS 1, not acknowledged yet, in order.
    written: Vec<(u16, Transmit)>,
    /// Everything written, in order.
    log: Vec<Transmit>,
}

impl Broker {
    fn new() -> Broker {
        Broker {
            outbox: Outbox::new(STATUS),
            next_pkid: 0,
            written: Vec::new(),
            log: Vec::new(),
        }
    }

    /// Hands over and writes all the window allows; returns what was written.
    fn write(&mut self) -> Vec<Transmit> {
        let mut out = Vec::new();
        while let Some(t) = self.outbox.poll_transmit() {
            let pkid = if t.acknowledged {
                self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
                self.next_pkid
            } else {
                0
            };
            self.outbox.on_sent(pkid);
            if t.acknowledged {
                self.written.push((pkid, t.clone()));
            }
            self.log.push(t.clone());
            out.push(t);
        }
        out
    }

    fn ack_all(&mut self) {
        for (pkid, _) in std::mem::take(&mut self.written) {
            self.outbox.on_acked(pkid);
        }
    }

    /// Writes and acknowledges until nothing is left; returns what was written.
    fn deliver(&mut self) -> Vec<Transmit> {
        let mut all = Vec::new();
        loop {
            let batch = self.write();
            if batch.is_empty() {
                return all;
            }
            all.extend(batch);
            self.ack_all();
        }
    }

    fn drop_connection(&mut self) {
        self.written.clear();
        self.outbox.on_disconnected();
    }

    fn connect(&mut self) {
        self.outbox.on_connected();
    }
}

fn topics(ts: &[Transmit]) -> Vec<String> {
    ts.iter()
        .map(|t| {
            let what = if t.payload.is_empty() {
                "<clear>".to_string()
            } else {
                String::from_utf8_lossy(&t.payload).into_owned()
            };
            format!("{}={what}", t.topic)
        })
        .collect()
}

fn data(topic: &str, v: &str) -> Message {
    Message::retain(Kind::Data, topic.into(), v)
}

#[test]
fn online_first_then_discovery_then_data_and_unchanged_values_are_not_sent_again() {
    let mut b = Broker::new();
    b.outbox.push(data("pc/p/state", "1"));
    b.outbox
        .push(Message::retain(Kind::Discovery, "ha/p/config".into(), "d"));
    b.connect();
    assert_eq!(
        topics(&b.deliver()),
        ["pc/bridge/state=online", "ha/p/config=d", "pc/p/state=1"]
    );
    b.outbox.push(data("pc/p/state", "1"));
    assert!(b.deliver().is_empty(), "unchanged");
    b.outbox.push(data("pc/p/state", "2"));
    assert_eq!(topics(&b.deliver()), ["pc/p/state=2"]);
}

#[test]
fn a_topic_cleared_then_set_while_away_ends_up_set() {
    let mut b = Broker::new();
    b.connect();
    b.outbox.push(data("pc/p/state", "1"));
    b.deliver();
    b.drop_connection();
    b.outbox.push(Message::Clear {
        topic: "pc/p/state".into(),
    });
    b.outbox.push(data("pc/p/state", "2"));
    b.connect();
    let sent = topics(&b.deliver());
    assert_eq!(sent, ["pc/bridge/state=online", "pc/p/state=2"]);
}

#[test]
fn a_topic_set_then_cleared_while_away_is_cleared() {
    let mut b = Broker::new();
    b.connect();
    b.outbox.push(data("pc/p/state", "1"));
    b.deliver();
    b.drop_connection();
    b.outbox.push(data("pc/p/state", "2"));
    b.outbox.push(Message::Clear {
        topic: "pc/p/state".into(),
    });
    b.connect();
    assert_eq!(
        topics(&b.deliver()),
        ["pc/bridge/state=online", "pc/p/state=<clear>"]
    );
    // Acknowledged: the next connection owes nothing for it.
    b.drop_connection();
    b.connect();
    assert_eq!(topics(&b.deliver()), ["pc/bridge/state=online"]);
}

#[test]
fn a_clear_not_acknowledged_when_the_connection_drops_is_sent_again() {
    let mut b = Broker::new();
    b.connect();
    b.outbox.push(data("pc/p/state", "1"));
    b.deliver();
    b.outbox.push(Message::Clear {
        topic: "pc/p/state".into(),
    });
    assert_eq!(topics(&b.write()), ["pc/p/state=<clear>"]);
    b.drop_connection();
    b.connect();
    assert_eq!(
        topics(&b.deliver()),
        ["pc/bridge/state=online", "pc/p/state=<clear>"]
    );
}

#[test]
fn events_not_acknowledged_are_sent_again_in_order_after_retained_values() {
    let mut b = Broker::new();
    b.connect();
    b.deliver();
    for i in 0..5 {
        b.outbox
            .push(Message::event("pc/p/event".into(), format!("e{i}")));
    }
    let written = b.write();
    assert_eq!(written.len(), 5);
    // The broker acknowledged the first two; then the connection dropped.
    let acked: Vec<u16> = b.written.iter().take(2).map(|(p, _)| *p).collect();
    for pkid in acked {
        b.outbox.on_acked(pkid);
    }
    assert_eq!(b.outbox.owed_events(), 3);
    b.drop_connection();
    b.outbox
        .push(Message::event("pc/p/event".into(), "e5".to_string()));
    b.outbox.push(data("pc/p/state", "s"));
    b.connect();
    assert_eq!(
        topics(&b.deliver()),
        [
            "pc/bridge/state=online",
            "pc/p/state=s",
            "pc/p/event=e2",
            "pc/p/event=e3",
            "pc/p/event=e4",
            "pc/p/event=e5"
        ]
    );
    assert_eq!(b.outbox.owed_events(), 0);
    assert!(b.outbox.is_idle());
}

#[test]
fn at_most_a_window_is_handed_over_until_acks_come() {
    let mut b = Broker::new();
    b.connect();
    b.deliver();
    for i in 0..(WINDOW + 10) {
        b.outbox
            .push(Message::event("pc/p/event".into(), format!("{i}")));
    }
    assert_eq!(b.write().len(), WINDOW);
    assert!(b.write().is_empty(), "the window is full");
    b.ack_all();
    assert_eq!(b.write().len(), 10);
}

#[test]
fn a_full_window_is_refilled_once_half_of_it_is_acknowledged_not_at_every_ack() {
    let mut b = Broker::new();
    b.connect();
    b.deliver();
    for i in 0..(2 * WINDOW) {
        b.outbox
            .push(Message::event("pc/p/event".into(), format!("{i}")));
    }
    assert_eq!(b.write().len(), WINDOW);
    let ack_oldest = |b: &mut Broker, n: usize| {
        for (pkid, _) in b.written.drain(..n).collect::<Vec<_>>() {
            b.outbox.on_acked(pkid);
        }
    };
    ack_oldest(&mut b, WINDOW - REFILL_AT - 1);
    assert!(b.write().is_empty(), "one ack short of the refill mark");
    ack_oldest(&mut b, 1);
    let refill = b.write();
    assert_eq!(
        refill.len(),
        WINDOW - REFILL_AT,
        "refilled to the full window at once"
    );
    assert_eq!(refill[0].payload.as_ref(), WINDOW.to_string().as_bytes());
    // Below the mark and not full, it is not held back: what comes goes at once.
    b.ack_all();
    b.outbox
        .push(Message::event("pc/p/event".into(), "late".to_string()));
    let rest = b.write();
    assert_eq!(
        rest.len(),
        REFILL_AT + 1,
        "the rest of the queue and the newcomer"
    );
    assert_eq!(rest[REFILL_AT].payload.as_ref(), b"late");
}

#[test]
fn the_acks_awaited_are_those_that_refill_the_window_or_all_when_nothing_waits() {
    let mut b = Broker::new();
    b.connect();
    b.deliver();
    assert_eq!(b.outbox.acks_awaited(), 0, "nothing owed");
    for i in 0..(WINDOW + 10) {
        b.outbox
            .push(Message::event("pc/p/event".into(), format!("{i}")));
    }
    assert_eq!(b.write().len(), WINDOW);
    assert_eq!(
        b.outbox.acks_awaited(),
        WINDOW - REFILL_AT,
        "down to the mark"
    );
    for (pkid, _) in b
        .written
        .drain(..WINDOW - REFILL_AT - 1)
        .collect::<Vec<_>>()
    {
        b.outbox.on_acked(pkid);
    }
    assert!(b.write().is_empty());
    assert_eq!(b.outbox.acks_awaited(), 1, "one short of the mark");
    b.ack_all();
    assert_eq!(b.write().len(), 10, "the rest, the window not full");
    assert_eq!(b.outbox.acks_awaited(), 10, "all of them: nothing waits");
    b.ack_all();
    assert_eq!(b.outbox.acks_awaited(), 0);
}

#[test]
fn pictures_go_at_qos_0_only_the_last_is_kept_and_it_is_sent_again_after_a_reconnect() {
    let mut b = Broker::new();
    b.connect();
    b.deliver();
    let image = |bytes: &[u8]| Message::Image {
        topic: "pc/p/camera/1".into(),
        payload: Arc::new(bytes.to_vec()),
    };
    b.outbox.push(image(b"one"));
    let sent = b.deliver();
    assert_eq!(topics(&sent), ["pc/p/camera/1=one"]);
    assert!(!sent[0].acknowledged && !sent[0].retain);
    b.drop_connection();
    b.outbox.push(image(b"two"));
    b.outbox.push(image(b"three"));
    b.connect();
    assert_eq!(
        topics(&b.deliver()),
        ["pc/bridge/state=online", "pc/p/camera/1=three"]
    );
    b.outbox.republish();
    assert_eq!(
        topics(&b.deliver()),
        ["pc/bridge/state=online", "pc/p/camera/1=three"]
    );
}

#[test]
fn while_away_the_oldest_events_beyond_the_limit_are_dropped() {
    let mut b = Broker::new();
    for i in 0..(MAX_OWED_EVENTS + 3) {
        b.outbox
            .push(Message::event("pc/p/event".into(), format!("{i}")));
    }
    assert_eq!(b.outbox.owed_events(), MAX_OWED_EVENTS);
    b.connect();
    let sent = b.deliver();
    assert_eq!(sent.len(), MAX_OWED_EVENTS + 1);
    assert_eq!(sent[1].payload, &b"3"[..]);
}

#[test]
fn clear_all_removes_every_retained_topic() {
    let mut b = Broker::new();
    b.connect();
    b.outbox.push(data("pc/p/state", "1"));
    b.outbox
        .push(Message::retain(Kind::Discovery, "ha/p/config".into(), "d"));
    b.deliver();
    b.outbox.clear_all();
    let mut cleared = topics(&b.deliver());
    cleared.sort();
    assert_eq!(
        cleared,
        [
            "ha/p/config=<clear>",
            "pc/bridge/state=<clear>",
            "pc/p/state=<clear>"
        ]
    );
    assert!(b.outbox.retained("pc/p/state").is_none());
}

#[test]
fn a_message_no_broker_would_take_is_dropped_and_the_rest_go() {
    let mut b = Broker::new();
    b.connect();
    b.deliver();
    b.outbox.push(Message::Image {
        topic: "pc/p/camera/a+b".into(),
        payload: Arc::new(b"jpeg".to_vec()),
    });
    b.outbox.push(Message::event(
        "pc/p/event".into(),
        vec![b'x'; MAX_PACKET_BYTES],
    ));
    b.outbox
        .push(Message::event("pc/p/command/response".into(), "ok"));
    assert_eq!(topics(&b.deliver()), ["pc/p/command/response=ok"]);
}

#[test]
fn a_forgotten_picture_is_not_sent_again() {
    let mut b = Broker::new();
    b.connect();
    b.outbox.push(Message::Image {
        topic: "pc/p/camera/1".into(),
        payload: Arc::new(b"one".to_vec()),
    });
    b.deliver();
    b.outbox.push(Message::Forget {
        topic: "pc/p/camera/1".into(),
    });
    b.drop_connection();
    b.connect();
    assert_eq!(topics(&b.deliver()), ["pc/bridge/state=online"]);
}

/// The journal learns of every event owed and of every one that no longer is (acknowledged or
/// dropped), and events kept from an earlier run go before newer ones.
#[test]
fn the_journal_is_told_what_is_owed_and_kept_events_go_first() {
    let mut b = Broker::new();
    b.outbox.restore(7, "pc/p/event".into(), b"kept".to_vec());
    b.outbox.push(Message::event("pc/p/event".into(), "new"));
    assert_eq!(
        b.outbox.take_owing(),
        [Owing::Added {
            id: 8,
            topic: "pc/p/event".into(),
            payload: b"new".to_vec()
        }],
        "the kept event is in the journal already"
    );
    assert_eq!(
        b.outbox
            .owed()
            .iter()
            .map(|(id, _, p)| (*id, p.to_vec()))
            .collect::<Vec<_>>(),
        [(7, b"kept".to_vec()), (8, b"new".to_vec())]
    );
    b.connect();
    let sent = topics(&b.deliver());
    assert_eq!(
        sent,
        [
            "pc/bridge/state=online",
            "pc/p/event=kept",
            "pc/p/event=new"
        ]
    );
    assert_eq!(
        b.outbox.take_owing(),
        [Owing::Settled { id: 7 }, Owing::Settled { id: 8 }]
    );
    assert!(b.outbox.owed().is_empty());

    // Dropped beyond the cap: settled too.
    b.drop_connection();
    for n in 0..=MAX_OWED_EVENTS {
        b.outbox
            .push(Message::event("pc/p/event".into(), n.to_string()));
    }
    let owing = b.outbox.take_owing();
    assert_eq!(owing.len(), MAX_OWED_EVENTS + 2);
    assert_eq!(owing[MAX_OWED_EVENTS + 1], Owing::Settled { id: 9 });
}

/// A connected outbox with nothing to send, and a discovery payload long enough to deflate.
fn connected_with_long_config() -> (Broker, String) {
    let mut b = Broker::new();
    b.connect();
    b.deliver();
    let config = (0..300)
        .map(|i| format!("{{\"uniq_id\":\"p_{i}\",\"stat_t\":\"pc/p/state\"}},"))
        .collect();
    (b, config)
}

#[test]
fn discovery_is_held_deflated_until_handed_over_and_its_topic_is_still_cleared() {
    let (mut b, config) = connected_with_long_config();
    // A queue as long as the window: the discovery waits.
    for i in 0..WINDOW {
        b.outbox.push(data(&format!("pc/q{i}/state"), "{}"));
    }
    b.outbox.push(Message::retain(
        Kind::Discovery,
        "ha/p/config".into(),
        config.clone(),
    ));
    b.outbox.push(data("pc/p/state", &config));
    let (discovery, data_bytes) = b.outbox.retained_bytes();
    // `P/state` and the `online` of the bridge, as they came.
    assert_eq!(data_bytes, config.len() + "online".len() + 2 * WINDOW);
    assert!(
        discovery * 4 < config.len(),
        "{discovery} of {}",
        config.len()
    );
    let sent = b.deliver();
    assert_eq!(topics(&sent).len(), WINDOW + 2);
    assert_eq!(sent[WINDOW].payload, config.as_bytes());
    // Sent: nothing of it is held, and a reconnect sends the data alone (the bridge renders
    // discovery again).
    assert_eq!(b.outbox.retained_bytes().0, 0);
    assert!(b.outbox.retained("ha/p/config").is_none());
    b.drop_connection();
    b.connect();
    let again: Vec<String> = b
        .deliver()
        .into_iter()
        .map(|t| t.topic)
        .filter(|t| !t.starts_with("pc/q"))
        .collect();
    assert_eq!(again, ["pc/bridge/state", "pc/p/state"]);
    // Given again, it goes again, whole.
    b.outbox.push(Message::retain(
        Kind::Discovery,
        "ha/p/config".into(),
        config.clone(),
    ));
    let sent = b.deliver();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].payload, config.as_bytes());
    // Clearing everything (`demo`) clears it too.
    b.outbox.clear_all();
    let cleared = topics(&b.deliver());
    assert!(
        cleared.contains(&"ha/p/config=<clear>".to_string()),
        "{cleared:?}"
    );
}

/// Discovery that goes out at once (a short queue) is kept as it came until it is handed
/// over; pushed while the broker is away, it is kept deflated; either way it goes whole.
#[test]
fn discovery_that_goes_out_at_once_is_not_deflated() {
    let (mut b, config) = connected_with_long_config();
    b.outbox.push(Message::retain(
        Kind::Discovery,
        "ha/p/config".into(),
        config.clone(),
    ));
    assert_eq!(b.outbox.retained_bytes().0, config.len());
    let sent = b.deliver();
    assert_eq!(sent[0].payload, config.as_bytes());

    b.drop_connection();
    b.outbox.push(Message::retain(
        Kind::Discovery,
        "ha/p2/config".into(),
        config.clone(),
    ));
    let held = b.outbox.retained_bytes().0;
    assert!(held * 4 < config.len(), "{held} of {}", config.len());
    b.connect();
    let sent = b.deliver();
    let p2: Vec<&Transmit> = sent.iter().filter(|t| t.topic == "ha/p2/config").collect();
    assert_eq!(p2.len(), 1);
    assert_eq!(p2[0].payload, config.as_bytes());
}
