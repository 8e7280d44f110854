//! The controls' decisions in-process: which entities a printer's supported commands make,
//! what a dialog answer becomes, when the device triggers fire, and a discovery-mode switch.

use serde_json::{Value, json};

use super::*;
use crate::connect::model::SupportedCommands;

/// A printer's `supported-commands` like the capture's, trimmed to what these tests need.
fn capture() -> SupportedCommands {
    let not_printing = json!(["IDLE", "PAUSED", "FINISHED", "STOPPED", "READY"]);
    let with_printing = json!(["IDLE", "PAUSED", "FINISHED", "STOPPED", "PRINTING", "READY"]);
    serde_json::from_value(json!({"commands": [
        {"command": "SET_NOZZLE_TEMPERATURE", "executable_from_state": with_printing,
         "args": [{"name": "nozzle_temperature", "type": "integer", "required": true,
                   "min_limit": 0, "max_limit": 290, "unit": "°C", "default": 0, "description": "x"}]},
        {"command": "SET_SPEED", "executable_from_state": with_printing,
         "args": [{"name": "speed", "type": "integer", "required": true,
                   "min_limit": 10, "max_limit": 300, "unit": "%"}]},
        {"command": "HOME", "executable_from_state": ["IDLE", "READY", "MANIPULATING"],
         "args": [{"name": "axis", "type": "string", "required": false, "default": "XYZ"}]},
        {"command": "BEEP", "executable_from_state": not_printing, "args": []},
        {"command": "LOAD_FILAMENT", "executable_from_state": not_printing,
         "args": [{"name": "filament", "type": "string", "required": true}]},
        {"command": "DIALOG_ACTION",
         "executable_from_state": ["IDLE", "BUSY", "PRINTING", "PAUSED", "FINISHED", "STOPPED",
                                   "ERROR", "ATTENTION", "READY"],
         "args": [{"name": "dialog_id", "type": "integer", "required": true, "reference": "dialog_info.id"},
                  {"name": "button", "type": "string", "required": true}]},
        {"command": "START_PRINT", "executable_from_state": ["IDLE", "READY", "FINISHED", "STOPPED"],
         "args": [{"name": "path", "type": "string", "required": true}]},
        {"command": "SEND_GCODE", "args": [{"name": "gcode", "type": "string", "required": true}],
         "executable_from_state": not_printing}
    ]}))
    .unwrap()
}

const DEVICE: &str =
    "homeassistant/device/prusa_connect_00000000-0000-4000-8000-0000000000aa/config";

/// The first poll of printers, with printer A's supported commands `supported` and every
/// other read answered "nothing there".
fn introduce(b: &mut Bridge, printers: &[Value], supported: SupportedCommands) -> Out {
    let first = b.poll(printers);
    let (mine, others): (Vec<Read>, Vec<Read>) = first
        .reads
        .into_iter()
        .partition(|r| *r == Read::Supported { uuid: A.into() });
    assert_eq!(
        mine.len(),
        1,
        "supported-commands is read when a printer is first seen"
    );
    let mut messages = first.messages;
    messages.extend(b.settle(others).messages);
    let last = b.answer(mine[0].clone(), ReadResult::Supported(Ok(supported)));
    messages.extend(last.messages);
    Out {
        messages,
        reads: last.reads,
    }
}

fn components(out: &Out) -> serde_json::Map<String, Value> {
    crate::discovery::long_form::long_form(&out.payload(DEVICE).expect("device discovery"))
        ["components"]
        .as_object()
        .unwrap()
        .clone()
}

#[test]
fn controls_come_from_the_supported_commands_and_the_allow_list() {
    let mut b = Bridge::new("");
    let out = introduce(&mut b, &[printer(A, "MK4", "IDLE")], capture());
    let c = components(&out);
    let nozzle = &c["set_nozzle_target"];
    assert_eq!(nozzle["platform"], "number");
    assert_eq!(
        (nozzle["min"].as_f64(), nozzle["max"].as_f64()),
        (Some(0.0), Some(290.0))
    );
    assert_eq!(nozzle["command_topic"], "pc/mk4/command");
    assert!(
        nozzle["command_template"]
            .as_str()
            .unwrap()
            .contains("\"SET_NOZZLE_TEMPERATURE\", \"kwargs\": {\"nozzle_temperature\":"),
        "{nozzle}"
    );
    // Available only in the states Connect runs the command in.
    let available = nozzle["availability"].to_string();
    assert!(
        available.contains("PRINTING") && !available.contains("ATTENTION"),
        "{available}"
    );
    assert_eq!(c["set_speed"]["min"], 10.0);
    assert_eq!(
        c["home"]["payload_press"],
        r#"{"command":"HOME","kwargs":{"axis":"XYZ"}}"#
    );
    assert_eq!(c["beep"]["payload_press"], "BEEP");
    assert_eq!(c["load_filament"]["platform"], "select");
    assert_eq!(
        c["dialog_response"]["options"],
        json!([crate::discovery::NO_DIALOG])
    );
    // Not supported by this printer, or not allowed: no entity.
    for absent in [
        "set_bed_target",
        "set_flow",
        "chamber_led",
        "disable_steppers",
    ] {
        assert!(!c.contains_key(absent), "{absent} is not supported");
    }
    // Every entity names its entity id both ways Home Assistant reads it.
    assert_eq!(nozzle["default_entity_id"], "number.mk4_set_nozzle_target");
    assert_eq!(nozzle["object_id"], "mk4_set_nozzle_target");

    let mut b = Bridge::new("[commands]\nallow = [\"PAUSE_PRINT\", \"BEEP\"]");
    let out = introduce(&mut b, &[printer(A, "MK4", "IDLE")], capture());
    let c = components(&out);
    assert!(c.contains_key("beep"));
    for absent in [
        "set_nozzle_target",
        "home",
        "load_filament",
        "dialog_response",
    ] {
        assert!(!c.contains_key(absent), "{absent} is not allowed");
    }
}

#[test]
fn a_dialog_makes_its_buttons_the_options_and_an_answer_names_it() {
    let mut b = Bridge::new("");
    introduce(&mut b, &[printer(A, "MK4", "IDLE")], capture());
    let mut asking = printer(A, "MK4", "ATTENTION");
    asking["dialog_info"] =
        json!({"id": 42, "title": "Filament runout", "buttons": ["Continue", "Unload"]});
    let out = b.poll_settled(&[asking.clone()]);
    assert_eq!(
        components(&out)["dialog_response"]["options"],
        json!(["Continue", "Unload"])
    );
    let Prepared::Run(job) = b.command(
        "pc/mk4/command",
        r#"{"command": "DIALOG_ACTION", "kwargs": {"button": "continue"}}"#,
    ) else {
        panic!("runs")
    };
    let CommandTask::Command { req, .. } = &job.task else {
        panic!("a command")
    };
    assert_eq!(
        Value::Object(req.kwargs.clone()),
        json!({"dialog_id": 42, "button": "Continue"}),
        "the dialog's id filled in, the button as the dialog spells it"
    );
    let refused = |b: &mut Bridge, payload: &str| match b.command("pc/mk4/command", payload) {
        Prepared::Reply(Message::Event { payload, .. }) => {
            serde_json::from_slice::<Value>(&payload).unwrap()
        }
        other => panic!("refused at once, got {other:?}"),
    };
    let reply = refused(
        &mut b,
        r#"{"command": "DIALOG_ACTION", "kwargs": {"button": "Retry"}}"#,
    );
    assert_eq!(reply["code"], "INVALID_ARGUMENT");
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("Continue, Unload")
    );
    let reply = refused(
        &mut b,
        r#"{"command": "DIALOG_ACTION", "kwargs": {"dialog_id": 41, "button": "Continue"}}"#,
    );
    assert_eq!(reply["code"], "INVALID_ARGUMENT", "an old dialog's answer");
    // The dialog goes: its buttons go from the select, and answers are refused.
    let out = b.poll_settled(&[printer(A, "MK4", "IDLE")]);
    assert_eq!(
        components(&out)["dialog_response"]["options"],
        json!([crate::discovery::NO_DIALOG])
    );
    let reply = refused(
        &mut b,
        r#"{"command": "DIALOG_ACTION", "kwargs": {"button": "Continue"}}"#,
    );
    assert_eq!(reply["code"], "PRINTER_STATE");
}

#[test]
fn device_triggers_fire_once_on_a_start_an_attention_and_an_end() {
    let mut b = Bridge::new("");
    introduce(&mut b, &[printer(A, "MK4", "IDLE")], capture());
    let triggers = |out: &Out| -> Vec<String> {
        out.messages
            .iter()
            .filter_map(|m| match m {
                Message::Event { topic, payload } if topic == "pc/mk4/trigger" => {
                    Some(String::from_utf8_lossy(payload).into_owned())
                }
                _ => None,
            })
            .collect()
    };
    let out = b.poll_settled(&[printing(A, "MK4", 7)]);
    assert_eq!(triggers(&out), ["print_started"]);
    let out = b.poll_settled(&[printing(A, "MK4", 7)]);
    assert!(triggers(&out).is_empty(), "once per job");
    let mut attention = printing(A, "MK4", 7);
    attention["printer_state"] = json!("ATTENTION");
    attention["connect_state"] = json!("ATTENTION");
    assert_eq!(
        triggers(&b.poll_settled(&[attention.clone()])),
        ["attention_needed"]
    );
    assert!(triggers(&b.poll_settled(&[attention])).is_empty());
    // The job fails: job/finished and its trigger, together.
    let mut failed = printer(A, "MK4", "IDLE");
    failed["job_info"] = json!({"id": 7, "state": "FIN_ERROR"});
    let first = b.poll(&[failed]);
    let list = first
        .reads
        .iter()
        .find(|r| matches!(r, Read::Jobs { .. }))
        .expect("the job list tells how the job ended")
        .clone();
    let out = b.answer(list, ReadResult::Jobs(Ok(vec![job(7, JobState::FinError)])));
    assert_eq!(out.events("pc/mk4/job/finished").len(), 1);
    assert_eq!(triggers(&out), ["print_failed"]);

    // A gateway started mid-print does not say the print started.
    let memory = b.core.state_file();
    let mut b = Bridge::with_memory("", memory);
    let out = introduce(&mut b, &[printing(A, "MK4", 8)], capture());
    assert_eq!(triggers(&out), ["print_started"], "job 8 is new");
    let memory = b.core.state_file();
    let mut b = Bridge::with_memory("", memory);
    let out = introduce(&mut b, &[printing(A, "MK4", 8)], capture());
    assert!(
        triggers(&out).is_empty(),
        "job 8 was announced before the restart"
    );
}

#[test]
fn a_switch_from_entity_to_device_mode_migrates_the_entities() {
    let mut b = Bridge::new("[homeassistant]\nmode = \"entity\"");
    introduce(&mut b, &[printer(A, "MK4", "IDLE")], capture());
    let memory = b.core.state_file();
    assert_eq!(memory.discovery_mode.as_deref(), Some("entity"));

    let mut b = Bridge::with_memory("", memory);
    b.core.start();
    let start = b.take();
    let node = "prusa_connect_00000000-0000-4000-8000-0000000000aa";
    let old_state = format!("homeassistant/sensor/{node}/state/config");
    let old_bridge = "homeassistant/sensor/pc_bridge/printers/config";
    // 1. The old topics say the entities move (not retained: a message, not a config).
    assert_eq!(
        start.events(&old_state),
        [json!({"migrate_discovery": true})]
    );
    assert_eq!(
        start.events(old_bridge),
        [json!({"migrate_discovery": true})]
    );
    assert!(
        start.topics().iter().all(|t| t.starts_with("event")),
        "nothing else before a poll: {:?}",
        start.topics()
    );
    // 2. and 3., a poll later: the old topics cleared, then the new discovery.
    let out = introduce(&mut b, &[printer(A, "MK4", "IDLE")], capture());
    let topics = out.topics();
    let at = |wanted: &str| {
        topics
            .iter()
            .position(|t| t == wanted)
            .unwrap_or_else(|| panic!("no {wanted} in {topics:?}"))
    };
    assert!(
        at(&format!("clear {old_bridge}")) < at("retain homeassistant/device/pc_bridge/config")
    );
    assert!(at(&format!("clear {old_state}")) < at(&format!("retain {DEVICE}")));
    assert_eq!(
        b.core.state_file().discovery_mode.as_deref(),
        Some("device")
    );
    // The next start has nothing to migrate.
    let mut b = Bridge::with_memory("", b.core.state_file());
    b.core.start();
    let topics = b.take().topics();
    assert!(!topics.iter().any(|t| t.starts_with("clear")), "{topics:?}");
}

fn files(paths: &[&str]) -> ReadResult {
    ReadResult::Files(Ok(paths
        .iter()
        .map(|p| crate::connect::model::PrintFile {
            path: p.to_string(),
            name: p.rsplit('/').next().unwrap().to_string(),
        })
        .collect()))
}

fn files_read() -> Read {
    Read::Files { uuid: A.into() }
}

#[test]
fn files_are_read_when_a_print_can_start_and_a_chosen_one_is_printed() {
    const ALLOW: &str = "[commands]\nallow = [\"START_PRINT\"]";
    // Not allowed: no files read, no entities.
    let mut b = Bridge::new("");
    let out = introduce(&mut b, &[printer(A, "MK4", "IDLE")], capture());
    assert!(!components(&out).contains_key("print_file"));
    assert!(
        !b.poll(&[printer(A, "MK4", "IDLE")])
            .reads
            .contains(&files_read())
    );

    let mut b = Bridge::new(ALLOW);
    introduce(&mut b, &[printer(A, "MK4", "IDLE")], capture());
    let out = b.poll(&[printer(A, "MK4", "IDLE")]);
    assert!(out.reads.contains(&files_read()), "{:?}", out.reads);
    let out = b.answer(files_read(), files(&["/usb/a.bgcode", "/usb/b.bgcode"]));
    assert_eq!(
        components(&out)["print_file"]["options"],
        json!(["a.bgcode", "b.bgcode"])
    );
    assert!(components(&out).contains_key("start_print"));
    // Not on every poll.
    assert!(
        !b.poll(&[printer(A, "MK4", "IDLE")])
            .reads
            .contains(&files_read())
    );
    // Nothing chosen: "Start print" has nothing to print.
    let reply = match b.command("pc/mk4/command", "START_PRINT") {
        Prepared::Reply(Message::Event { payload, .. }) => {
            serde_json::from_slice::<Value>(&payload).unwrap()
        }
        other => panic!("refused at once, got {other:?}"),
    };
    assert_eq!(reply["code"], "INVALID_ARGUMENT");
    // "File to print" chooses; P/state shows it; the button prints it.
    b.core.select_file("mk4", b"b.bgcode", b.wall);
    let out = b.take();
    assert_eq!(
        out.payload("pc/mk4/state").unwrap()["print_file"],
        "b.bgcode"
    );
    let Prepared::Run(job) = b.command("pc/mk4/command", "START_PRINT") else {
        panic!("runs")
    };
    let CommandTask::Command { req, .. } = &job.task else {
        panic!("a command")
    };
    assert_eq!(req.kwargs["path"], "/usb/b.bgcode");
    // A path the printer does not have is refused here.
    match b.command(
        "pc/mk4/command",
        r#"{"command": "START_PRINT", "kwargs": {"path": "/usb/nope.bgcode"}}"#,
    ) {
        Prepared::Reply(Message::Event { payload, .. }) => {
            let reply: Value = serde_json::from_slice(&payload).unwrap();
            assert_eq!(reply["code"], "INVALID_ARGUMENT");
            assert!(
                reply["error"].as_str().unwrap().contains("/usb/a.bgcode"),
                "{reply}"
            );
        }
        other => panic!("refused at once, got {other:?}"),
    }
    // Printing, then ready again: the files are read again (a print may have added one).
    b.poll_settled(&[printing(A, "MK4", 7)]);
    let out = b.poll(&[printer(A, "MK4", "FINISHED")]);
    assert!(out.reads.contains(&files_read()), "{:?}", out.reads);
    // A file gone from the list is no longer the chosen one.
    let out = b.answer(files_read(), files(&["/usb/a.bgcode"]));
    assert_eq!(
        out.payload("pc/mk4/state").unwrap()["print_file"],
        Value::Null
    );
    // The feed says the files changed: read again.
    b.core.files_changed(A, b.now);
    assert!(
        b.poll(&[printer(A, "MK4", "FINISHED")])
            .reads
            .contains(&files_read())
    );
}

#[test]
fn each_jobs_thumbnail_is_fetched_once_and_kept_retained() {
    let mut b = Bridge::new("");
    let mut job7 = printing(A, "MK4", 7);
    job7["job_info"]["preview_url"] = json!("/app/teams/1/files/abc/preview");
    let first = b.poll(&[job7.clone()]);
    let preview = Read::Preview {
        uuid: A.into(),
        job: 7,
        url: "/app/teams/1/files/abc/preview".into(),
    };
    assert!(first.reads.contains(&preview), "{:?}", first.reads);
    let out = b.answer(preview.clone(), ReadResult::Preview(Ok(b"PNG".to_vec())));
    assert_eq!(
        out.messages,
        [Message::Retain {
            kind: crate::message::Kind::Data,
            topic: "pc/mk4/job/preview".into(),
            payload: b"PNG".to_vec()
        }]
    );
    assert!(
        !b.poll(&[job7])
            .reads
            .iter()
            .any(|r| matches!(r, Read::Preview { .. }))
    );
    // A new job: its own thumbnail.
    let mut job8 = printing(A, "MK4", 8);
    job8["job_info"]["preview_url"] = json!("/app/teams/1/files/def/preview");
    assert!(
        b.poll(&[job8])
            .reads
            .iter()
            .any(|r| matches!(r, Read::Preview { job: 8, .. }))
    );
}

/// A farm's printers of one type and firmware cost one `supported-commands` read: the others
/// wait for it and take its list; another firmware, or a printer that does not say its type,
/// reads its own.
#[test]
fn supported_commands_are_read_once_per_printer_type_and_firmware() {
    let mut b = Bridge::new("");
    let mut fleet = idle_fleet(5);
    for (p, firmware) in fleet.iter_mut().zip(["6.1.3", "6.1.3", "6.1.3", "6.2.0"]) {
        p["printer_type"] = json!("1.4.0");
        p["firmware"] = json!(firmware);
    }
    let uuid = |i: usize| format!("00000000-0000-4000-8000-{i:012}");
    let first = b.poll(&fleet);
    let (supported, others): (Vec<Read>, Vec<Read>) = first
        .reads
        .into_iter()
        .partition(|r| matches!(r, Read::Supported { .. }));
    let read_for: Vec<String> = supported
        .iter()
        .map(|r| match r {
            Read::Supported { uuid } => uuid.clone(),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(read_for, [uuid(0), uuid(3), uuid(4)]);
    b.settle(others);
    // When printer 0's list comes back, printers 1 and 2 take it at once, without a read.
    let mut answered = Vec::new();
    for read in supported {
        let out = b.answer(read, ReadResult::Supported(Ok(capture())));
        assert!(
            !out.reads
                .iter()
                .any(|r| matches!(r, Read::Supported { .. })),
            "{:?}",
            out.reads
        );
        answered.extend(out.messages);
    }
    let answered = Out {
        messages: answered,
        reads: Vec::new(),
    };
    let discovery = answered
        .payload(&format!(
            "homeassistant/device/prusa_connect_{}/config",
            uuid(1)
        ))
        .expect("printer 1's controls are published");
    let c = crate::discovery::long_form::long_form(&discovery)["components"].clone();
    assert_eq!(c["set_nozzle_target"]["platform"], "number");
    b.advance(30);
    let second = b.poll(&fleet);
    assert!(
        !second
            .reads
            .iter()
            .any(|r| matches!(r, Read::Supported { .. })),
        "{:?}",
        second.reads
    );
    let before = second
        .payload("pc/bridge/info")
        .or(answered.payload("pc/bridge/info"));
    let info = b.settle(second.reads).payload("pc/bridge/info").or(before);
    assert_eq!(info.map(|i| i["known"].clone()), Some(json!("5/5")));
}
