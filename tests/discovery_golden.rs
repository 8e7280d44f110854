//! Golden tests of Home Assistant discovery: exact topics and JSON for both modes, as sent
//! (abbreviated, `discovery_<mode>.json`) and as Home Assistant reads it (keys spelled out and
//! `~` replaced, `discovery_<mode>.expanded.json`).
//! After an intended change, regenerate with `UPDATE_GOLDEN=1 cargo test --test discovery_golden`
//! and review the diff of `tests/golden/`.

use prusa_connect_mqtt::config::DEFAULT_ALLOWED_COMMANDS;
use prusa_connect_mqtt::config::DiscoveryMode;
use prusa_connect_mqtt::connect::model::SupportedCommands;
use prusa_connect_mqtt::discovery::long_form::long_form;
use prusa_connect_mqtt::discovery::{Controls, Discovery, Features, PrinterDevice};
use prusa_connect_mqtt::topics::Topics;
use serde_json::{Value, json};

fn device() -> PrinterDevice {
    PrinterDevice {
        uuid: "00000000-0000-4000-8000-000000000004".into(),
        id: "busy_mk4".into(),
        name: "Busy MK4".into(),
        model: Some("Original Prusa MK4".into()),
        serial: Some("SN-TEST-0001".into()),
        firmware: Some("6.5.7+12836".into()),
        configuration_url: Some(
            "https://connect.prusa3d.com/printer/00000000-0000-4000-8000-000000000004/dashboard"
                .into(),
        ),
        objects: vec!["Cube A".into(), "Cube B".into()],
        cameras: vec![("414362".into(), "Buddy3D Camera".into())],
        // Every control of an MK4 (its captured supported-commands), answering a dialog.
        // START_PRINT allowed too, with two files to choose from.
        controls: Controls::new(
            &supported_mk4().commands,
            &DEFAULT_ALLOWED_COMMANDS
                .iter()
                .chain(&["START_PRINT"])
                .map(|c| c.to_string())
                .collect::<Vec<_>>(),
            &["Continue".to_string(), "Disable sensor".to_string()],
        )
        .with_files(&["benchy.bgcode".to_string(), "cube.bgcode".to_string()]),
        features: Features {
            chamber: true,
            chamber_led: true,
            fans: true,
        },
        spools: None,
    }
}

fn supported_mk4() -> SupportedCommands {
    let text = include_str!("fixtures/supported_commands_mk4.json");
    serde_json::from_str(text).expect("the captured supported-commands parses")
}

fn discovery(mode: DiscoveryMode) -> Discovery {
    Discovery {
        prefix: "homeassistant".into(),
        mode,
        topics: Topics::new("prusa_connect"),
    }
}

/// The bridge's and the MK4's messages, each payload through `read`.
fn render(mode: DiscoveryMode, read: impl Fn(&Value) -> Value) -> Value {
    let d = discovery(mode);
    let messages: Vec<Value> = d
        .bridge()
        .into_iter()
        .chain(d.printer(&device()))
        .map(|(topic, payload)| json!({"topic": topic, "payload": read(&payload)}))
        .collect();
    json!(messages)
}

fn check(name: &str, actual: Value) {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    let pretty = serde_json::to_string_pretty(&actual).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &pretty).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{path} is missing: run with UPDATE_GOLDEN=1 once"));
    let expected: Value = serde_json::from_str(&expected).unwrap();
    assert_eq!(actual, expected, "discovery differs from {path}");
}

#[test]
fn device_mode_golden() {
    check(
        "discovery_device.json",
        render(DiscoveryMode::Device, Value::clone),
    );
}

#[test]
fn entity_mode_golden() {
    check(
        "discovery_entity.json",
        render(DiscoveryMode::Entity, Value::clone),
    );
}

/// What Home Assistant reads is what the gateway sent before discovery was abbreviated.
#[test]
fn device_mode_read_by_home_assistant() {
    check(
        "discovery_device.expanded.json",
        render(DiscoveryMode::Device, long_form),
    );
}

#[test]
fn entity_mode_read_by_home_assistant() {
    check(
        "discovery_entity.expanded.json",
        render(DiscoveryMode::Entity, long_form),
    );
}

/// The MK4's device-based message, compact as it is published, against the same message
/// spelled out (what it was before abbreviations and `~`).
#[test]
fn device_mode_message_is_abbreviated() {
    let (_, payload) = discovery(DiscoveryMode::Device)
        .printer(&device())
        .pop()
        .expect("one message");
    let sent = payload.to_string().len();
    let spelled_out = long_form(&payload).to_string().len();
    eprintln!("device-mode MK4 discovery: {spelled_out} bytes spelled out, {sent} sent");
    assert!(
        sent * 100 <= spelled_out * 88,
        "{sent} bytes, {spelled_out} spelled out"
    );
}

#[test]
fn removal_covers_every_published_topic() {
    for mode in [DiscoveryMode::Device, DiscoveryMode::Entity] {
        let d = discovery(mode);
        let published: Vec<String> = d.printer(&device()).into_iter().map(|(t, _)| t).collect();
        let device = device();
        let removed = d.printer_topics(&device.uuid, &device.cameras);
        for topic in &published {
            assert!(removed.contains(topic), "{topic} is not removed");
        }
    }
}

#[test]
fn unique_ids_are_unique_and_built_from_the_uuid() {
    let configs = discovery(DiscoveryMode::Entity).printer(&device());
    // Device triggers have no unique id (they are no entities); every entity has one.
    let mut ids: Vec<String> = configs
        .iter()
        .filter(|(t, _)| !t.contains("/device_automation/"))
        .map(|(_, p)| long_form(p)["unique_id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.len() + 5 == configs.len(), "five device triggers");
    assert!(
        ids.iter()
            .all(|id| id.contains("00000000-0000-4000-8000-000000000004"))
    );
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n);
}
