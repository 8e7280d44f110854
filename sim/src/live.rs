//! The live channel: Connect's MQTT broker over a websocket (`wss://mqtt.prusa3d.com:8084/mqtt`
//! for the real one), as public clients know it. MQTT 3.1.1, subprotocol `mqtt`; the username
//! is the account id (`/api/v1/me`'s `id`), the password a valid access token. Each printer
//! is subscribed on its own (`v1/devices/printers/<uuid>/#`); any other filter is refused
//! (SUBACK 0x80). Every topic is retained: a new subscription gets the printer's whole tree at
//! once (flagged retained), then whatever changed every [`Hub::period`] (the printers'
//! telemetry cadence). The topics of a printer's earlier jobs stay retained, as on the real
//! broker, and so do an offline printer's values as it last sent them (its dialog, say), even
//! when Connect's REST API has moved on: only `data/online` says it is away.
//!
//! Served at `/mqtt` by the same HTTP server; switched off, or its connections dropped, with
//! [`super::Simulator::set_live_enabled`] and [`super::Simulator::drop_live_connections`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, Publish, SubAck, SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use super::Simulator;
use super::world::{Printer, real_now_us};

/// Larger packets from a client end its session.
const MAX_PACKET: usize = 64 * 1024;
/// A client that has not sent CONNECT by then is dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Jobs per printer whose topics stay retained.
const RETAINED_JOBS: usize = 3;

/// What the live broker has seen; read it with [`super::Simulator::live_stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LiveStats {
    /// CONNECTs accepted.
    pub connects_ok: u64,
    /// CONNECTs refused: wrong username, a token that is not valid, or every one while
    /// [`super::Simulator::set_live_refuse_all`] is on.
    pub connects_refused: u64,
    /// Websocket upgrades refused because the channel is switched off.
    pub upgrades_refused: u64,
    /// Subscription filters refused (wildcards over printers, printers not on the account).
    pub filters_refused: u64,
    /// Sessions ended by [`super::Simulator::drop_live_connections`] or switching it off.
    pub sessions_dropped: u64,
    /// The passwords (access tokens) of accepted CONNECTs, oldest first.
    pub tokens_accepted: Vec<String>,
}

/// The broker's switches and what its sessions are subscribed to.
pub(crate) struct Hub {
    enabled: AtomicBool,
    refuse_all: AtomicBool,
    period_ms: AtomicU64,
    /// Bumped to end every session.
    drops: watch::Sender<u64>,
    next_session: AtomicU64,
    pub(crate) stats: Mutex<LiveStats>,
    /// Per session, the printers it is subscribed to.
    sessions: Mutex<HashMap<u64, BTreeSet<String>>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            enabled: AtomicBool::new(true),
            refuse_all: AtomicBool::new(false),
            period_ms: AtomicU64::new(1000),
            drops: watch::channel(0).0,
            next_session: AtomicU64::new(1),
            stats: Mutex::default(),
            sessions: Mutex::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hub {
    pub(crate) fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::SeqCst);
        if !enabled {
            self.drop_all();
        }
    }

    pub(crate) fn set_refuse_all(&self, refuse: bool) {
        self.refuse_all.store(refuse, Ordering::SeqCst);
    }

    pub(crate) fn set_period(&self, period: Duration) {
        let ms = period.as_millis().clamp(10, 60_000) as u64;
        self.period_ms.store(ms, Ordering::SeqCst);
    }

    fn period(&self) -> Duration {
        Duration::from_millis(self.period_ms.load(Ordering::SeqCst))
    }

    pub(crate) fn drop_all(&self) {
        self.drops.send_modify(|n| *n += 1);
    }

    pub(crate) fn stats(&self) -> LiveStats {
        lock(&self.stats).clone()
    }

    /// Every printer some session is subscribed to now, with how many sessions are.
    pub(crate) fn subscriptions(&self) -> BTreeMap<String, usize> {
        let mut all = BTreeMap::new();
        for uuids in lock(&self.sessions).values() {
            for uuid in uuids {
                *all.entry(uuid.clone()).or_insert(0) += 1;
            }
        }
        all
    }

    pub(crate) fn sessions(&self) -> usize {
        lock(&self.sessions).len()
    }

    fn count(&self, f: impl FnOnce(&mut LiveStats)) {
        f(&mut lock(&self.stats));
    }
}

/// `GET /mqtt`: the websocket upgrade (subprotocol `mqtt`).
pub(crate) async fn upgrade(State(sim): State<Simulator>, ws: WebSocketUpgrade) -> Response {
    if !sim.live.enabled.load(Ordering::SeqCst) {
        sim.live.count(|s| s.upgrades_refused += 1);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the live channel is switched off",
        )
            .into_response();
    }
    ws.protocols(["mqtt"])
        .on_upgrade(move |socket| async move {
            let id = sim.live.next_session.fetch_add(1, Ordering::SeqCst);
            let mut session = Session {
                sim: sim.clone(),
                socket,
                buf: BytesMut::new(),
                id,
                sent: BTreeMap::new(),
            };
            let end = session.run().await;
            tracing::debug!("live session {id} ended: {end}");
            lock(&sim.live.sessions).remove(&id);
        })
        .into_response()
}

/// One client's connection.
struct Session {
    sim: Simulator,
    socket: WebSocket,
    /// Bytes received and not yet a whole packet.
    buf: BytesMut,
    id: u64,
    /// Per subscribed printer, the values last sent (topic -> payload).
    sent: BTreeMap<String, BTreeMap<String, String>>,
}

impl Session {
    async fn run(&mut self) -> String {
        let mut drops = self.sim.live.drops.subscribe();
        drops.borrow_and_update();
        let connect = match tokio::time::timeout(CONNECT_TIMEOUT, self.read()).await {
            Ok(Ok(Packet::Connect(c))) => c,
            Ok(Ok(other)) => return format!("first packet was not CONNECT: {other:?}"),
            Ok(Err(e)) => return e,
            Err(_) => return "no CONNECT in time".into(),
        };
        let code = self.check_login(connect.login.as_ref().map(|l| (&l.username, &l.password)));
        let accepted = code == ConnectReturnCode::Success;
        if self
            .send(Packet::ConnAck(ConnAck::new(code, false)))
            .await
            .is_err()
            || !accepted
        {
            return format!("CONNECT refused: {code:?}");
        }
        lock(&self.sim.live.sessions).insert(self.id, BTreeSet::new());
        let mut ticker = tokio::time::interval(self.sim.live.period());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = drops.changed() => {
                    self.sim.live.count(|s| s.sessions_dropped += 1);
                    let _ = self.socket.send(Message::Close(None)).await;
                    return "dropped".into();
                }
                packet = self.read() => {
                    let reply = match packet {
                        Ok(p) => self.on_packet(p).await,
                        Err(e) => return e,
                    };
                    if let Err(e) = reply {
                        return e;
                    }
                }
                _ = ticker.tick() => {
                    if let Err(e) = self.push_changes().await {
                        return e;
                    }
                    let period = self.sim.live.period();
                    if ticker.period() != period {
                        ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                    }
                }
            }
        }
    }

    fn check_login(&self, login: Option<(&String, &String)>) -> ConnectReturnCode {
        let hub = &self.sim.live;
        let refused = |code| {
            hub.count(|s| s.connects_refused += 1);
            code
        };
        let Some((username, password)) = login else {
            return refused(ConnectReturnCode::NotAuthorized);
        };
        if hub.refuse_all.load(Ordering::SeqCst) {
            return refused(ConnectReturnCode::BadUserNamePassword);
        }
        let connect_token = self.sim.world().token.clone();
        let account =
            self.sim
                .account()
                .account_of(password, connect_token.as_deref(), real_now_us());
        match account {
            None => refused(ConnectReturnCode::NotAuthorized),
            Some(id) if id.to_string() != *username => {
                refused(ConnectReturnCode::BadUserNamePassword)
            }
            Some(_) => {
                hub.count(|s| {
                    s.connects_ok += 1;
                    s.tokens_accepted.push(password.clone());
                });
                ConnectReturnCode::Success
            }
        }
    }

    async fn on_packet(&mut self, packet: Packet) -> Result<(), String> {
        match packet {
            Packet::PingReq => self.send(Packet::PingResp).await,
            Packet::Disconnect => Err("the client disconnected".into()),
            Packet::Subscribe(sub) => {
                let mut codes = Vec::new();
                let mut granted = Vec::new();
                for filter in &sub.filters {
                    match self.printer_of_filter(&filter.path) {
                        Some(uuid) => {
                            codes.push(SubscribeReasonCode::Success(QoS::AtMostOnce));
                            granted.push(uuid);
                        }
                        None => {
                            self.sim.live.count(|s| s.filters_refused += 1);
                            codes.push(SubscribeReasonCode::Failure);
                        }
                    }
                }
                self.send(Packet::SubAck(SubAck::new(sub.pkid, codes)))
                    .await?;
                for uuid in granted {
                    if let Some(set) = lock(&self.sim.live.sessions).get_mut(&self.id) {
                        set.insert(uuid.clone());
                    }
                    // A new subscription gets every retained topic, whatever it was sent before.
                    self.sent.insert(uuid.clone(), BTreeMap::new());
                    self.push(&uuid, true).await?;
                }
                Ok(())
            }
            Packet::Unsubscribe(unsub) => {
                for topic in &unsub.topics {
                    if let Some(uuid) = filter_uuid(topic) {
                        self.sent.remove(uuid);
                        if let Some(set) = lock(&self.sim.live.sessions).get_mut(&self.id) {
                            set.remove(uuid);
                        }
                    }
                }
                self.send(Packet::UnsubAck(UnsubAck::new(unsub.pkid))).await
            }
            Packet::Connect(_) => Err("a second CONNECT".into()),
            // Clients only listen here; what they publish goes nowhere.
            _ => Ok(()),
        }
    }

    /// The printer a filter subscribes to, if it is one printer's whole tree and the printer
    /// is on the account.
    fn printer_of_filter(&self, filter: &str) -> Option<String> {
        let uuid = filter_uuid(filter)?;
        self.sim.world().printer(uuid).map(|p| p.uuid.clone())
    }

    async fn push_changes(&mut self) -> Result<(), String> {
        let uuids: Vec<String> = self.sent.keys().cloned().collect();
        for uuid in uuids {
            self.push(&uuid, false).await?;
        }
        Ok(())
    }

    /// Sends a printer's topics whose value changed since they were last sent (all of them
    /// after a subscribe, flagged retained).
    async fn push(&mut self, uuid: &str, retained: bool) -> Result<(), String> {
        let tree = {
            let world = self.sim.world();
            match world.printer(uuid) {
                Some(p) => kept(p, real_now_us()),
                None => return Ok(()),
            }
        };
        let Some(sent) = self.sent.get_mut(uuid) else {
            return Ok(());
        };
        let mut changed = Vec::new();
        for (topic, value) in tree {
            if sent.get(&topic) != Some(&value) {
                changed.push((topic.clone(), value.clone()));
                sent.insert(topic, value);
            }
        }
        for (topic, value) in changed {
            let mut publish = Publish::new(
                format!("v1/devices/printers/{uuid}/{topic}"),
                QoS::AtMostOnce,
                value.into_bytes(),
            );
            publish.retain = retained;
            self.send(Packet::Publish(publish)).await?;
        }
        Ok(())
    }

    async fn read(&mut self) -> Result<Packet, String> {
        loop {
            match Packet::read(&mut self.buf, MAX_PACKET) {
                Ok(packet) => return Ok(packet),
                Err(CodecError::InsufficientBytes(_)) => {}
                Err(e) => return Err(format!("bad packet: {e}")),
            }
            match self.socket.recv().await {
                Some(Ok(Message::Binary(bytes))) => self.buf.extend_from_slice(&bytes),
                Some(Ok(Message::Close(_))) | None => return Err("closed by the client".into()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("websocket: {e}")),
            }
        }
    }

    async fn send(&mut self, packet: Packet) -> Result<(), String> {
        let mut out = BytesMut::new();
        packet
            .write(&mut out, MAX_PACKET)
            .map_err(|e| format!("cannot encode {packet:?}: {e}"))?;
        self.socket
            .send(Message::Binary(out.freeze()))
            .await
            .map_err(|e| format!("websocket: {e}"))
    }
}

/// `v1/devices/printers/<uuid>/#` -> the uuid.
fn filter_uuid(filter: &str) -> Option<&str> {
    let uuid = filter
        .strip_prefix("v1/devices/printers/")?
        .strip_suffix("/#")?;
    (!uuid.is_empty() && !uuid.contains(['/', '+', '#'])).then_some(uuid)
}

/// What the broker holds of a printer: its tree as it last sent it.
fn kept(p: &Printer, now_us: i64) -> BTreeMap<String, String> {
    match &p.last_sent {
        Some(sent) => {
            let mut t = sent.clone();
            t.insert("data/online".into(), "0".into());
            t
        }
        None => tree(p, now_us),
    }
}

/// A printer's retained tree (topic under `v1/devices/printers/<uuid>/` -> payload), made from
/// the JSON Connect's REST API shows for it, so both always agree.
pub(crate) fn tree(p: &Printer, now_us: i64) -> BTreeMap<String, String> {
    let json = super::render::printer(p, now_us, false);
    let mut t = BTreeMap::new();
    let mut put = |topic: &str, value: Option<String>| {
        if let Some(v) = value {
            t.insert(topic.to_string(), v);
        }
    };
    let num = |v: &Value| v.as_f64().map(fmt_num);
    put(
        "data/state",
        json["printer_state"].as_str().map(str::to_string),
    );
    put(
        "data/online",
        Some(if p.online { "1" } else { "0" }.to_string()),
    );
    put(
        "data/material",
        json["filament"]["material"].as_str().map(str::to_string),
    );
    put("data/axis-z", num(&json["axis_z"]));
    let temp = &json["temp"];
    put("data/temp/nozzle/current", num(&temp["temp_nozzle"]));
    put("data/temp/nozzle/target", num(&temp["target_nozzle"]));
    put("data/temp/heatbed/current", num(&temp["temp_bed"]));
    put("data/temp/heatbed/target", num(&temp["target_bed"]));
    put("data/temp/chamber/current", num(&temp["temp_chamber"]));
    put("data/tools/active", Some("1".into()));
    put(
        "data/tools/1/temp/nozzle/current",
        num(&temp["temp_nozzle"]),
    );
    put(
        "data/tools/1/temp/nozzle/target",
        num(&temp["target_nozzle"]),
    );
    let job = &json["job_info"];
    let current = job["id"].as_i64();
    put("data/current-job", Some(current.unwrap_or(0).to_string()));
    put(
        "data/job-progress",
        num(&job["progress"]).or(Some("0".into())),
    );
    // The dialog is JSON (the shape of `dialog_info`); none shown is an empty payload.
    put(
        "dialog",
        Some(match &p.dialog {
            Some(_) => json["dialog_info"].to_string(),
            None => String::new(),
        }),
    );
    for j in p.jobs.iter().rev().take(RETAINED_JOBS) {
        let info = super::render::job_info(j, p.team_id);
        let base = format!("jobs/{}/data", j.id);
        put(&format!("{base}/progress"), num(&info["progress"]));
        put(
            &format!("{base}/state"),
            info["state"].as_str().map(str::to_string),
        );
        put(
            &format!("{base}/time-remaining"),
            num(&info["time_remaining"]),
        );
    }
    t
}

/// Numbers as the printers send them: whole numbers without a fraction.
fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_printers_whole_tree_is_a_filter() {
        assert_eq!(filter_uuid("v1/devices/printers/abc/#"), Some("abc"));
        for bad in [
            "v1/devices/#",
            "v1/devices/printers/#",
            "v1/devices/printers/+/#",
            "v1/devices/printers/abc/data/state",
            "v1/devices/printers//#",
        ] {
            assert_eq!(filter_uuid(bad), None, "{bad}");
        }
    }

    #[test]
    fn numbers_look_like_the_printers_send_them() {
        assert_eq!(fmt_num(650.0), "650");
        assert_eq!(fmt_num(215.25), "215.2");
        assert_eq!(fmt_num(-1.0), "-1");
    }
}
