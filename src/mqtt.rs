//! The rumqttc session: connect, back off, resubscribe on every ConnAck, and deliver what the
//! [`Outbox`] says the broker is owed; report the connection state and incoming messages to
//! the bridge.
//!
//! Two tasks. One only polls rumqttc's event loop (never cancelled, never awaiting a client
//! call) and forwards what happened. The other owns the outbox and is the only one handing
//! publishes to rumqttc: it learns of a dropped connection in order with everything else, and
//! after each ConnAck it subscribes before handing anything, so the `Outgoing::Subscribe`
//! event marks where the new connection's publishes start (anything rumqttc writes before it
//! was handed over before the drop and is owed again already).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use rand::Rng;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, MqttOptions,
    Packet, QoS, SubscribeFilter, SubscribeReasonCode, TlsConfiguration, Transport,
};
use secrecy::ExposeSecret;
use std::collections::HashSet;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::task::AbortOnDropHandle;

use crate::config::{BrokerAddress, MqttConfig};
use crate::journal::Journal;
use crate::message::{Incoming, MAX_PACKET_BYTES, Message};
use crate::outbox::{self, Outbox};

mod births;

const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
pub(crate) const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Builds the options: last will `offline` on `will_topic` (when given), TLS and credentials
/// from config.
pub fn options(cfg: &MqttConfig, will_topic: Option<&str>) -> Result<MqttOptions> {
    let addr = BrokerAddress::parse(&cfg.url)
        .with_context(|| format!("mqtt.url = {:?}", crate::config::redact_url(&cfg.url)))?;
    let mut opts = MqttOptions::new(cfg.client_id.clone(), addr.host.clone(), addr.port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_session(true);
    opts.set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    if let Some(topic) = will_topic {
        opts.set_last_will(LastWill::new(topic, "offline", QoS::AtLeastOnce, true));
    }
    if let Some(user) = &cfg.username {
        let password = cfg
            .password
            .as_ref()
            .map(|p| p.expose_secret().to_string())
            .unwrap_or_default();
        opts.set_credentials(user.clone(), password);
    }
    if addr.tls {
        // ring is the only provider compiled in (rumqttc without its aws-lc-rs default, see
        // Cargo.toml), so rustls could pick it itself; naming it keeps the first handshake
        // from panicking should a dependency ever compile in a second provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca_path = cfg
            .ca_file
            .clone()
            .unwrap_or_else(|| SYSTEM_CA_BUNDLE.into());
        let ca = std::fs::read(&ca_path).with_context(|| {
            format!(
                "mqtts needs CA certificates: cannot read {} (set mqtt.ca_file to your broker's CA)",
                ca_path.display()
            )
        })?;
        let client_auth = match (&cfg.client_cert_file, &cfg.client_key_file) {
            (Some(cert), Some(key)) => Some((
                std::fs::read(cert).with_context(|| {
                    format!("mqtt.client_cert_file: cannot read {}", cert.display())
                })?,
                std::fs::read(key).with_context(|| {
                    format!("mqtt.client_key_file: cannot read {}", key.display())
                })?,
            )),
            (None, None) => None,
            _ => bail!(
                "mqtt.client_cert_file and mqtt.client_key_file go together: set both or neither"
            ),
        };
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
            ca,
            alpn: None,
            client_auth,
        }));
    }
    Ok(opts)
}

/// The session's connection state; `generation` counts ConnAcks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Link {
    pub connected: bool,
    pub generation: u64,
}

/// What the bridge asks of the session.
#[derive(Debug)]
enum Request {
    Publish(Message),
    Republish,
    ClearAll,
    /// Write what the journal is owed and hand back its file to fsync.
    /// `Ok(None)`: no journal; `Err`: the journal lacks events (a write failed).
    SyncJournal(std::sync::mpsc::Sender<Result<Option<std::fs::File>, String>>),
    /// Unsubscribe from everything; answered when the broker acknowledged it (from then on
    /// no message comes in) or the connection is gone.
    Unsubscribe(oneshot::Sender<()>),
    /// Deliver what is owed, then disconnect.
    Stop,
}

/// See [`Publisher::sync_journal`].
pub struct JournalSync {
    rx: std::sync::mpsc::Receiver<Result<Option<std::fs::File>, String>>,
}

impl JournalSync {
    /// Blocks (call it off the runtime) until the journal holds every event published before
    /// [`Publisher::sync_journal`] and is fsynced. An error when the session is gone or does
    /// not answer within `limit`: then the journal may lack them.
    pub fn wait(self, limit: Duration) -> Result<()> {
        match self.rx.recv_timeout(limit) {
            Ok(Ok(Some(file))) => file
                .sync_data()
                .context("cannot fsync the journal of events owed to the broker"),
            Ok(Ok(None)) => Ok(()),
            // A state file saying events were made that no file holds would lose them in a
            // crash: it waits for the journal.
            Ok(Err(why)) => bail!("{why}"),
            Err(e) => bail!("the MQTT session did not write its journal ({e})"),
        }
    }
}

/// The bridge's handle on the outbox: never blocks, never fails (once the session is gone,
/// there is nobody left to tell).
#[derive(Debug, Clone)]
pub struct Publisher {
    tx: mpsc::UnboundedSender<Request>,
}

impl Publisher {
    pub fn publish(&self, message: Message) {
        let _ = self.tx.send(Request::Publish(message));
    }

    pub fn publish_all(&self, messages: impl IntoIterator<Item = Message>) {
        for m in messages {
            self.publish(m);
        }
    }

    /// Every retained value and the last pictures again (Home Assistant's birth message).
    pub fn republish(&self) {
        let _ = self.tx.send(Request::Republish);
    }

    /// Clears every retained topic published so far.
    pub fn clear_all(&self) {
        let _ = self.tx.send(Request::ClearAll);
    }

    /// Asks the session to write to its journal the events published so far; the state
    /// file that records them as made is written after [`JournalSync::wait`].
    pub fn sync_journal(&self) -> JournalSync {
        let (tx, rx) = std::sync::mpsc::channel();
        let _ = self.tx.send(Request::SyncJournal(tx));
        JournalSync { rx }
    }

    /// Unsubscribes from every topic (commands included): resolves once the broker has
    /// acknowledged it, after every message that came before is in `Session::incoming`, or
    /// when the connection is gone. For the stop: what came in can then all be answered.
    pub fn unsubscribe(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(Request::Unsubscribe(tx));
        rx
    }

    /// Delivers everything owed (what was published before this call included), then
    /// disconnects cleanly; the session task ends after that.
    pub fn stop(&self) {
        let _ = self.tx.send(Request::Stop);
    }

    /// A publisher whose requests land in a plain channel, for in-process tests of the bridge:
    /// the receiver yields each published [`Message`] (other requests are left out).
    pub fn channel() -> (Publisher, PublishedMessages) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Publisher { tx }, PublishedMessages { rx })
    }
}

/// See [`Publisher::channel`].
pub struct PublishedMessages {
    rx: mpsc::UnboundedReceiver<Request>,
}

impl PublishedMessages {
    /// The messages published so far (without waiting).
    pub fn take(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        while let Ok(request) = self.rx.try_recv() {
            if let Request::Publish(m) = request {
                out.push(m);
            }
        }
        out
    }
}

pub struct Session {
    pub publisher: Publisher,
    pub link: watch::Receiver<Link>,
    pub incoming: mpsc::UnboundedReceiver<Incoming>,
    /// Ends after [`Publisher::stop`] has delivered what was owed (or at once when the broker
    /// is away: the last will says `offline`).
    pub task: JoinHandle<()>,
}

/// What the polling task saw.
enum Polled {
    Event(Event),
    /// The connection failed or dropped; the polling task backs off before trying again.
    Dropped,
}

/// Starts the session. `subscriptions` are (re)subscribed on every ConnAck; `status_topic`
/// (the bridge's `online`/`offline`) is published `online` first on every connection; a
/// message `online` on `ha_status` (Home Assistant's birth topic) republishes everything.
/// `journal` keeps the events owed across a restart: what it kept from the last run is
/// delivered first.
pub fn start(
    opts: MqttOptions,
    subscriptions: Vec<String>,
    status_topic: &str,
    ha_status: Option<String>,
    mut journal: Option<Journal>,
) -> Session {
    // The outbox hands over at most WINDOW publishes, plus one subscribe: the channel never
    // fills.
    let (client, eventloop) = AsyncClient::new(opts, outbox::WINDOW * 2 + 8);
    let (link_tx, link) = watch::channel(Link::default());
    let (in_tx, incoming) = mpsc::unbounded_channel();
    let (req_tx, requests) = mpsc::unbounded_channel();
    let (polled_tx, polled) = mpsc::unbounded_channel();
    let poller = Poller {
        out: polled_tx,
        incoming: in_tx,
        link: link_tx,
        ha_status,
        requests: req_tx.clone(),
        births: Default::default(),
    };
    let poller = AbortOnDropHandle::new(tokio::spawn(poller.run(eventloop)));
    let mut outbox = Outbox::new(status_topic);
    for kept in journal.iter_mut().flat_map(Journal::take_kept) {
        outbox.restore(kept.id, kept.topic, kept.payload);
    }
    let state = SessionState {
        client,
        outbox,
        journal,
        status_topic: status_topic.to_string(),
        unsubscribing: 0,
        unsubscribed: None,
        subscriptions,
        syncing: false,
        subscribe_owed: false,
        stale: HashSet::new(),
        stopping: false,
        disconnecting: false,
    };
    let task = tokio::spawn(state.run(polled, requests, poller));
    Session {
        publisher: Publisher { tx: req_tx },
        link,
        incoming,
        task,
    }
}

/// Polls rumqttc's event loop and forwards what happens, waiting (with backoff and jitter)
/// after a failure: rumqttc reconnects at once on the next poll. Messages from the broker go
/// straight to the bridge (a command does not wait behind the session's work), tagged with
/// the connection they came on; the connection state is told here, where it is first known.
struct Poller {
    out: mpsc::UnboundedSender<Polled>,
    incoming: mpsc::UnboundedSender<Incoming>,
    link: watch::Sender<Link>,
    ha_status: Option<String>,
    requests: mpsc::UnboundedSender<Request>,
    births: std::sync::Mutex<births::Births>,
}

impl Poller {
    async fn run(self, mut eventloop: EventLoop) {
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

struct SessionState {
    client: AsyncClient,
    outbox: Outbox,
    journal: Option<Journal>,
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
    async fn run(
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
            Request::Republish => self.outbox.republish(),
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
            if let Err(e) = self.client.try_publish(t.topic, qos, t.retain, t.payload) {
                tracing::debug!("rumqttc did not take a publish on {topic}: {e}");
                self.outbox.unsend(topic, retain);
                return;
            }
        }
    }
}

/// TCP_NODELAY: without it a small publish can wait ~40 ms for the broker's delayed ACK.
pub fn low_latency() -> rumqttc::NetworkOptions {
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    network
}

/// A broker error as advice.
pub fn explain_broker_error(e: &ConnectionError, url: &str) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => match code {
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized => {
                "the broker refused the credentials: check mqtt.username and mqtt.password (or \
                 mqtt.password_file)"
                    .into()
            }
            ConnectReturnCode::BadClientId => {
                "the broker rejected the client id: check mqtt.client_id".into()
            }
            other => format!("the broker refused the connection ({other:?})"),
        },
        ConnectionError::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => format!(
                "connection refused: nothing listens there. Is the broker running, and is the \
                 port in mqtt.url ({url}) right? (1883 for mqtt://, usually 8883 for mqtts://)"
            ),
            std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionAborted => format!(
                "the broker closed the connection ({io}): if that port expects TLS, use mqtts://"
            ),
            _ if io.to_string().contains("lookup") || io.to_string().contains("resolve") => {
                format!("cannot resolve the host of mqtt.url ({io})")
            }
            _ => format!("cannot connect ({io})"),
        },
        ConnectionError::Tls(tls) => format!(
            "TLS failed ({tls}): does that port speak TLS, and does mqtt.ca_file hold the CA \
             that signed the broker's certificate?"
        ),
        ConnectionError::NetworkTimeout | ConnectionError::FlushTimeout => {
            "the broker did not answer in time".into()
        }
        other => format!("cannot connect ({other})"),
    }
}

/// After our DISCONNECT, reads until the broker closes the connection. Dropping the socket
/// with unread acks in it makes the kernel send a reset, and mosquitto then drops what it had
/// not processed yet (seen: the last retained updates before a stop were lost).
pub async fn drain(eventloop: &mut EventLoop) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
}
