//! The service's life as systemd and a broker see it: the real binary stopped by SIGTERM with
//! a command in flight, killed with -9, talking to systemd's notify socket; a broker killed
//! and restarted during a print; oversized input refused.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::broker::{Subscriber, TestBroker};
use common::gateway::{BASE, Gateway, Sim, config};
use common::process::{exit_within, signal, spawn};
use prusa_connect_sim::{Fault, FaultRule, PrinterSpec};

const WAIT: Duration = Duration::from_secs(15);

async fn command_reached_connect(sim: &Sim, dir: &Path) {
    let deadline = Instant::now() + WAIT;
    while !sim
        .sim
        .requests()
        .iter()
        .any(|r| r.path.ends_with("/commands/sync"))
    {
        assert!(
            Instant::now() < deadline,
            "the command did not reach Connect; requests: {:?}; the gateway's log:\n{}",
            sim.sim
                .requests()
                .iter()
                .map(|r| format!("{} {} {:?} {:?}", r.method, r.path, r.at, r.fault))
                .collect::<Vec<_>>(),
            std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_command_in_flight_reply_then_publishes_offline_and_exits_0() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let uuid = sim.sim.add_printer(PrinterSpec::named("MK4"));
    sim.sim.start_job(&uuid, "cube.bgcode", 3600, &[]);
    let dir = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let mut child = spawn(&broker, &sim, dir.path(), &[]);
    sub.wait_for(&format!("{BASE}/mk4/state"), WAIT, |m| {
        m.json()["state"] == "PRINTING"
    })
    .await;

    // Connect takes a second to answer: the stop comes while the command waits for it.
    sim.sim.add_fault(
        FaultRule::new(Fault::Delay(Duration::from_millis(1000))).on_paths_containing("/commands/"),
    );
    sub.publish(
        &format!("{BASE}/mk4/command"),
        r#"{"command": "PAUSE_PRINT", "transaction": "t-1"}"#,
        false,
    )
    .await;
    command_reached_connect(&sim, dir.path()).await;
    let stopped_at = Instant::now();
    signal(&child, "-TERM");
    let status = exit_within(&mut child, Duration::from_secs(5)).await;
    assert!(status.success(), "{status:?}");
    assert!(stopped_at.elapsed() < Duration::from_secs(5));

    let reply = sub
        .wait_for(&format!("{BASE}/mk4/command/response"), WAIT, |_| true)
        .await
        .json();
    assert_eq!(reply["transaction"], "t-1");
    assert_eq!(reply["status"], "ok", "{reply}");
    let state = sub
        .wait_for(&format!("{BASE}/bridge/state"), WAIT, |m| {
            m.text() == "offline"
        })
        .await;
    // The reply came before `offline`.
    let order: Vec<String> = sub.messages().into_iter().map(|m| m.topic).collect();
    let reply_at = order
        .iter()
        .position(|t| t.ends_with("/command/response"))
        .unwrap();
    let offline_at = order.iter().rposition(|t| *t == state.topic).unwrap();
    assert!(reply_at < offline_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_does_not_wait_for_a_connect_that_hangs() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let uuid = sim.sim.add_printer(PrinterSpec::named("MK4"));
    sim.sim.start_job(&uuid, "cube.bgcode", 3600, &[]);
    let dir = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let mut child = spawn(&broker, &sim, dir.path(), &[]);
    sub.wait_for(&format!("{BASE}/mk4/state"), WAIT, |m| {
        m.json()["state"] == "PRINTING"
    })
    .await;
    sim.sim.add_fault(
        FaultRule::new(Fault::Delay(Duration::from_secs(4))).on_paths_containing("/commands/"),
    );
    sub.publish(
        &format!("{BASE}/mk4/command"),
        r#"{"command": "PAUSE_PRINT", "transaction": 7}"#,
        false,
    )
    .await;
    command_reached_connect(&sim, dir.path()).await;
    signal(&child, "-INT");
    let status = exit_within(&mut child, Duration::from_secs(5)).await;
    assert!(status.success(), "{status:?}");
    let reply = sub
        .wait_for(&format!("{BASE}/mk4/command/response"), WAIT, |_| true)
        .await
        .json();
    assert_eq!(reply["transaction"], 7);
    assert_eq!(reply["status"], "error");
    assert_eq!(reply["code"], "CONNECT_ERROR");
    assert!(
        reply["error"].as_str().unwrap().contains("stopping"),
        "{reply}"
    );
    sub.wait_for(&format!("{BASE}/bridge/state"), WAIT, |m| {
        m.text() == "offline"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_poll_that_hangs_exits_within_5_s() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    sim.sim.add_printer(PrinterSpec::named("MK4"));
    let dir = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let mut child = spawn(&broker, &sim, dir.path(), &[]);
    sub.wait_for(&format!("{BASE}/mk4/availability"), WAIT, |m| {
        m.text() == "online"
    })
    .await;
    // Connect stops answering (the gateway's request timeout is 10 s).
    sim.sim
        .set_fault(Some(Fault::Delay(Duration::from_secs(30))));
    let polls = sim.sim.requests().len();
    let deadline = Instant::now() + WAIT;
    while sim.sim.requests().len() == polls {
        assert!(Instant::now() < deadline, "a poll started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signal(&child, "-TERM");
    let status = exit_within(&mut child, Duration::from_secs(5)).await;
    assert!(status.success(), "{status:?}");
    sub.wait_for(&format!("{BASE}/bridge/state"), WAIT, |m| {
        m.text() == "offline"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_leaves_offline_by_the_last_will() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    sim.sim.add_printer(PrinterSpec::named("MK4"));
    let dir = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let mut child = spawn(&broker, &sim, dir.path(), &[]);
    let topic = format!("{BASE}/bridge/state");
    sub.wait_for(&topic, WAIT, |m| m.text() == "online").await;
    let mark = sub.mark();
    signal(&child, "-KILL");
    let _ = exit_within(&mut child, Duration::from_secs(5)).await;
    sub.wait_for_after(mark, &topic, WAIT, |m| m.text() == "offline")
        .await;
    // And it is retained: a newcomer sees it.
    let late = Subscriber::connect(&broker, &[&topic]).await;
    let seen = late.wait_for(&topic, WAIT, |m| m.retain).await;
    assert_eq!(seen.text(), "offline");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_watchdog_and_stopping() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    sim.sim.add_printer(PrinterSpec::named("MK4"));
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut child = spawn(
        &broker,
        &sim,
        dir.path(),
        &[
            ("NOTIFY_SOCKET", socket_path.display().to_string()),
            ("WATCHDOG_USEC", "300000".into()),
        ],
    );
    let mut heard: Vec<String> = Vec::new();
    let receive_until = |done: &dyn Fn(&[String]) -> bool, heard: &mut Vec<String>| {
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 4096];
        while !done(heard) {
            assert!(Instant::now() < deadline, "systemd heard only {heard:?}");
            if let Ok(n) = socket.recv(&mut buf) {
                heard.extend(
                    String::from_utf8_lossy(&buf[..n])
                        .lines()
                        .map(str::to_string),
                );
            }
        }
    };
    let has = |what: &'static str| move |h: &[String]| h.iter().any(|x| x == what);
    receive_until(&has("READY=1"), &mut heard);
    // Fed every 150 ms (half of WATCHDOG_USEC) by the event loop.
    receive_until(
        &|h: &[String]| h.iter().filter(|x| *x == "WATCHDOG=1").count() >= 4,
        &mut heard,
    );
    signal(&child, "-TERM");
    receive_until(&has("STOPPING=1"), &mut heard);
    assert!(
        exit_within(&mut child, Duration::from_secs(5))
            .await
            .success()
    );
}

/// Every retained topic a newcomer would see now.
async fn retained_topics(broker: &TestBroker) -> BTreeSet<String> {
    // A topic of the probe's own, outside the gateway's.
    let end = "test/retained-end";
    let probe = Subscriber::connect(broker, &[&format!("{BASE}/#"), "homeassistant/#", end]).await;
    // mosquitto queues the retained messages for the probe as it subscribes, before the
    // SubAck; a message published after the SubAck is queued behind them. When it arrives,
    // every retained message has.
    probe.publish(end, "end", false).await;
    probe.wait_for(end, WAIT, |_| true).await;
    probe
        .messages()
        .into_iter()
        .filter(|m| m.retain && !m.payload.is_empty())
        .map(|m| m.topic)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_during_a_print_gets_every_retained_topic_back_within_5_s() {
    let mut broker = TestBroker::start();
    if !broker.is_mosquitto() {
        eprintln!("skipped: needs mosquitto (the embedded broker cannot be killed)");
        return;
    }
    let sim = Sim::start().await;
    let busy = sim.sim.add_printer(PrinterSpec::named("Busy MK4"));
    sim.sim.add_printer(PrinterSpec::named("Idle MINI"));
    sim.sim.start_job(&busy, "benchy.bgcode", 3600, &["A", "B"]);
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(config(&broker, &sim, dir.path(), ""));
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    sub.wait_for(&format!("{BASE}/busy_mk4/job"), WAIT, |m| {
        m.json()["cancelable_objects"]
            .as_array()
            .is_some_and(|a| a.len() == 2)
    })
    .await;
    sub.wait_for(&format!("{BASE}/idle_mini/availability"), WAIT, |m| {
        m.text() == "online"
    })
    .await;
    sub.wait_for(&format!("{BASE}/bridge/info"), WAIT, |m| {
        m.json()["printers"]
            .as_array()
            .is_some_and(|p| p.len() == 2)
    })
    .await;
    let before = retained_topics(&broker).await;
    // Discovery of both printers and the bridge, bridge state and info, and per printer
    // availability and state (and the job of the one printing).
    assert!(before.len() >= 10, "{before:?}");

    broker.stop();
    sim.sim.set_progress(&busy, 55.0);
    broker.restart();
    let back = Instant::now();
    let fresh = Subscriber::connect(&broker, &[&format!("{BASE}/#"), "homeassistant/#"]).await;
    let deadline = back + Duration::from_secs(5);
    loop {
        let now: BTreeSet<String> = fresh
            .messages()
            .into_iter()
            .filter(|m| !m.payload.is_empty())
            .map(|m| m.topic)
            .collect();
        let missing: Vec<&String> = before.difference(&now).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "5 s after the broker's return these are still missing: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "all {} retained topics back {} ms after the broker's return",
        before.len(),
        back.elapsed().as_millis()
    );
    // The change made while the broker was down arrives too.
    fresh
        .wait_for(&format!("{BASE}/busy_mk4/state"), WAIT, |m| {
            m.json()["progress"] == 55.0
        })
        .await;
    // And a command sent after the return works.
    fresh
        .publish(
            &format!("{BASE}/busy_mk4/command"),
            r#"{"command": "PAUSE_PRINT", "transaction": "after"}"#,
            false,
        )
        .await;
    let reply = fresh
        .wait_for(&format!("{BASE}/busy_mk4/command/response"), WAIT, |_| true)
        .await
        .json();
    assert_eq!(reply["status"], "ok", "{reply}");
    fresh
        .wait_for(&format!("{BASE}/busy_mk4/state"), WAIT, |m| {
            m.json()["state"] == "PAUSED"
        })
        .await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_commands_and_responses_are_refused_with_the_key_to_change() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    sim.sim.add_printer(PrinterSpec::named("MK4"));
    let dir = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let mut small = config(&broker, &sim, dir.path(), "");
    small.mqtt.max_payload_bytes = 2048;
    let gateway = Gateway::start(small);
    sub.wait_for(&format!("{BASE}/mk4/availability"), WAIT, |m| {
        m.text() == "online"
    })
    .await;
    let big = format!(
        r#"{{"command": "PAUSE_PRINT", "transaction": "{}"}}"#,
        "x".repeat(4000)
    );
    sub.publish(&format!("{BASE}/mk4/command"), big, false)
        .await;
    let reply = sub
        .wait_for(&format!("{BASE}/mk4/command/response"), WAIT, |_| true)
        .await
        .json();
    assert_eq!(reply["code"], "INVALID_PAYLOAD");
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("mqtt.max_payload_bytes allows 2048"),
        "{reply}"
    );
    assert!(
        !sim.sim
            .requests()
            .iter()
            .any(|r| r.path.contains("/commands/")),
        "nothing was sent to Connect"
    );
    gateway.stop().await;

    // A Connect response over the limit: 100 printers are well over 64 KiB.
    for i in 0..100 {
        sim.sim
            .add_printer(PrinterSpec::named(&format!("Farm {i:03}")));
    }
    let mark = sub.mark();
    let mut limited = config(&broker, &sim, dir.path(), "");
    limited.connect.max_response_bytes = 65536;
    let gateway = Gateway::start(limited);
    let info = sub
        .wait_for_after(mark, &format!("{BASE}/bridge/info"), WAIT, |m| {
            m.json()["connect"]["reachable"] == false
        })
        .await
        .json();
    let error = info["connect"]["last_error"].as_str().unwrap();
    assert!(error.contains("connect.max_response_bytes"), "{error}");
    gateway.stop().await;
}
