//! End-to-end: the simulated Connect over HTTP, a private broker over TCP, and the gateway
//! between them; assertions on what a subscriber sees.

mod common;

use std::time::Duration;

use common::broker::{Subscriber, TestBroker};
use common::gateway::{
    BASE, Gateway, Sim, config, last_request, list_polls, wait_polls, wait_until, wait_until_or,
};
use prusa_connect_sim::{PrinterSpec, RecordedRequest};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

fn spec(name: &str) -> PrinterSpec {
    PrinterSpec::named(name)
}

fn created(v: &Value) -> f64 {
    v["created"].as_f64().expect("event has created")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn print_fails_printer_goes_offline_restart_replays_nothing_deleted_printer_is_removed() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let busy = sim.sim.add_printer(spec("Busy MK4"));
    let other = sim.sim.add_printer(spec("Core One"));
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#"), "homeassistant/#"]).await;

    let gateway = Gateway::start(config(&broker, &sim, state.path(), ""));
    sub.wait_for(&format!("{BASE}/bridge/state"), WAIT, |m| {
        m.text() == "online"
    })
    .await;
    sub.wait_for(&format!("{BASE}/busy_mk4/state"), WAIT, |m| {
        m.json()["state"] == "IDLE"
    })
    .await;
    sub.wait_for(&format!("{BASE}/busy_mk4/availability"), WAIT, |m| {
        m.text() == "online"
    })
    .await;
    let other_avail = format!("{BASE}/core_one/availability");
    sub.wait_for(&other_avail, WAIT, |m| m.text() == "online")
        .await;
    // The gateway has set its feed cursor: everything from here on must be published.
    let t0 = prusa_connect_mqtt::payloads::now_unix();

    // idle -> printing
    let job_id = sim
        .sim
        .start_job(&busy, "cube.bgcode", 600, &["Cube A", "Cube B"]);
    let s = sub
        .wait_for(&format!("{BASE}/busy_mk4/state"), WAIT, |m| {
            m.json()["state"] == "PRINTING"
        })
        .await;
    assert!(s.retain || sub.on(&format!("{BASE}/busy_mk4/state")).len() > 1);
    let job = sub
        .wait_for(&format!("{BASE}/busy_mk4/job"), WAIT, |m| {
            m.json()["id"] == job_id
                && m.json()["cancelable_objects"]
                    .as_array()
                    .is_some_and(|a| a.len() == 2)
        })
        .await
        .json();
    assert_eq!(job["state"], "PRINTING");
    assert_eq!(job["cancelable_objects"][1]["name"], "Cube B");

    sim.sim.set_progress(&busy, 40.0);
    let s = sub
        .wait_for(&format!("{BASE}/busy_mk4/state"), WAIT, |m| {
            m.json()["progress"] == 40.0
        })
        .await
        .json();
    assert_eq!(s["job_id"], job_id);
    assert!(s["time_remaining"].as_i64().is_some(), "{s}");
    assert!(s["eta"].as_str().is_some(), "{s}");

    // printing -> FIN_ERROR
    sim.sim.finish_job(&busy, "FIN_ERROR");
    let finished = sub
        .wait_for(&format!("{BASE}/busy_mk4/job/finished"), WAIT, |_| true)
        .await;
    assert!(!finished.retain, "job/finished is not retained");
    let f = finished.json();
    assert_eq!(f["event_type"], "FIN_ERROR");
    assert_eq!(f["job_id"], job_id);
    // What the job's record says of it (the simulator's records carry weight and cost).
    assert!(f["filament_g"].as_f64().is_some_and(|g| g > 0.0), "{f}");
    assert!(f["cost"].as_f64().is_some_and(|c| c > 0.0), "{f}");
    assert!(f["material"].as_str().is_some(), "{f}");
    assert_eq!(f["layer_height"], 0.2);
    assert_eq!(f["duration_s"], f["duration"]);
    assert!(
        f["file"]["path"]
            .as_str()
            .is_some_and(|p| p.starts_with('/')),
        "{f}"
    );
    sub.wait_for(&format!("{BASE}/busy_mk4/job"), WAIT, |m| {
        m.json()["state"] == "FIN_ERROR"
    })
    .await;
    // Counted in the printer's totals (retained) from that payload, and in the fleet's.
    let stats = sub
        .wait_for(&format!("{BASE}/busy_mk4/stats"), WAIT, |m| {
            m.json()["failed"] == 1
        })
        .await;
    let stats = stats.json();
    // Retained: a subscriber that comes later gets it.
    let later = Subscriber::connect(&broker, &[&format!("{BASE}/busy_mk4/stats")]).await;
    let kept = later
        .wait_for(&format!("{BASE}/busy_mk4/stats"), WAIT, |m| m.retain)
        .await;
    assert_eq!(kept.json(), stats);
    assert_eq!(
        (stats["jobs"].clone(), stats["ok"].clone()),
        (json!(1), json!(0))
    );
    assert_eq!(stats["filament_g"], f["filament_g"]);
    assert_eq!(stats["cost"], f["cost"]);
    assert_eq!(stats["print_s"], f["duration_s"]);
    let material = f["material"].as_str().unwrap_or_default();
    assert_eq!(stats["filament_by_material"][material], f["filament_g"]);
    assert_eq!(stats["success_rate"], 0.0);
    assert_eq!(stats["last_outcome"], "FIN_ERROR");
    sub.wait_for(&format!("{BASE}/bridge/stats"), WAIT, |m| {
        m.json()["failed"] == 1 && m.json()["filament_g"] == f["filament_g"]
    })
    .await;

    // A second printer goes OFFLINE.
    sim.sim.set_online(&other, false);
    sub.wait_for(&other_avail, WAIT, |m| m.text() == "offline")
        .await;
    sub.wait_for(&format!("{BASE}/core_one/state"), WAIT, |m| {
        m.json()["state"] == "OFFLINE"
    })
    .await;

    // A later change shows the gateway kept polling; still only one job/finished.
    sim.sim.set_temps(&busy, 99.0, 42.0);
    sub.wait_for(&format!("{BASE}/busy_mk4/state"), WAIT, |m| {
        m.json()["temp_nozzle"] == 99.0
    })
    .await;
    assert_eq!(sub.on(&format!("{BASE}/busy_mk4/job/finished")).len(), 1);

    // Every feed event created since t0, once each and in order.
    let event_topic = format!("{BASE}/busy_mk4/event");
    let before_restart = assert_feed_published(&sim, &sub, &busy, &event_topic, t0).await;
    assert!(before_restart >= 3, "the simulator produced events");

    // Restart: nothing is replayed, a new event is published once.
    gateway.stop().await;
    sub.wait_for(&format!("{BASE}/bridge/state"), WAIT, |m| {
        m.text() == "offline"
    })
    .await;
    sim.sim.set_state(&busy, "IDLE");
    let gateway = Gateway::start(config(&broker, &sim, state.path(), ""));
    sub.wait_for(&format!("{BASE}/busy_mk4/state"), WAIT, |m| {
        m.json()["state"] == "IDLE"
    })
    .await;
    let after_restart = assert_feed_published(&sim, &sub, &busy, &event_topic, t0).await;
    assert!(
        after_restart > before_restart,
        "the event made while stopped is published"
    );
    assert_eq!(
        sub.on(&format!("{BASE}/busy_mk4/job/finished")).len(),
        1,
        "the end is not announced again"
    );
    // Nor counted again: every P/stats since the first says one failed job.
    assert!(
        sub.on(&format!("{BASE}/busy_mk4/stats"))
            .iter()
            .all(|m| m.json()["failed"].as_u64() <= Some(1) && m.json()["jobs"].as_u64() <= Some(1)),
        "{:?}",
        sub.on(&format!("{BASE}/busy_mk4/stats")).iter().map(|m| m.text()).collect::<Vec<_>>()
    );

    // A printer deleted from the account loses its discovery and retained topics.
    let polls_before = list_polls(&sim);
    sim.sim.remove_printer(&other);
    let discovery = format!("homeassistant/device/prusa_connect_{other}/config");
    sub.wait_for(&discovery, WAIT, |m| m.payload.is_empty())
        .await;
    let polls = list_polls(&sim) - polls_before;
    assert!(
        polls >= 3,
        "removed after {polls} polls without it; a glitch must not wipe it"
    );
    sub.wait_for(&format!("{BASE}/core_one/state"), WAIT, |m| {
        m.payload.is_empty()
    })
    .await;
    let info = sub
        .wait_for(&format!("{BASE}/bridge/info"), WAIT, |m| {
            m.json()["printers"]
                .as_array()
                .is_some_and(|p| p.len() == 1)
        })
        .await
        .json();
    assert_eq!(info["printers"][0]["uuid"], busy);
    assert_eq!(info["connect"]["reachable"], true);
    gateway.stop().await;
}

/// Asserts that the events on `topic` are exactly the simulator's feed events created after
/// `t0`, once each and in order; returns how many there are.
async fn assert_feed_published(
    sim: &Sim,
    sub: &Subscriber,
    uuid: &str,
    topic: &str,
    t0: f64,
) -> usize {
    let expected: Vec<f64> = sim
        .feed(uuid)
        .await
        .iter()
        .map(created)
        .filter(|c| *c > t0)
        .collect();
    wait_until_or(
        || sub.on(topic).len() >= expected.len(),
        || {
            format!(
                "expected {expected:?}\npublished {:?}",
                sub.on(topic).iter().map(|m| m.text()).collect::<Vec<_>>()
            )
        },
    )
    .await;
    let published: Vec<f64> = sub.on(topic).iter().map(|m| created(&m.json())).collect();
    assert_eq!(
        published, expected,
        "every feed event once, in order, none replayed"
    );
    expected.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_birth_and_broker_restart_republish_everything() {
    let mut broker = TestBroker::start();
    let sim = Sim::start().await;
    let uuid = sim.sim.add_printer(spec("Busy MK4"));
    let state = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(config(&broker, &sim, state.path(), ""));
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#"), "homeassistant/#"]).await;
    let discovery = format!("homeassistant/device/prusa_connect_{uuid}/config");
    let first = sub
        .wait_for(&discovery, WAIT, |m| !m.payload.is_empty())
        .await
        .payload
        .clone();
    sub.wait_for(&format!("{BASE}/busy_mk4/state"), WAIT, |m| {
        m.json()["state"] == "IDLE"
    })
    .await;

    // Home Assistant restarts: its birth message brings discovery and state back. The gateway
    // does not keep discovery once sent: it renders the same again.
    let before = sub.on(&discovery).len();
    sub.publish("homeassistant/status", "online", false).await;
    wait_until(|| sub.on(&discovery).len() > before).await;
    assert_eq!(sub.on(&discovery).last().unwrap().payload, first);

    // The broker restarts without persistence: every retained topic comes back.
    if broker.is_mosquitto() {
        broker.stop();
        broker.restart();
        let fresh = Subscriber::connect(&broker, &[&format!("{BASE}/#"), "homeassistant/#"]).await;
        let again = fresh
            .wait_for(&discovery, WAIT, |m| !m.payload.is_empty())
            .await;
        assert_eq!(again.payload, first, "the same discovery after the restart");
        for topic in [
            format!("{BASE}/bridge/state"),
            format!("{BASE}/bridge/info"),
            format!("{BASE}/busy_mk4/state"),
            format!("{BASE}/busy_mk4/availability"),
        ] {
            fresh
                .wait_for(&topic, WAIT, |m| !m.payload.is_empty())
                .await;
        }
        assert_eq!(
            fresh
                .wait_for(&format!("{BASE}/bridge/state"), WAIT, |_| true)
                .await
                .text(),
            "online"
        );
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_printer_idle_fleet_costs_one_request_per_tick() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    for i in 0..50 {
        sim.sim.add_printer(spec(&format!("Farm {i:03}")));
    }
    let state = tempfile::tempdir().unwrap();
    let info = format!("{BASE}/bridge/info");
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/+/availability"), &info]).await;
    let gateway = Gateway::start(config(&broker, &sim, state.path(), ""));
    // Start-up is over when every printer is published, its start-up reads (spread over the
    // first polls by the request budget) are all back, and Connect has answered every request
    // the gateway made.
    for i in 0..50 {
        sub.wait_for(&format!("{BASE}/farm_{i:03}/availability"), WAIT, |m| {
            m.text() == "online"
        })
        .await;
    }
    sub.wait_for(&info, WAIT, |m| m.json()["known"] == "50/50")
        .await;
    wait_until(|| sim.sim.requests().iter().all(|r| r.status.is_some())).await;
    let from = last_request(&sim);
    // The first tick after that may still act on those answers (a camera's first picture):
    // the five after it are the idle fleet's.
    wait_until(|| ticks_after(&sim, from).len() >= 6).await;
    let ticks = &ticks_after(&sim, from)[1..6];
    let requests: usize = ticks.iter().map(Vec::len).sum();
    assert_eq!(
        requests,
        ticks.len(),
        "one request per tick while idle, the list: {:?}",
        ticks
            .iter()
            .map(|t| t.iter().map(|r| r.path.as_str()).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );
    gateway.stop().await;
}

/// The requests after request `after`, one group per poll: a list request and the requests
/// that came after it and before the next one. Only polls followed by another one (complete).
fn ticks_after(sim: &Sim, after: u64) -> Vec<Vec<RecordedRequest>> {
    let mut ticks: Vec<Vec<RecordedRequest>> = Vec::new();
    for r in sim.sim.requests().into_iter().filter(|r| r.seq > after) {
        if r.path == "/app/printers" {
            ticks.push(vec![r]);
        } else if let Some(tick) = ticks.last_mut() {
            tick.push(r);
        }
    }
    ticks.pop();
    ticks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_flushes_everything_and_clear_mode_leaves_nothing_retained() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    for name in ["Busy MK4", "Core One", "MINI"] {
        sim.sim.add_printer(spec(name));
    }
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(prusa_connect_mqtt::run_with(
        config(&broker, &sim, state.path(), ""),
        stop.clone().cancelled_owned(),
        true,
    ));
    sub.wait_for(&format!("{BASE}/bridge/info"), WAIT, |m| {
        m.json()["printers"]
            .as_array()
            .is_some_and(|p| p.len() == 3)
    })
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
    // Everything cleared before the disconnect reached the broker: a new subscriber gets
    // no retained message at all (it would get discovery and state within milliseconds).
    let probe = Subscriber::connect(&broker, &["#"]).await;
    probe.publish("probe/done", "x", false).await;
    probe.wait_for("probe/done", WAIT, |_| true).await;
    let left: Vec<String> = probe
        .messages()
        .iter()
        .filter(|m| m.retain)
        .map(|m| m.topic.clone())
        .collect();
    assert!(left.is_empty(), "retained topics left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_values_are_not_republished_and_a_connect_outage_marks_printers_offline() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    sim.sim.add_printer(spec("Busy MK4"));
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let gateway = Gateway::start(config(&broker, &sim, state.path(), ""));
    let avail = format!("{BASE}/busy_mk4/availability");
    let info = format!("{BASE}/bridge/info");
    sub.wait_for(&avail, WAIT, |m| m.text() == "online").await;
    // `known` counts the start-up reads: under load the last may come back after the first
    // `bridge/info`, which then changes once.
    sub.wait_for(&info, WAIT, |m| m.json()["known"] == "1/1")
        .await;
    let infos = sub.on(&info).len();
    wait_polls(&sim, 4).await;
    for (topic, count) in [
        (format!("{BASE}/busy_mk4/state"), 1),
        (avail.clone(), 1),
        (info.clone(), infos),
    ] {
        assert_eq!(
            sub.on(&topic).len(),
            count,
            "{topic} published again without a change"
        );
    }

    // Connect answers 503: the printer becomes unavailable and bridge/info says why.
    sim.sim
        .set_fault(Some(prusa_connect_sim::Fault::Status(503)));
    sub.wait_for(&avail, WAIT, |m| m.text() == "offline").await;
    let down = sub
        .wait_for(&info, WAIT, |m| m.json()["connect"]["reachable"] == false)
        .await
        .json();
    let error = down["connect"]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("503"), "{down}");
    assert!(down["connect"]["since"].as_str().is_some(), "{down}");

    // It recovers by itself.
    sim.sim.set_fault(None);
    sub.wait_for(&avail, WAIT, |m| m.text() == "online").await;
    sub.wait_for(&info, WAIT, |m| m.json()["connect"]["reachable"] == true)
        .await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_printer_filter_applies_and_an_unreadable_printer_is_kept_not_removed() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let busy = sim.sim.add_printer(spec("Busy MK4"));
    let other = sim.sim.add_printer(spec("Core One"));
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#"), "homeassistant/#"]).await;
    let mut cfg = config(&broker, &sim, state.path(), "");
    cfg.connect.printers = vec!["Busy MK4".into()];
    let gateway = Gateway::start(cfg);
    let info = format!("{BASE}/bridge/info");
    let first = sub.wait_for(&info, WAIT, |_| true).await.json();
    assert_eq!(
        first["printers"].as_array().map(Vec::len),
        Some(1),
        "{first}"
    );
    assert_eq!(first["printers"][0]["uuid"], busy.as_str());
    assert!(
        sub.on(&format!(
            "homeassistant/device/prusa_connect_{other}/config"
        ))
        .is_empty()
    );
    assert!(sub.on(&format!("{BASE}/core_one/state")).is_empty());

    // Connect sends a field of a type this version cannot read: the printer is reported,
    // and keeps its entities however long it lasts.
    sim.sim.override_field(&busy, "temp", json!("hot"));
    let bad = sub
        .wait_for(&info, WAIT, |m| {
            m.json()["rejected_printers"]
                .as_array()
                .is_some_and(|r| r.len() == 1)
        })
        .await
        .json();
    assert!(
        bad["rejected_printers"][0]
            .as_str()
            .unwrap()
            .contains(&busy),
        "{bad}"
    );
    wait_polls(&sim, 4).await;
    let discovery = format!("homeassistant/device/prusa_connect_{busy}/config");
    assert!(
        sub.on(&discovery).iter().all(|m| !m.payload.is_empty()),
        "discovery was removed"
    );
    assert!(
        sub.on(&format!("{BASE}/busy_mk4/state"))
            .iter()
            .all(|m| !m.payload.is_empty())
    );

    sim.sim
        .override_field(&busy, "temp", serde_json::Value::Null);
    sub.wait_for(&info, WAIT, |m| {
        m.json()["rejected_printers"]
            .as_array()
            .is_some_and(|r| r.is_empty())
    })
    .await;
    gateway.stop().await;
}
