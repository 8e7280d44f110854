//! End-to-end: the Home Assistant controls of issue 15 against the simulator over TCP and a
//! real broker: what discovery offers, what each control sends, what is refused here (no
//! request to Connect), what Connect's printer does, and the device triggers.

mod common;

use std::time::Duration;

use common::broker::{Msg, Subscriber, TestBroker};
use common::gateway::{BASE, Gateway, Sim, config, wait_until_or};
use prusa_connect_sim::PrinterSpec;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

struct Setup {
    broker: TestBroker,
    sim: Sim,
    sub: Subscriber,
    gateway: Option<Gateway>,
    uuid: String,
    _state: tempfile::TempDir,
}

impl Setup {
    async fn start(spec: PrinterSpec, extra: &str) -> Setup {
        let broker = TestBroker::start();
        let sim = Sim::start().await;
        let uuid = sim.sim.add_printer(spec);
        let state = tempfile::tempdir().unwrap();
        let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#"), "homeassistant/#"]).await;
        let gateway = Gateway::start(config(&broker, &sim, state.path(), extra));
        sub.wait_for(&format!("{BASE}/p/availability"), WAIT, |m| {
            m.text() == "online"
        })
        .await;
        Setup {
            broker,
            sim,
            sub,
            gateway: Some(gateway),
            uuid,
            _state: state,
        }
    }

    fn device_topic(&self) -> String {
        format!("homeassistant/device/prusa_connect_{}/config", self.uuid)
    }

    /// The printer's discovery once `cond` holds for it.
    async fn discovery(&self, cond: impl Fn(&Value) -> bool) -> Value {
        self.sub
            .wait_for(&self.device_topic(), WAIT, |m| {
                !m.payload.is_empty() && cond(&m.discovery())
            })
            .await
            .discovery()
    }

    fn commands_sent(&self) -> Vec<Value> {
        self.sim.commands_sent()
    }

    /// Publishes a command and returns its one reply.
    async fn send(&self, payload: &str) -> Value {
        let topic = format!("{BASE}/p/command/response");
        let mark = self.sub.mark();
        self.sub
            .publish(
                &format!("{BASE}/p/command"),
                payload.as_bytes().to_vec(),
                false,
            )
            .await;
        self.sub
            .wait_for_after(mark, &topic, WAIT, |_| true)
            .await
            .json()
    }

    async fn state_where(&self, cond: impl Fn(&Value) -> bool) -> Value {
        self.sub
            .wait_for(&format!("{BASE}/p/state"), WAIT, |m| {
                !m.payload.is_empty() && cond(&m.json())
            })
            .await
            .json()
    }

    fn triggers(&self) -> Vec<String> {
        self.sub
            .on(&format!("{BASE}/p/trigger"))
            .iter()
            .map(Msg::text)
            .collect()
    }

    async fn stop(mut self) {
        if let Some(g) = self.gateway.take() {
            g.stop().await;
        }
    }
}

fn mk4() -> PrinterSpec {
    PrinterSpec::named("P")
}

/// What Home Assistant's number sends for `value` (its command template, rendered the way
/// Home Assistant does for a whole number).
fn number_payload(component: &Value, value: i64) -> String {
    component["command_template"]
        .as_str()
        .unwrap()
        .replace("{{ value | int }}", &value.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_set_targets_speed_and_flow_within_the_printers_limits() {
    let s = Setup::start(mk4(), "").await;
    let device = s
        .discovery(|d| d["components"].get("set_nozzle_target").is_some())
        .await;
    let c = &device["components"];
    assert_eq!(c["set_nozzle_target"]["max"], 290.0);
    assert_eq!(c["set_bed_target"]["max"], 150.0);
    assert_eq!(
        (c["set_flow"]["min"].clone(), c["set_flow"]["max"].clone()),
        (json!(10.0), json!(150.0))
    );
    assert!(c.get("chamber_led").is_none(), "an MK4 has no chamber");

    let reply = s.send(&number_payload(&c["set_nozzle_target"], 215)).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let reply = s.send(&number_payload(&c["set_bed_target"], 60)).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let reply = s.send(&number_payload(&c["set_speed"], 150)).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let reply = s.send(&number_payload(&c["set_flow"], 95)).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let state = s
        .state_where(|v| {
            v["target_nozzle"] == 215.0
                && v["target_bed"] == 60.0
                && v["speed"] == 150.0
                && v["flow"] == 95.0
        })
        .await;
    assert_eq!(state["state"], "IDLE");

    // Out of the printer's limits: refused here, nothing sent.
    let sent = s.commands_sent().len();
    let reply = s.send(&number_payload(&c["set_nozzle_target"], 300)).await;
    assert_eq!(reply["code"], "INVALID_ARGUMENT", "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("290"), "{reply}");
    let reply = s
        .send(r#"{"command": "SET_FLOW", "kwargs": {"flow": 5}}"#)
        .await;
    assert_eq!(reply["code"], "INVALID_ARGUMENT", "{reply}");
    assert_eq!(s.commands_sent().len(), sent, "no request to Connect");
    assert_eq!(
        s.commands_sent()[..4]
            .iter()
            .map(|c| c["command"].as_str().unwrap())
            .collect::<Vec<_>>(),
        [
            "SET_NOZZLE_TEMPERATURE",
            "SET_HEATBED_TEMPERATURE",
            "SET_SPEED",
            "SET_FLOW"
        ]
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buttons_and_filament_follow_the_printers_state() {
    let s = Setup::start(mk4(), "").await;
    let device = s.discovery(|d| d["components"].get("home").is_some()).await;
    let c = device["components"].clone();
    for (button, command) in [
        ("home", "HOME"),
        ("beep", "BEEP"),
        ("disable_steppers", "DISABLE_STEPPERS"),
        ("unload_filament", "UNLOAD_FILAMENT"),
    ] {
        let press = c[button]["payload_press"].as_str().unwrap().to_string();
        let reply = s.send(&press).await;
        assert_eq!(reply["status"], "ok", "{button}: {reply}");
        assert_eq!(reply["command"], command);
    }
    let sent = s.commands_sent();
    assert_eq!(
        sent[0],
        json!({"command": "HOME", "kwargs": {"axis": "XYZ"}})
    );
    let load = c["load_filament"]["command_template"]
        .as_str()
        .unwrap()
        .replace("{{ value | tojson }}", "\"PETG\"");
    let reply = s.send(&load).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    s.state_where(|v| v["material"] == "PETG").await;

    // While printing, Home is not run (Connect's states for it say so): refused here.
    s.sim.sim.start_job(&s.uuid, "cube.bgcode", 600, &["A"]);
    s.state_where(|v| v["state"] == "PRINTING").await;
    let before = s.commands_sent().len();
    let reply = s.send(c["home"]["payload_press"].as_str().unwrap()).await;
    assert_eq!(reply["code"], "PRINTER_STATE", "{reply}");
    assert_eq!(s.commands_sent().len(), before);
    // The availability template agrees: PRINTING is not among Home's states.
    let states = c["home"]["availability"].to_string();
    assert!(
        states.contains("IDLE") && !states.contains("PRINTING"),
        "{states}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialog_is_answered_through_its_select() {
    let s = Setup::start(mk4(), "").await;
    s.sim.sim.set_dialog(
        &s.uuid,
        Some(json!({"title": "Filament runout", "buttons": ["Continue", "Unload"]})),
    );
    let device = s
        .discovery(|d| {
            d["components"]["dialog_response"]["options"] == json!(["Continue", "Unload"])
        })
        .await;
    let select = &device["components"]["dialog_response"];
    let state = s.state_where(|v| !v["dialog"].is_null()).await;
    let dialog_id = state["dialog"]["id"].as_i64().unwrap();
    // A button the dialog does not have: refused here.
    let before = s.commands_sent().len();
    let reply = s
        .send(r#"{"command": "DIALOG_ACTION", "kwargs": {"button": "Retry"}}"#)
        .await;
    assert_eq!(reply["code"], "INVALID_ARGUMENT", "{reply}");
    assert_eq!(s.commands_sent().len(), before);
    // What Home Assistant's select sends for "Continue".
    let choice = select["command_template"]
        .as_str()
        .unwrap()
        .replace("{{ value | tojson }}", "\"Continue\"");
    let mark = s.sub.mark();
    let reply = s.send(&choice).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(
        s.sim.sim.dialog_answers(&s.uuid),
        [(dialog_id, "Continue".to_string())]
    );
    s.sub
        .wait_for_after(mark, &format!("{BASE}/p/state"), WAIT, |m| {
            m.json()["dialog"].is_null()
        })
        .await;
    let none = json!([prusa_connect_mqtt::discovery::NO_DIALOG]);
    s.sub
        .wait_for_after(mark, &s.device_topic(), WAIT, |m| {
            m.discovery()["components"]["dialog_response"]["options"] == none
        })
        .await;
    let reply = s
        .send(r#"{"command": "DIALOG_ACTION", "kwargs": {"button": "Continue"}}"#)
        .await;
    assert_eq!(
        reply["code"], "PRINTER_STATE",
        "no dialog any more: {reply}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chamber_printer_gets_its_light_and_chamber_sensors() {
    let s = Setup::start(PrinterSpec::core_one("P"), "").await;
    let device = s
        .discovery(|d| d["components"].get("chamber_led").is_some())
        .await;
    let c = &device["components"];
    for sensor in [
        "temp_chamber",
        "target_chamber",
        "chamber_led_level",
        "fan_hotend",
    ] {
        assert!(c.get(sensor).is_some(), "{sensor} missing");
    }
    assert_eq!(c["firmware"]["platform"], "update");
    let reply = s.send(&number_payload(&c["chamber_led"], 30)).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(
        s.commands_sent()[0],
        json!({"command": "SET_CHAMBER_LED_INTENSITY", "kwargs": {"chamber.led_intensity": 30}})
    );
    let state = s.state_where(|v| v["chamber_led"] == 30.0).await;
    assert!(state["temp_chamber"].is_number(), "{state}");
    assert!(state["firmware_latest"].is_string(), "{state}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_device_trigger_fires_once_when_it_happens() {
    let s = Setup::start(mk4(), "").await;
    let device = s
        .discovery(|d| d["components"].get("trigger_print_failed").is_some())
        .await;
    let failed = &device["components"]["trigger_print_failed"];
    assert_eq!(failed["platform"], "device_automation");
    assert_eq!(failed["topic"], format!("{BASE}/p/trigger"));
    assert_eq!(failed["payload"], "print_failed");
    assert_eq!(failed["type"], "print_failed");
    assert_eq!(
        device["components"]["print_finished"]["platform"], "event",
        "the event entity stays"
    );

    s.sim.sim.start_job(&s.uuid, "cube.bgcode", 600, &["A"]);
    wait_until_or(
        || s.triggers() == ["print_started"],
        || format!("{:?}", s.triggers()),
    )
    .await;
    s.sim
        .sim
        .set_dialog(&s.uuid, Some(json!({"title": "Heater", "buttons": ["Ok"]})));
    wait_until_or(
        || s.triggers() == ["print_started", "attention_needed"],
        || format!("{:?}", s.triggers()),
    )
    .await;
    s.sim.sim.set_dialog(&s.uuid, None);
    s.sim.sim.finish_job(&s.uuid, "FIN_ERROR");
    s.sub
        .wait_for(&format!("{BASE}/p/job/finished"), WAIT, |m| {
            m.json()["event_type"] == "FIN_ERROR"
        })
        .await;
    wait_until_or(
        || s.triggers() == ["print_started", "attention_needed", "print_failed"],
        || format!("{:?}", s.triggers()),
    )
    .await;
    // A stopped print, then one that finishes.
    let mut expected: Vec<&str> = vec!["print_started", "attention_needed", "print_failed"];
    for (file, end, trigger) in [
        ("b.bgcode", "FIN_STOPPED", "print_stopped"),
        ("c.bgcode", "FIN_OK", "print_finished"),
    ] {
        s.sim.sim.set_state(&s.uuid, "IDLE");
        s.sim.sim.start_job(&s.uuid, file, 600, &["A"]);
        expected.push("print_started");
        wait_until_or(
            || s.triggers() == expected,
            || format!("{:?}", s.triggers()),
        )
        .await;
        s.sim.sim.finish_job(&s.uuid, end);
        expected.push(trigger);
        wait_until_or(
            || s.triggers() == expected,
            || format!("{:?}", s.triggers()),
        )
        .await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_to_device_mode_migrates_the_entities() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let uuid = sim.sim.add_printer(mk4());
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &["homeassistant/#", &format!("{BASE}/#")]).await;
    let node = format!("prusa_connect_{uuid}");
    let old = format!("homeassistant/sensor/{node}/progress/config");
    let gateway = Gateway::start(config(
        &broker,
        &sim,
        state.path(),
        "[homeassistant]\nmode = \"entity\"",
    ));
    sub.wait_for(&old, WAIT, |m| !m.payload.is_empty()).await;
    gateway.stop().await;

    let mark = sub.mark();
    let gateway = Gateway::start(config(&broker, &sim, state.path(), ""));
    let device = format!("homeassistant/device/{node}/config");
    sub.wait_for_after(mark, &device, WAIT, |m| !m.payload.is_empty())
        .await;
    sub.wait_for_after(mark, &old, WAIT, |m| m.payload.is_empty())
        .await;
    gateway.stop().await;
    // On the old topic: the migration request (not retained), the clear, then the device
    // discovery.
    let seen: Vec<(String, String, bool)> = sub
        .messages_since(mark)
        .into_iter()
        .filter(|m| m.topic == old || m.topic == device)
        .map(|m| (m.topic.clone(), m.text(), m.retain))
        .collect();
    let migrate = seen
        .iter()
        .position(|(t, p, _)| *t == old && p == r#"{"migrate_discovery":true}"#)
        .expect("migrate_discovery on the old topic");
    let cleared = seen
        .iter()
        .position(|(t, p, _)| *t == old && p.is_empty())
        .unwrap();
    let new = seen
        .iter()
        .position(|(t, p, _)| *t == device && !p.is_empty())
        .unwrap();
    assert!(migrate < cleared && cleared < new, "{seen:?}");
    // A retained value would reach a new subscriber before a message published after it
    // subscribed.
    let later = Subscriber::connect(&broker, &[&old, "test/marker"]).await;
    sub.publish("test/marker", "x", false).await;
    later.wait_for("test/marker", WAIT, |_| true).await;
    assert!(
        later.on(&old).iter().all(|m| m.payload.is_empty()),
        "nothing stays retained on the old topic: {:?}",
        later.on(&old)
    );
    let memory = std::fs::read_to_string(state.path().join("state.json")).unwrap();
    let memory: Value = serde_json::from_str(&memory).unwrap();
    assert_eq!(memory["discovery_mode"], "device", "{memory}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_print_is_started_from_the_file_select_and_its_thumbnail_published() {
    let s = Setup::start(
        mk4(),
        "[commands]\nmax_per_second = 0\nallow = [\"START_PRINT\", \"STOP_PRINT\"]",
    )
    .await;
    let added = s.sim.sim.add_file(&s.uuid, "/usb/benchy.bgcode");
    let device = s
        .discovery(|d| {
            d["components"]["print_file"]["options"]
                .as_array()
                .is_some_and(|o| o.len() > 1)
        })
        .await;
    let select = &device["components"]["print_file"];
    assert_eq!(select["command_topic"], format!("{BASE}/p/print_file"));
    let options: Vec<String> = select["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap().to_string())
        .collect();
    // Labelled with Connect's display name.
    assert!(options.iter().any(|o| o == "benchy"), "{options:?}");
    // A path the printer does not have: refused here.
    let before = s.commands_sent().len();
    let reply = s
        .send(r#"{"command": "START_PRINT", "kwargs": {"path": "/usb/nope.bgcode"}}"#)
        .await;
    assert_eq!(reply["code"], "INVALID_ARGUMENT", "{reply}");
    assert_eq!(s.commands_sent().len(), before);
    // What Home Assistant does: the select publishes the option, the button START_PRINT.
    s.sub
        .publish(&format!("{BASE}/p/print_file"), "benchy", false)
        .await;
    s.state_where(|v| v["print_file"] == "benchy").await;
    let press = device["components"]["start_print"]["payload_press"]
        .as_str()
        .unwrap();
    let reply = s.send(press).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(
        s.commands_sent().last().unwrap(),
        &json!({"command": "START_PRINT", "kwargs": {"path": added}})
    );
    let state = s.state_where(|v| v["state"] == "PRINTING").await;
    assert!(
        state["job_name"].as_str().unwrap().contains("benchy"),
        "{state}"
    );
    // The job's thumbnail: fetched once with the token, retained.
    let picture = s
        .sub
        .wait_for(&format!("{BASE}/p/job/preview"), WAIT, |m| {
            !m.payload.is_empty()
        })
        .await;
    assert_eq!(&picture.payload[..2], [0xFF, 0xD8], "the simulator's JPEG");
    let later = Subscriber::connect(&s.broker, &[&format!("{BASE}/p/job/preview")]).await;
    let kept = later
        .wait_for(&format!("{BASE}/p/job/preview"), WAIT, |_| true)
        .await;
    assert!(kept.retain && kept.payload == picture.payload, "retained");
    let fetches = || {
        s.sim
            .sim
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/preview"))
            .count()
    };
    common::gateway::wait_polls(&s.sim, 3).await;
    assert_eq!(fetches(), 1, "once per job");
    assert_eq!(
        device["components"]["job_preview"]["image_topic"],
        format!("{BASE}/p/job/preview")
    );
    s.stop().await;
}

/// "Set ready" and "Cancel ready" from Home Assistant: each button's payload is the command,
/// and "Cancel ready" is available only while the printer is READY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_ready_and_cancel_ready_buttons_run_their_commands() {
    let s = Setup::start(mk4(), "").await;
    let device = s
        .discovery(|d| d["components"].get("cancel_ready").is_some())
        .await;
    let c = device["components"].clone();
    let availability = c["cancel_ready"]["availability"].to_string();
    assert!(
        availability.contains(r#"[\"READY\"]"#),
        "available in READY only: {availability}"
    );
    let reply = s
        .send(c["set_ready"]["payload_press"].as_str().unwrap())
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    s.state_where(|v| v["state"] == "READY").await;
    let reply = s
        .send(c["cancel_ready"]["payload_press"].as_str().unwrap())
        .await;
    assert_eq!(reply["command"], "CANCEL_PRINTER_READY", "{reply}");
    assert_eq!(reply["status"], "ok", "{reply}");
    s.state_where(|v| v["state"] == "IDLE").await;
    let sent: Vec<Value> = s
        .commands_sent()
        .iter()
        .map(|c| c["command"].clone())
        .collect();
    assert_eq!(
        sent,
        [json!("SET_PRINTER_READY"), json!("CANCEL_PRINTER_READY")]
    );
    s.stop().await;
}
