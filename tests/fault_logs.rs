//! One log line per change of a Connect fault, not one per failed poll: a journal that fills
//! with the same warning every few seconds through a night's outage hides everything else.
//!
//! A global tracing subscriber captures every line, so this is a test binary of its own, and
//! its tests take turns (`SERIAL`) so that each reads only its own lines.

mod common;

use std::time::Duration;

use common::broker::{Subscriber, TestBroker, UNLIMITED};
use common::fake_http::FakeHttp;
use common::gateway::{BASE, Gateway, Sim, config, wait_until_or};
use common::logs::Captured;
use prusa_connect_sim::{Fault, FaultRule, PrinterSpec};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

fn capture() -> &'static Captured {
    common::logs::capture("info")
}

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn count(lines: &[String], level: &str, text: &str) -> usize {
    lines
        .iter()
        .filter(|l| l.contains(&format!(" {level} ")) && l.contains(text))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_fleet_list_logs_once_per_fault_and_once_on_recovery() {
    let _turn = SERIAL.lock().await;
    let log = capture();
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    sim.sim.add_printer(PrinterSpec::named("Busy MK4"));
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let mut cfg = config(&broker, &sim, state.path(), "");
    // A 1 ms backoff base: twelve failed polls in about four seconds.
    cfg.connect.active_poll_interval = Duration::from_millis(1);
    let gateway = Gateway::start(cfg);
    let info = format!("{BASE}/bridge/info");
    sub.wait_for(&info, WAIT, |m| m.json()["connect"]["reachable"] == true)
        .await;

    let from = log.len();
    let mark = sub.mark();
    sim.sim.add_fault(
        FaultRule::new(Fault::Status(503))
            .on_path("/app/printers")
            .times(10),
    );
    sim.sim.add_fault(
        FaultRule::new(Fault::Status(500))
            .on_path("/app/printers")
            .times(2),
    );
    wait_until_or(
        || {
            let list = sim.list_requests();
            let faulted = list.iter().filter(|r| r.fault.is_some()).count();
            faulted == 12 && list.last().is_some_and(|r| r.fault.is_none())
        },
        || format!("{:#?}", sim.list_requests()),
    )
    .await;
    // Reachable again, still telling the last error.
    sub.wait_for_after(mark, &info, WAIT, |m| {
        let connect = &m.json()["connect"];
        connect["reachable"] == true
            && connect["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("500"))
    })
    .await;
    gateway.stop().await;

    let lines = log.lines_since(from);
    let all = lines.join("\n");
    assert_eq!(count(&lines, "WARN", ""), 2, "one WARN per fault:\n{all}");
    assert_eq!(count(&lines, "WARN", "503"), 1, "{all}");
    assert_eq!(count(&lines, "WARN", "500"), 1, "{all}");
    assert_eq!(
        count(&lines, "INFO", "reachable again"),
        1,
        "one INFO on recovery:\n{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_feed_logs_once_and_once_on_recovery() {
    let _turn = SERIAL.lock().await;
    let log = capture();
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let uuid = sim.sim.add_printer(PrinterSpec::named("Busy MK4"));
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let gateway = Gateway::start(config(&broker, &sim, state.path(), ""));
    let info = format!("{BASE}/bridge/info");
    sub.wait_for(&info, WAIT, |m| m.json()["connect"]["reachable"] == true)
        .await;

    let from = log.len();
    sim.sim.add_fault(
        FaultRule::new(Fault::Status(503))
            .on_paths_containing("/events")
            .times(10),
    );
    // A change of state makes the gateway read the feed, and read it again until it can.
    sim.sim.set_state(&uuid, "READY");
    let event = format!("{BASE}/busy_mk4/event");
    sub.wait_for(&event, WAIT, |m| m.json()["state"] == "READY")
        .await;
    assert!(sim.sim.faults().is_empty(), "ten feed reads failed");
    gateway.stop().await;

    let lines = log.lines_since(from);
    let all = lines.join("\n");
    assert_eq!(
        count(&lines, "WARN", "503"),
        1,
        "one WARN for ten failed reads:\n{all}"
    );
    assert_eq!(
        count(&lines, "INFO", "events"),
        1,
        "one INFO on recovery:\n{all}"
    );
}

/// A thumbnail URL from Connect's JSON that leads to another host once parsed (`/\host`, a
/// tab between the slashes) is never requested: the access token would go with it. One that
/// stays on Connect is requested with its query as Connect wrote it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thumbnail_url_off_connect_gets_no_request_and_no_token() {
    let _turn = SERIAL.lock().await;
    let log = capture();
    let evil = FakeHttp::start().await;
    let evil_host = evil.url().trim_start_matches("http://").to_string();
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let previews = [
        ("Backslash", format!("/\\{evil_host}/x.png")),
        ("Tab", format!("/\t/{evil_host}/x.png")),
        (
            "Honest",
            "/app/teams/1/files/f00d/preview?sig=a%2Fb".to_string(),
        ),
    ];
    let from = log.len();
    for (name, url) in &previews {
        let uuid = sim.sim.add_printer(PrinterSpec::named(name));
        let job = sim.sim.start_job(&uuid, "cube.bgcode", 600, &[]);
        sim.sim.override_field(
            &uuid,
            "job_info",
            json!({"id": job, "state": "PRINTING", "progress": 1, "preview_url": url}),
        );
    }
    let state = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(config(&broker, &sim, state.path(), ""));
    let refused = || count(&log.lines_since(from), "WARN", "is not on Connect");
    let honest = || {
        sim.sim
            .requests()
            .into_iter()
            .filter(|r| r.path == "/app/teams/1/files/f00d/preview")
            .map(|r| r.query)
            .collect::<Vec<_>>()
    };
    wait_until_or(
        || (refused() == 2 && !honest().is_empty()) || evil.requests() > 0,
        || log.lines_since(from).join("\n"),
    )
    .await;
    gateway.stop().await;
    assert_eq!(
        evil.requests(),
        0,
        "a request (and the token) went off Connect"
    );
    assert_eq!(honest(), ["sig=a%2Fb"], "the query is not encoded twice");
}

/// A catch-up that reaches the feed's page cap skips the oldest events: said once, not once
/// per printer of a farm that was stopped for a busy day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_catch_up_at_the_page_cap_is_warned_once() {
    use prusa_connect_mqtt::connect::{EVENTS_MAX_PAGES, EVENTS_PAGE};
    let _turn = SERIAL.lock().await;
    let log = capture();
    // 4,000 events at once: mosquitto's default queue (1,000) would drop some for a slow
    // subscriber.
    let broker = TestBroker::start_mosquitto_with(UNLIMITED).unwrap_or_else(TestBroker::start);
    let sim = Sim::start().await;
    let names = ["Farm A", "Farm B"];
    let uuids: Vec<String> = names
        .iter()
        .map(|n| sim.sim.add_printer(PrinterSpec::named(n)))
        .collect();
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let gateway = Gateway::start(config(&broker, &sim, state.path(), ""));
    for id in ["farm_a", "farm_b"] {
        sub.wait_for(&format!("{BASE}/{id}/availability"), WAIT, |m| {
            m.text() == "online"
        })
        .await;
    }

    let from = log.len();
    for uuid in &uuids {
        for n in 0..EVENTS_PAGE * EVENTS_MAX_PAGES + 10 {
            sim.sim.push_event(uuid, "TEST_EVENT", json!({ "n": n }));
        }
    }
    // A change of state makes the gateway read each feed from its cursor.
    for uuid in &uuids {
        sim.sim.set_state(uuid, "READY");
    }
    for id in ["farm_a", "farm_b"] {
        sub.wait_for(&format!("{BASE}/{id}/event"), WAIT, |m| {
            m.json()["state"] == "READY"
        })
        .await;
    }
    gateway.stop().await;

    let lines = log.lines_since(from);
    let all = lines.join("\n");
    assert_eq!(
        count(&lines, "WARN", "the oldest of them are skipped"),
        1,
        "one WARN for two capped catch-ups:\n{all}"
    );
}

/// Connect answering 404 for an optional endpoint (the notifications list, a farm's
/// supported-commands) is one warning per endpoint, not one per poll or per printer; the
/// endpoint is left alone for an hour and `bridge/info.unavailable` says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_endpoint_answering_404_is_warned_once_and_left_alone() {
    let _turn = SERIAL.lock().await;
    let log = capture();
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let uuids: Vec<String> = ["Farm A", "Farm B"]
        .iter()
        .map(|n| sim.sim.add_printer(PrinterSpec::named(n)))
        .collect();
    sim.sim
        .add_fault(FaultRule::new(Fault::Status(404)).on_path("/app/notifications"));
    sim.sim
        .add_fault(FaultRule::new(Fault::Status(404)).on_paths_containing("/supported-commands"));
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let from = log.len();
    let gateway = Gateway::start(config(&broker, &sim, state.path(), ""));
    let info = format!("{BASE}/bridge/info");
    let shown = sub
        .wait_for(&info, WAIT, |m| {
            // The two printers are of one type and firmware: the second reads its list
            // after the first's came back a 404 (they are not read together).
            let u = &m.json()["unavailable"];
            u["notifications"].is_string()
                && u["supported_commands"]
                    .as_str()
                    .is_some_and(|t| t.ends_with("(2 printers)"))
        })
        .await
        .json();
    let unavailable = &shown["unavailable"];
    assert!(
        unavailable["notifications"]
            .as_str()
            .is_some_and(|t| t.starts_with("404 since 20")),
        "{unavailable}"
    );
    assert!(
        unavailable["supported_commands"]
            .as_str()
            .is_some_and(|t| t.ends_with("(2 printers)")),
        "{unavailable}"
    );

    let requests = |part: &str| {
        sim.sim
            .requests()
            .iter()
            .filter(|r| r.path.ends_with(part))
            .count()
    };
    let asked = || (requests("/notifications"), requests("/supported-commands"));
    let before = asked();
    // Printers change and the unseen count moves: each time the count is read again, and
    // before, the list that answered 404 with it.
    for (n, state) in ["READY", "IDLE", "READY"].into_iter().enumerate() {
        let unseen_reads = requests("/notifications/unseen");
        sim.sim.set_unseen(n as u64 + 1);
        for uuid in &uuids {
            sim.sim.set_state(uuid, state);
        }
        wait_until_or(
            || requests("/notifications/unseen") > unseen_reads,
            || log.lines_since(from).join("\n"),
        )
        .await;
    }
    assert_eq!(asked(), before, "no request to a resting endpoint");
    gateway.stop().await;

    let lines = log.lines_since(from);
    let all = lines.join("\n");
    assert_eq!(
        count(&lines, "WARN", "404"),
        2,
        "one WARN per endpoint:\n{all}"
    );
}
