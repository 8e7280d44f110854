//! Reaching the broker: the connection options (TLS, credentials, last will), the socket
//! option, a broker error as advice, and a clean close.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use rumqttc::{
    ConnectReturnCode, ConnectionError, EventLoop, LastWill, MqttOptions, QoS, TlsConfiguration,
    Transport,
};
use secrecy::ExposeSecret;

use crate::config::{BrokerAddress, MqttConfig};
use crate::message::MAX_PACKET_BYTES;

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
