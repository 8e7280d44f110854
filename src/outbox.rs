//! Everything the bridge sends goes through here: unchanged retained values are not sent
//! again, every retained value is remembered so a reconnect or Home Assistant's birth message
//! can republish it, and messages produced while the broker is away wait in a bounded queue.

use std::collections::{BTreeMap, VecDeque};

use rumqttc::{AsyncClient, QoS};

/// Non-retained messages kept while the broker is away; the oldest are dropped beyond this.
const MAX_PENDING: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Home Assistant discovery: republished first, so entities exist before their states.
    Discovery,
    Data,
}

pub struct Outbox {
    client: AsyncClient,
    connected: bool,
    discovery: BTreeMap<String, Vec<u8>>,
    retained: BTreeMap<String, Vec<u8>>,
    pending: VecDeque<(String, Vec<u8>, QoS)>,
}

impl Outbox {
    pub fn new(client: AsyncClient) -> Self {
        Self {
            client,
            connected: false,
            discovery: BTreeMap::new(),
            retained: BTreeMap::new(),
            pending: VecDeque::new(),
        }
    }

    async fn send(&mut self, topic: &str, payload: Vec<u8>, retain: bool, qos: QoS) {
        if let Err(e) = self.client.publish(topic, qos, retain, payload).await {
            // Only when the event loop is gone (shutdown); nothing to retry.
            tracing::debug!("cannot publish {topic}: {e}");
        }
    }

    /// Publishes a retained value unless it is already the current one.
    pub async fn retain(&mut self, kind: Kind, topic: &str, payload: Vec<u8>) -> bool {
        let map = match kind {
            Kind::Discovery => &mut self.discovery,
            Kind::Data => &mut self.retained,
        };
        if map.get(topic) == Some(&payload) {
            return false;
        }
        map.insert(topic.to_string(), payload.clone());
        if self.connected {
            self.send(topic, payload, true, QoS::AtLeastOnce).await;
        }
        true
    }

    /// Removes a retained value from the broker (empty retained payload) and from memory.
    pub async fn clear(&mut self, topic: &str) {
        self.discovery.remove(topic);
        self.retained.remove(topic);
        if self.connected {
            self.send(topic, Vec::new(), true, QoS::AtLeastOnce).await;
        } else {
            self.pending
                .push_back((topic.to_string(), Vec::new(), QoS::AtLeastOnce));
        }
    }

    /// A message that is delivered once (events, replies): queued while the broker is away.
    pub async fn event(&mut self, topic: &str, payload: Vec<u8>) {
        self.message(topic, payload, QoS::AtLeastOnce).await
    }

    /// Large, replaceable data (camera images): QoS 0, dropped while the broker is away.
    pub async fn volatile(&mut self, topic: &str, payload: Vec<u8>) {
        if self.connected {
            self.send(topic, payload, false, QoS::AtMostOnce).await;
        }
    }

    async fn message(&mut self, topic: &str, payload: Vec<u8>, qos: QoS) {
        if self.connected {
            self.send(topic, payload, false, qos).await;
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
            tracing::warn!("MQTT broker away too long: dropping the oldest queued message");
        }
        self.pending.push_back((topic.to_string(), payload, qos));
    }

    pub fn set_disconnected(&mut self) {
        self.connected = false;
    }

    /// After a ConnAck: `first` (bridge/state online), then every retained value (discovery
    /// first), then what waited while the broker was away.
    pub async fn on_connected(&mut self, first: (&str, &[u8])) {
        self.connected = true;
        self.send(first.0, first.1.to_vec(), true, QoS::AtLeastOnce)
            .await;
        self.republish().await;
        while let Some((topic, payload, qos)) = self.pending.pop_front() {
            let retain = payload.is_empty();
            self.send(&topic, payload, retain, qos).await;
        }
    }

    /// Sends every retained value again (Home Assistant's birth message, a reconnect).
    pub async fn republish(&mut self) {
        if !self.connected {
            return;
        }
        let all: Vec<(String, Vec<u8>)> = self
            .discovery
            .iter()
            .chain(self.retained.iter())
            .map(|(t, p)| (t.clone(), p.clone()))
            .collect();
        for (topic, payload) in all {
            self.send(&topic, payload, true, QoS::AtLeastOnce).await;
        }
    }

    /// Every retained topic currently published (for `demo`'s clean-up).
    pub fn retained_topics(&self) -> Vec<String> {
        self.discovery
            .keys()
            .chain(self.retained.keys())
            .cloned()
            .collect()
    }
}
