//! The rumqttc session: connect, back off, resubscribe on every ConnAck, and report the
//! connection state and incoming messages to the bridge.
//!
//! The event loop runs in its own task that never awaits a client call (that deadlocks when
//! the request channel is full); it only uses `try_*` calls.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use rand::Rng;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Packet, QoS,
    TlsConfiguration, Transport,
};
use secrecy::ExposeSecret;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::MqttConfig;

/// Big enough for discovery messages and camera snapshots.
pub const MAX_PACKET_BYTES: usize = 8 * 1024 * 1024;
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// `mqtt://host:port` or `mqtts://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl BrokerAddress {
    pub fn parse(url: &str) -> Result<BrokerAddress> {
        let parsed = reqwest::Url::parse(url).context("not a URL like mqtt://host:1883")?;
        let tls = match parsed.scheme() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            other => {
                bail!("unsupported scheme {other:?}: use mqtt://host:1883 or mqtts://host:8883")
            }
        };
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .context("no host in the URL: use mqtt://host:1883")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = parsed.port().unwrap_or(if tls { 8883 } else { 1883 });
        Ok(BrokerAddress { host, port, tls })
    }
}

/// The session's connection state; `generation` counts ConnAcks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Link {
    pub connected: bool,
    pub generation: u64,
}

#[derive(Debug, Clone)]
pub struct Incoming {
    pub topic: String,
    pub payload: bytes::Bytes,
    pub retain: bool,
}

pub struct Session {
    pub client: AsyncClient,
    pub link: watch::Receiver<Link>,
    pub incoming: mpsc::Receiver<Incoming>,
    pub task: JoinHandle<()>,
}

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
        // reqwest brings rustls with ring and rumqttc with aws-lc-rs: with two providers
        // compiled in, rustls cannot pick one itself and panics at the first handshake.
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

/// Starts the session. `subscriptions` are (re)subscribed on every ConnAck.
pub fn start(opts: MqttOptions, subscriptions: Vec<String>) -> Session {
    let (client, mut eventloop) = AsyncClient::new(opts, 4096);
    eventloop.set_network_options(low_latency());
    let (link_tx, link) = watch::channel(Link::default());
    let (in_tx, incoming) = mpsc::channel(1024);
    let task = tokio::spawn(drive(
        eventloop,
        client.clone(),
        subscriptions,
        link_tx,
        in_tx,
    ));
    Session {
        client,
        link,
        incoming,
        task,
    }
}

async fn drive(
    mut eventloop: EventLoop,
    client: AsyncClient,
    subscriptions: Vec<String>,
    link: watch::Sender<Link>,
    incoming: mpsc::Sender<Incoming>,
) {
    let (host, port) = eventloop.mqtt_options.broker_address();
    let broker = format!("{host}:{port}");
    let mut backoff = BACKOFF_START;
    let mut failures = 0u32;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = BACKOFF_START;
                if failures > 0 {
                    tracing::info!("MQTT broker connection restored");
                } else {
                    tracing::info!("connected to the MQTT broker");
                }
                failures = 0;
                for filter in &subscriptions {
                    if let Err(e) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                        tracing::warn!("cannot subscribe to {filter}: {e}");
                    }
                }
                link.send_modify(|l| {
                    l.connected = true;
                    l.generation += 1;
                });
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let msg = Incoming {
                    topic: p.topic.clone(),
                    payload: p.payload.clone(),
                    retain: p.retain,
                };
                if incoming.try_send(msg).is_err() {
                    if incoming.is_closed() {
                        return;
                    }
                    tracing::warn!("dropping MQTT message on {}: the bridge is busy", p.topic);
                }
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                link.send_modify(|l| l.connected = false);
                drain(&mut eventloop).await;
                return;
            }
            Ok(_) => {}
            Err(e) => {
                if matches!(e, ConnectionError::RequestsDone) {
                    return;
                }
                link.send_modify(|l| l.connected = false);
                failures += 1;
                if failures == 1 {
                    tracing::warn!(
                        "MQTT broker: {}; retrying with backoff (`prusa-connect-mqtt check` tests the settings)",
                        crate::check::explain_broker_error(&e, &broker)
                    );
                } else {
                    tracing::debug!("MQTT reconnect attempt {failures} failed: {e}");
                }
                // rumqttc reconnects at once on the next poll: wait first, with jitter.
                let jitter = rand::rng().random_range(0.75..1.25);
                tokio::time::sleep(backoff.mul_f64(jitter)).await;
                backoff = (backoff * 2).min(BACKOFF_CAP);
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

/// After our DISCONNECT, reads until the broker closes the connection. Dropping the socket
/// with unread acks in it makes the kernel send a reset, and mosquitto then drops what it had
/// not processed yet (seen: the last retained updates before a stop were lost).
pub async fn drain(eventloop: &mut EventLoop) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        assert_eq!(
            BrokerAddress::parse("mqtt://localhost:1883").unwrap(),
            BrokerAddress {
                host: "localhost".into(),
                port: 1883,
                tls: false
            }
        );
        assert_eq!(BrokerAddress::parse("mqtts://broker").unwrap().port, 8883);
        assert_eq!(
            BrokerAddress::parse("mqtt://[::1]:1884").unwrap().host,
            "::1"
        );
        assert!(BrokerAddress::parse("http://x").is_err());
        assert!(BrokerAddress::parse("localhost:1883").is_err());
    }
}
