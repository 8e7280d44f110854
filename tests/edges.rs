//! End-to-end checks of issue 22's edges that a user hits with an ordinary setup: a printer
//! called "Bridge", and a printer missing from Connect's list for a few seconds while
//! commands come.

mod common;

use std::time::Duration;

use common::broker::{Subscriber, TestBroker};
use common::gateway::{BASE, Gateway, Sim, config, list_polls, wait_polls, wait_until_or};
use prusa_connect_sim::PrinterSpec;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

fn topic(rest: &str) -> String {
    format!("{BASE}/{rest}")
}

fn discovery_topic(uuid: &str) -> String {
    format!("homeassistant/device/prusa_connect_{uuid}/config")
}

async fn command(sub: &Subscriber, id: &str, body: Value) -> Value {
    let transaction = body["transaction"].clone();
    sub.publish(&topic(&format!("{id}/command")), body.to_string(), false)
        .await;
    sub.wait_for(&topic(&format!("{id}/command/response")), WAIT, |m| {
        m.json()["transaction"] == transaction
    })
    .await
    .json()
}

/// Item 2: a printer named "Bridge" publishes under `bridge_<uuid tail>`; the bridge's own
/// `B/bridge/state`, which every entity's availability reads, only ever says `online`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_printer_named_bridge_leaves_the_bridges_topics_alone() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    sim.sim.add_printer(PrinterSpec {
        uuid: Some("b0000000-0000-4000-8000-0000000b41d9".into()),
        ..PrinterSpec::named("Bridge")
    });
    let state_dir = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&topic("#")]).await;
    let gateway = Gateway::start(config(&broker, &sim, state_dir.path(), ""));
    sub.wait_for(&topic("bridge_0b41d9/availability"), WAIT, |m| {
        m.text() == "online"
    })
    .await;
    sub.wait_for(&topic("bridge_0b41d9/state"), WAIT, |m| {
        m.json()["state"] == "IDLE"
    })
    .await;
    gateway.stop().await;
    let bridge_state: Vec<String> = sub
        .on(&topic("bridge/state"))
        .iter()
        .map(|m| m.text())
        .collect();
    assert!(
        bridge_state.iter().all(|t| t == "online" || t == "offline") && !bridge_state.is_empty(),
        "{bridge_state:?}"
    );
    assert!(sub.on(&topic("bridge/availability")).is_empty());
}

/// Item 3: a printer missing from the list for a second or two, while commands make the
/// polls come fast, keeps its discovery and topics; a command to it meanwhile is answered as
/// for an offline printer, and once it is back its commands run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_printer_missing_for_a_few_polls_keeps_its_device() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let a = sim.sim.add_printer(PrinterSpec::named("Left"));
    sim.sim.add_printer(PrinterSpec::named("Right"));
    let state_dir = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&topic("#"), "homeassistant/#"]).await;
    let mut cfg = config(&broker, &sim, state_dir.path(), "");
    // Removal needs two poll intervals: 10 s, far beyond the gap below.
    cfg.connect.poll_interval = Duration::from_secs(5);
    let gateway = Gateway::start(cfg);
    sub.wait_for(&discovery_topic(&a), WAIT, |m| !m.payload.is_empty())
        .await;
    sub.wait_for(&topic("left/availability"), WAIT, |m| m.text() == "online")
        .await;
    // A command makes the polls come fast (active_poll_interval, 150 ms).
    let reply = command(
        &sub,
        "right",
        json!({"command": "BEEP", "transaction": "t1"}),
    )
    .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    sim.sim.hide_printer(&a, true);
    let hidden_at = list_polls(&sim);
    wait_until_or(
        || list_polls(&sim) >= hidden_at + 5,
        || "five list polls without the printer".into(),
    )
    .await;
    let reply = command(
        &sub,
        "left",
        json!({"command": "BEEP", "transaction": "t2"}),
    )
    .await;
    assert_eq!(reply["code"], "PRINTER_STATE", "{reply}");
    sim.sim.hide_printer(&a, false);
    wait_polls(&sim, 2).await;
    let reply = command(
        &sub,
        "left",
        json!({"command": "BEEP", "transaction": "t3"}),
    )
    .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    gateway.stop().await;
    let cleared: Vec<String> = sub
        .messages()
        .iter()
        .filter(|m| m.payload.is_empty())
        .map(|m| m.topic.clone())
        .collect();
    assert!(cleared.is_empty(), "cleared: {cleared:?}");
}

/// Item 15: Home Assistant's birth message repeated (a client looping on it) republishes
/// everything once at once and once more at the end of a 10 s window, not once per birth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_births_are_coalesced() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    sim.sim.add_printer(PrinterSpec::named("Left"));
    let state_dir = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&topic("left/availability")]).await;
    let gateway = Gateway::start(config(&broker, &sim, state_dir.path(), ""));
    sub.wait_for(&topic("left/availability"), WAIT, |m| m.text() == "online")
        .await;
    let mark = sub.mark();
    let republished = || {
        sub.messages_since(mark)
            .iter()
            .filter(|m| m.text() == "online")
            .count()
    };
    sub.publish("homeassistant/status", "online", false).await;
    wait_until_or(
        || republished() >= 1,
        || "the first birth's republish".into(),
    )
    .await;
    // Four more births, a fifth of a second apart (each one was a republish before).
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        sub.publish("homeassistant/status", "online", false).await;
    }
    // The coalesced one comes at the window's end (10 s after the first).
    tokio::time::timeout(Duration::from_secs(15), async {
        while republished() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the coalesced republish within 15 s");
    assert_eq!(republished(), 2);
    gateway.stop().await;
}
