//! An in-process MQTT 3.1.1 broker (rumqttd) for `demo` when nothing answers on localhost:1883,
//! and for tests on machines without mosquitto.
//!
//! rumqttd 0.19 differs from mosquitto in ways a client can see (each checked by experiment):
//! - A new subscription receives at most 100 retained messages at QoS 1 (rumqttd's fixed
//!   outgoing window) and at most `max_outgoing_packet_count` (1000) at QoS 0; the rest are
//!   dropped silently. Subscribing again to a filter the connection already has sends none.
//! - Any empty publish clears the topic's retained message, even one without the retain flag.
//! - A client id containing `/ + # $`, a keep-alive of 0 or an empty client id is refused by
//!   closing the connection, without a CONNACK code.
//! - After a client id has been refused by the router (bad characters, or `max_connections`
//!   reached), a second CONNECT with that id panics a rumqttd task while it holds a lock, and
//!   from then on every new connection is closed: the broker is dead until the process exits.
//! - On a session takeover (same client id connecting again before the old connection is seen
//!   dead) the old connection's will is published, and the new connection's will is consumed by
//!   it: the new connection then dies without any will being published.
//! - There is no way to stop it: it runs until the process exits.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use tokio::net::TcpStream;
use tracing_subscriber::EnvFilter;

/// Largest packet a client may send (rumqttd's `max_payload_size` is really the packet's
/// remaining length: topic, headers and payload). Camera snapshots are a few MiB at most.
pub const MAX_PACKET_SIZE: usize = 16 * 1024 * 1024;

const READY_DEADLINE: Duration = Duration::from_secs(5);

/// Starts an in-process MQTT broker (rumqttd) listening on `addr` (e.g. 127.0.0.1:0 or
/// 127.0.0.1:1883), returns the address actually bound. Runs on its own thread(s) until the
/// process exits.
///
/// MQTT 3.1.1 over TCP, anonymous, retained messages, QoS 0 and 1, packets up to
/// [`MAX_PACKET_SIZE`]. Fails when the address is already in use. Waits (asynchronously) until
/// the broker accepts connections, at most a few seconds.
pub async fn start(addr: SocketAddr) -> Result<SocketAddr> {
    // rumqttd binds inside its own thread and never tells which port it got, so port 0 is
    // resolved here. Binding first also turns "port in use" into an error instead of rumqttd
    // logging it and our readiness probe then reaching whoever owns the port.
    let addr = TcpListener::bind(addr)
        .and_then(|probe| probe.local_addr())
        .with_context(|| format!("cannot listen for MQTT on {addr}"))?;

    let server = thread::Builder::new()
        .name("embedded-mqtt".into())
        .spawn(move || {
            // Blocks for as long as any listener runs; returns only when they all failed.
            Broker::new(config(addr))
                .start()
                .map_err(|err| err.to_string())
        })
        .context("cannot spawn the embedded MQTT broker thread")?;

    wait_until_accepting(addr, server).await?;
    Ok(addr)
}

/// Adds a directive turning rumqttd's logs off unless `rust_log` (the value of RUST_LOG) names
/// rumqttd. Apply it to the filter of the application's subscriber: rumqttd logs through the
/// global subscriber from threads it spawns itself, so they cannot be given a quieter one, and
/// it logs every client disconnect at ERROR level.
pub fn quiet_broker_logs(filter: EnvFilter, rust_log: Option<&str>) -> EnvFilter {
    if rust_log.is_some_and(|value| value.contains("rumqttd")) {
        filter
    } else {
        filter.add_directive("rumqttd=off".parse().expect("a valid directive"))
    }
}

fn config(listen: SocketAddr) -> Config {
    let connections = ConnectionSettings {
        // Time allowed between TCP accept and CONNECT.
        connection_timeout_ms: 10_000,
        max_payload_size: MAX_PACKET_SIZE,
        // Despite the name: how many incoming packets are read in one batch.
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        // Without this rumqttd disconnects a client that publishes to a topic no one has
        // subscribed to yet (the bridge does that all the time).
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "embedded-v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    };
    let router = RouterConfig {
        // Reaching the limit can disable the broker (see above), so keep it far out of reach;
        // it costs no memory up front.
        max_connections: 10_000,
        // QoS 0 publishes forwarded per batch, and the cap on retained messages a new QoS 0
        // subscription receives.
        max_outgoing_packet_count: 1000,
        // Every topic and every subscribed filter keeps a log of recent messages in memory, of
        // about max_segment_count * max_segment_size bytes: keep it small, images are large.
        max_segment_size: 1024 * 1024,
        max_segment_count: 3,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    };
    Config {
        id: 0,
        router,
        v4: Some([("embedded".to_owned(), server)].into()),
        ..Config::default()
    }
}

/// Polls until the listener accepts a TCP connection. rumqttd gives no other readiness signal.
async fn wait_until_accepting(
    addr: SocketAddr,
    server: JoinHandle<Result<(), String>>,
) -> Result<()> {
    let target = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    };
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        if server.is_finished() {
            let why = match server.join() {
                Ok(Err(err)) => err,
                Ok(Ok(())) => "its listener stopped (address in use?)".to_owned(),
                Err(_) => "it panicked".to_owned(),
            };
            bail!("embedded MQTT broker on {addr} did not start: {why}");
        }
        let probe = tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(target));
        if probe.await.is_ok_and(|connected| connected.is_ok()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "embedded MQTT broker on {addr} not accepting connections after {READY_DEADLINE:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, Publish, QoS};
    use std::sync::atomic::{AtomicUsize, Ordering};

    const DEADLINE: Duration = Duration::from_secs(10);

    fn loopback() -> SocketAddr {
        (Ipv4Addr::LOCALHOST, 0).into()
    }

    fn options(addr: SocketAddr) -> MqttOptions {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("embedded-test-{}-{n}", std::process::id());
        let mut options = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        options.set_max_packet_size(MAX_PACKET_SIZE, MAX_PACKET_SIZE);
        options
    }

    /// Polls `events` until `pick` returns something, failing the test after DEADLINE.
    async fn poll_until<T>(events: &mut EventLoop, mut pick: impl FnMut(Packet) -> Option<T>) -> T {
        let wait = async {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(packet)) => {
                        if let Some(found) = pick(packet) {
                            return found;
                        }
                    }
                    Ok(Event::Outgoing(_)) => {}
                    Err(err) => panic!("MQTT connection failed: {err}"),
                }
            }
        };
        tokio::time::timeout(DEADLINE, wait)
            .await
            .expect("deadline passed")
    }

    async fn connect(options: MqttOptions) -> (AsyncClient, EventLoop) {
        let (client, mut events) = AsyncClient::new(options, 10);
        poll_until(&mut events, |p| {
            matches!(p, Packet::ConnAck(_)).then_some(())
        })
        .await;
        (client, events)
    }

    async fn subscriber(addr: SocketAddr, filter: &str) -> (AsyncClient, EventLoop) {
        let (client, mut events) = connect(options(addr)).await;
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        poll_until(&mut events, |p| {
            matches!(p, Packet::SubAck(_)).then_some(())
        })
        .await;
        (client, events)
    }

    /// Publishes at QoS 1 and returns once the broker acknowledged.
    async fn publish_acked(addr: SocketAddr, topic: &str, payload: Vec<u8>, retain: bool) {
        let (client, mut events) = connect(options(addr)).await;
        client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .unwrap();
        poll_until(&mut events, |p| {
            matches!(p, Packet::PubAck(_)).then_some(())
        })
        .await;
    }

    async fn next_publish(events: &mut EventLoop) -> Publish {
        poll_until(events, |p| match p {
            Packet::Publish(publish) => Some(publish),
            _ => None,
        })
        .await
    }

    #[tokio::test]
    async fn retained_message_reaches_a_later_subscriber_flagged_retained() {
        let addr = start(loopback()).await.unwrap();
        publish_acked(addr, "printer/1/state", b"PRINTING".to_vec(), true).await;

        let (_client, mut events) = subscriber(addr, "printer/+/state").await;
        let publish = next_publish(&mut events).await;

        assert_eq!(publish.topic, "printer/1/state");
        assert_eq!(&publish.payload[..], b"PRINTING");
        assert!(publish.retain);
    }

    #[tokio::test]
    async fn qos1_message_round_trips() {
        let addr = start(loopback()).await.unwrap();
        let (_client, mut events) = subscriber(addr, "cmd/#").await;

        publish_acked(addr, "cmd/pause", b"{\"id\":1}".to_vec(), false).await;
        let publish = next_publish(&mut events).await;

        assert_eq!(publish.topic, "cmd/pause");
        assert_eq!(publish.qos, QoS::AtLeastOnce);
        assert_eq!(&publish.payload[..], b"{\"id\":1}");
        assert!(!publish.retain);
    }

    #[tokio::test]
    async fn large_payloads_round_trip() {
        let addr = start(loopback()).await.unwrap();
        let (_client, mut events) = subscriber(addr, "camera/#").await;

        for size in [200 * 1024, 3 * 1024 * 1024] {
            let image: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            publish_acked(addr, "camera/snapshot", image.clone(), false).await;
            let publish = next_publish(&mut events).await;
            assert_eq!(publish.payload.len(), size);
            assert!(
                publish.payload[..] == image[..],
                "payload of {size} bytes corrupted"
            );
        }
    }

    #[tokio::test]
    async fn last_will_is_published_when_a_client_vanishes() {
        let addr = start(loopback()).await.unwrap();
        let mut options = options(addr);
        let will = LastWill::new("bridge/status", "offline", QoS::AtLeastOnce, true);
        options.set_last_will(will);
        let (client, events) = connect(options).await;
        let (_watcher, mut watching) = subscriber(addr, "bridge/status").await;

        // Dropping both closes the socket without DISCONNECT, as a crash would.
        drop((client, events));
        let live = next_publish(&mut watching).await;
        assert_eq!(&live.payload[..], b"offline");

        let (_late, mut late) = subscriber(addr, "bridge/status").await;
        let retained = next_publish(&mut late).await;
        assert_eq!(&retained.payload[..], b"offline");
        assert!(retained.retain);
    }

    #[tokio::test]
    async fn many_clients_can_connect_at_once() {
        let addr = start(loopback()).await.unwrap();
        let clients: Vec<_> = (0..50)
            .map(|_| tokio::spawn(connect(options(addr))))
            .collect();
        for client in clients {
            client.await.unwrap();
        }
    }

    /// `demo` starts the broker from async code: while it waits for the broker to accept
    /// connections, the other tasks of a one-thread runtime go on.
    #[tokio::test]
    async fn other_tasks_run_while_the_broker_starts() {
        let ticks = std::sync::Arc::new(AtomicUsize::new(0));
        let counted = ticks.clone();
        let ticking = tokio::spawn(async move {
            loop {
                counted.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        });
        let addr = start(loopback()).await.unwrap();
        let during = ticks.load(Ordering::Relaxed);
        ticking.abort();
        assert!(during > 0, "no other task ran while the broker started");
        publish_acked(addr, "started", b"yes".to_vec(), false).await;
    }

    #[tokio::test]
    async fn an_address_in_use_is_an_error() {
        let taken = TcpListener::bind(loopback()).unwrap();
        let err = start(taken.local_addr().unwrap()).await.unwrap_err();
        assert!(format!("{err:#}").contains("cannot listen"), "{err:#}");
    }

    #[test]
    fn broker_logs_are_off_unless_rust_log_names_rumqttd() {
        use std::sync::{Arc, Mutex};

        fn logged_targets(rust_log: &str) -> Vec<String> {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let sink = lines.clone();
            let filter = quiet_broker_logs(EnvFilter::new(rust_log), Some(rust_log));
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(move || LineSink(sink.clone()))
                .finish();
            tracing::subscriber::with_default(subscriber, || {
                tracing::error!(target: "rumqttd::server::broker", "Disconnected!!");
                tracing::info!(target: "prusa_connect_mqtt::bridge", "published");
            });
            let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
            ["rumqttd", "prusa_connect_mqtt"]
                .into_iter()
                .filter(|target| text.contains(&format!("{target}::")))
                .map(String::from)
                .collect()
        }

        assert_eq!(logged_targets("info"), ["prusa_connect_mqtt"]);
        assert_eq!(
            logged_targets("info,rumqttd=error"),
            ["rumqttd", "prusa_connect_mqtt"]
        );
    }

    struct LineSink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for LineSink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
