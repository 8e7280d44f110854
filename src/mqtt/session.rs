//! The session's one task: it owns the outbox and the connection ([`Wire`]), connects and
//! backs off, subscribes on every connection, hands the broker what the outbox lets go and
//! reads what the broker sends. Requests from the bridge are taken in every phase, connected
//! or not: the outbox coalesces them while the broker is away, and a stop is never kept
//! waiting by a backoff.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use rand::Rng;
use rumqttc::{ConnectionError, MqttOptions, Packet, QoS, StateError, SubscribeReasonCode};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep};

use super::births::{self, Births};
use super::broker::explain_broker_error;
use super::publisher::Request;
use super::wire::{self, Wire};
use crate::journal::Journal;
use crate::message::Incoming;
use crate::outbox::Outbox;

const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// At most this many more requests are taken in one turn of the loop (the rest come at the
/// next; the channel is unbounded). A farm's flush arrives as hundreds of publishes: they
/// are written together.
const BATCH: usize = 512;

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

type Connecting = Pin<Box<dyn Future<Output = Result<Wire, ConnectionError>> + Send>>;

enum Phase {
    Waiting(Pin<Box<Sleep>>),
    Connecting(Connecting),
    Connected { wire: Wire, keep_alive: Interval },
}

pub(super) struct SessionState {
    opts: MqttOptions,
    outbox: Outbox,
    journal: Option<Journal>,
    /// Told of each connection, drop and birth message answered.
    link: watch::Sender<Link>,
    /// Messages from the broker, to the bridge.
    incoming: mpsc::UnboundedSender<Incoming>,
    /// Home Assistant's status topic (its birth message republishes everything).
    ha_status: Option<String>,
    births: Births,
    /// For a republish that waits for the birth window; weak, so that it does not keep the
    /// requests open.
    requests: mpsc::WeakUnboundedSender<Request>,
    status_topic: String,
    subscriptions: Vec<String>,
    /// UNSUBSCRIBEs written and not acknowledged yet, and who waits for them.
    unsubscribing: usize,
    unsubscribed: Option<oneshot::Sender<()>>,
    /// A PINGREQ went out and its PINGRESP has not come yet.
    pinged: bool,
    stopping: bool,
    backoff: Duration,
    failures: u32,
}

/// What the session needs besides the outbox.
pub(super) struct Parts {
    pub opts: MqttOptions,
    pub journal: Option<Journal>,
    pub link: watch::Sender<Link>,
    pub incoming: mpsc::UnboundedSender<Incoming>,
    pub ha_status: Option<String>,
    pub requests: mpsc::WeakUnboundedSender<Request>,
    pub status_topic: String,
    pub subscriptions: Vec<String>,
}

impl SessionState {
    pub(super) fn new(outbox: Outbox, parts: Parts) -> SessionState {
        SessionState {
            opts: parts.opts,
            outbox,
            journal: parts.journal,
            link: parts.link,
            incoming: parts.incoming,
            ha_status: parts.ha_status,
            births: Births::default(),
            requests: parts.requests,
            status_topic: parts.status_topic,
            subscriptions: parts.subscriptions,
            unsubscribing: 0,
            unsubscribed: None,
            pinged: false,
            stopping: false,
            backoff: BACKOFF_START,
            failures: 0,
        }
    }

    pub(super) async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>) {
        let mut phase = self.connect();
        let mut requests_open = true;
        loop {
            tokio::select! {
                request = requests.recv(), if requests_open => match request {
                    Some(request) => self.on_request(request, &mut phase),
                    // Every handle is gone: deliver what is owed and stop.
                    None => {
                        requests_open = false;
                        self.stopping = true;
                    }
                },
                next = self.step(&mut phase) => {
                    if let Some(next) = next {
                        phase = next;
                    }
                }
            }
            for _ in 0..BATCH {
                let Ok(request) = requests.try_recv() else {
                    break;
                };
                self.on_request(request, &mut phase);
            }
            if let Phase::Connected { wire, .. } = &mut phase {
                self.pump(wire);
                wire.expect_acks(self.outbox.acks_awaited());
            }
            self.write_journal();
            if self.stopping {
                if !matches!(phase, Phase::Connected { .. }) {
                    // Nothing can be delivered; the last will says `offline`.
                    return;
                }
                if self.outbox.is_idle() {
                    if let Phase::Connected { wire, .. } = phase {
                        self.disconnect(wire).await;
                    }
                    return;
                }
            }
        }
    }

    fn connect(&self) -> Phase {
        Phase::Connecting(Box::pin(wire::connect(self.opts.clone())))
    }

    /// Waits for what the phase waits for; returns the next phase when it changes.
    async fn step(&mut self, phase: &mut Phase) -> Option<Phase> {
        match phase {
            Phase::Waiting(sleep) => {
                sleep.await;
                Some(self.connect())
            }
            Phase::Connecting(connecting) => match connecting.await {
                Ok(mut wire) => {
                    self.on_connected(&mut wire);
                    // A zero interval would have nothing to wait for (and `interval` refuses it).
                    let keep_alive = self.opts.keep_alive().max(Duration::from_secs(1));
                    let mut interval =
                        tokio::time::interval_at(Instant::now() + keep_alive, keep_alive);
                    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    Some(Phase::Connected {
                        wire,
                        keep_alive: interval,
                    })
                }
                Err(e) => Some(self.on_failure(&e)),
            },
            Phase::Connected { wire, keep_alive } => {
                let result = tokio::select! {
                    packet = wire.read() => match packet {
                        Ok(packet) => self.on_packet(wire, packet).map_err(ConnectionError::from),
                        Err(e) => Err(e),
                    },
                    _ = keep_alive.tick() => self.on_keep_alive(wire).map_err(ConnectionError::from),
                };
                match result {
                    Ok(()) => None,
                    Err(e) => {
                        self.on_dropped();
                        Some(self.on_failure(&e))
                    }
                }
            }
        }
    }

    fn on_connected(&mut self, wire: &mut Wire) {
        self.backoff = BACKOFF_START;
        if self.failures > 0 {
            tracing::info!("MQTT broker connection restored");
        } else {
            tracing::info!("connected to the MQTT broker");
        }
        self.failures = 0;
        self.pinged = false;
        self.link.send_modify(|l| {
            l.connected = true;
            l.generation += 1;
        });
        self.outbox.on_connected();
        // Before any publish: a command sent right after our `online` is not missed.
        if let Err(e) = wire.subscribe(&self.subscriptions, QoS::AtLeastOnce) {
            tracing::error!("cannot subscribe to the MQTT topics: {e}");
        }
    }

    /// The connection dropped: what was written and not acknowledged is owed again.
    fn on_dropped(&mut self) {
        self.link
            .send_if_modified(|l| std::mem::replace(&mut l.connected, false));
        self.outbox.on_disconnected();
        // The subscriptions went with the connection.
        self.unsubscribe_settled();
    }

    /// Backs off (with jitter) after a failure to connect or a dropped connection.
    fn on_failure(&mut self, e: &ConnectionError) -> Phase {
        self.failures += 1;
        if self.failures == 1 {
            let (host, port) = self.opts.broker_address();
            tracing::warn!(
                "MQTT broker: {}; retrying with backoff (`prusa-connect-mqtt check` tests the settings)",
                explain_broker_error(e, &format!("{host}:{port}"))
            );
        } else {
            tracing::debug!("MQTT reconnect attempt {} failed: {e}", self.failures);
        }
        let jitter = rand::rng().random_range(0.75..1.25);
        let wait = self.backoff.mul_f64(jitter);
        self.backoff = (self.backoff * 2).min(BACKOFF_CAP);
        Phase::Waiting(Box::pin(tokio::time::sleep(wait)))
    }

    fn on_keep_alive(&mut self, wire: &mut Wire) -> Result<(), StateError> {
        if self.pinged {
            return Err(StateError::AwaitPingResp);
        }
        self.pinged = true;
        wire.ping()
    }

    fn on_packet(&mut self, wire: &mut Wire, packet: Packet) -> Result<(), StateError> {
        match packet {
            Packet::PubAck(ack) => self.outbox.on_acked(ack.pkid),
            Packet::Publish(publish) => {
                wire.acknowledge(&publish)?;
                self.on_message(publish);
            }
            Packet::PubRel(rel) => wire.complete(rel.pkid)?,
            Packet::SubAck(ack) => {
                for (filter, code) in self.subscriptions.iter().zip(&ack.return_codes) {
                    if matches!(code, SubscribeReasonCode::Failure) {
                        tracing::error!(
                            "the MQTT broker refused the subscription to {filter}: messages on \
                             it will not reach the gateway (check the broker's access rules)"
                        );
                    }
                }
            }
            Packet::UnsubAck(_) => {
                self.unsubscribing = self.unsubscribing.saturating_sub(1);
                if self.unsubscribing == 0 {
                    self.unsubscribe_settled();
                }
            }
            Packet::PingResp => self.pinged = false,
            other => tracing::debug!("ignoring an unexpected packet from the broker: {other:?}"),
        }
        Ok(())
    }

    /// A message from the broker: Home Assistant's birth, or one for the bridge, tagged with
    /// the connection it came on.
    fn on_message(&mut self, publish: rumqttc::Publish) {
        if self.ha_status.as_deref() != Some(publish.topic.as_str()) {
            let generation = self.link.borrow().generation;
            let _ = self.incoming.send(Incoming {
                topic: publish.topic,
                payload: publish.payload,
                retain: publish.retain,
                generation,
            });
            return;
        }
        if publish.payload.as_ref() != b"online" {
            return;
        }
        match self.births.on_birth(Instant::now()) {
            births::Answer::Now => {
                tracing::info!("Home Assistant is online: republishing discovery and state");
                self.republish();
            }
            births::Answer::At(at) => {
                tracing::info!(
                    "Home Assistant said online again within {:?}: republishing once then",
                    births::BIRTH_WINDOW
                );
                let requests = self.requests.clone();
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

    fn republish(&mut self) {
        // Not connected: the next connection sends everything (and is told).
        if self.outbox.is_connected() {
            self.outbox.republish();
            self.link.send_modify(|l| l.births += 1);
        }
    }

    fn on_request(&mut self, request: Request, phase: &mut Phase) {
        match request {
            Request::Publish(m) => self.outbox.push(m),
            Request::Republish => self.republish(),
            Request::ClearAll => self.outbox.clear_all(),
            Request::SyncJournal(tx) => {
                self.write_journal();
                let answer = match self.journal.as_mut() {
                    None => Ok(None),
                    Some(journal) => {
                        if journal.wants_rewrite() {
                            journal.rewrite(&self.outbox.owed());
                        }
                        journal.sync_handle().map(Some).ok_or_else(|| {
                            "the journal of events owed to the broker cannot be written".to_string()
                        })
                    }
                };
                let _ = tx.send(answer);
            }
            Request::Unsubscribe(done) => {
                let wire = match phase {
                    Phase::Connected { wire, .. } => Some(wire),
                    _ => None,
                };
                self.unsubscribe(wire, done);
            }
            Request::Stop => self.stopping = true,
        }
    }

    /// Tells the journal what changed in the events owed.
    fn write_journal(&mut self) {
        let changes = self.outbox.take_owing();
        if let Some(journal) = self.journal.as_mut()
            && journal.record(&changes)
        {
            journal.rewrite(&self.outbox.owed());
        }
    }

    fn unsubscribe(&mut self, wire: Option<&mut Wire>, done: oneshot::Sender<()>) {
        // A later connection subscribes only to the bridge's own status: messages on it are
        // not for the bridge.
        let filters = std::mem::replace(&mut self.subscriptions, vec![self.status_topic.clone()]);
        let Some(wire) = wire else {
            // Not subscribed on any connection: nothing more can come in.
            let _ = done.send(());
            return;
        };
        for filter in filters {
            match wire.unsubscribe(&filter) {
                Ok(_) => self.unsubscribing += 1,
                Err(e) => tracing::debug!("cannot unsubscribe from {filter}: {e}"),
            }
        }
        if self.unsubscribing == 0 {
            let _ = done.send(());
        } else {
            self.unsubscribed = Some(done);
        }
    }

    fn unsubscribe_settled(&mut self) {
        self.unsubscribing = 0;
        if let Some(done) = self.unsubscribed.take() {
            let _ = done.send(());
        }
    }

    /// Queues on the connection what the outbox lets go; it is written as one.
    fn pump(&mut self, wire: &mut Wire) {
        while let Some(t) = self.outbox.poll_transmit() {
            let (pkid, written) = wire.publish(t);
            self.outbox.on_sent(pkid);
            if !written {
                // It can never be written: not owed any more.
                self.outbox.on_acked(pkid);
            }
        }
    }

    /// Says DISCONNECT after everything owed was acknowledged, and waits for the broker to
    /// close.
    async fn disconnect(&mut self, mut wire: Wire) {
        if wire.disconnect().is_ok() {
            wire.close().await;
        }
        self.link
            .send_if_modified(|l| std::mem::replace(&mut l.connected, false));
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
