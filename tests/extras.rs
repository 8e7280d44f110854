//! End-to-end: what Connect shows beyond the printer list: cameras, the queue, dialogs, the
//! unseen notifications, printer types and Connect's version.

mod common;

use std::time::Duration;

use common::broker::{Subscriber, TestBroker};
use common::gateway::{BASE, Gateway, Sim, config, wait_polls, wait_until_or};
use prusa_connect_sim::PrinterSpec;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);
const FAST_CAMERA: &str = "[camera]\ninterval = \"100ms\"\nidle_interval = \"100ms\"";

fn snapshot_answers(sim: &Sim, camera: i64, status: u16) -> usize {
    let path = format!("/app/cameras/{camera}/snapshots/last");
    sim.sim
        .requests()
        .iter()
        .filter(|r| r.path == path && r.status == Some(status))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_picture_is_published_once_per_change_and_an_unchanged_one_costs_a_304() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    // The first printer of a simulator has a camera.
    let uuid = sim.sim.add_printer(PrinterSpec::named("Busy MK4"));
    let camera = sim.sim.camera_ids(&uuid)[0];
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#"), "homeassistant/#"]).await;
    let gateway = Gateway::start(config(&broker, &sim, state.path(), FAST_CAMERA));

    let topic = format!("{BASE}/busy_mk4/camera/{camera}");
    let first = sub.wait_for(&topic, WAIT, |_| true).await;
    assert_eq!(&first.payload[..2], &[0xFF, 0xD8], "a JPEG");
    assert!(!first.retain, "camera pictures are not retained");
    // The camera is an entity of the printer's device.
    let discovery = sub
        .wait_for(
            &format!("homeassistant/device/prusa_connect_{uuid}/config"),
            WAIT,
            |m| !m.payload.is_empty(),
        )
        .await
        .discovery();
    let entity = &discovery["components"][format!("camera_{camera}")];
    assert_eq!(entity["platform"], "camera");
    assert_eq!(entity["topic"], topic.as_str());

    // Unchanged: the gateway asks with the ETag, gets 304s, and publishes nothing.
    let before = snapshot_answers(&sim, camera, 304);
    wait_until_or(
        || snapshot_answers(&sim, camera, 304) >= before + 3,
        || format!("304s: {}", snapshot_answers(&sim, camera, 304)),
    )
    .await;
    assert_eq!(
        sub.on(&topic).len(),
        1,
        "an unchanged picture is not sent again"
    );
    let conditional = sim
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/snapshots/last") && r.status == Some(304))
        .count();
    assert!(conditional >= 3);

    // The print moves on: the picture changes, and is published once.
    sim.sim.start_job(&uuid, "cube.bgcode", 600, &[]);
    let second = sub
        .wait_for(&topic, WAIT, |m| m.payload != first.payload)
        .await;
    let before = snapshot_answers(&sim, camera, 304);
    wait_until_or(
        || snapshot_answers(&sim, camera, 304) >= before + 3,
        || format!("304s: {}", snapshot_answers(&sim, camera, 304)),
    )
    .await;
    let pictures = sub.on(&topic);
    assert_eq!(pictures.len(), 2, "one message per change");
    assert_eq!(pictures[1].payload, second.payload);
    assert_eq!(
        snapshot_answers(&sim, camera, 200),
        2,
        "two pictures downloaded"
    );

    // Pictures are not retained: Home Assistant's birth message gets the last one again,
    // without a new download.
    let mark = sub.mark();
    sub.publish("homeassistant/status", "online", false).await;
    let again = sub.wait_for_after(mark, &topic, WAIT, |_| true).await;
    assert_eq!(again.payload, second.payload);
    assert_eq!(snapshot_answers(&sim, camera, 200), 2);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_picture_too_large_for_mqtt_is_skipped_and_the_session_lives_on() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let uuid = sim.sim.add_printer(PrinterSpec::named("Busy MK4"));
    let camera = sim.sim.camera_ids(&uuid)[0];
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    // A large but legal picture goes through whole.
    sim.sim.set_snapshot_size(camera, 3 * 1024 * 1024);
    let gateway = Gateway::start(config(&broker, &sim, state.path(), FAST_CAMERA));
    let topic = format!("{BASE}/busy_mk4/camera/{camera}");
    let big = sub.wait_for(&topic, WAIT, |_| true).await;
    assert!(big.payload.len() >= 3 * 1024 * 1024);
    assert_eq!(&big.payload[..2], &[0xFF, 0xD8]);

    // Larger than an MQTT message of the gateway may be: not published, and the session
    // goes on carrying state.
    sim.sim.set_snapshot_size(camera, 9 * 1024 * 1024);
    sim.sim.start_job(&uuid, "cube.bgcode", 600, &[]);
    let requests_before = snapshot_answers(&sim, camera, 200);
    wait_until_or(
        || snapshot_answers(&sim, camera, 200) > requests_before,
        || "no new picture fetched".into(),
    )
    .await;
    sim.sim.set_progress(&uuid, 50.0);
    wait_until_or(
        || snapshot_answers(&sim, camera, 200) > requests_before + 1,
        || "no second new picture fetched".into(),
    )
    .await;
    sub.wait_for(&format!("{BASE}/busy_mk4/state"), WAIT, |m| {
        m.json()["progress"] == 50.0
    })
    .await;
    assert_eq!(
        sub.on(&topic).len(),
        1,
        "the oversized pictures were not sent"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_follows_jobs_added_and_started_without_polling_it() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let uuid = sim.sim.add_printer(PrinterSpec::named("Busy MK4"));
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let gateway = Gateway::start(config(&broker, &sim, state.path(), ""));
    let state_topic = format!("{BASE}/busy_mk4/state");
    sub.wait_for(&state_topic, WAIT, |m| m.json()["queue_count"] == 0)
        .await;

    // Nothing changes: the queue is not asked again.
    let queue_reads = || {
        sim.sim
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/queue") || r.path.ends_with("/download-queue"))
            .count()
    };
    let reads = queue_reads();
    wait_polls(&sim, 5).await;
    assert_eq!(queue_reads(), reads, "an unchanged queue costs no request");

    sim.sim.queue_job(&uuid, "bracket.bgcode");
    let s = sub
        .wait_for(&state_topic, WAIT, |m| m.json()["queue_count"] == 1)
        .await
        .json();
    // The queue shows the file's display name (the simulator's: the name without extension).
    assert_eq!(s["queue_next"], "bracket");
    sim.sim.queue_job(&uuid, "hinge.bgcode");
    sub.wait_for(&state_topic, WAIT, |m| m.json()["queue_count"] == 2)
        .await;

    sim.sim.start_next_queued(&uuid, 600).expect("a queued job");
    let s = sub
        .wait_for(&state_topic, WAIT, |m| {
            m.json()["queue_count"] == 1 && m.json()["state"] == "PRINTING"
        })
        .await
        .json();
    assert_eq!(s["queue_next"], "hinge");
    assert_eq!(s["job_name"], "bracket.bgcode");
    assert_eq!(s["download_queue_count"], 0);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialog_needs_attention_is_announced_once_and_notifications_follow() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let uuid = sim.sim.add_printer(PrinterSpec::named("Busy MK4"));
    sim.sim.start_job(&uuid, "cube.bgcode", 600, &[]);
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#"), "homeassistant/#"]).await;
    let gateway = Gateway::start(config(&broker, &sim, state.path(), ""));
    let state_topic = format!("{BASE}/busy_mk4/state");
    let event_topic = format!("{BASE}/busy_mk4/event");
    let info_topic = format!("{BASE}/bridge/info");
    sub.wait_for(&state_topic, WAIT, |m| {
        m.json()["state"] == "PRINTING" && m.json()["attention"] == false
    })
    .await;
    sub.wait_for(&info_topic, WAIT, |m| m.json()["notifications_unseen"] == 0)
        .await;
    // The Home Assistant sensor reads the count from bridge/info.
    let bridge = sub
        .wait_for("homeassistant/device/pc_bridge/config", WAIT, |m| {
            !m.payload.is_empty()
        })
        .await
        .discovery();
    assert_eq!(
        bridge["components"]["notifications_unseen"]["value_template"],
        "{{ value_json.notifications_unseen if value_json is defined else '' }}"
    );

    // Connect makes a notification of the dialog (the simulator too).
    sim.sim.set_dialog(
        &uuid,
        Some(json!({"title": "Filament runout", "text": "Load new filament", "buttons": ["Continue"]})),
    );
    let s = sub
        .wait_for(&state_topic, WAIT, |m| m.json()["attention"] == true)
        .await
        .json();
    assert_eq!(s["state"], "ATTENTION");
    assert_eq!(s["dialog"]["title"], "Filament runout");
    assert_eq!(s["dialog"]["buttons"], json!(["Continue"]));
    let shown = sub
        .wait_for(&event_topic, WAIT, |m| m.json()["event"] == "DIALOG_SHOWN")
        .await
        .json();
    assert_eq!(shown["dialog"]["text"], "Load new filament");
    assert_eq!(shown["source"], "GATEWAY");
    sub.wait_for(&info_topic, WAIT, |m| m.json()["notifications_unseen"] == 1)
        .await;

    // A restart does not announce the same dialog again.
    gateway.stop().await;
    let gateway = Gateway::start(config(&broker, &sim, state.path(), ""));
    wait_polls(&sim, 4).await;
    let shown_count = |sub: &Subscriber| {
        sub.on(&event_topic)
            .iter()
            .filter(|m| m.json()["event"] == "DIALOG_SHOWN")
            .count()
    };
    assert_eq!(shown_count(&sub), 1);

    sim.sim.set_dialog(&uuid, None);
    sub.wait_for(&state_topic, WAIT, |m| {
        m.json()["attention"] == false && m.json()["state"] == "PRINTING"
    })
    .await;
    let closed = sub
        .wait_for(&event_topic, WAIT, |m| m.json()["event"] == "DIALOG_CLOSED")
        .await
        .json();
    assert_eq!(closed["state"], "PRINTING");
    assert_eq!(
        closed["dialog"]["title"], "Filament runout",
        "the dialog that closed"
    );
    assert_eq!(shown_count(&sub), 1);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printer_types_name_the_model_and_limit_moves_and_info_has_connects_version() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let uuid = sim.sim.add_printer(PrinterSpec::named("Busy MK4"));
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#"), "homeassistant/#"]).await;
    let gateway = Gateway::start(config(&broker, &sim, state.path(), ""));
    let info = sub
        .wait_for(&format!("{BASE}/bridge/info"), WAIT, |m| {
            m.json()["connect"]["server_version"].is_string()
        })
        .await
        .json();
    let version: Value = reqwest::get(format!("{}/version.json", sim.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["connect"]["server_version"], version["version"]);
    assert_eq!(info["connect"]["server_commit"], version["commit"]);

    let discovery = sub
        .wait_for(
            &format!("homeassistant/device/prusa_connect_{uuid}/config"),
            WAIT,
            |m| !m.payload.is_empty(),
        )
        .await
        .discovery();
    assert_eq!(discovery["device"]["model"], "Original Prusa MK4");

    // supported-commands gives MOVE no limit; the MK4's type says its y axis is 210 mm long.
    sub.wait_for(&format!("{BASE}/busy_mk4/state"), WAIT, |_| true)
        .await;
    let reply = move_y(&sub, 230).await;
    assert_eq!(reply["status"], "error");
    assert_eq!(reply["code"], "INVALID_ARGUMENT");
    let message = reply["error"].as_str().unwrap();
    assert!(
        message.contains("210") && message.contains("Original Prusa MK4"),
        "{message}"
    );
    let reply = move_y(&sub, 200).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    // MOVE is relative: back by 10 mm is fine, back by more than the bed is not.
    let reply = move_y(&sub, -10).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let reply = move_y(&sub, -230).await;
    assert_eq!(reply["code"], "INVALID_ARGUMENT", "{reply}");
    let moves: Vec<String> = sim
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/commands/sync"))
        .map(|r| r.body)
        .collect();
    assert_eq!(
        moves.len(),
        2,
        "only the moves within the axis were sent: {moves:?}"
    );
    assert!(
        moves[0].contains("200") && moves[1].contains("-10"),
        "{moves:?}"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_farms_first_polls_spread_the_queue_and_camera_reads() {
    const PRINTERS: usize = 70;
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let uuids: Vec<String> = (0..PRINTERS)
        .map(|i| {
            let uuid = sim
                .sim
                .add_printer(PrinterSpec::named(&format!("Farm {i:02}")));
            sim.sim.queue_job(&uuid, "part.bgcode");
            uuid
        })
        .collect();
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/+/state")]).await;
    // Requests are counted by when they arrive, between two list requests: the polls are a
    // second apart, so a poll's reads are all in before the next list request even on a
    // loaded machine (at 200 ms some spilled into the next poll's count).
    let mut c = config(&broker, &sim, state.path(), "");
    c.connect.poll_interval = std::time::Duration::from_secs(1);
    c.connect.active_poll_interval = std::time::Duration::from_secs(1);
    let gateway = Gateway::start(c);
    let all_known = || {
        (0..PRINTERS).all(|i| {
            sub.on(&format!("{BASE}/farm_{i:02}/state"))
                .last()
                .is_some_and(|m| m.json()["queue_count"] == 1)
        })
    };
    wait_until_or(all_known, || "not every printer's queue was read".into()).await;
    gateway.stop().await;

    // Between two list requests, at most 64 queue and camera-list requests.
    let mut per_poll = vec![0usize];
    for r in sim.sim.requests() {
        if r.path == "/app/printers" {
            per_poll.push(0);
        } else if r.path.ends_with("/queue")
            || r.path.ends_with("/download-queue")
            || r.path.ends_with("/cameras")
        {
            *per_poll.last_mut().unwrap() += 1;
        }
    }
    let total: usize = per_poll.iter().sum();
    assert_eq!(
        total,
        PRINTERS * 3,
        "one queue, download queue and camera list each"
    );
    assert!(
        per_poll.iter().all(|&n| n <= 64),
        "extras per poll: {per_poll:?}"
    );
    assert!(per_poll.iter().filter(|&&n| n > 0).count() >= 4);
    assert_eq!(uuids.len(), PRINTERS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cameras_are_looked_at_rarely_when_idle_and_never_when_disabled() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let uuid = sim.sim.add_printer(PrinterSpec::named("Busy MK4"));
    let camera = sim.sim.camera_ids(&uuid)[0];
    let snapshots = || {
        sim.sim
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/snapshots/last"))
            .count()
    };

    // Disabled: no camera request, no camera entity.
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#"), "homeassistant/#"]).await;
    let gateway = Gateway::start(config(
        &broker,
        &sim,
        state.path(),
        "[camera]\nenabled = false\ninterval = \"100ms\"",
    ));
    let discovery = sub
        .wait_for(
            &format!("homeassistant/device/prusa_connect_{uuid}/config"),
            WAIT,
            |m| !m.payload.is_empty(),
        )
        .await
        .discovery();
    wait_polls(&sim, 5).await;
    gateway.stop().await;
    assert!(
        !discovery["components"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("camera")),
        "no camera entity when cameras are disabled"
    );
    let camera_requests = sim
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("camera"))
        .count();
    assert_eq!(camera_requests, 0);
    assert!(
        sub.on(&format!("{BASE}/busy_mk4/camera/{camera}"))
            .is_empty()
    );

    // Idle: one look, then nothing for an hour; printing: every interval.
    let gateway = Gateway::start(config(
        &broker,
        &sim,
        state.path(),
        "[camera]\ninterval = \"100ms\"\nidle_interval = \"1h\"",
    ));
    wait_until_or(|| snapshots() == 1, || "no first look".into()).await;
    wait_polls(&sim, 8).await;
    assert_eq!(
        snapshots(),
        1,
        "an idle printer's camera is not looked at again soon"
    );
    sim.sim.start_job(&uuid, "cube.bgcode", 600, &[]);
    wait_until_or(|| snapshots() >= 4, || format!("{} looks", snapshots())).await;
    gateway.stop().await;
}

/// Sends `MOVE` to y on busy_mk4 and returns the reply.
async fn move_y(sub: &Subscriber, y: i32) -> Value {
    let transaction = format!("y{y}");
    let mark = sub.mark();
    sub.publish(
        &format!("{BASE}/busy_mk4/command"),
        format!(
            r#"{{"command":"MOVE","kwargs":{{"x":10,"y":{y},"feedrate":3000}},"transaction":"{transaction}"}}"#
        ),
        false,
    )
    .await;
    sub.wait_for_after(
        mark,
        &format!("{BASE}/busy_mk4/command/response"),
        WAIT,
        |m| m.json()["transaction"] == transaction.as_str(),
    )
    .await
    .json()
}

/// The free space on the printer's storages reaches `P/state` from Connect's `/storages`, and
/// is read again when the feed says a file changed (a file uploaded takes space).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_free_storage_space_follows_the_printers_files() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let uuid = sim.sim.add_printer(PrinterSpec::named("Busy MK4"));
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let gateway = Gateway::start(config(&broker, &sim, state.path(), ""));
    let state_topic = format!("{BASE}/busy_mk4/state");
    let first = sub
        .wait_for(&state_topic, WAIT, |m| m.json()["storage_free"].is_u64())
        .await
        .json();
    let free = first["storage_free"].as_u64().unwrap();
    assert_eq!(
        first["storage_total"], 7_818_182_656u64,
        "the simulator's USB stick"
    );
    assert!(free < 7_818_182_656);
    let reads = || {
        sim.sim
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/storages"))
            .count()
    };
    assert_eq!(reads(), 1);
    wait_polls(&sim, 3).await;
    assert_eq!(reads(), 1, "nothing changed, no read");

    sim.sim.add_file(&uuid, "big_part.bgcode");
    sim.sim.push_event(
        &uuid,
        "FILE_CHANGED",
        json!({"data": {"path": "/usb/big_part.bgcode"}}),
    );
    // The feed is read when the printer's state moves (or on `connect.feed_interval`).
    sim.sim.set_state(&uuid, "READY");
    sub.wait_for(&state_topic, WAIT, |m| {
        m.json()["storage_free"].as_u64().is_some_and(|f| f < free)
    })
    .await;
    assert_eq!(reads(), 2);
    gateway.stop().await;
}
