//! A connection to an MQTT broker: MQTT 3.1.1 over TCP, TLS or a websocket (Connect's live
//! channel), on rumqttc's own packet codec (`mqttbytes`). What the session queues in one
//! turn is written in one write and what the broker sent is read as it came. rumqttc's event
//! loop writes and flushes each packet on its own: a syscall, a loopback segment and a broker
//! wake per message, which at a farm's thousands of messages a second was most of the
//! gateway's CPU (README, Performance).
//!
//! It only reads and writes: what to send, and what an ack means, is its user's (the
//! session, the live channel).

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL as SUBPROTOCOL;
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
use tokio::time::Instant;
use ws_stream_tungstenite::WsStream;

use crate::outbox::Transmit;

/// How long connecting, the TLS handshake and the ConnAck may take, each (rumqttc's default).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// What one read takes at most: a farm's burst of acks and commands.
const READ_CHUNK: usize = 16 * 1024;
/// The bytes of a PubAck, the least that an ack owed brings.
const PUBACK_LEN: usize = 4;
/// How long a read waits for the acks owed before it takes whatever came: what else the
/// broker sent (a command) waits at most this long. It is short because a broker with
/// Nagle's algorithm on (mosquitto's default) holds its next segment of acks until ours
/// are acknowledged, and the kernel acknowledges an unread small segment only after its
/// delayed-ACK timer (40 ms); a read acknowledges it at once. Under a farm's load a
/// command's round trip took 37 ms at the 90th percentile with 100 ms, 3.3 ms with 5 ms
/// (4.3 and 6.7 ms when every segment woke the session).
const ACK_PATIENCE: Duration = Duration::from_millis(5);

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

pub(crate) struct Wire {
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
    /// How many bytes the socket waits for before it wakes the reader: see [`Wire::expect_acks`].
    low_water: LowWater,
}

/// Connects, sends CONNECT with the options' client id, keep-alive, session, last will and
/// credentials, and waits for a successful ConnAck. The errors are rumqttc's, so that
/// [`super::explain_broker_error`] reads them as it reads the `check` command's.
///
/// Over a websocket (`Transport::Ws`, `Transport::Wss`) the options' address is the whole
/// `ws://` or `wss://` URL, as rumqttc takes it.
pub(crate) async fn connect(opts: MqttOptions) -> Result<Wire, ConnectionError> {
    let transport = opts.transport();
    let (address, port) = opts.broker_address();
    let (host, port) = match transport {
        Transport::Ws | Transport::Wss(_) => url_host(&address)?,
        _ => (address.clone(), port),
    };
    let tcp = in_time(TcpStream::connect((host.as_str(), port))).await??;
    // Each write is a batch already: nothing gains from waiting for more.
    tcp.set_nodelay(true)?;
    // Over TLS or a websocket the socket's bytes are records and frames whose partial ones
    // the layer above keeps: what is left to come of the acks is not known to the byte.
    let low_water = LowWater::new(matches!(transport, Transport::Tcp).then_some(&tcp));
    let stream: Box<dyn Stream> = match transport {
        Transport::Tcp => Box::new(tcp),
        Transport::Tls(config) => Box::new(in_time(tls(&config, &host, tcp)).await??),
        Transport::Ws => Box::new(in_time(websocket(&address, tcp)).await??),
        Transport::Wss(config) => {
            let tls = in_time(tls(&config, &host, tcp)).await??;
            Box::new(in_time(websocket(&address, tls)).await??)
        }
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
        low_water,
    };
    let mut connect = Connect::new(opts.client_id());
    connect.keep_alive = u16::try_from(opts.keep_alive().as_secs()).unwrap_or(u16::MAX);
    connect.clean_session = opts.clean_session();
    connect.last_will = opts.last_will();
    connect.login = opts.credentials();
    connect.write(&mut wire.outgoing).map_err(deserialization)?;
    let answer = in_time(async {
        wire.write_all().await?;
        wire.read().await
    })
    .await??;
    match answer {
        Packet::ConnAck(ack) if ack.code == ConnectReturnCode::Success => Ok(wire),
        Packet::ConnAck(ack) => Err(ConnectionError::ConnectionRefused(ack.code)),
        other => Err(ConnectionError::NotConnAck(other)),
    }
}

/// Each step of connecting gets [`CONNECT_TIMEOUT`].
async fn in_time<T>(step: impl Future<Output = T>) -> Result<T, ConnectionError> {
    tokio::time::timeout(CONNECT_TIMEOUT, step)
        .await
        .map_err(|_| ConnectionError::NetworkTimeout)
}

/// The host and port of a `ws://` or `wss://` URL.
fn url_host(url: &str) -> io::Result<(String, u16)> {
    let invalid = |why: &str| io::Error::other(format!("{url:?}: {why}"));
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    // An IPv6 address comes in brackets, which are not part of it.
    let host = parsed
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
        .ok_or_else(|| invalid("no host"))?;
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| invalid("no port"))?;
    Ok((host, port))
}

/// The websocket handshake, asking for MQTT as the subprotocol (as rumqttc does); the
/// server must agree to it.
async fn websocket<S>(url: &str, stream: S) -> Result<impl Stream + use<S>, ConnectionError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert(SUBPROTOCOL, HeaderValue::from_static("mqtt"));
    let (socket, response) = async_tungstenite::tokio::client_async(request, stream).await?;
    let agreed = response
        .headers()
        .get(SUBPROTOCOL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "mqtt");
    if !agreed {
        return Err(io::Error::other(
            "the websocket server did not agree to MQTT (Sec-WebSocket-Protocol)",
        )
        .into());
    }
    Ok(WsStream::new(socket))
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

    /// Queues a SUBSCRIBE; returns its packet id (its SubAck's).
    pub(crate) fn subscribe(&mut self, filters: &[String], qos: QoS) -> Result<u16, StateError> {
        let filters = filters.iter().map(|f| SubscribeFilter::new(f.clone(), qos));
        let mut subscribe = Subscribe::new_many(filters);
        subscribe.pkid = self.next_pkid();
        subscribe.write(&mut self.outgoing).map_err(encoding)?;
        Ok(subscribe.pkid)
    }

    /// Queues an UNSUBSCRIBE; returns its packet id (its UnsubAck's).
    pub(crate) fn unsubscribe(&mut self, filter: &str) -> Result<u16, StateError> {
        let mut unsubscribe = Unsubscribe::new(filter);
        unsubscribe.pkid = self.next_pkid();
        unsubscribe.write(&mut self.outgoing).map_err(encoding)?;
        Ok(unsubscribe.pkid)
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

    pub(crate) fn ping(&mut self) -> Result<(), StateError> {
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

    /// The broker owes `acks` PubAcks for what was written: the next read waits (up to
    /// [`ACK_PATIENCE`]) until the socket holds at least their bytes, instead of waking for
    /// every few acks that arrive. A farm's gateway writes a batch every 50 ms and mosquitto
    /// acknowledges it a segment of a few acks at a time: hundreds of wakes a second, a third
    /// of the gateway's CPU (README, Performance). Whatever else comes meanwhile (a command,
    /// a PingResp) is read with the acks, or once the patience runs out.
    pub(super) fn expect_acks(&mut self, acks: usize) {
        self.low_water.expected = acks.saturating_mul(PUBACK_LEN);
    }

    fn next_pkid(&mut self) -> u16 {
        self.pkid = self.pkid.checked_add(1).unwrap_or(1);
        self.pkid
    }

    /// The next packet from the broker, writing what is queued meanwhile. Cancel-safe: a
    /// packet is taken out of the buffer only when it is returned, and reads and writes
    /// cancelled midway lose nothing.
    pub(crate) async fn read(&mut self) -> Result<Packet, ConnectionError> {
        loop {
            if let Some(packet) = self.buffered()? {
                return Ok(packet);
            }
            // Room for a full read (taken from what earlier packets left, when it can be).
            self.incoming.reserve(READ_CHUNK);
            let patience = self.low_water.apply(self.incoming.len());
            tokio::select! {
                read = self.reader.read_buf(&mut self.incoming) => {
                    if read? == 0 {
                        return Err(StateError::ConnectionAborted.into());
                    }
                    self.low_water.heard();
                }
                () = tokio::time::sleep_until(patience.unwrap_or_else(Instant::now)),
                    if patience.is_some() =>
                {
                    self.low_water.lose_patience();
                }
                sent = send(&mut self.writer, &mut self.outgoing),
                    if !self.outgoing.is_empty() || self.unflushed =>
                {
                    self.unflushed = sent?;
                }
            }
        }
    }

    /// The next packet among those already read, if a whole one is there.
    pub(crate) fn buffered(&mut self) -> Result<Option<Packet>, StateError> {
        match Packet::read(&mut self.incoming, self.max_packet) {
            Ok(packet) => Ok(Some(packet)),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(encoding(e)),
        }
    }

    /// Reads what the socket holds now, without waiting and writing nothing; returns whether
    /// anything came (then [`Wire::buffered`] may have a packet).
    pub(crate) fn read_ready(&mut self) -> io::Result<bool> {
        self.incoming.reserve(READ_CHUNK);
        let read = std::pin::pin!(self.reader.read_buf(&mut self.incoming));
        let mut cx = Context::from_waker(Waker::noop());
        match read.poll(&mut cx) {
            Poll::Pending => Ok(false),
            Poll::Ready(Ok(0)) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection closed by peer",
            )),
            Poll::Ready(Ok(_)) => Ok(true),
            Poll::Ready(Err(e)) => Err(e),
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

/// The socket's low-water mark for reading (`SO_RCVLOWAT`): epoll reports it readable, and
/// the reader wakes, only once it holds that many bytes. On Linux over plain TCP; elsewhere
/// every arrival wakes the reader, as before.
struct LowWater {
    /// A handle on the TCP socket, to set the option.
    #[cfg(target_os = "linux")]
    socket: Option<std::os::fd::OwnedFd>,
    /// Bytes the user expects (see [`Wire::expect_acks`]).
    expected: usize,
    /// What the socket was told last (1: wake at any byte, the kernel's default).
    told: usize,
    /// Since when a read waits with a mark above 1.
    waiting_since: Option<Instant>,
    /// The patience ran out: reads wake at any byte until something is read.
    impatient: bool,
}

impl LowWater {
    /// The mark of `tcp`, or none (`None`).
    fn new(tcp: Option<&TcpStream>) -> LowWater {
        #[cfg(target_os = "linux")]
        let socket = tcp.and_then(|tcp| {
            use std::os::fd::AsFd;
            tcp.as_fd().try_clone_to_owned().ok()
        });
        #[cfg(not(target_os = "linux"))]
        let _ = tcp;
        LowWater {
            #[cfg(target_os = "linux")]
            socket,
            expected: 0,
            told: 1,
            waiting_since: None,
            impatient: false,
        }
    }

    /// Before a read, with `buffered` bytes of a packet not whole yet (they count toward
    /// what is expected): tells the socket how much to wait for. Returns when to stop
    /// waiting for it.
    fn apply(&mut self, buffered: usize) -> Option<Instant> {
        let mark = if self.impatient {
            1
        } else {
            self.expected.saturating_sub(buffered).clamp(1, READ_CHUNK)
        };
        if mark != self.told && self.tell(mark) {
            self.told = mark;
        }
        if self.told <= 1 {
            self.waiting_since = None;
            return None;
        }
        Some(*self.waiting_since.get_or_insert_with(Instant::now) + ACK_PATIENCE)
    }

    /// Something was read.
    fn heard(&mut self) {
        self.waiting_since = None;
        self.impatient = false;
    }

    /// The patience ran out: lowering the mark makes the socket report what it holds.
    fn lose_patience(&mut self) {
        self.impatient = true;
        self.waiting_since = None;
    }

    /// Sets the option; returns whether the socket took it.
    #[cfg(target_os = "linux")]
    fn tell(&self, bytes: usize) -> bool {
        use std::os::fd::AsRawFd;
        let Some(socket) = &self.socket else {
            return false;
        };
        let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: the descriptor is open (owned here), the value outlives the call and its
        // size is the one given.
        let done = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                (&raw const value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        done == 0
    }

    #[cfg(not(target_os = "linux"))]
    fn tell(&self, _bytes: usize) -> bool {
        false
    }
}

#[cfg(test)]
mod tests;
