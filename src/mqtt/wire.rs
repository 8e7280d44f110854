//! The session's connection to the broker: MQTT 3.1.1 over TCP or TLS, on rumqttc's own
//! packet codec (`mqttbytes`). What the session queues in one turn is written in one write
//! and what the broker sent is read as it came. rumqttc's event loop writes and flushes each
//! packet on its own: a syscall, a loopback segment and a broker wake per message, which at a
//! farm's thousands of messages a second was most of the gateway's CPU (README, Performance).
//!
//! It only reads and writes: what to send, and what an ack means, is the session's.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::{
    ConnectReturnCode, ConnectionError, MqttOptions, Packet, QoS, StateError, TlsConfiguration,
    TlsError, Transport,
    mqttbytes::v4::{
        Connect, Disconnect, PingReq, PubAck, PubComp, PubRec, Publish, Subscribe, SubscribeFilter,
        Unsubscribe,
    },
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use crate::outbox::Transmit;

/// How long connecting, the TLS handshake and the ConnAck may take, each (rumqttc's default).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// What one read takes at most: a farm's burst of acks and commands.
const READ_CHUNK: usize = 16 * 1024;

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

pub(super) struct Wire {
    reader: ReadHalf<Box<dyn Stream>>,
    writer: WriteHalf<Box<dyn Stream>>,
    incoming: BytesMut,
    /// Packets encoded and not yet written.
    outgoing: BytesMut,
    /// Written since the last flush (TLS keeps records until it is flushed).
    unflushed: bool,
    max_packet: usize,
    /// The last packet id given (1 to 65,535, in turn).
    pkid: u16,
}

/// Connects, sends CONNECT with the options' client id, keep-alive, session, last will and
/// credentials, and waits for a successful ConnAck. The errors are rumqttc's, so that
/// [`super::explain_broker_error`] reads them as it reads the `check` command's.
pub(super) async fn connect(opts: MqttOptions) -> Result<Wire, ConnectionError> {
    let (host, port) = opts.broker_address();
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port)))
        .await
        .map_err(|_| ConnectionError::NetworkTimeout)??;
    // Each write is a batch already: nothing gains from waiting for more.
    tcp.set_nodelay(true)?;
    let stream: Box<dyn Stream> = match opts.transport() {
        Transport::Tcp => Box::new(tcp),
        Transport::Tls(config) => Box::new(
            tokio::time::timeout(CONNECT_TIMEOUT, tls(&config, &host, tcp))
                .await
                .map_err(|_| ConnectionError::NetworkTimeout)??,
        ),
        _ => {
            return Err(io::Error::other("only mqtt:// and mqtts:// brokers are supported").into());
        }
    };
    let (reader, writer) = tokio::io::split(stream);
    let mut wire = Wire {
        reader,
        writer,
        incoming: BytesMut::with_capacity(READ_CHUNK),
        outgoing: BytesMut::with_capacity(16 * 1024),
        unflushed: false,
        max_packet: opts.max_packet_size(),
        pkid: 0,
    };
    let mut connect = Connect::new(opts.client_id());
    connect.keep_alive = u16::try_from(opts.keep_alive().as_secs()).unwrap_or(u16::MAX);
    connect.clean_session = opts.clean_session();
    connect.last_will = opts.last_will();
    connect.login = opts.credentials();
    connect.write(&mut wire.outgoing).map_err(deserialization)?;
    let answer = tokio::time::timeout(CONNECT_TIMEOUT, async {
        wire.write_all().await?;
        wire.read().await
    })
    .await
    .map_err(|_| ConnectionError::NetworkTimeout)??;
    match answer {
        Packet::ConnAck(ack) if ack.code == ConnectReturnCode::Success => Ok(wire),
        Packet::ConnAck(ack) => Err(ConnectionError::ConnectionRefused(ack.code)),
        other => Err(ConnectionError::NotConnAck(other)),
    }
}

/// TLS as rumqttc sets it up from the same options: the CA certificates given, and the
/// client's certificate and key when both are.
async fn tls(
    config: &TlsConfiguration,
    host: &str,
    tcp: TcpStream,
) -> Result<rumqttc::tokio_rustls::client::TlsStream<TcpStream>, ConnectionError> {
    let tls_error = |e: TlsError| ConnectionError::Tls(e);
    let config = match config {
        TlsConfiguration::Simple {
            ca,
            alpn,
            client_auth,
        } => {
            let mut roots = rustls::RootCertStore::empty();
            let cas = CertificateDer::pem_slice_iter(ca).filter_map(Result::ok);
            roots.add_parsable_certificates(cas);
            if roots.is_empty() {
                return Err(tls_error(TlsError::NoValidCertInChain));
            }
            let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
            let mut config = match client_auth {
                Some((cert, key)) => {
                    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
                        .filter_map(Result::ok)
                        .collect();
                    if certs.is_empty() {
                        return Err(tls_error(TlsError::NoValidClientCertInChain));
                    }
                    let key = PrivateKeyDer::from_pem_slice(key)
                        .map_err(|_| tls_error(TlsError::NoValidKeyInChain))?;
                    builder
                        .with_client_auth_cert(certs, key)
                        .map_err(|e| tls_error(TlsError::TLS(e)))?
                }
                None => builder.with_no_client_auth(),
            };
            if let Some(alpn) = alpn {
                config.alpn_protocols.extend_from_slice(alpn);
            }
            Arc::new(config)
        }
        TlsConfiguration::Rustls(config) => config.clone(),
    };
    let name =
        ServerName::try_from(host.to_string()).map_err(|e| tls_error(TlsError::DNSName(e)))?;
    let connector = rumqttc::tokio_rustls::TlsConnector::from(config);
    connector
        .connect(name, tcp)
        .await
        .map_err(|e| tls_error(TlsError::Io(e)))
}

/// Writes some of what is queued, or flushes once all is written; returns whether a flush
/// is still owed. Cancel-safe: a write cancelled has written nothing.
async fn send(
    writer: &mut WriteHalf<Box<dyn Stream>>,
    outgoing: &mut BytesMut,
) -> io::Result<bool> {
    if outgoing.is_empty() {
        writer.flush().await?;
        return Ok(false);
    }
    writer.write_buf(outgoing).await?;
    Ok(true)
}

fn deserialization(e: rumqttc::mqttbytes::Error) -> ConnectionError {
    encoding(e).into()
}

/// Packets are checked as they are encoded (a topic or payload beyond MQTT's limits).
fn encoding(e: rumqttc::mqttbytes::Error) -> StateError {
    StateError::Deserialization(e)
}

impl Wire {
    /// Queues a publish; returns its packet id (0 at QoS 0) and whether it could be encoded
    /// (the outbox refuses what no broker takes, so only a topic or payload beyond MQTT's
    /// own limits is not).
    pub(super) fn publish(&mut self, t: Transmit) -> (u16, bool) {
        let qos = if t.acknowledged {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        };
        let mut publish = Publish::from_bytes(t.topic, qos, t.payload);
        publish.retain = t.retain;
        if t.acknowledged {
            publish.pkid = self.next_pkid();
        }
        let mark = self.outgoing.len();
        match publish.write(&mut self.outgoing) {
            Ok(_) => (publish.pkid, true),
            Err(e) => {
                self.outgoing.truncate(mark);
                tracing::warn!("not publishing on {:?}: {e}", publish.topic);
                (publish.pkid, false)
            }
        }
    }

    pub(super) fn subscribe(&mut self, filters: &[String]) -> Result<(), StateError> {
        let filters = filters
            .iter()
            .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
        let mut subscribe = Subscribe::new_many(filters);
        subscribe.pkid = self.next_pkid();
        subscribe.write(&mut self.outgoing).map_err(encoding)?;
        Ok(())
    }

    pub(super) fn unsubscribe(&mut self, filter: &str) -> Result<(), StateError> {
        let mut unsubscribe = Unsubscribe::new(filter);
        unsubscribe.pkid = self.next_pkid();
        unsubscribe.write(&mut self.outgoing).map_err(encoding)?;
        Ok(())
    }

    /// Answers an incoming publish as its QoS asks.
    pub(super) fn acknowledge(&mut self, publish: &Publish) -> Result<(), StateError> {
        let written = match publish.qos {
            QoS::AtMostOnce => return Ok(()),
            QoS::AtLeastOnce => PubAck::new(publish.pkid).write(&mut self.outgoing),
            QoS::ExactlyOnce => PubRec::new(publish.pkid).write(&mut self.outgoing),
        };
        written.map(drop).map_err(encoding)
    }

    /// Completes an incoming QoS 2 publish (a broker sends one only when asked for QoS 2,
    /// which the session never asks; answered all the same).
    pub(super) fn complete(&mut self, pkid: u16) -> Result<(), StateError> {
        PubComp::new(pkid)
            .write(&mut self.outgoing)
            .map(drop)
            .map_err(encoding)
    }

    pub(super) fn ping(&mut self) -> Result<(), StateError> {
        PingReq
            .write(&mut self.outgoing)
            .map(drop)
            .map_err(encoding)
    }

    pub(super) fn disconnect(&mut self) -> Result<(), StateError> {
        Disconnect
            .write(&mut self.outgoing)
            .map(drop)
            .map_err(encoding)
    }

    fn next_pkid(&mut self) -> u16 {
        self.pkid = self.pkid.checked_add(1).unwrap_or(1);
        self.pkid
    }

    /// The next packet from the broker, writing what is queued meanwhile. Cancel-safe: a
    /// packet is taken out of the buffer only when it is returned, and reads and writes
    /// cancelled midway lose nothing.
    pub(super) async fn read(&mut self) -> Result<Packet, ConnectionError> {
        loop {
            match Packet::read(&mut self.incoming, self.max_packet) {
                Ok(packet) => return Ok(packet),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => return Err(deserialization(e)),
            }
            // Room for a full read (taken from what earlier packets left, when it can be).
            self.incoming.reserve(READ_CHUNK);
            tokio::select! {
                read = self.reader.read_buf(&mut self.incoming) => {
                    if read? == 0 {
                        return Err(StateError::ConnectionAborted.into());
                    }
                }
                sent = send(&mut self.writer, &mut self.outgoing),
                    if !self.outgoing.is_empty() || self.unflushed =>
                {
                    self.unflushed = sent?;
                }
            }
        }
    }

    /// Writes (and flushes) everything queued, reading nothing: for the CONNECT and the last
    /// DISCONNECT.
    pub(super) async fn write_all(&mut self) -> Result<(), ConnectionError> {
        self.writer.write_all_buf(&mut self.outgoing).await?;
        self.writer.flush().await?;
        self.unflushed = false;
        Ok(())
    }

    /// After our DISCONNECT: reads until the broker closes the connection (at most 2 s).
    /// Dropping the socket with unread acks in it makes the kernel send a reset, and
    /// mosquitto then drops what it had not processed yet (seen: the last retained updates
    /// before a stop were lost).
    pub(super) async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            if self.write_all().await.is_err() {
                return;
            }
            while self.read().await.is_ok() {}
        })
        .await;
    }
}
