//! End-to-end: a flood on MQTT is never a flood on Connect. Per printer at most
//! `commands.max_per_second` (default 2, burst 5) commands reach Connect; a newer value of a
//! setting replaces one still waiting; every message gets exactly one reply.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::broker::{Subscriber, TestBroker};
use common::gateway::{BASE, Gateway, Sim, config, wait_until_or};
use prusa_connect_sim::PrinterSpec;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);
/// The defaults, spelled out (the other tests turn the limit off).
const DEFAULT_LIMIT: &str = "[commands]\nmax_per_second = 2\nburst = 5";

fn replies(sub: &Subscriber) -> BTreeMap<String, Vec<Value>> {
    let mut by = BTreeMap::<String, Vec<Value>>::new();
    for m in sub.on(&format!("{BASE}/flood_mk4/command/response")) {
        let reply = m.json();
        let t = reply["transaction"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        by.entry(t).or_default().push(reply);
    }
    by
}

/// The commands Connect received, with when they arrived.
fn sent(sim: &Sim) -> Vec<(Duration, Value)> {
    sim.sim
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/commands/sync"))
        .map(|r| (r.at, serde_json::from_str(&r.body).unwrap_or(Value::Null)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_commands_in_a_second_reach_connect_at_the_limit_and_each_gets_one_reply() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    sim.sim.add_printer(PrinterSpec::named("Flood MK4"));
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let gateway = Gateway::start(config(&broker, &sim, state.path(), DEFAULT_LIMIT));
    sub.wait_for(&format!("{BASE}/flood_mk4/state"), WAIT, |_| true)
        .await;

    // A Node-RED loop gone wrong: 1,000 moves, as fast as they can be published.
    for i in 0..1000 {
        let payload = format!(
            r#"{{"command":"MOVE","kwargs":{{"x":1,"feedrate":3000}},"transaction":"t{i}"}}"#
        );
        sub.publish(&format!("{BASE}/flood_mk4/command"), payload, false)
            .await;
    }
    wait_until_or(
        || replies(&sub).len() == 1000,
        || format!("{} of 1000 answered", replies(&sub).len()),
    )
    .await;
    let by = replies(&sub);
    let twice: Vec<&String> = by
        .iter()
        .filter(|(_, r)| r.len() != 1)
        .map(|(t, _)| t)
        .collect();
    assert!(twice.is_empty(), "more than one reply: {twice:?}");
    let ok = by.values().filter(|r| r[0]["status"] == "ok").count();
    let limited = by
        .values()
        .filter(|r| r[0]["code"] == "RATE_LIMITED")
        .count();
    assert_eq!(ok + limited, 1000, "only ok or RATE_LIMITED");
    let commands = sent(&sim);
    assert_eq!(
        commands.len(),
        ok,
        "every ok went to Connect, nothing else did"
    );
    // The bucket starts full: the first five are sent, not refused.
    for i in 0..5 {
        assert_eq!(by[&format!("t{i}")][0]["status"], "ok", "t{i}");
    }
    // Between any two commands Connect received, at most the burst plus the rate over the
    // time between them (one more for the time a request takes to arrive), however long
    // the flood took to publish.
    for (i, (first, _)) in commands.iter().enumerate() {
        for (j, (last, _)) in commands.iter().enumerate().skip(i) {
            let allowed = 5.0 + 2.0 * (*last - *first).as_secs_f64() + 1.0;
            assert!(
                ((j - i + 1) as f64) <= allowed,
                "commands {i}..={j} of {} reached Connect within {:?}",
                commands.len(),
                *last - *first
            );
        }
    }
    // The flood outran the limit: most messages were answered at once, not sent.
    assert!(limited > ok, "{ok} sent, {limited} answered RATE_LIMITED");
    let refused = by
        .values()
        .find(|r| r[0]["code"] == "RATE_LIMITED")
        .unwrap();
    assert!(
        refused[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("max_per_second")),
        "{}",
        refused[0]
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_value_of_a_setting_wins_over_the_ones_still_waiting() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let uuid = sim.sim.add_printer(PrinterSpec::named("Flood MK4"));
    sim.sim.start_job(&uuid, "cube.bgcode", 600, &[]);
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    // A burst of one: the first value goes at once, the next wait half a second.
    let limit = "[commands]\nmax_per_second = 2\nburst = 1\nallow = [\"SET_SPEED\"]";
    let gateway = Gateway::start(config(&broker, &sim, state.path(), limit));
    sub.wait_for(&format!("{BASE}/flood_mk4/state"), WAIT, |m| {
        m.json()["state"] == "PRINTING"
    })
    .await;
    // A speed slider dragged from 50 to 90 %.
    let topic = format!("{BASE}/flood_mk4/command");
    for speed in [50, 60, 70, 80, 90] {
        let payload = format!(
            r#"{{"command":"SET_SPEED","kwargs":{{"speed":{speed}}},"transaction":"s{speed}"}}"#
        );
        sub.publish(&topic, payload, false).await;
    }
    wait_until_or(
        || replies(&sub).len() == 5,
        || format!("{:?}", replies(&sub)),
    )
    .await;
    let by = replies(&sub);
    assert_eq!(by["s50"][0]["status"], "ok", "{:?}", by["s50"]);
    assert_eq!(by["s90"][0]["status"], "ok", "{:?}", by["s90"]);
    for t in ["s60", "s70", "s80"] {
        assert_eq!(by[t].len(), 1, "{t}: {:?}", by[t]);
        assert_eq!(by[t][0]["code"], "RATE_LIMITED", "{t}: {:?}", by[t]);
        assert!(
            by[t][0]["error"]
                .as_str()
                .is_some_and(|e| e.contains("newer value")),
            "{:?}",
            by[t]
        );
    }
    let speeds: Vec<Value> = sent(&sim)
        .into_iter()
        .map(|(_, c)| c["kwargs"]["speed"].clone())
        .collect();
    assert_eq!(
        speeds,
        [Value::from(50), Value::from(90)],
        "only the first and the last value reached Connect"
    );
    sub.wait_for(&format!("{BASE}/flood_mk4/state"), WAIT, |m| {
        m.json()["speed"] == 90.0
    })
    .await;
    gateway.stop().await;
}
