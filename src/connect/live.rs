//! Connect's live channel: the MQTT broker the Connect web app listens to over a websocket
//! (unofficial; what is known of it comes from public clients). A second rumqttc session,
//! beside the REST client: it reads the account id (`<auth_url>/api/v1/me`), connects with a
//! fresh access token every time, subscribes to each bridged printer
//! (`v1/devices/printers/<uuid>/#`, a wildcard over printers is refused) and hands what it
//! hears to the bridge as [`LiveEvent`]s. It decides nothing: the core lays the values over
//! the printers (`bridge/live.rs`).
//!
//! It never blocks the REST side: it runs in a task of its own, and a refused login or a
//! broker that is away costs only its own retries, with backoff and jitter.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Outgoing,
    Packet, QoS, SubscribeReasonCode, TlsConfiguration, Transport,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio_util::task::AbortOnDropHandle;

use super::client::{ConnectClient, ConnectError};

/// The first wait after a failure; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A connection that lasted this long was healthy: the next failure starts the backoff over.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
const KEEP_ALIVE: Duration = Duration::from_secs(60);
/// Dialog JSON is the largest value; anything much larger is not Connect's.
const MAX_PACKET: usize = 256 * 1024;
const TOPIC_PREFIX: &str = "v1/devices/printers/";
/// How often a connected channel reads its socket, at most (see [`paced`]). The bridge
/// gathers a printer's values for 100 ms before it looks at them (`LIVE_GATHER`): a value
/// read up to this much later shows no later.
const READ_TURN: Duration = Duration::from_millis(20);

/// What the channel tells the bridge.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveEvent {
    /// Connected and logged in; subscriptions follow.
    Up,
    /// Not connected (any more): why.
    Down {
        error: String,
    },
    Subscribed {
        uuid: String,
    },
    /// The broker refused the printer's subscription.
    Refused {
        uuid: String,
    },
    Unsubscribed {
        uuid: String,
    },
    /// One value, on a printer's topic.
    Value {
        topic: LiveTopic,
        payload: Bytes,
        /// The broker replayed what it kept (a new subscription gets every retained topic):
        /// the value may be from long ago, e.g. a dialog of a printer that went offline.
        retained: bool,
    },
}

/// A value's topic, `v1/devices/printers/<uuid>/<value>`, kept whole as the broker sent it
/// (a farm's channel brings thousands a second: no copies of its parts).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveTopic {
    whole: String,
    /// Where the uuid ends in `whole`.
    uuid_end: usize,
}

impl LiveTopic {
    /// A printer's topic, or `None` for any other.
    pub fn parse(whole: String) -> Option<LiveTopic> {
        let (uuid, _) = split_topic(&whole)?;
        let uuid_end = TOPIC_PREFIX.len() + uuid.len();
        Some(LiveTopic { whole, uuid_end })
    }

    /// The topic of printer `uuid`'s `value` (e.g. `data/state`).
    pub fn new(uuid: &str, value: &str) -> LiveTopic {
        LiveTopic {
            whole: format!("{TOPIC_PREFIX}{uuid}/{value}"),
            uuid_end: TOPIC_PREFIX.len() + uuid.len(),
        }
    }

    pub fn uuid(&self) -> &str {
        &self.whole[TOPIC_PREFIX.len()..self.uuid_end]
    }

    /// What follows `v1/devices/printers/<uuid>/`.
    pub fn value(&self) -> &str {
        &self.whole[self.uuid_end + 1..]
    }
}

/// Where the channel is and how to log in.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// `wss://host:port/path` or `ws://...`.
    pub url: String,
    /// The account server: the account id is `<auth_url>/api/v1/me`'s `id`.
    pub auth_url: String,
    /// CA certificates for `wss://` (PEM).
    pub ca_file: std::path::PathBuf,
}

/// The running channel: its events, and the printers it is to follow.
pub struct LiveLink {
    pub events: mpsc::UnboundedReceiver<LiveEvent>,
    pub printers: watch::Sender<BTreeSet<String>>,
    _task: AbortOnDropHandle<()>,
}

/// Starts the channel's task; it stops when the link is dropped.
pub fn start(connect: ConnectClient, settings: LiveSettings) -> LiveLink {
    let (events_tx, events) = mpsc::unbounded_channel();
    let (printers, printers_rx) = watch::channel(BTreeSet::new());
    let task = tokio::spawn(run(connect, settings, printers_rx, events_tx));
    LiveLink {
        events,
        printers,
        _task: AbortOnDropHandle::new(task),
    }
}

#[derive(Deserialize)]
struct Me {
    id: serde_json::Value,
}

impl ConnectClient {
    /// The account's numeric id (`GET <auth_url>/api/v1/me`), the live channel's username.
    pub async fn account_id(&self, auth_url: &str) -> Result<String, ConnectError> {
        let url = format!("{}/api/v1/me", auth_url.trim_end_matches('/'));
        let me: Me = self.get_json(&url, &[]).await?;
        match me.id {
            serde_json::Value::Number(n) => Ok(n.to_string()),
            serde_json::Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            other => Err(ConnectError::Decode {
                what: url,
                detail: format!("`id` is {other}, not the account's number"),
            }),
        }
    }

    /// The access token for the channel's next login; `rejected` is the one it refused, to
    /// be renewed (refresh token, token file).
    pub async fn live_token(
        &self,
        rejected: Option<&SecretString>,
    ) -> Result<SecretString, ConnectError> {
        self.bearer(rejected).await
    }
}

/// How a session ended.
enum End {
    /// The broker refused the login.
    Refused(ConnectReturnCode),
    /// It failed or dropped, after being up this long (zero: never up).
    Failed { error: String, up_for: Duration },
}

/// Connects, follows the printers, reconnects: until the link is dropped.
async fn run(
    connect: ConnectClient,
    settings: LiveSettings,
    printers: watch::Receiver<BTreeSet<String>>,
    events: mpsc::UnboundedSender<LiveEvent>,
) {
    let mut backoff = Backoff::default();
    let mut account: Option<String> = None;
    let mut rejected: Option<SecretString> = None;
    loop {
        let login = async {
            let id = match &account {
                Some(id) => id.clone(),
                None => connect.account_id(&settings.auth_url).await?,
            };
            let token = connect.live_token(rejected.as_ref()).await?;
            Ok::<_, ConnectError>((id, token))
        };
        let error = match login.await {
            Err(e) => format!("cannot log in to the live channel: {e}"),
            Ok((id, token)) => {
                account = Some(id.clone());
                rejected = None;
                match session(&settings, &id, &token, printers.clone(), &events).await {
                    End::Refused(code) => {
                        // A fresh token (and account id) next time; the backoff keeps
                        // growing while the broker keeps refusing.
                        rejected = Some(token);
                        account = None;
                        format!("the live channel refused the login ({code:?})")
                    }
                    End::Failed { error, up_for } => {
                        if up_for >= HEALTHY_AFTER {
                            backoff = Backoff::default();
                        }
                        error
                    }
                }
            }
        };
        let wait = backoff.next();
        tracing::warn!("{error}; trying again in {:.1} s", wait.as_secs_f64());
        if events.send(LiveEvent::Down { error }).is_err() {
            return;
        }
        tokio::time::sleep(wait).await;
    }
}

/// Exponential backoff with ±20 % jitter.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let exp = MIN_BACKOFF.saturating_mul(1u32 << self.failures.min(16));
        self.failures += 1;
        exp.min(MAX_BACKOFF)
            .mul_f64(rand::rng().random_range(0.8..1.2))
    }
}

/// Subscriptions handed to rumqttc, in order, until it says which packet id each got.
#[derive(Debug, Clone)]
enum Asked {
    Subscribe(String),
    Unsubscribe(String),
}

/// One connection, from CONNECT until it fails.
async fn session(
    settings: &LiveSettings,
    account: &str,
    token: &SecretString,
    printers: watch::Receiver<BTreeSet<String>>,
    events: &mpsc::UnboundedSender<LiveEvent>,
) -> End {
    let (client, mut eventloop) = match client(settings, account, token) {
        Ok(c) => c,
        Err(error) => {
            return End::Failed {
                error,
                up_for: Duration::ZERO,
            };
        }
    };
    let asked: Arc<Mutex<VecDeque<Asked>>> = Arc::default();
    // rumqttc numbers subscriptions 1 to `max_inflight` over and over without waiting for
    // their acks: a packet id can stand for several requests in flight, acked in order.
    let mut by_pkid: HashMap<u16, VecDeque<Asked>> = HashMap::new();
    let mut follower: Option<AbortOnDropHandle<()>> = None;
    let mut up_since: Option<tokio::time::Instant> = None;
    let up_for =
        |since: Option<tokio::time::Instant>| since.map(|t| t.elapsed()).unwrap_or_default();
    let mut turn = tokio::time::Instant::now();
    loop {
        let polled = match up_since {
            Some(_) => paced(&mut eventloop, &mut turn).await,
            None => eventloop.poll().await,
        };
        let event = match polled {
            Ok(event) => event,
            Err(ConnectionError::ConnectionRefused(code)) => return End::Refused(code),
            Err(e) => {
                return End::Failed {
                    error: format!("the live channel dropped: {e}"),
                    up_for: up_for(up_since),
                };
            }
        };
        let sent = match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                up_since = Some(tokio::time::Instant::now());
                tracing::info!("live channel connected ({})", settings.url);
                follower = Some(AbortOnDropHandle::new(tokio::spawn(follow(
                    client.clone(),
                    printers.clone(),
                    asked.clone(),
                ))));
                events.send(LiveEvent::Up)
            }
            other => match heard(other, &asked, &mut by_pkid) {
                Some(heard) => events.send(heard),
                None => Ok(()),
            },
        };
        if sent.is_err() {
            // The bridge is gone: so is the channel.
            drop(follower);
            return End::Failed {
                error: "the gateway is stopping".into(),
                up_for: up_for(up_since),
            };
        }
    }
}

/// The next event of a connected channel, the socket read at most once a [`READ_TURN`]:
/// what is ready is taken at once; when nothing is, it waits for the next turn before it
/// waits for the socket. A farm's printers push thousands of values a second, each in a
/// frame of its own; woken for each, the gateway spent a fifth of its CPU going to sleep
/// and waking up. Read in turns, the frames that came meanwhile are read together.
///
/// The first look polls rumqttc's `poll` once and drops it when it is not ready. That is
/// safe here: while it waits it has taken nothing (the socket, its request channel and its
/// keep-alive timer all keep what they hold), and what it read before it waited is kept in
/// its queue of events. The one thing a dropped `poll` could lose is a packet it was writing
/// into a full socket; the channel writes only its few SUBSCRIBEs, UNSUBSCRIBEs and pings
/// (its values come at QoS 0, unacknowledged).
async fn paced(
    eventloop: &mut EventLoop,
    turn: &mut tokio::time::Instant,
) -> Result<Event, ConnectionError> {
    {
        let poll = std::pin::pin!(eventloop.poll());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        if let std::task::Poll::Ready(event) = poll.poll(&mut cx) {
            return event;
        }
    }
    tokio::time::sleep_until(*turn + READ_TURN).await;
    *turn = tokio::time::Instant::now();
    eventloop.poll().await
}

/// What the bridge is told of an event other than a CONNACK: a subscription settled, or a
/// printer's value. rumqttc's packet ids are matched to what was asked on the way out.
fn heard(
    event: Event,
    asked: &Mutex<VecDeque<Asked>>,
    by_pkid: &mut HashMap<u16, VecDeque<Asked>>,
) -> Option<LiveEvent> {
    match event {
        Event::Outgoing(Outgoing::Subscribe(pkid) | Outgoing::Unsubscribe(pkid)) => {
            if let Some(a) = asked.lock().unwrap_or_else(|p| p.into_inner()).pop_front() {
                by_pkid.entry(pkid).or_default().push_back(a);
            }
            None
        }
        Event::Incoming(Packet::SubAck(ack)) => match take(by_pkid, ack.pkid) {
            Some(Asked::Subscribe(uuid)) => {
                let ok = ack
                    .return_codes
                    .iter()
                    .all(|c| matches!(c, SubscribeReasonCode::Success(_)));
                if !ok {
                    tracing::warn!("the live channel refused the subscription to printer {uuid}");
                }
                Some(if ok {
                    LiveEvent::Subscribed { uuid }
                } else {
                    LiveEvent::Refused { uuid }
                })
            }
            _ => None,
        },
        Event::Incoming(Packet::UnsubAck(ack)) => match take(by_pkid, ack.pkid) {
            Some(Asked::Unsubscribe(uuid)) => Some(LiveEvent::Unsubscribed { uuid }),
            _ => None,
        },
        Event::Incoming(Packet::Publish(p)) => {
            LiveTopic::parse(p.topic).map(|topic| LiveEvent::Value {
                topic,
                payload: p.payload,
                retained: p.retain,
            })
        }
        _ => None,
    }
}

/// Subscribes to the printers to follow and unsubscribes from those that went, as the list
/// changes. Only this task asks rumqttc for (un)subscriptions, so their order is the order of
/// `asked`.
async fn follow(
    client: AsyncClient,
    mut printers: watch::Receiver<BTreeSet<String>>,
    asked: Arc<Mutex<VecDeque<Asked>>>,
) {
    let mut following = BTreeSet::new();
    loop {
        let wanted = printers.borrow_and_update().clone();
        for uuid in wanted.difference(&following) {
            push(&asked, Asked::Subscribe(uuid.clone()));
            if client
                .subscribe(format!("{TOPIC_PREFIX}{uuid}/#"), QoS::AtMostOnce)
                .await
                .is_err()
            {
                return;
            }
        }
        for uuid in following.difference(&wanted) {
            push(&asked, Asked::Unsubscribe(uuid.clone()));
            if client
                .unsubscribe(format!("{TOPIC_PREFIX}{uuid}/#"))
                .await
                .is_err()
            {
                return;
            }
        }
        following = wanted;
        if printers.changed().await.is_err() {
            return;
        }
    }
}

/// The oldest request in flight under this packet id.
fn take(by_pkid: &mut HashMap<u16, VecDeque<Asked>>, pkid: u16) -> Option<Asked> {
    let waiting = by_pkid.get_mut(&pkid)?;
    let oldest = waiting.pop_front();
    if waiting.is_empty() {
        by_pkid.remove(&pkid);
    }
    oldest
}

fn push(asked: &Mutex<VecDeque<Asked>>, a: Asked) {
    asked.lock().unwrap_or_else(|p| p.into_inner()).push_back(a);
}

/// `v1/devices/printers/<uuid>/<rest>` -> (uuid, rest).
pub fn split_topic(topic: &str) -> Option<(&str, &str)> {
    let (uuid, rest) = topic.strip_prefix(TOPIC_PREFIX)?.split_once('/')?;
    (!uuid.is_empty() && !rest.is_empty()).then_some((uuid, rest))
}

fn client(
    settings: &LiveSettings,
    account: &str,
    token: &SecretString,
) -> Result<(AsyncClient, EventLoop), String> {
    let url = reqwest::Url::parse(&settings.url)
        .map_err(|e| format!("connect.live_url = {:?}: {e}", settings.url))?;
    let id = format!("prusa-connect-mqtt-{:08x}", rand::rng().random::<u32>());
    let port = url.port_or_known_default().unwrap_or(443);
    let mut opts = MqttOptions::new(id, settings.url.clone(), port);
    opts.set_keep_alive(KEEP_ALIVE)
        .set_clean_session(true)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_credentials(account, token.expose_secret());
    match url.scheme() {
        "ws" => {
            opts.set_transport(Transport::Ws);
        }
        _ => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let ca = std::fs::read(&settings.ca_file).map_err(|e| {
                format!(
                    "the live channel needs CA certificates: cannot read {}: {e}",
                    settings.ca_file.display()
                )
            })?;
            opts.set_transport(Transport::Wss(TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth: None,
            }));
        }
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    eventloop.set_network_options(crate::mqtt::low_latency());
    Ok((client, eventloop))
}

/// `check`: connects, logs in, subscribes to one printer and returns the first value it
/// hears (topic below the printer, payload), within `timeout`.
pub async fn probe(
    connect: &ConnectClient,
    settings: &LiveSettings,
    uuid: &str,
    timeout: Duration,
) -> Result<(String, String), String> {
    let attempt = async {
        let account = connect
            .account_id(&settings.auth_url)
            .await
            .map_err(|e| format!("cannot read the account id: {e}"))?;
        let token = connect
            .live_token(None)
            .await
            .map_err(|e| format!("no access token: {e}"))?;
        let (client, mut eventloop) = client(settings, &account, &token)?;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client
                        .try_subscribe(format!("{TOPIC_PREFIX}{uuid}/#"), QoS::AtMostOnce)
                        .map_err(|e| e.to_string())?;
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if !ack
                        .return_codes
                        .iter()
                        .all(|c| matches!(c, SubscribeReasonCode::Success(_)))
                    {
                        return Err(format!("the subscription to printer {uuid} was refused"));
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Some((_, topic)) = split_topic(&p.topic) {
                        return Ok((
                            topic.to_string(),
                            String::from_utf8_lossy(&p.payload).into_owned(),
                        ));
                    }
                }
                Ok(_) => {}
                Err(ConnectionError::ConnectionRefused(code)) => {
                    return Err(format!(
                        "the login (account {account}) was refused: {code:?}"
                    ));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no value within {} s", timeout.as_secs())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_name_a_printer_and_a_value() {
        assert_eq!(
            split_topic("v1/devices/printers/u-1/data/temp/nozzle/current"),
            Some(("u-1", "data/temp/nozzle/current"))
        );
        let topic = LiveTopic::parse("v1/devices/printers/u-1/data/temp/nozzle/current".into())
            .expect("a printer's topic");
        assert_eq!(
            (topic.uuid(), topic.value()),
            ("u-1", "data/temp/nozzle/current")
        );
        assert_eq!(topic, LiveTopic::new("u-1", "data/temp/nozzle/current"));
        for bad in [
            "v1/devices/printers/u-1",
            "v1/devices/printers//data/state",
            "v1/devices/printers/u-1/",
            "other/u-1/data/state",
        ] {
            assert_eq!(split_topic(bad), None, "{bad}");
            assert_eq!(LiveTopic::parse(bad.into()), None, "{bad}");
        }
    }

    #[test]
    fn the_backoff_doubles_with_jitter_up_to_five_minutes() {
        let mut b = Backoff::default();
        let waits: Vec<f64> = (0..12).map(|_| b.next().as_secs_f64()).collect();
        for (i, w) in waits.iter().enumerate() {
            let nominal = (1u64 << i).min(300) as f64;
            assert!(
                *w >= nominal * 0.8 && *w <= nominal * 1.2,
                "wait {i}: {w} s, nominal {nominal} s"
            );
        }
    }
}
