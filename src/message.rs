//! What crosses from the bridge's decisions to the broker: the [`Message`]s the core hands
//! out, the [`Incoming`] messages it is handed, and the packet limit both sides keep. Neither
//! the MQTT session ([`crate::mqtt`]) nor the outbox ([`crate::outbox`]) owns them, so the
//! decisions depend on neither.

use std::sync::Arc;

/// The largest MQTT packet the gateway sends (and the session accepts): discovery messages
/// and camera pictures are large.
pub const MAX_PACKET_BYTES: usize = 8 * 1024 * 1024;

/// Command messages larger than this are refused unread: the bound of
/// `mqtt.max_payload_bytes` and the command parser's own guard.
pub const MAX_COMMAND_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Home Assistant discovery: republished first, so entities exist before their states.
    Discovery,
    Data,
}

/// What the bridge hands to the outbox.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A retained value; nothing is sent while it is unchanged.
    Retain {
        kind: Kind,
        topic: String,
        payload: Vec<u8>,
    },
    /// Removes a retained value from the broker.
    Clear { topic: String },
    /// Delivered at least once and in order: feed events, job ends, command replies.
    Event { topic: String, payload: Vec<u8> },
    /// Replaceable data (camera pictures): QoS 0, the last one sent again after a reconnect.
    Image {
        topic: String,
        payload: Arc<Vec<u8>>,
    },
    /// The last picture of a topic is not sent again (its camera or printer is gone).
    Forget { topic: String },
}

impl Message {
    /// Why no broker would take this message, if so.
    pub fn unpublishable(&self) -> Option<String> {
        let topic = self.topic();
        if topic.is_empty() || topic.contains(['+', '#', '\0']) || topic.len() > 65_535 {
            return Some("not a valid MQTT topic".into());
        }
        let size = match self {
            Message::Retain { payload, .. } | Message::Event { payload, .. } => payload.len(),
            Message::Image { payload, .. } => payload.len(),
            Message::Clear { .. } | Message::Forget { .. } => 0,
        };
        // The packet also holds the topic and a header.
        (size + topic.len() + 16 > MAX_PACKET_BYTES).then(|| {
            format!("{size} bytes is more than an MQTT message may be ({MAX_PACKET_BYTES} bytes)")
        })
    }

    pub fn retain(kind: Kind, topic: String, payload: impl Into<Vec<u8>>) -> Message {
        Message::Retain {
            kind,
            topic,
            payload: payload.into(),
        }
    }

    pub fn event(topic: String, payload: impl Into<Vec<u8>>) -> Message {
        Message::Event {
            topic,
            payload: payload.into(),
        }
    }

    pub fn topic(&self) -> &str {
        match self {
            Message::Retain { topic, .. }
            | Message::Clear { topic }
            | Message::Event { topic, .. }
            | Message::Image { topic, .. }
            | Message::Forget { topic } => topic,
        }
    }
}

/// A message from the broker, with the connection (generation) it came in on.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub topic: String,
    pub payload: bytes::Bytes,
    pub retain: bool,
    pub generation: u64,
}
