//! The task that only polls rumqttc's event loop: it reports the connection state and hands
//! incoming messages to the bridge, and backs off after a failure.

use std::time::Duration;

use rand::Rng;
use rumqttc::{ConnectionError, Event, EventLoop, Packet};
use tokio::sync::{mpsc, watch};

use super::births;
use super::broker::{drain, explain_broker_error, low_latency};
use super::publisher::Request;
use crate::message::Incoming;

const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// The session's connection state; `generation` counts ConnAcks, `births` the Home
/// Assistant birth messages answered while connected. After either the bridge renders its
/// discovery again (the outbox does not keep it once sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Link {
    pub connected: bool,
    pub generation: u64,
    pub births: u64,
}

impl Link {
    /// Whether discovery is to be rendered again since the bridge last looked (`seen`): a
    /// connection after the first (the broker may have lost it) or a birth message.
    pub fn wants_discovery(&self, seen: &Link) -> bool {
        (self.generation > 1 && self.generation != seen.generation) || self.births != seen.births
    }
}

/// What the polling task saw.
pub(super) enum Polled {
    Event(Event),
    /// The connection failed or dropped; the polling task backs off before trying again.
    Dropped,
}

/// Polls rumqttc's event loop and forwards what happens, waiting (with backoff and jitter)
/// after a failure: rumqttc reconnects at once on the next poll. Messages from the broker go
/// straight to the bridge (a command does not wait behind the session's work), tagged with
/// the connection they came on; the connection state is told here, where it is first known.
pub(super) struct Poller {
    out: mpsc::UnboundedSender<Polled>,
    incoming: mpsc::UnboundedSender<Incoming>,
    link: watch::Sender<Link>,
    ha_status: Option<String>,
    requests: mpsc::UnboundedSender<Request>,
    births: std::sync::Mutex<births::Births>,
}

impl Poller {
    pub(super) fn new(
        out: mpsc::UnboundedSender<Polled>,
        incoming: mpsc::UnboundedSender<Incoming>,
        link: watch::Sender<Link>,
        ha_status: Option<String>,
        requests: mpsc::UnboundedSender<Request>,
    ) -> Poller {
        Poller {
            out,
            incoming,
            link,
            ha_status,
            requests,
            births: Default::default(),
        }
    }

    pub(super) async fn run(self, mut eventloop: EventLoop) {
        eventloop.set_network_options(low_latency());
        let (host, port) = eventloop.mqtt_options.broker_address();
        let broker = format!("{host}:{port}");
        let mut backoff = BACKOFF_START;
        let mut failures = 0u32;
        loop {
            match eventloop.poll().await {
                Ok(event) => {
                    let disconnect =
                        matches!(event, Event::Outgoing(rumqttc::Outgoing::Disconnect));
                    if matches!(event, Event::Incoming(Packet::ConnAck(_))) {
                        backoff = BACKOFF_START;
                        if failures > 0 {
                            tracing::info!("MQTT broker connection restored");
                        } else {
                            tracing::info!("connected to the MQTT broker");
                        }
                        failures = 0;
                        self.link.send_modify(|l| {
                            l.connected = true;
                            l.generation += 1;
                        });
                    }
                    if disconnect {
                        self.link
                            .send_if_modified(|l| std::mem::replace(&mut l.connected, false));
                    }
                    if !self.forward(event) {
                        return;
                    }
                    if disconnect {
                        drain(&mut eventloop).await;
                        return;
                    }
                }
                Err(ConnectionError::RequestsDone) => return,
                Err(e) => {
                    // What rumqttc did before the failure and has not reported yet belongs to
                    // the connection that dropped: reported now, it is not mistaken for the
                    // next one's.
                    for event in eventloop.state.events.drain(..) {
                        if !self.forward(event) {
                            return;
                        }
                    }
                    // A publish held back for a packet id still in use would keep rumqttc
                    // from taking any request on the next connection: the outbox owes it.
                    eventloop.state.collision = None;
                    self.link
                        .send_if_modified(|l| std::mem::replace(&mut l.connected, false));
                    if self.out.send(Polled::Dropped).is_err() {
                        return;
                    }
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!(
                            "MQTT broker: {}; retrying with backoff (`prusa-connect-mqtt check` tests the settings)",
                            explain_broker_error(&e, &broker)
                        );
                    } else {
                        tracing::debug!("MQTT reconnect attempt {failures} failed: {e}");
                    }
                    let jitter = rand::rng().random_range(0.75..1.25);
                    tokio::time::sleep(backoff.mul_f64(jitter)).await;
                    backoff = (backoff * 2).min(BACKOFF_CAP);
                }
            }
        }
    }

    /// Hands an event on; false once the session is gone.
    fn forward(&self, event: Event) -> bool {
        let Event::Incoming(Packet::Publish(p)) = event else {
            return self.out.send(Polled::Event(event)).is_ok();
        };
        if self.ha_status.as_deref() == Some(p.topic.as_str()) {
            if p.payload.as_ref() == b"online" {
                let now = tokio::time::Instant::now();
                let answer = match self.births.lock() {
                    Ok(mut births) => births.on_birth(now),
                    Err(_) => births::Answer::Now,
                };
                match answer {
                    births::Answer::Now => {
                        tracing::info!(
                            "Home Assistant is online: republishing discovery and state"
                        );
                        let _ = self.requests.send(Request::Republish);
                    }
                    births::Answer::At(at) => {
                        tracing::info!(
                            "Home Assistant said online again within {:?}: republishing once then",
                            births::BIRTH_WINDOW
                        );
                        // Weak: a waiting republish does not keep the session's requests open.
                        let requests = self.requests.downgrade();
                        tokio::spawn(async move {
                            tokio::time::sleep_until(at).await;
                            if let Some(requests) = requests.upgrade() {
                                let _ = requests.send(Request::Republish);
                            }
                        });
                    }
                    births::Answer::Covered => {
                        tracing::debug!("Home Assistant online again: republish already due")
                    }
                }
            }
            return true;
        }
        let generation = self.link.borrow().generation;
        let _ = self.incoming.send(Incoming {
            topic: p.topic,
            payload: p.payload,
            retain: p.retain,
            generation,
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::Link;

    #[test]
    fn discovery_is_rendered_again_after_a_reconnect_or_a_birth_not_the_first_connection() {
        let link = |generation, births| Link {
            connected: true,
            generation,
            births,
        };
        let start = Link::default();
        assert!(!link(1, 0).wants_discovery(&start), "the first connection");
        assert!(link(2, 0).wants_discovery(&link(1, 0)), "a reconnect");
        assert!(link(2, 0).wants_discovery(&start), "two connections unseen");
        assert!(link(1, 1).wants_discovery(&link(1, 0)), "a birth");
        assert!(!link(2, 1).wants_discovery(&link(2, 1)), "nothing new");
    }
}
