//! A private MQTT broker per test, and a subscriber that records what it sees.
//!
//! The broker is mosquitto when it is installed, otherwise the embedded rumqttd;
//! `PCM_TEST_BROKER=embedded` or `=mosquitto` forces one. Everything listens on 127.0.0.1 on a
//! port chosen here, never on 1883.

// Each test binary uses a different part of this file.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use prusa_connect_mqtt::embedded_broker::{self, MAX_PACKET_SIZE};
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, SubscribeFilter,
    SubscribeReasonCode,
};
use tempfile::TempDir;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

const STARTUP_DEADLINE: Duration = Duration::from_secs(10);
/// How long `connect` waits for the SubAck and `publish` for the PubAck.
const ACK_DEADLINE: Duration = Duration::from_secs(10);
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// mosquitto.conf lines: no limit on the QoS 1 messages mosquitto holds for a client. With the
/// defaults (20 in flight, 1,000 queued) mosquitto itself drops messages for a client that is
/// slower than the flood, and acknowledges a publish to the gateway while the copy for the
/// subscriber still waits in its memory, where a kill loses it. Unlimited, a message
/// mosquitto acknowledged has been written to every subscriber's socket first.
pub const UNLIMITED: &str = "max_inflight_messages 0\nmax_queued_messages 0";

pub struct TestBroker {
    port: u16,
    mosquitto: Option<Mosquitto>,
}

impl TestBroker {
    /// Starts a private broker on a free loopback port: mosquitto when it is installed, otherwise
    /// the in-process rumqttd. `PCM_TEST_BROKER=embedded|mosquitto` forces the choice.
    /// Returns once the port accepts connections.
    pub fn start() -> TestBroker {
        match std::env::var("PCM_TEST_BROKER").as_deref() {
            Ok("embedded") => Self::start_embedded(),
            Ok("mosquitto") => Self::start_mosquitto().expect(
                "PCM_TEST_BROKER=mosquitto, but mosquitto is neither on PATH nor in /usr/sbin",
            ),
            Ok("") | Err(_) => Self::start_mosquitto().unwrap_or_else(Self::start_embedded),
            Ok(other) => panic!("PCM_TEST_BROKER must be `embedded` or `mosquitto`, not {other:?}"),
        }
    }

    /// The in-process rumqttd. It cannot be stopped: it lives until the test binary exits.
    pub fn start_embedded() -> TestBroker {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, reserve_port()));
        // This set-up is synchronous, like mosquitto's, and mostly called inside a test's
        // runtime, which cannot be blocked on: the async start gets a runtime of its own.
        let starting = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(embedded_broker::start(addr))
        });
        let addr = starting
            .join()
            .expect("the embedded broker's start does not panic")
            .unwrap_or_else(|err| panic!("embedded broker did not start: {err:#}"));
        TestBroker {
            port: addr.port(),
            mosquitto: None,
        }
    }

    /// A mosquitto process of its own, or `None` when mosquitto is not installed.
    pub fn start_mosquitto() -> Option<TestBroker> {
        Self::start_mosquitto_with("")
    }

    /// [`TestBroker::start_mosquitto`] with `extra` lines appended to mosquitto.conf (another
    /// listener, TLS, a password file). `port()` is still the plain anonymous listener's.
    pub fn start_mosquitto_with(extra: &str) -> Option<TestBroker> {
        Self::launch_mosquitto(extra, false)
    }

    /// [`TestBroker::start_mosquitto_with`] with `per_listener_settings true`: `extra` can add
    /// a listener with its own `allow_anonymous false` and `password_file`, while `port()`
    /// stays anonymous for the test's subscribers.
    pub fn start_mosquitto_per_listener(extra: &str) -> Option<TestBroker> {
        Self::launch_mosquitto(extra, true)
    }

    fn launch_mosquitto(extra: &str, per_listener: bool) -> Option<TestBroker> {
        let mut mosquitto = Mosquitto::new(find_mosquitto()?);
        mosquitto.extra = extra.to_string();
        mosquitto.per_listener = per_listener;
        // A port found free may be taken by someone else before mosquitto binds it.
        let mut failures = String::new();
        for _ in 0..3 {
            let port = reserve_port();
            match mosquitto.launch(port) {
                Ok(()) => {
                    return Some(TestBroker {
                        port,
                        mosquitto: Some(mosquitto),
                    });
                }
                Err(why) => failures.push_str(&why),
            }
        }
        panic!("mosquitto did not start:\n{failures}");
    }

    /// mosquitto (it can be frozen, stopped and restarted) with `extra` in its config, or
    /// `None` when the tests run on the embedded broker (`PCM_TEST_BROKER=embedded`) or
    /// mosquitto is not installed.
    pub fn start_stoppable(extra: &str) -> Option<TestBroker> {
        if std::env::var("PCM_TEST_BROKER").as_deref() == Ok("embedded") {
            return None;
        }
        Self::start_mosquitto_with(extra)
    }

    /// mosquitto's log (empty for the embedded broker), for failure messages.
    pub fn log(&self) -> String {
        self.mosquitto.as_ref().map(|m| m.log()).unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn is_mosquitto(&self) -> bool {
        self.mosquitto.is_some()
    }

    /// Kills the broker (SIGKILL: clients see the connection drop, no goodbye). Mosquitto only.
    pub fn stop(&mut self) {
        self.mosquitto_mut("stop").kill();
    }

    /// Freezes the broker (SIGSTOP), as when it hangs: connections stay open, but nothing is
    /// read, forwarded or acknowledged any more. `stop()` or `restart()` end it. Mosquitto only.
    pub fn freeze(&mut self) {
        let child = self.mosquitto_mut("freeze").child.as_ref();
        let pid = child.expect("mosquitto is running").id().to_string();
        let stopped = Command::new("kill").args(["-STOP", &pid]).status();
        assert!(stopped.is_ok_and(|s| s.success()), "kill -STOP {pid}");
    }

    /// Starts the broker again on the same port, stopping it first if it runs. It comes back
    /// empty: no retained messages, no sessions. Mosquitto only.
    pub fn restart(&mut self) {
        let port = self.port;
        let mosquitto = self.mosquitto_mut("restart");
        mosquitto.kill();
        if let Err(why) = mosquitto.launch(port) {
            panic!("mosquitto did not restart on port {port}:\n{why}");
        }
    }

    fn mosquitto_mut(&mut self, what: &str) -> &mut Mosquitto {
        self.mosquitto.as_mut().unwrap_or_else(|| {
            panic!("{what}() needs mosquitto: the embedded broker cannot be stopped")
        })
    }
}

/// Dropping it kills the process and removes its directory.
struct Mosquitto {
    program: PathBuf,
    dir: TempDir,
    child: Option<Child>,
    extra: String,
    per_listener: bool,
}

impl Mosquitto {
    fn new(program: PathBuf) -> Mosquitto {
        let dir = tempfile::Builder::new()
            .prefix("pcm-mosquitto-")
            .tempdir()
            .expect("a temporary directory for mosquitto");
        Mosquitto {
            program,
            dir,
            child: None,
            extra: String::new(),
            per_listener: false,
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    /// Runs mosquitto on `port` and waits until the port accepts connections. On failure the
    /// process is gone and the error holds its log.
    fn launch(&mut self, port: u16) -> Result<(), String> {
        let config = self.dir.path().join("mosquitto.conf");
        fs::write(
            &config,
            format!(
                "{}listener {port} 127.0.0.1\n\
                 allow_anonymous true\n\
                 persistence false\n\
                 # 0: any size MQTT allows (256 MiB)\n\
                 message_size_limit 0\n\
                 # send small packets at once, as a latency-minded broker would\n\
                 set_tcp_nodelay true\n\
                 log_dest stderr\n\
                 {}\n",
                // mosquitto wants it before any other security setting.
                if self.per_listener {
                    "per_listener_settings true\n"
                } else {
                    ""
                },
                self.extra
            ),
        )
        .expect("write mosquitto.conf");
        // Append, so that the log of a restarted broker still shows the first run.
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open mosquitto.log");
        let mut child = Command::new(&self.program)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file"))
            .stderr(log)
            .spawn()
            .map_err(|err| format!("cannot run {}: {err}", self.program.display()))?;

        let deadline = Instant::now() + STARTUP_DEADLINE;
        let failure = loop {
            // Checked before and after the probe: if mosquitto could not bind, whoever holds
            // the port may be the one answering.
            if let Ok(Some(status)) = child.try_wait() {
                break format!("mosquitto on port {port} exited with {status}");
            }
            if accepts(port) && matches!(child.try_wait(), Ok(None)) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break format!("mosquitto not accepting on port {port} after {STARTUP_DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let _ = child.wait();
        Err(format!("{failure}; its log:\n{}\n", self.log()))
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

fn find_mosquitto() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|dir| dir.join("mosquitto"))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// A loopback port that is free now and that no other broker of this test binary has been
/// given, so a stopped mosquitto finds its port unused when it restarts.
pub fn reserve_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(PoisonError::into_inner);
    let given = given.get_or_insert_with(HashSet::new);
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        if given.insert(port) {
            return port;
        }
    }
}

fn accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
}

#[derive(Clone, Debug)]
pub struct Msg {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    /// When the subscriber's event loop received it (the benches measure latency with it).
    pub at: Instant,
}

impl Msg {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|err| {
            panic!(
                "payload on {} is not JSON ({err}): {}",
                self.topic,
                self.preview()
            )
        })
    }

    /// A discovery payload as Home Assistant reads it: keys spelled out, `~` replaced.
    pub fn discovery(&self) -> serde_json::Value {
        prusa_connect_mqtt::discovery::long_form::long_form(&self.json())
    }

    /// [`Msg::discovery`] as text; empty for a cleared discovery.
    pub fn discovery_text(&self) -> String {
        if self.payload.is_empty() {
            String::new()
        } else {
            self.discovery().to_string()
        }
    }

    /// The payload as a short quoted string, for failure messages.
    fn preview(&self) -> String {
        const MAX_CHARS: usize = 200;
        match std::str::from_utf8(&self.payload) {
            Ok(text) if text.chars().count() > MAX_CHARS => {
                let head: String = text.chars().take(MAX_CHARS).collect();
                format!("{head:?}… ({} bytes)", self.payload.len())
            }
            Ok(text) => format!("{text:?}"),
            Err(_) => format!("<{} bytes, not UTF-8>", self.payload.len()),
        }
    }
}

/// An MQTT client that records every message on its filters, in arrival order, and keeps its
/// subscriptions across broker restarts.
pub struct Subscriber {
    client: AsyncClient,
    shared: Arc<Shared>,
    /// Held while queueing a publish, so PubAck waiters are queued in sending order.
    publish_order: tokio::sync::Mutex<()>,
    event_loop: JoinHandle<()>,
}

struct Shared {
    messages: Mutex<Vec<Msg>>,
    /// Bumped on each message, to wake `wait_for`.
    arrivals: watch::Sender<usize>,
    /// Sessions that came up and, if there are filters, were granted all of them; or why not.
    sessions: watch::Sender<Result<usize, String>>,
    acks: Mutex<PendingAcks>,
}

/// Matches PubAcks to `publish` calls: the event loop sends publishes in the order they were
/// queued and reports each packet id as it sends it.
#[derive(Default)]
struct PendingAcks {
    unsent: VecDeque<oneshot::Sender<()>>,
    in_flight: HashMap<u16, oneshot::Sender<()>>,
}

impl Shared {
    fn messages(&self) -> MutexGuard<'_, Vec<Msg>> {
        // A panicking `wait_for` predicate must not hide every later message.
        self.messages.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn acks(&self) -> MutexGuard<'_, PendingAcks> {
        self.acks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Subscriber {
    /// Connects to `broker`, subscribes to `filters` at QoS 1 and waits for the SubAck. With no
    /// filters it only waits for the ConnAck (a client that just publishes).
    pub async fn connect(broker: &TestBroker, filters: &[&str]) -> Subscriber {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let client_id = format!("pcm-test-{}-{n}", std::process::id());
        let mut options = MqttOptions::new(client_id, "127.0.0.1", broker.port());
        options
            .set_max_packet_size(MAX_PACKET_SIZE, MAX_PACKET_SIZE)
            .set_keep_alive(Duration::from_secs(5));
        let (client, mut events) = AsyncClient::new(options, 100);
        events.set_network_options(prusa_connect_mqtt::mqtt::low_latency());

        let shared = Arc::new(Shared {
            messages: Mutex::default(),
            arrivals: watch::Sender::new(0),
            sessions: watch::Sender::new(Ok(0)),
            acks: Mutex::default(),
        });
        let mut sessions = shared.sessions.subscribe();
        let filters = filters
            .iter()
            .map(|filter| SubscribeFilter::new(filter.to_string(), QoS::AtLeastOnce))
            .collect();
        let event_loop = tokio::spawn(pump(events, client.clone(), filters, shared.clone()));

        let ready = sessions.wait_for(|sessions| !matches!(sessions, Ok(0)));
        match tokio::time::timeout(ACK_DEADLINE, ready).await {
            Ok(Ok(sessions)) => {
                if let Err(why) = &*sessions {
                    panic!("subscription refused by {}: {why}", broker.url());
                }
            }
            Ok(Err(_)) => unreachable!("the sender lives in `shared`"),
            Err(_) => panic!(
                "no ConnAck/SubAck from {} within {ACK_DEADLINE:?}",
                broker.url()
            ),
        }
        Subscriber {
            client,
            shared,
            publish_order: tokio::sync::Mutex::new(()),
            event_loop,
        }
    }

    /// Waits until the subscriber has (re)connected and been granted its filters `n` times in
    /// all (1: the first connection), after a broker restart for instance.
    pub async fn wait_sessions(&self, n: usize, timeout: Duration) {
        let mut sessions = self.shared.sessions.subscribe();
        let ready = sessions.wait_for(|s| matches!(s, Ok(count) if *count >= n) || s.is_err());
        match tokio::time::timeout(timeout, ready).await {
            Ok(Ok(s)) => assert!(s.is_ok(), "subscription refused: {:?}", *s),
            _ => panic!("the subscriber did not reconnect {n} times within {timeout:?}"),
        }
    }

    /// Connections so far (see [`Subscriber::wait_sessions`]).
    pub fn sessions(&self) -> usize {
        *self.shared.sessions.borrow().as_ref().unwrap_or(&0)
    }

    /// Waits until a message on exactly `topic` satisfies `pred` and returns the first such
    /// message, including one that arrived before the call. Panics after `timeout`, listing
    /// what was seen on `topic`.
    pub async fn wait_for(
        &self,
        topic: &str,
        timeout: Duration,
        pred: impl Fn(&Msg) -> bool,
    ) -> Msg {
        self.wait_for_after(0, topic, timeout, pred).await
    }

    /// How many messages have arrived so far: a mark for [`Subscriber::wait_for_after`].
    pub fn mark(&self) -> usize {
        self.shared.messages().len()
    }

    /// [`Subscriber::wait_for`], considering only messages that arrived after `mark`.
    pub async fn wait_for_after(
        &self,
        mark: usize,
        topic: &str,
        timeout: Duration,
        pred: impl Fn(&Msg) -> bool,
    ) -> Msg {
        let mut arrivals = self.shared.arrivals.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            arrivals.borrow_and_update();
            let found = self
                .shared
                .messages()
                .iter()
                .skip(mark)
                .find(|msg| msg.topic == topic && pred(msg))
                .cloned();
            if let Some(msg) = found {
                return msg;
            }
            if tokio::time::timeout_at(deadline, arrivals.changed())
                .await
                .is_err()
            {
                panic!("{}", self.describe_miss(topic, timeout));
            }
        }
    }

    /// The messages that arrived after `mark` (see [`Subscriber::mark`]), in arrival order.
    pub fn messages_since(&self, mark: usize) -> Vec<Msg> {
        self.shared
            .messages()
            .get(mark..)
            .unwrap_or_default()
            .to_vec()
    }

    /// Every message received, in arrival order.
    pub fn messages(&self) -> Vec<Msg> {
        self.shared.messages().clone()
    }

    /// The messages received on exactly `topic`, in arrival order.
    pub fn on(&self, topic: &str) -> Vec<Msg> {
        let messages = self.shared.messages();
        messages
            .iter()
            .filter(|msg| msg.topic == topic)
            .cloned()
            .collect()
    }

    /// Publishes at QoS 1 and returns once the broker acknowledged it, sending it again after
    /// a reconnect if need be (so it may arrive twice). Panics when no PubAck comes within 10 s.
    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>, retain: bool) {
        let payload = payload.into();
        let deadline = tokio::time::Instant::now() + ACK_DEADLINE;
        loop {
            let (acked, on_ack) = oneshot::channel();
            {
                let _order = self.publish_order.lock().await;
                self.shared.acks().unsent.push_back(acked);
                self.client
                    .publish(topic, QoS::AtLeastOnce, retain, payload.clone())
                    .await
                    .expect("the subscriber's event loop is running");
            }
            match tokio::time::timeout_at(deadline, on_ack).await {
                Ok(Ok(())) => return,
                Ok(Err(_lost_with_the_connection)) => continue,
                Err(_) => panic!("publish to {topic} not acknowledged within {ACK_DEADLINE:?}"),
            }
        }
    }

    fn describe_miss(&self, topic: &str, timeout: Duration) -> String {
        const SHOWN: usize = 10;
        let messages = self.shared.messages();
        let on_topic: Vec<_> = messages
            .iter()
            .enumerate()
            .filter(|(_, msg)| msg.topic == topic)
            .collect();
        let mut text = format!(
            "no message on `{topic}` matched within {timeout:?}; {} seen on it",
            on_topic.len()
        );
        if !on_topic.is_empty() {
            let _ = write!(
                text,
                " (last {} shown, [arrival index]):",
                SHOWN.min(on_topic.len())
            );
            for (index, msg) in on_topic.iter().rev().take(SHOWN).rev() {
                let _ = write!(
                    text,
                    "\n  [{index}] retain={} {}",
                    msg.retain,
                    msg.preview()
                );
            }
        }
        let mut topics: Vec<&str> = messages.iter().map(|msg| msg.topic.as_str()).collect();
        topics.sort_unstable();
        topics.dedup();
        let _ = write!(
            text,
            "\n{} messages in all, on topics: {topics:?}",
            messages.len()
        );
        text
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.event_loop.abort();
    }
}

/// Polls the event loop for as long as the subscriber lives. rumqttc reconnects when polled
/// after an error; the pause keeps that from spinning while the broker is down.
async fn pump(
    mut events: EventLoop,
    client: AsyncClient,
    filters: Vec<SubscribeFilter>,
    shared: Arc<Shared>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let event = match events.poll().await {
            Ok(event) => event,
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        match event {
            Event::Incoming(Packet::ConnAck(connack)) => {
                backoff = MIN_BACKOFF;
                if !connack.session_present {
                    // rumqttc drops unacknowledged publishes when the session is new; dropping
                    // their waiters tells `publish` to send them again.
                    shared.acks().in_flight.clear();
                }
                // Clean session: a new connection has no subscriptions. `try_`: awaiting the
                // client here could wait on this very loop.
                if filters.is_empty() {
                    shared.sessions.send_modify(count_session);
                } else if let Err(err) = client.try_subscribe_many(filters.clone()) {
                    let why = format!("cannot queue SUBSCRIBE: {err}");
                    shared.sessions.send_modify(|sessions| *sessions = Err(why));
                }
            }
            Event::Incoming(Packet::SubAck(ack)) => {
                let refused = ack
                    .return_codes
                    .iter()
                    .any(|code| matches!(code, SubscribeReasonCode::Failure));
                if refused {
                    let why = format!("SubAck {:?} for {filters:?}", ack.return_codes);
                    shared.sessions.send_modify(|sessions| *sessions = Err(why));
                } else {
                    shared.sessions.send_modify(count_session);
                }
            }
            Event::Incoming(Packet::Publish(publish)) => {
                shared.messages().push(Msg {
                    topic: publish.topic,
                    payload: publish.payload.to_vec(),
                    retain: publish.retain,
                    at: Instant::now(),
                });
                shared.arrivals.send_modify(|count| *count += 1);
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                let mut acks = shared.acks();
                // A packet id already in flight is a resend after a reconnect.
                if !acks.in_flight.contains_key(&pkid) {
                    if let Some(waiter) = acks.unsent.pop_front() {
                        acks.in_flight.insert(pkid, waiter);
                    }
                }
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some(waiter) = shared.acks().in_flight.remove(&ack.pkid) {
                    let _ = waiter.send(());
                }
            }
            _ => {}
        }
    }
}

fn count_session(sessions: &mut Result<usize, String>) {
    if let Ok(count) = sessions {
        *count += 1;
    }
}
