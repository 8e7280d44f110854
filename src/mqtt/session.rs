//! The task that owns the outbox: the only one handing publishes to rumqttc, so it sees a
//! dropped connection in order with everything else.

use std::collections::HashSet;
use std::future::Future;
use std::task::{Context, Poll, Waker};

use rumqttc::{AsyncClient, Event, Packet, QoS, SubscribeFilter, SubscribeReasonCode};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::task::AbortOnDropHandle;

use super::poller::{Link, Polled};
use super::publisher::Request;
use crate::journal::Journal;
use crate::outbox::Outbox;

pub(super) struct SessionState {
    client: AsyncClient,
    outbox: Outbox,
    journal: Option<Journal>,
    /// Told of each birth message answered (the bridge renders discovery again).
    link: watch::Sender<Link>,
    status_topic: String,
    /// UNSUBSCRIBEs handed over and not acknowledged yet, and who waits for them.
    unsubscribing: usize,
    unsubscribed: Option<oneshot::Sender<()>>,
    subscriptions: Vec<String>,
    /// Between a ConnAck and rumqttc writing our SUBSCRIBE: publishes rumqttc writes then were
    /// handed over before the connection dropped (their acks are ignored: `stale`).
    syncing: bool,
    /// The SUBSCRIBE could not be handed over yet.
    subscribe_owed: bool,
    stale: HashSet<u16>,
    stopping: bool,
    disconnecting: bool,
}

impl SessionState {
    pub(super) fn new(
        client: AsyncClient,
        outbox: Outbox,
        journal: Option<Journal>,
        link: watch::Sender<Link>,
        status_topic: &str,
        subscriptions: Vec<String>,
    ) -> SessionState {
        SessionState {
            client,
            outbox,
            journal,
            link,
            status_topic: status_topic.to_string(),
            unsubscribing: 0,
            unsubscribed: None,
            subscriptions,
            syncing: false,
            subscribe_owed: false,
            stale: HashSet::new(),
            stopping: false,
            disconnecting: false,
        }
    }

    pub(super) async fn run(
        mut self,
        mut polled: mpsc::UnboundedReceiver<Polled>,
        mut requests: mpsc::UnboundedReceiver<Request>,
        _poller: AbortOnDropHandle<()>,
    ) {
        let mut requests_open = true;
        loop {
            tokio::select! {
                event = polled.recv() => match event {
                    Some(event) => self.on_polled(event),
                    None => return,
                },
                request = requests.recv(), if requests_open => match request {
                    Some(request) => self.on_request(request),
                    // Every handle is gone: deliver what is owed and stop.
                    None => {
                        requests_open = false;
                        self.stopping = true;
                    }
                },
            }
            self.pump();
            self.write_journal();
            if self.stopping && !self.disconnecting {
                if !self.outbox.is_connected() {
                    // Nothing can be delivered; the last will says `offline`.
                    return;
                }
                if self.outbox.is_idle() {
                    self.disconnecting = true;
                    if self.client.try_disconnect().is_err() {
                        return;
                    }
                }
            }
        }
    }

    fn on_request(&mut self, request: Request) {
        match request {
            Request::Publish(m) => self.outbox.push(m),
            Request::Republish => {
                // Not connected: the next connection sends everything (and is told).
                if self.outbox.is_connected() {
                    self.outbox.republish();
                    self.link.send_modify(|l| l.births += 1);
                }
            }
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
            Request::Unsubscribe(done) => self.unsubscribe(done),
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

    fn unsubscribe(&mut self, done: oneshot::Sender<()>) {
        // A later connection subscribes only to the bridge's own status: messages on it are
        // not for the bridge, and the SUBSCRIBE still marks where that connection's publishes
        // start (see `syncing`).
        let filters = std::mem::replace(&mut self.subscriptions, vec![self.status_topic.clone()]);
        if !self.outbox.is_connected() || self.subscribe_owed {
            // Not subscribed on this connection (yet): nothing more can come in.
            let _ = done.send(());
            return;
        }
        for filter in filters {
            match self.client.try_unsubscribe(filter.clone()) {
                Ok(()) => self.unsubscribing += 1,
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

    fn on_polled(&mut self, polled: Polled) {
        let event = match polled {
            Polled::Event(event) => event,
            Polled::Dropped => {
                if self.outbox.is_connected() {
                    self.outbox.on_disconnected();
                }
                self.syncing = false;
                self.subscribe_owed = false;
                self.stale.clear();
                // The subscriptions went with the connection.
                self.unsubscribe_settled();
                return;
            }
        };
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                self.outbox.on_connected();
                self.stale.clear();
                self.syncing = true;
                self.subscribe_owed = true;
                self.subscribe();
            }
            Event::Outgoing(rumqttc::Outgoing::Subscribe(_)) => self.syncing = false,
            Event::Incoming(Packet::SubAck(ack)) => {
                for (filter, code) in self.subscriptions.iter().zip(&ack.return_codes) {
                    if matches!(code, SubscribeReasonCode::Failure) {
                        tracing::error!(
                            "the MQTT broker refused the subscription to {filter}: messages on \
                             it will not reach the gateway (check the broker's access rules)"
                        );
                    }
                }
            }
            Event::Outgoing(rumqttc::Outgoing::Publish(pkid)) => {
                if self.syncing {
                    if pkid != 0 {
                        self.stale.insert(pkid);
                    }
                } else {
                    // A packet id in use again: an ack for the old one will not come.
                    self.stale.remove(&pkid);
                    self.outbox.on_sent(pkid);
                }
            }
            Event::Incoming(Packet::UnsubAck(_)) => {
                self.unsubscribing = self.unsubscribing.saturating_sub(1);
                if self.unsubscribing == 0 {
                    self.unsubscribe_settled();
                }
            }
            Event::Outgoing(rumqttc::Outgoing::AwaitAck(pkid)) => {
                tracing::warn!("rumqttc holds back publish {pkid}: its packet id is still in use");
            }
            Event::Incoming(Packet::PubAck(ack)) if !self.stale.remove(&ack.pkid) => {
                self.outbox.on_acked(ack.pkid);
            }
            _ => {}
        }
    }

    fn subscribe(&mut self) {
        if !self.subscribe_owed {
            return;
        }
        let filters = self
            .subscriptions
            .iter()
            .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
        match self.client.try_subscribe_many(filters) {
            Ok(()) => self.subscribe_owed = false,
            // Only while rumqttc's channel still holds what was handed over before a drop:
            // tried again at the next event.
            Err(e) => tracing::debug!("cannot subscribe yet: {e}"),
        }
    }

    /// Hands rumqttc what the outbox lets go.
    fn pump(&mut self) {
        self.subscribe();
        if self.syncing || self.disconnecting {
            return;
        }
        while let Some(t) = self.outbox.poll_transmit() {
            let qos = if t.acknowledged {
                QoS::AtLeastOnce
            } else {
                QoS::AtMostOnce
            };
            let (topic, retain) = (t.topic.clone(), t.retain);
            // rumqttc takes shared bytes only through its async `publish_bytes`; its channel
            // has room for every publish the outbox lets go, so the send is done at the first
            // poll. Were it not, the publish is dropped with the future and taken back.
            let taken = {
                let publish = self.client.publish_bytes(t.topic, qos, t.retain, t.payload);
                match std::pin::pin!(publish).poll(&mut Context::from_waker(Waker::noop())) {
                    Poll::Ready(result) => result.map_err(|e| e.to_string()),
                    Poll::Pending => Err("its request channel is full".to_string()),
                }
            };
            if let Err(e) = taken {
                tracing::debug!("rumqttc did not take a publish on {topic}: {e}");
                self.outbox.unsend(topic, retain);
                return;
            }
        }
    }
}
