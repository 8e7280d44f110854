//! End-to-end: nothing Connect records is missed. An event that changes nothing the printer
//! list shows arrives within `connect.feed_interval`; every ended job gets one
//! `P/job/finished` (however briefly it ran, while the gateway was stopped, or with a record
//! that lags); each of Connect's notifications is published once, across restarts.

mod common;

use std::time::Duration;

use common::broker::{Msg, Subscriber, TestBroker};
use common::gateway::{
    BASE, Gateway, Sim, TOKEN, config, config_with_credentials, list_polls, wait_polls,
    wait_until_or,
};
use prusa_connect_mqtt::config::Config;
use prusa_connect_sim::PrinterSpec;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);
/// The scheduled feed read in these tests (polls are every 200 ms).
const FEED_INTERVAL: &str = "2s";

fn topic(rest: &str) -> String {
    format!("{BASE}/{rest}")
}

/// The test config with `connect.feed_interval` = [`FEED_INTERVAL`].
fn scheduled(broker: &TestBroker, sim: &Sim, dir: &std::path::Path) -> Config {
    let credentials = format!("access_token = \"{TOKEN}\"\nfeed_interval = \"{FEED_INTERVAL}\"");
    config_with_credentials(broker, sim, dir, &credentials, "")
}

fn requests_to(sim: &Sim, path: &str) -> usize {
    sim.sim.requests().iter().filter(|r| r.path == path).count()
}

fn finished(sub: &Subscriber, id: &str) -> Vec<Value> {
    sub.on(&topic(&format!("{id}/job/finished")))
        .iter()
        .map(Msg::json)
        .collect()
}

/// Waits until the printer's feed was read `n` more times (its schedule runs on).
async fn wait_feed_reads(sim: &Sim, uuid: &str, n: usize) {
    let path = format!("/app/printers/{uuid}/events");
    let target = requests_to(sim, &path) + n;
    wait_until_or(
        || requests_to(sim, &path) >= target,
        || format!("feed reads: {}", requests_to(sim, &path)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_changes_nothing_visible_arrives_within_the_feed_interval() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let uuid = sim.sim.add_printer(PrinterSpec::named("Quiet MK4"));
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let gateway = Gateway::start(scheduled(&broker, &sim, state.path()));
    sub.wait_for(&topic("quiet_mk4/state"), WAIT, |m| {
        m.json()["state"] == "IDLE"
    })
    .await;
    // The first read placed the cursor; the schedule is running.
    wait_feed_reads(&sim, &uuid, 1).await;
    let states_before = sub.on(&topic("quiet_mk4/state")).len();

    // A USB stick goes in: the printer list shows nothing new.
    sim.sim
        .push_event(&uuid, "MEDIUM_INSERTED", json!({"data": {"root": "/usb"}}));
    let pushed = std::time::Instant::now();
    let event = sub
        .wait_for(&topic("quiet_mk4/event"), WAIT, |m| {
            m.json()["event"] == "MEDIUM_INSERTED"
        })
        .await
        .json();
    let took = pushed.elapsed();
    assert_eq!(event["data"]["root"], "/usb");
    // Within the interval, and one poll for the read to come back.
    assert!(
        took <= Duration::from_millis(2_000 + 600),
        "arrived after {took:?} (feed_interval {FEED_INTERVAL})"
    );
    assert_eq!(
        sub.on(&topic("quiet_mk4/state")).len(),
        states_before,
        "nothing visible changed: no new state"
    );
    // Once: the following scheduled reads find nothing new.
    wait_feed_reads(&sim, &uuid, 2).await;
    let events: Vec<Value> = sub
        .on(&topic("quiet_mk4/event"))
        .iter()
        .map(Msg::json)
        .filter(|e| e["event"] == "MEDIUM_INSERTED")
        .collect();
    assert_eq!(events.len(), 1);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_starts_and_ends_inside_one_poll_is_announced_once() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let uuid = sim.sim.add_printer(PrinterSpec::named("Quick MK4"));
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let gateway = Gateway::start(scheduled(&broker, &sim, state.path()));
    sub.wait_for(&topic("quick_mk4/state"), WAIT, |m| {
        m.json()["state"] == "IDLE"
    })
    .await;
    wait_feed_reads(&sim, &uuid, 1).await;

    // A 20 s calibration print between two polls: the list shows the printer IDLE before and
    // after, without a job.
    let job = sim.sim.quick_job(&uuid, "calibration.gcode", "FIN_ERROR");
    let end = sub
        .wait_for(&topic("quick_mk4/job/finished"), WAIT, |_| true)
        .await
        .json();
    assert_eq!(end["job_id"], job);
    assert_eq!(end["event_type"], "FIN_ERROR");
    assert!(
        end["job_name"]
            .as_str()
            .is_some_and(|n| n.starts_with("calibration")),
        "{end}"
    );
    assert_eq!(end["printer_uuid"], uuid.as_str());
    wait_feed_reads(&sim, &uuid, 2).await;
    assert_eq!(finished(&sub, "quick_mk4").len(), 1, "once");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_that_ended_while_the_gateway_was_stopped_are_announced_once_after_the_restart() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let uuid = sim.sim.add_printer(PrinterSpec::named("Night MK4"));
    let first = sim.sim.start_job(&uuid, "first.bgcode", 600, &[]);
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let gateway = Gateway::start(config(&broker, &sim, state.path(), ""));
    sub.wait_for(&topic("night_mk4/state"), WAIT, |m| {
        m.json()["state"] == "PRINTING"
    })
    .await;
    gateway.stop().await;

    // While it is stopped: the print fails, another one runs and finishes, and the printer is
    // set ready (the list shows no job any more).
    sim.sim.finish_job(&uuid, "FIN_ERROR");
    let second = sim.sim.start_job(&uuid, "second.bgcode", 600, &[]);
    sim.sim.finish_job(&uuid, "FIN_OK");
    sim.sim.set_state(&uuid, "READY");

    let gateway = Gateway::start(config(&broker, &sim, state.path(), ""));
    wait_until_or(
        || finished(&sub, "night_mk4").len() >= 2,
        || format!("announced: {:?}", finished(&sub, "night_mk4")),
    )
    .await;
    wait_polls(&sim, 5).await;
    let ends: Vec<(Value, Value)> = finished(&sub, "night_mk4")
        .iter()
        .map(|e| (e["job_id"].clone(), e["event_type"].clone()))
        .collect();
    assert_eq!(
        ends,
        [
            (json!(first), json!("FIN_ERROR")),
            (json!(second), json!("FIN_OK"))
        ]
    );
    gateway.stop().await;
    // And not again after one more restart.
    let gateway = Gateway::start(config(&broker, &sim, state.path(), ""));
    wait_polls(&sim, 5).await;
    assert_eq!(finished(&sub, "night_mk4").len(), 2);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_record_lags_thirty_polls_is_still_announced_once() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let uuid = sim.sim.add_printer(PrinterSpec::named("Slow MK4"));
    let job = sim.sim.start_job(&uuid, "lagging.bgcode", 600, &[]);
    // 30 polls of the test config's 200 ms idle interval.
    sim.sim.set_record_lag(&uuid, Duration::from_secs(6));
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let gateway = Gateway::start(config(&broker, &sim, state.path(), ""));
    sub.wait_for(&topic("slow_mk4/state"), WAIT, |m| {
        m.json()["state"] == "PRINTING"
    })
    .await;

    sim.sim.finish_job(&uuid, "FIN_STOPPED");
    let polls_at_end = list_polls(&sim);
    sub.wait_for(&topic("slow_mk4/state"), WAIT, |m| {
        m.json()["state"] == "STOPPED"
    })
    .await;
    let end = sub
        .wait_for(
            &topic("slow_mk4/job/finished"),
            Duration::from_secs(40),
            |_| true,
        )
        .await
        .json();
    assert_eq!(end["job_id"], job);
    assert_eq!(end["event_type"], "FIN_STOPPED");
    let polls = list_polls(&sim) - polls_at_end;
    assert!(polls >= 30, "the record lagged {polls} polls");
    // The record was asked for again while it lagged, with backoff, not every poll.
    let record_reads = requests_to(&sim, &format!("/app/printers/{uuid}/jobs/{job}"));
    assert!(
        (1..polls / 3).contains(&record_reads),
        "{record_reads} reads of the lagging record over {polls} polls"
    );
    wait_polls(&sim, 5).await;
    assert_eq!(finished(&sub, "slow_mk4").len(), 1);
    gateway.stop().await;
}

fn notifications(sub: &Subscriber) -> Vec<Value> {
    sub.on(&topic("bridge/notification"))
        .iter()
        .map(Msg::json)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_is_published_once_and_none_after_a_restart() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let uuid = sim.sim.add_printer(PrinterSpec::named("Noisy MK4"));
    // A notification from before the gateway ever ran is history: never published.
    sim.sim
        .add_notification(Some(&uuid), "INFO", "Printer registered");
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#"), "homeassistant/#"]).await;
    let gateway = Gateway::start(config(&broker, &sim, state.path(), ""));
    sub.wait_for(&topic("noisy_mk4/state"), WAIT, |m| {
        m.json()["state"] == "IDLE"
    })
    .await;
    wait_until_or(
        || requests_to(&sim, "/app/notifications") >= 1,
        || "the notifications list was never read".into(),
    )
    .await;
    // Home Assistant gets an event entity for them on the bridge device.
    let bridge = sub
        .wait_for("homeassistant/device/pc_bridge/config", WAIT, |m| {
            !m.payload.is_empty()
        })
        .await
        .discovery();
    let entity = &bridge["components"]["notification"];
    assert_eq!(entity["platform"], "event");
    assert_eq!(entity["state_topic"], topic("bridge/notification").as_str());
    assert_eq!(entity["event_types"], json!(["notification"]));

    // A print fails: Connect (the simulator) makes a notification of it.
    let job = sim.sim.start_job(&uuid, "benchy.bgcode", 600, &[]);
    sub.wait_for(&topic("noisy_mk4/state"), WAIT, |m| {
        m.json()["state"] == "PRINTING"
    })
    .await;
    sim.sim.finish_job(&uuid, "FIN_ERROR");
    let n = sub
        .wait_for(&topic("bridge/notification"), WAIT, |_| true)
        .await;
    assert!(!n.retain, "notifications are events, not retained");
    let n = n.json();
    assert_eq!(n["event_type"], "notification");
    assert_eq!(n["printer_uuid"], uuid.as_str());
    assert_eq!(n["printer"], "noisy_mk4");
    assert_eq!(n["severity"], "ERROR");
    assert_eq!(n["job_id"], job);
    assert_eq!(n["job_name"], "benchy.bgcode");
    assert!(n["text"].as_str().unwrap().contains("failed"), "{n}");
    assert!(
        n["created"].as_str().is_some_and(|c| c.ends_with('Z')),
        "{n}"
    );
    let ids = sim.sim.notification_ids();
    assert_eq!(n["id"], *ids.last().unwrap());

    gateway.stop().await;
    let reads = requests_to(&sim, "/app/notifications");
    let gateway = Gateway::start(config(&broker, &sim, state.path(), ""));
    wait_until_or(
        || requests_to(&sim, "/app/notifications") > reads,
        || "not read again after the restart".into(),
    )
    .await;
    wait_polls(&sim, 5).await;
    assert_eq!(notifications(&sub).len(), 1, "{:?}", notifications(&sub));
    gateway.stop().await;
}
