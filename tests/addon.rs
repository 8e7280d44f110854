//! The binary in Home Assistant add-on mode, against a fake Supervisor (a loopback HTTP server
//! answering `/services/mqtt`), a mosquitto that takes only the credentials the Supervisor
//! hands out, and the simulated Connect.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::broker::{Subscriber, TestBroker, reserve_port};
use common::fake_http::{FakeHttp, Reply};
use common::gateway::{Sim, TOKEN};
use common::process::exit_within;
use prusa_connect_sim::PrinterSpec;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);
const SUPERVISOR_TOKEN: &str = "supervisor-token-for-the-test";
const MQTT_USER: &str = "addons";
const MQTT_PASSWORD: &str = "pw-only-the-supervisor-knows";

/// The binary as the Supervisor starts it: no arguments, the Supervisor's token in the
/// environment. `PRUSA_CONNECT_MQTT__*` points it at the simulator and a private state dir,
/// as it would override a config file.
fn spawn_addon(
    supervisor: &FakeHttp,
    options: &serde_json::Value,
    dir: &Path,
    connect: &str,
) -> Child {
    let options_path = dir.join("options.json");
    std::fs::write(&options_path, options.to_string()).unwrap();
    let log = std::fs::File::create(dir.join("addon.log")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_prusa-connect-mqtt"))
        .env_remove("RUST_LOG")
        .env("SUPERVISOR_TOKEN", SUPERVISOR_TOKEN)
        .env("SUPERVISOR_URL", supervisor.url())
        .env("PCM_ADDON_OPTIONS", &options_path)
        .env("PRUSA_CONNECT_MQTT__STATE__DIR", dir.join("state"))
        // The add-on's page listens on 0.0.0.0:8099 behind ingress; here on loopback.
        .env("PRUSA_CONNECT_MQTT__WEB__LISTEN", "127.0.0.1:0")
        .env("PRUSA_CONNECT_MQTT__CONNECT__URL", connect)
        .env("PRUSA_CONNECT_MQTT__CONNECT__ACCESS_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("addon.log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addon_mode_takes_the_options_and_the_supervisors_broker() {
    let dir = tempfile::tempdir().unwrap();
    // mosquitto runs as its own user when started by root: it must be able to read the file.
    let passwords = dir.path().join("passwords");
    let made = Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&passwords)
        .args([MQTT_USER, MQTT_PASSWORD])
        .status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("skipped: needs mosquitto_passwd");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    for (path, mode) in [
        (dir.path().to_path_buf(), 0o755),
        (passwords.clone(), 0o644),
    ] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let auth_port = reserve_port();
    let Some(broker) = TestBroker::start_mosquitto_per_listener(&format!(
        "listener {auth_port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n",
        passwords.display()
    )) else {
        eprintln!("skipped: needs mosquitto");
        return;
    };
    let sim = Sim::start().await;
    let uuid = sim.sim.add_printer(PrinterSpec::named("Addon MK4"));
    let supervisor = FakeHttp::start().await;
    supervisor.set(Reply::ok(
        json!({
            "result": "ok",
            "data": {
                "addon": "core_mosquitto",
                "host": "127.0.0.1",
                "port": auth_port,
                "ssl": false,
                "username": MQTT_USER,
                "password": MQTT_PASSWORD,
                "protocol": "3.1.1"
            }
        })
        .to_string(),
    ));
    let options = json!({
        "base_topic": "ha_addon",
        "discovery_mode": "entity",
        "poll_interval": 1,
        "active_poll_interval": 1,
        "printers": [],
        "commands_allow": ["PAUSE_PRINT"],
        "live": false,
        "log_level": "debug"
    });
    let sub = Subscriber::connect(&broker, &["ha_addon/#", "homeassistant/#"]).await;
    let mut addon = spawn_addon(&supervisor, &options, dir.path(), &sim.url());

    // The broker let it in with the Supervisor's credentials, under the options' base topic.
    let explain = || {
        format!(
            "add-on log:\n{}\nmosquitto:\n{}",
            log_of(dir.path()),
            broker.log()
        )
    };
    let state = tokio::select! {
        m = sub.wait_for("ha_addon/addon_mk4/state", WAIT, |m| m.json()["state"] == "IDLE") => m,
        _ = tokio::time::sleep(WAIT + Duration::from_secs(1)) => panic!("{}", explain()),
    };
    assert_eq!(state.json()["state"], "IDLE");
    // Entity-mode discovery, as the options asked; PAUSE_PRINT is the only command allowed.
    let node = format!("prusa_connect_{uuid}");
    sub.wait_for(
        &format!("homeassistant/sensor/{node}/progress/config"),
        WAIT,
        |m| !m.payload.is_empty(),
    )
    .await;
    let heads = supervisor.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(heads[0].starts_with("get /services/mqtt "), "{}", heads[0]);
    assert!(
        heads[0].contains(&format!("authorization: bearer {SUPERVISOR_TOKEN}")),
        "{}",
        heads[0]
    );
    assert!(
        broker.log().contains(&format!("u'{MQTT_USER}'")),
        "{}",
        explain()
    );

    Command::new("kill")
        .args(["-TERM", &addon.id().to_string()])
        .status()
        .unwrap();
    let status = exit_within(&mut addon, Duration::from_secs(10)).await;
    assert!(status.success(), "{status}: {}", explain());
    sub.wait_for("ha_addon/bridge/state", WAIT, |m| m.text() == "offline")
        .await;
    let log = log_of(dir.path());
    assert!(log.contains("add-on mode"), "{log}");
    // At debug level, still no password.
    assert!(!log.contains(MQTT_PASSWORD), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_without_an_mqtt_service_gives_one_clear_error() {
    let supervisor = FakeHttp::start().await;
    for (status, body) in [
        // What the Supervisor answers when no add-on provides the service.
        (
            400,
            r#"{"result":"error","message":"Service not enabled","data":{}}"#,
        ),
        (
            404,
            r#"{"result":"error","message":"Service does not exist"}"#,
        ),
        (200, r#"{"result":"error","message":"Service not enabled"}"#),
    ] {
        let dir = tempfile::tempdir().unwrap();
        supervisor.set(Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
        });
        let mut addon = spawn_addon(&supervisor, &json!({}), dir.path(), "http://127.0.0.1:9");
        let exit = exit_within(&mut addon, WAIT).await;
        assert!(!exit.success(), "{status} {body}: {exit}");
        let log = log_of(dir.path());
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 1, "{status} {body}: {log}");
        assert!(
            lines[0].starts_with("error: the Supervisor has no MQTT broker for this add-on: install and start the Mosquitto broker add-on"),
            "{log}"
        );
        assert!(
            lines[0].contains("Service not enabled") || status == 404,
            "{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_options_name_the_option_before_the_supervisor_is_asked() {
    let supervisor = FakeHttp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let options = json!({"poll_interval": "soon"});
    let mut addon = spawn_addon(&supervisor, &options, dir.path(), "http://127.0.0.1:9");
    assert!(!exit_within(&mut addon, WAIT).await.success());
    let log = log_of(dir.path());
    assert!(
        log.contains("add-on option `poll_interval` must be a whole number of seconds"),
        "{log}"
    );

    std::fs::write(dir.path().join("options.json"), "{\"live\": tru").unwrap();
    // spawn_addon rewrites options.json: start this one by hand with the broken file.
    let log_file = std::fs::File::create(dir.path().join("addon.log")).unwrap();
    let mut addon = Command::new(env!("CARGO_BIN_EXE_prusa-connect-mqtt"))
        .env("SUPERVISOR_TOKEN", SUPERVISOR_TOKEN)
        .env("SUPERVISOR_URL", supervisor.url())
        .env("PCM_ADDON_OPTIONS", dir.path().join("options.json"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .unwrap();
    assert!(!exit_within(&mut addon, WAIT).await.success());
    let log = log_of(dir.path());
    assert!(log.contains("options.json are not JSON"), "{log}");
    assert_eq!(supervisor.requests(), 0);
}
