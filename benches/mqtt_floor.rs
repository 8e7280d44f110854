//! The floor under publishing (issue 25): what handing retained QoS 1 messages to the broker
//! costs, per message, with nothing of the gateway around it. Two ways, one after the other,
//! each alone in this process against a private mosquitto:
//! - `rumqttc`: its `AsyncClient` and its event loop polled in a task of its own, as the
//!   gateway's session does. rumqttc writes (and flushes) every request on its own.
//! - `batched`: the same packets, encoded by rumqttc's own `mqttbytes`, written to one TCP
//!   stream once per tick; the PubAcks are read and counted. What a client that gathers its
//!   writes would cost.
//!
//! Messages go at the farm's rate (3,000 a second: 2,000 printers with the live channel) in
//! ticks of 50 ms (the live channel's grid), on 2,000 topics, each with a 700-byte payload
//! (about a `P/state`). CPU is this process's user + system time over the window, after a
//! warm-up. `cargo bench --bench mqtt_floor`; `FLOOR_RATE`, `FLOOR_SECONDS` (60) and
//! `FLOOR_BYTES` change it. Prints a markdown table. It stops by itself.

#[path = "../tests/common/broker.rs"]
mod broker;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use broker::TestBroker;
use bytes::{Bytes, BytesMut};
use rumqttc::{AsyncClient, Connect, Event, MqttOptions, Packet, Publish, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TICK: Duration = Duration::from_millis(50);
const WARM_UP: Duration = Duration::from_secs(10);
const TOPICS: usize = 2000;
const MAX_PACKET: usize = 1 << 20;

struct Load {
    per_tick: usize,
    window: Duration,
    topics: Vec<String>,
    payload: Bytes,
}

struct Row {
    way: &'static str,
    sent: u64,
    acked: u64,
    seconds: f64,
    cpu_seconds: f64,
}

fn main() {
    let env = |name: &str, default: u64| -> u64 {
        std::env::var(name)
            .ok()
            .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: a number")))
            .unwrap_or(default)
    };
    let rate = env("FLOOR_RATE", 3000).max(20);
    let load = Load {
        per_tick: (rate as f64 * TICK.as_secs_f64()).round() as usize,
        window: Duration::from_secs(env("FLOOR_SECONDS", 60).max(5)),
        topics: (0..TOPICS)
            .map(|i| format!("prusa_connect/farm-{i:04}/state"))
            .collect(),
        payload: Bytes::from(vec![b'x'; env("FLOOR_BYTES", 700) as usize]),
    };
    let broker = TestBroker::start_mosquitto()
        .expect("the floor bench needs mosquitto (the broker the farm bench uses)");
    let mut rows = Vec::new();
    for way in ["rumqttc", "batched"] {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let row = rt.block_on(async {
            match way {
                "rumqttc" => via_rumqttc(broker.port(), &load).await,
                _ => batched(broker.port(), &load).await,
            }
        });
        eprintln!("{way} done");
        rows.push(row);
    }
    println!(
        "{} messages/s of {} bytes, retained, QoS 1, {} topics, in ticks of {} ms\n",
        load.per_tick as f64 / TICK.as_secs_f64(),
        load.payload.len(),
        TOPICS,
        TICK.as_millis()
    );
    println!(
        "| way | messages/s acknowledged | CPU, % of a core | µs a message |\n|---|---|---|---|"
    );
    for r in rows {
        assert!(
            r.acked + 2 * load.per_tick as u64 >= r.sent,
            "{}: {} sent, only {} acknowledged",
            r.way,
            r.sent,
            r.acked
        );
        println!(
            "| {} | {:.0} | {:.2} % | {:.1} |",
            r.way,
            r.acked as f64 / r.seconds,
            r.cpu_seconds / r.seconds * 100.0,
            r.cpu_seconds * 1e6 / r.acked.max(1) as f64
        );
    }
}

/// Sends a tick's messages every tick through `send` for the warm-up and the window, and
/// measures the window.
async fn run<F, Fut>(way: &'static str, load: &Load, acked: &AtomicU64, mut send: F) -> Row
where
    F: FnMut(std::ops::Range<usize>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let start = Instant::now();
    let mut next = 0usize;
    let mut sent = 0u64;
    let mut window: Option<(Instant, f64, u64, u64)> = None;
    while start.elapsed() < WARM_UP + load.window {
        ticks.tick().await;
        if window.is_none() && start.elapsed() >= WARM_UP {
            window = Some((
                Instant::now(),
                cpu_seconds(),
                sent,
                acked.load(Ordering::Relaxed),
            ));
        }
        send(next..next + load.per_tick).await;
        next += load.per_tick;
        sent += load.per_tick as u64;
    }
    let (from, cpu, sent_before, acked_before) = window.expect("a window");
    // The last tick's acknowledgements, within a deadline.
    let deadline = Instant::now() + Duration::from_secs(5);
    while acked.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Row {
        way,
        sent: sent - sent_before,
        acked: acked.load(Ordering::Relaxed) - acked_before,
        seconds: from.elapsed().as_secs_f64(),
        cpu_seconds: cpu_seconds() - cpu,
    }
}

async fn via_rumqttc(port: u16, load: &Load) -> Row {
    let mut opts = MqttOptions::new("floor-rumqttc", "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    let (client, mut eventloop) = AsyncClient::new(opts, 256);
    eventloop.set_network_options(prusa_connect_mqtt::mqtt::low_latency());
    let acked = Arc::new(AtomicU64::new(0));
    let counted = acked.clone();
    let poller = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => panic!("rumqttc: {e}"),
            }
        }
    });
    let row = run("rumqttc", load, &acked, |range| {
        let client = client.clone();
        async move {
            for i in range {
                let topic = load.topics[i % TOPICS].clone();
                client
                    .publish(topic, QoS::AtLeastOnce, true, load.payload.to_vec())
                    .await
                    .expect("rumqttc takes the publish");
            }
        }
    })
    .await;
    poller.abort();
    row
}

async fn batched(port: u16, load: &Load) -> Row {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let mut out = BytesMut::new();
    let mut connect = Connect::new("floor-batched");
    connect.keep_alive = 30;
    connect.write(&mut out).unwrap();
    writer.write_all(&out).await.unwrap();
    let acked = Arc::new(AtomicU64::new(0));
    let counted = acked.clone();
    let (connected_tx, connected) = tokio::sync::oneshot::channel();
    let reading = tokio::spawn(async move {
        let mut connected_tx = Some(connected_tx);
        let mut incoming = BytesMut::with_capacity(64 * 1024);
        loop {
            match reader.read_buf(&mut incoming).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            loop {
                match Packet::read(&mut incoming, MAX_PACKET) {
                    Ok(Packet::PubAck(_)) => {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Packet::ConnAck(_)) => {
                        if let Some(tx) = connected_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(rumqttc::Error::InsufficientBytes(_)) => break,
                    Err(e) => panic!("the broker sent what cannot be read: {e}"),
                }
            }
        }
    });
    connected.await.expect("mosquitto answers CONNECT");
    let writer = tokio::sync::Mutex::new(writer);
    let out = tokio::sync::Mutex::new(out);
    let pkid = std::cell::Cell::new(0u16);
    let row = run("batched", load, &acked, |range| {
        let (writer, out, pkid) = (&writer, &out, &pkid);
        async move {
            let mut out = out.lock().await;
            out.clear();
            for i in range {
                let mut publish = Publish::from_bytes(
                    load.topics[i % TOPICS].clone(),
                    QoS::AtLeastOnce,
                    load.payload.clone(),
                );
                publish.retain = true;
                pkid.set(pkid.get().wrapping_add(1).max(1));
                publish.pkid = pkid.get();
                publish.write(&mut out).unwrap();
            }
            writer.lock().await.write_all(&out).await.unwrap();
        }
    })
    .await;
    reading.abort();
    row
}

/// This process's user + system time.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the whole line; 12 and 13 after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}
