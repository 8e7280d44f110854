//! Connect's live channel: the MQTT broker the Connect web app listens to over a websocket
//! (unofficial; what is known of it comes from public clients). A second MQTT connection
//! ([`crate::mqtt::wire`]), beside the REST client: it reads the account id (`<auth_url>/api/v1/me`), connects with a
//! fresh access token every time, subscribes to each bridged printer
//! (`v1/devices/printers/<uuid>/#`, a wildcard over printers is refused) and hands what it
//! hears to the bridge as [`LiveEvent`]s. It decides nothing: the core lays the values over
//! the printers (`bridge/live.rs`).
//!
//! It never blocks the REST side: it runs in a task of its own, and a refused login or a
//! broker that is away costs only its own retries, with backoff and jitter.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use rumqttc::{
    ConnectReturnCode, ConnectionError, MqttOptions, Packet, QoS, StateError, SubscribeReasonCode,
    TlsConfiguration, Transport,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::task::AbortOnDropHandle;

use super::client::{ConnectClient, ConnectError};
use crate::mqtt::wire::{self, Wire};

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

/// A subscription asked for and not acknowledged yet.
#[derive(Debug)]
enum Asked {
    Subscribe(String),
    Unsubscribe(String),
}

/// One connection, from CONNECT until it fails. One task reads the channel, follows the
/// printers (subscribing as the list changes) and keeps the connection alive.
async fn session(
    settings: &LiveSettings,
    account: &str,
    token: &SecretString,
    mut printers: watch::Receiver<BTreeSet<String>>,
    events: &mpsc::UnboundedSender<LiveEvent>,
) -> End {
    let failed = |error: String, up_for: Duration| End::Failed { error, up_for };
    let opts = match options(settings, account, token) {
        Ok(opts) => opts,
        Err(error) => return failed(error, Duration::ZERO),
    };
    let mut wire = match wire::connect(opts).await {
        Ok(wire) => wire,
        Err(ConnectionError::ConnectionRefused(code)) => return End::Refused(code),
        Err(e) => return failed(format!("the live channel dropped: {e}"), Duration::ZERO),
    };
    let up_since = Instant::now();
    tracing::info!("live channel connected ({})", settings.url);
    let mut follow = Follow::default();
    let mut keep_alive = tokio::time::interval_at(up_since + KEEP_ALIVE, KEEP_ALIVE);
    keep_alive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pinged = false;
    let mut turn = up_since;
    let mut sent = events.send(LiveEvent::Up);
    printers.mark_changed();
    while sent.is_ok() {
        let step: Result<Option<LiveEvent>, ConnectionError> = tokio::select! {
            changed = printers.changed() => {
                if changed.is_err() {
                    break; // the bridge is gone
                }
                let wanted = printers.borrow_and_update().clone();
                follow.to(&mut wire, wanted).map(|()| None).map_err(ConnectionError::from)
            }
            packet = paced(&mut wire, &mut turn) => packet.map(|p| match p {
                Packet::PingResp => {
                    pinged = false;
                    None
                }
                other => follow.heard(other),
            }),
            _ = keep_alive.tick() => if std::mem::replace(&mut pinged, true) {
                Err(StateError::AwaitPingResp.into())
            } else {
                wire.ping().map(|()| None).map_err(ConnectionError::from)
            },
        };
        match step {
            Ok(Some(event)) => sent = events.send(event),
            Ok(None) => {}
            Err(e) => {
                return failed(format!("the live channel dropped: {e}"), up_since.elapsed());
            }
        }
    }
    // The bridge is gone: so is the channel.
    failed("the gateway is stopping".into(), up_since.elapsed())
}

/// The next packet of a connected channel, the socket read at most once a [`READ_TURN`]:
/// what the socket holds is taken at once; when it holds nothing, it waits for the next
/// turn before it waits for the socket. A farm's printers push thousands of values a second,
/// each in a websocket message of its own; woken for each, the gateway spent a fifth of its
/// CPU going to sleep and waking up. Read in turns, the values that came meanwhile are read
/// together. Cancel-safe, as [`Wire::read`] is.
async fn paced(wire: &mut Wire, turn: &mut Instant) -> Result<Packet, ConnectionError> {
    loop {
        if let Some(packet) = wire.buffered()? {
            return Ok(packet);
        }
        if !wire.read_ready()? {
            break;
        }
    }
    tokio::time::sleep_until(*turn + READ_TURN).await;
    *turn = Instant::now();
    wire.read().await
}

/// The printers followed on this connection, and the (un)subscriptions not acknowledged
/// yet by packet id.
#[derive(Debug, Default)]
struct Follow {
    following: BTreeSet<String>,
    asked: HashMap<u16, Asked>,
}

impl Follow {
    /// Subscribes to the printers to follow and unsubscribes from those that went.
    fn to(&mut self, wire: &mut Wire, wanted: BTreeSet<String>) -> Result<(), StateError> {
        for uuid in wanted.difference(&self.following) {
            let filter = format!("{TOPIC_PREFIX}{uuid}/#");
            let pkid = wire.subscribe(&[filter], QoS::AtMostOnce)?;
            self.asked.insert(pkid, Asked::Subscribe(uuid.clone()));
        }
        for uuid in self.following.difference(&wanted) {
            let pkid = wire.unsubscribe(&format!("{TOPIC_PREFIX}{uuid}/#"))?;
            self.asked.insert(pkid, Asked::Unsubscribe(uuid.clone()));
        }
        self.following = wanted;
        Ok(())
    }

    /// What the bridge is told of a packet: a subscription settled, or a printer's value.
    fn heard(&mut self, packet: Packet) -> Option<LiveEvent> {
        match packet {
            Packet::SubAck(ack) => match self.asked.remove(&ack.pkid) {
                Some(Asked::Subscribe(uuid)) => {
                    let ok = ack
                        .return_codes
                        .iter()
                        .all(|c| matches!(c, SubscribeReasonCode::Success(_)));
                    if !ok {
                        tracing::warn!(
                            "the live channel refused the subscription to printer {uuid}"
                        );
                    }
                    Some(if ok {
                        LiveEvent::Subscribed { uuid }
                    } else {
                        LiveEvent::Refused { uuid }
                    })
                }
                _ => None,
            },
            Packet::UnsubAck(ack) => match self.asked.remove(&ack.pkid) {
                Some(Asked::Unsubscribe(uuid)) => Some(LiveEvent::Unsubscribed { uuid }),
                _ => None,
            },
            Packet::Publish(p) => LiveTopic::parse(p.topic).map(|topic| LiveEvent::Value {
                topic,
                payload: p.payload,
                retained: p.retain,
            }),
            _ => None,
        }
    }
}

/// `v1/devices/printers/<uuid>/<rest>` -> (uuid, rest).
pub fn split_topic(topic: &str) -> Option<(&str, &str)> {
    let (uuid, rest) = topic.strip_prefix(TOPIC_PREFIX)?.split_once('/')?;
    (!uuid.is_empty() && !rest.is_empty()).then_some((uuid, rest))
}

/// The connection's options: a fresh client id, the account and token as credentials, and
/// the CA certificates for `wss://`.
fn options(
    settings: &LiveSettings,
    account: &str,
    token: &SecretString,
) -> Result<MqttOptions, String> {
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
    Ok(opts)
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
        let opts = options(settings, &account, &token)?;
        let mut wire = match wire::connect(opts).await {
            Ok(wire) => wire,
            Err(ConnectionError::ConnectionRefused(code)) => {
                return Err(format!(
                    "the login (account {account}) was refused: {code:?}"
                ));
            }
            Err(e) => return Err(e.to_string()),
        };
        let mut follow = Follow::default();
        follow
            .to(&mut wire, BTreeSet::from([uuid.to_string()]))
            .map_err(|e| e.to_string())?;
        loop {
            match follow.heard(wire.read().await.map_err(|e| e.to_string())?) {
                Some(LiveEvent::Refused { .. }) => {
                    return Err(format!("the subscription to printer {uuid} was refused"));
                }
                Some(LiveEvent::Value { topic, payload, .. }) => {
                    return Ok((
                        topic.value().to_string(),
                        String::from_utf8_lossy(&payload).into_owned(),
                    ));
                }
                _ => {}
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
