//! Delivery across a restart and a stop (issue 22, items 4 and 5): events owed to a broker
//! that is away survive the gateway's SIGKILL and come once, in order, after the restart; a
//! command that reaches the gateway while it stops is answered.
//!
//! The gateway runs as a process of its own (signals); mosquitto is needed (it is killed and
//! restarted, and its log says what it delivered).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::broker::{Subscriber, TestBroker};
use common::gateway::{BASE, Sim, feeds_read_after, last_request, wait_polls, wait_until_or};
use common::process::{client_id, exit_within, signal, spawn};
use prusa_connect_sim::{Fault, FaultRule, PrinterSpec};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);
const BURST: usize = 30;

fn topic(rest: &str) -> String {
    format!("{BASE}/{rest}")
}

/// The `seq` of each burst event seen, in arrival order.
fn burst_seqs(sub: &Subscriber) -> Vec<u64> {
    sub.on(&topic("mk4/event"))
        .iter()
        .filter(|m| m.json()["marker"] == "burst")
        .filter_map(|m| m.json()["seq"].as_u64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_owed_when_the_gateway_is_killed_with_the_broker_down_come_once_after_restart() {
    let Some(mut broker) = TestBroker::start_stoppable("") else {
        eprintln!("skipped: needs mosquitto (the embedded broker cannot be killed)");
        return;
    };
    let sim = Sim::start().await;
    let uuid = sim.sim.add_printer(PrinterSpec::named("MK4"));
    sim.sim.start_job(&uuid, "cube.bgcode", 3600, &[]);
    let dir = tempfile::tempdir().unwrap();
    let log = || std::fs::read_to_string(dir.path().join("gateway.log")).unwrap_or_default();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let mut gateway = spawn(&broker, &sim, dir.path(), &[]);
    sub.wait_for(&topic("mk4/state"), WAIT, |m| {
        m.json()["state"] == "PRINTING"
    })
    .await;
    sub.wait_for(&topic("mk4/availability"), WAIT, |m| m.text() == "online")
        .await;

    // The broker goes away; meanwhile the feed gets a burst of events and the job ends.
    broker.stop();
    let mark = last_request(&sim);
    for seq in 0..BURST {
        sim.sim
            .push_event(&uuid, "TEST_EVENT", json!({"marker": "burst", "seq": seq}));
    }
    sim.sim.finish_job(&uuid, "FIN_ERROR");
    let jobs_path = format!("/app/printers/{uuid}/jobs");
    wait_until_or(
        || {
            feeds_read_after(&sim, mark, &[&uuid])
                && sim
                    .sim
                    .requests()
                    .iter()
                    .any(|r| r.seq > mark && r.path == jobs_path)
        },
        || {
            format!(
                "the feed and the job list were not read; the gateway's log:\n{}",
                log()
            )
        },
    )
    .await;
    // The polls after those reads saved the cursors past the events (every poll saves).
    wait_polls(&sim, 3).await;
    signal(&gateway, "-KILL");
    exit_within(&mut gateway, Duration::from_secs(5)).await;

    broker.restart();
    let fresh = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let mut gateway = spawn(&broker, &sim, dir.path(), &[]);
    wait_until_or(
        || burst_seqs(&fresh).len() >= BURST && !fresh.on(&topic("mk4/job/finished")).is_empty(),
        || {
            format!(
                "after the restart: burst events {:?}, job ends {}; the gateway's log:\n{}",
                burst_seqs(&fresh),
                fresh.on(&topic("mk4/job/finished")).len(),
                log()
            )
        },
    )
    .await;
    // Something newer, read after the restart: whatever came twice would come before it.
    sim.sim
        .push_event(&uuid, "TEST_EVENT", json!({"marker": "after"}));
    sim.sim.set_state(&uuid, "IDLE");
    fresh
        .wait_for(&topic("mk4/event"), WAIT, |m| m.json()["marker"] == "after")
        .await;

    assert_eq!(burst_seqs(&fresh), (0..BURST as u64).collect::<Vec<_>>());
    let ends = fresh.on(&topic("mk4/job/finished"));
    assert_eq!(ends.len(), 1, "one job end: {ends:?}");
    assert_eq!(ends[0].json()["event_type"], "FIN_ERROR");
    let failed: Vec<String> = fresh
        .on(&topic("mk4/trigger"))
        .iter()
        .map(|m| m.text())
        .filter(|t| t == "print_failed")
        .collect();
    assert_eq!(failed.len(), 1, "the device trigger too, once");
    // The kept events went before the newer one.
    let events: Vec<String> = fresh
        .on(&topic("mk4/event"))
        .iter()
        .map(|m| m.json()["marker"].to_string())
        .collect();
    let after = events.iter().position(|m| m == "\"after\"");
    let last_kept = events.iter().rposition(|m| m == "\"burst\"");
    assert!(after > last_kept, "{events:?}");
    signal(&gateway, "-TERM");
    assert!(
        exit_within(&mut gateway, Duration::from_secs(5))
            .await
            .success()
    );
}

/// How many messages on `topic` mosquitto's log says it sent to the gateway.
fn sent_to_gateway(broker: &TestBroker, topic: &str) -> usize {
    let needle = format!("Sending PUBLISH to {} (", client_id());
    let quoted = format!("'{topic}'");
    broker
        .log()
        .lines()
        .filter(|l| l.contains(&needle) && l.contains(&quoted))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_the_gateway_takes_while_it_stops_is_answered() {
    let Some(broker) = TestBroker::start_stoppable("log_type all") else {
        eprintln!("skipped: needs mosquitto (its log says what it delivered)");
        return;
    };
    let sim = Sim::start().await;
    let uuid = sim.sim.add_printer(PrinterSpec::named("MK4"));
    sim.sim.start_job(&uuid, "cube.bgcode", 3600, &[]);
    let dir = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let mut gateway = spawn(&broker, &sim, dir.path(), &[]);
    sub.wait_for(&topic("mk4/state"), WAIT, |m| {
        m.json()["state"] == "PRINTING"
    })
    .await;

    // Connect holds the command a second: the stop begins while it is in hand.
    sim.sim.add_fault(
        FaultRule::new(Fault::Delay(Duration::from_millis(1000))).on_paths_containing("/commands/"),
    );
    let command = topic("mk4/command");
    sub.publish(
        &command,
        r#"{"command": "PAUSE_PRINT", "transaction": "held"}"#,
        false,
    )
    .await;
    wait_until_or(
        || !sim.commands_sent().is_empty(),
        || "the command did not reach Connect".into(),
    )
    .await;
    signal(&gateway, "-TERM");
    // Commands keep coming until the gateway is gone.
    let mut sent = 0;
    while gateway.try_wait().unwrap().is_none() {
        let payload = json!({"command": "BEEP", "transaction": format!("b{sent}")});
        sub.publish(&command, payload.to_string(), false).await;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let status = exit_within(&mut gateway, Duration::from_secs(5)).await;
    assert!(status.success(), "{status:?}");
    sub.wait_for(&topic("bridge/state"), WAIT, |m| m.text() == "offline")
        .await;

    let replies: BTreeMap<String, serde_json::Value> = sub
        .on(&topic("mk4/command/response"))
        .iter()
        .map(|m| (m.json()["transaction"].to_string(), m.json()))
        .collect();
    // Every command the broker handed to the gateway has its reply (the replies come before
    // `offline`, so all are in); those published after the gateway unsubscribed were not taken.
    let taken = sent_to_gateway(&broker, &command);
    println!("{taken} commands taken (the held one included); {sent} sent during the stop");
    assert_eq!(
        replies.len(),
        taken,
        "{taken} commands reached the gateway, {} were answered ({sent} sent during the stop)",
        replies.len()
    );
    let held = &replies["\"held\""];
    assert_eq!(held["status"], "ok", "{held}");
    for (transaction, reply) in &replies {
        if transaction != "\"held\"" {
            assert_eq!(reply["code"], "EXPIRED", "{reply}");
        }
    }
}
