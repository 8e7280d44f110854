//! End-to-end: `demo` with a config given uses that config's broker and Home Assistant
//! settings, prints only what it publishes (not another program's discovery on the same
//! broker), and leaves nothing retained behind.

mod common;

use std::process::Command;
use std::time::Duration;

use common::broker::{Subscriber, TestBroker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_with_a_config_uses_its_broker_and_prints_only_its_own_messages() {
    let broker = TestBroker::start();
    // Another program's discovery, retained on the same broker.
    let other = Subscriber::connect(&broker, &["nothing/#"]).await;
    other
        .publish(
            "homeassistant/device/zigbee2mqtt_0x00124b/config",
            r#"{"device": {"name": "Kitchen plug"}, "components": {}}"#,
            true,
        )
        .await;
    other
        .publish(
            "homeassistant/sensor/zigbee2mqtt_0x00124b/power/config",
            r#"{"name": "Power", "state_topic": "zigbee2mqtt/plug"}"#,
            true,
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[mqtt]\nurl = \"{}\"\n[homeassistant]\nmode = \"entity\"\n[state]\ndir = {:?}\n",
            broker.url(),
            dir.path().join("state")
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_prusa-connect-mqtt");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .args(["demo", "--duration", "6s", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("MQTT broker:       {}", broker.url())),
        "the config's broker: {stdout}"
    );
    // Entity-mode discovery (the config's), of the demo's own printers.
    assert!(
        stdout.contains("homeassistant/sensor/prusa_connect_"),
        "{stdout}"
    );
    assert!(stdout.contains("prusa_connect_demo/"), "{stdout}");
    assert!(
        !stdout.contains("zigbee2mqtt"),
        "another program's discovery printed: {stdout}"
    );
    // Nothing of the demo is left retained; the other program's discovery is untouched.
    let after = Subscriber::connect(&broker, &["#"]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while after.messages().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let retained: Vec<String> = after.messages().iter().map(|m| m.topic.clone()).collect();
    assert!(
        retained.iter().all(|t| t.contains("zigbee2mqtt")),
        "left behind: {retained:?}"
    );
    assert_eq!(retained.len(), 2, "{retained:?}");
}
