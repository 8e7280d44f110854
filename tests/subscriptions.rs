//! End-to-end: the gateway takes commands again after every reconnect (SPEC Behaviour under
//! faults: "broker gone"; Commands: "Each one gets exactly one reply"), even when the broker
//! died while the gateway was sending it thousands of messages.
//!
//! Written against issue 13 ("Subscriptions silently missing"): the test failed on the code it
//! was written against (the commit message says how).

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::broker::{Subscriber, TestBroker, UNLIMITED};
use common::gate::Gate;
use common::gateway::{
    BASE, Gateway, Sim, config, feeds_read_after, last_request, push_burst, wait_until_or,
};
use prusa_connect_sim::{Fault, FaultRule, PrinterSpec};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);
/// One feed read brings at most 2,000 events: a backlog of thousands needs several printers.
const PRINTERS: [&str; 6] = ["A", "B", "C", "D", "E", "F"];
/// Events per printer. Any three printers' events (4,800) are more than rumqttc's request
/// channel holds (4,096).
const EVENTS_PER_PRINTER: usize = 1600;
/// How long Connect takes over each page (100 events) of a feed until the broker dies: the
/// broker keeps up with the gateway, which waits for Connect rather than for the broker.
const PAGE_DELAY: Duration = Duration::from_millis(10);
/// How long Connect takes over the fleet list that shows every printer's new state: longer
/// than the test takes to make the events, so that one poll sees them all.
const LIST_DELAY: Duration = Duration::from_secs(1);

fn topic(rest: &str) -> String {
    format!("{BASE}/{rest}")
}

/// Sends a `HOME` to printer A and waits (15 s) for its `ok` on the response topic.
async fn command_is_answered(sender: &Subscriber, sub: &Subscriber, transaction: &str, when: &str) {
    let response = topic("printer_a/command/response");
    let payload = json!({"command": "HOME", "transaction": transaction}).to_string();
    sender
        .publish(&topic("printer_a/command"), payload, false)
        .await;
    let reply = || {
        sub.on(&response)
            .into_iter()
            .find(|m| m.json()["transaction"] == transaction)
    };
    wait_until_or(
        || reply().is_some(),
        || {
            format!(
                "a reply to the command sent {when}; replies seen: {:?}",
                sub.on(&response)
                    .iter()
                    .map(|m| m.text())
                    .collect::<Vec<_>>()
            )
        },
    )
    .await;
    let reply = reply().expect("seen").json();
    assert_eq!(
        reply["status"], "ok",
        "reply to the command sent {when}: {reply}"
    );
}

/// How many printers' feeds the gateway started reading (asked for the first page) after
/// request `after`.
fn feed_reads_started_after(sim: &Sim, after: u64) -> usize {
    let requests = sim.sim.requests();
    let started: HashSet<&str> = requests
        .iter()
        .filter(|r| r.seq > after && r.path.ends_with("/events"))
        .filter(|r| r.query.split('&').any(|part| part == "offset=0"))
        .map(|r| r.path.as_str())
        .collect();
    started.len()
}

/// The broker dies (SIGKILL) while the gateway is sending it the events of six printers, 9,600
/// in all, and comes back: a command sent once the gateway is back gets its reply.
///
/// The gateway reaches the broker through a [`Gate`], so that the test decides when it may
/// reconnect: once the gateway has started on two more feeds since the broker died, and has
/// been turned away once more after that. A gateway that reads the printers one after another
/// fills rumqttc's request channel (4,096) with the third printer's events read after the
/// death, and a backoff interval (at least 375 ms) is ample for that read.
///
/// The broker is killed while it is alive and keeping up, not frozen first: a gateway already
/// blocked on a full request channel when the connection drops stays blocked until after the
/// next ConnAck (rumqttc empties the channel without waking the blocked sender), so the
/// subscribe finds room and the defect does not show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_is_answered_after_the_broker_dies_while_the_gateway_sends_thousands_of_events() {
    // Unlimited: mosquitto keeps every event for the test's subscriber, however far behind.
    let Some(mut broker) = TestBroker::start_stoppable(UNLIMITED) else {
        eprintln!("skipped: needs mosquitto (the embedded broker cannot be killed)");
        return;
    };
    let sim = Sim::start().await;
    let uuids: Vec<String> = PRINTERS
        .iter()
        .map(|name| {
            sim.sim
                .add_printer(PrinterSpec::named(&format!("Printer {name}")))
        })
        .collect();
    let uuids: Vec<&str> = uuids.iter().map(String::as_str).collect();
    let gate = Gate::start(broker.port()).await;
    let state_dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&broker, &sim, state_dir.path(), "");
    cfg.mqtt.url = gate.url();
    let gateway = Gateway::start(cfg);
    let response = topic("printer_a/command/response");
    let events = topic("+/event");

    // Every feed read once (the gateway publishes only events that come after its first
    // look), and commands answered.
    let sub = Subscriber::connect(&broker, &[&response, &events]).await;
    let sender = Subscriber::connect(&broker, &[]).await;
    wait_until_or(
        || feeds_read_after(&sim, 0, &uuids),
        || "the gateway to read every printer's feed".into(),
    )
    .await;
    command_is_answered(&sender, &sub, "warm-up", "before the broker died").await;

    // Every printer gets 1,600 events, and the next fleet list shows them all changed.
    sim.sim
        .add_fault(FaultRule::new(Fault::Delay(PAGE_DELAY)).on_paths_containing("/events"));
    sim.sim.add_fault(
        FaultRule::new(Fault::Delay(LIST_DELAY))
            .on_path("/app/printers")
            .times(1),
    );
    let slow_list = || {
        sim.sim
            .requests()
            .into_iter()
            .find(|r| r.path == "/app/printers" && r.fault == Some(Fault::Delay(LIST_DELAY)))
    };
    wait_until_or(
        || slow_list().is_some(),
        || "the gateway to ask for the fleet list".into(),
    )
    .await;
    let before = last_request(&sim);
    for uuid in &uuids {
        push_burst(&sim, uuid, 0..EVENTS_PER_PRINTER, "READY");
    }
    assert_eq!(
        slow_list().and_then(|r| r.status),
        None,
        "the events were made within {LIST_DELAY:?}, while Connect held the fleet list back"
    );

    // The broker dies as soon as the first of those events reaches it.
    wait_until_or(
        || {
            sub.messages()
                .iter()
                .any(|m| m.topic.ends_with("/event") && m.json()["marker"] == "burst")
        },
        || "the gateway to publish the events".into(),
    )
    .await;
    let killed_at = last_request(&sim);
    gate.set_open(false);
    broker.stop();
    sim.sim.set_fault(None);
    drop((sub, sender));
    gate.wait_for("the gateway's connection to drop", WAIT, |t| {
        t.connections == 0
    })
    .await;

    broker.restart();
    let sub = Subscriber::connect(&broker, &[&response, &topic("bridge/state")]).await;
    let sender = Subscriber::connect(&broker, &[]).await;
    wait_until_or(
        || feed_reads_started_after(&sim, killed_at) >= 2 || feeds_read_after(&sim, before, &uuids),
        || {
            format!(
                "the gateway to go on reading feeds after the broker died; {} started since",
                feed_reads_started_after(&sim, killed_at)
            )
        },
    )
    .await;
    let refused = gate.traffic().refused;
    gate.wait_for(
        "the gateway to try to reconnect once more",
        Duration::from_secs(15),
        |t| t.refused > refused,
    )
    .await;
    gate.set_open(true);

    sub.wait_for(&topic("bridge/state"), Duration::from_secs(15), |m| {
        m.text() == "online"
    })
    .await;
    command_is_answered(
        &sender,
        &sub,
        "after-reconnect",
        "after the gateway reconnected (the broker had died while the gateway sent it events)",
    )
    .await;
    gateway.stop().await;
}
