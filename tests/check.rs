//! `prusa-connect-mqtt check` as a new user runs it: a good setup, and each likely mistake,
//! judged by the exit code and the advice printed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::broker::{Subscriber, TestBroker, reserve_port};
use common::gateway::{Sim, TOKEN};
use prusa_connect_sim::PrinterSpec;

struct Outcome {
    code: i32,
    stdout: String,
}

/// Runs `check` on `config` (written to a file in `dir`).
async fn check(dir: &Path, config: &str) -> Outcome {
    let path = dir.join("config.toml");
    std::fs::write(&path, config).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_prusa-connect-mqtt"))
            .args(["check", "--config"])
            .arg(&path)
            .env_remove("PRUSA_CONNECT_MQTT__MQTT__URL")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr),
    }
}

fn config(sim: &Sim, broker_url: &str, dir: &Path, connect_extra: &str, extra: &str) -> String {
    format!(
        r#"
[connect]
url = "{url}"
auth_url = "{url}"
request_timeout = "3s"
{connect_extra}
[mqtt]
url = "{broker_url}"
[state]
dir = {state:?}
{extra}
"#,
        url = sim.url(),
        state = dir.join("state"),
    )
}

async fn setup() -> (TestBroker, Sim, tempfile::TempDir) {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    sim.sim.add_printer(PrinterSpec::named("Busy MK4"));
    sim.sim.add_printer(PrinterSpec::named("MINI"));
    (broker, sim, tempfile::tempdir().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_setup_lists_printers_topics_and_entities_and_exits_0() {
    let (broker, sim, dir) = setup().await;
    let token = format!("access_token = \"{TOKEN}\"");
    let out = check(
        dir.path(),
        &config(&sim, &broker.url(), dir.path(), &token, ""),
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    for needle in [
        "the account has 2 printer(s); 2 will be bridged",
        "Busy MK4",
        "topics prusa_connect/busy_mk4/",
        "sensor.busy_mk4_progress",
        // What discovery makes, not a guess from the entity's name.
        "sensor.busy_mk4_temp_nozzle",
        "button.mini_pause",
        "event.busy_mk4_print_finished",
        "connected",
        "All good",
    ] {
        assert!(out.stdout.contains(needle), "{needle:?} in\n{}", out.stdout);
    }
    assert!(!out.stdout.contains(TOKEN), "the token is never printed");
    assert!(
        !out.stdout.contains("sensor.busy_mk4_nozzle_temperature"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoolman_is_read_and_a_wrong_address_is_a_problem() {
    let (broker, sim, dir) = setup().await;
    let (stand_in, url) = common::gateway::spoolman().await;
    stand_in.add_spool("Polymaker", "PolyTerra Charcoal Black", "PLA", 1000.0);
    let token = format!("access_token = \"{TOKEN}\"");
    let with = |url: &str| {
        let extra = format!("[spoolman]\nurl = \"{url}\"");
        config(&sim, &broker.url(), dir.path(), &token, &extra)
    };
    let out = check(dir.path(), &with(&url)).await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    for needle in [
        "spool(s), the first #1 Polymaker PolyTerra Charcoal Black (PLA)",
        "select.busy_mk4_spool",
        "sensor.busy_mk4_spool_remaining",
    ] {
        assert!(out.stdout.contains(needle), "{needle:?} in\n{}", out.stdout);
    }
    let port = reserve_port();
    let out = check(dir.path(), &with(&format!("http://127.0.0.1:{port}"))).await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("Spoolman did not answer: connection failed"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("spoolman.url is Spoolman's address"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_broker_port_says_nothing_listens_there() {
    let (_broker, sim, dir) = setup().await;
    let port = reserve_port();
    let token = format!("access_token = \"{TOKEN}\"");
    let out = check(
        dir.path(),
        &config(
            &sim,
            &format!("mqtt://127.0.0.1:{port}"),
            dir.path(),
            &token,
            "",
        ),
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(out.stdout.contains("connection refused"), "{}", out.stdout);
    assert!(out.stdout.contains("mqtt.url"), "{}", out.stdout);
    assert!(out.stdout.contains("1 problem found"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_access_token_says_when_and_what_to_do() {
    let (broker, sim, dir) = setup().await;
    let claims = URL_SAFE_NO_PAD.encode(br#"{"exp": 1700000000, "type": "access"}"#);
    let expired = format!("eyJhbGciOiJSUzI1NiJ9.{claims}.c2ln");
    let out = check(
        dir.path(),
        &config(
            &sim,
            &broker.url(),
            dir.path(),
            &format!("access_token = \"{expired}\""),
            "",
        ),
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stdout.contains("expired at 2023-11-14T22:13:20Z"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("run prusa-connect-mqtt login"));
    assert!(!out.stdout.contains(&expired));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_refresh_token_says_run_login() {
    let (broker, sim, dir) = setup().await;
    sim.sim.add_user("me@example.com", "pw", None);
    let refresh = sim.sim.issue_refresh_token("me@example.com");
    sim.sim.revoke_refresh_tokens();
    let out = check(
        dir.path(),
        &config(
            &sim,
            &broker.url(),
            dir.path(),
            &format!("refresh_token = \"{refresh}\""),
            "",
        ),
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stdout.contains("refused the refresh token"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("to fix: run prusa-connect-mqtt login"));
    assert!(!out.stdout.contains(&refresh));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_web_page_on_and_nobody_logged_in_check_says_to_log_in() {
    let (broker, sim, dir) = setup().await;
    let out = check(
        dir.path(),
        &config(
            &sim,
            &broker.url(),
            dir.path(),
            "",
            "[web]\nlisten = \"127.0.0.1:0\"\n",
        ),
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("credentials: nobody is logged in: log in on the web page"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("refresh token from"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typo_in_a_key_names_the_key() {
    let (broker, sim, dir) = setup().await;
    let token = format!("access_token = \"{TOKEN}\"\npoll_intervall = \"5s\"");
    let out = check(
        dir.path(),
        &config(&sim, &broker.url(), dir.path(), &token, ""),
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(out.stdout.contains("poll_intervall"), "{}", out.stdout);
    assert!(out.stdout.contains("connect"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_printer_filter_matching_nothing_lists_the_real_names() {
    let (broker, sim, dir) = setup().await;
    let token = format!("access_token = \"{TOKEN}\"\nprinters = [\"Busy MK3\"]");
    let out = check(
        dir.path(),
        &config(&sim, &broker.url(), dir.path(), &token, ""),
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("connect.printers: \"Busy MK3\" is neither the name nor the uuid"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("names: Busy MK4, MINI"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("0 will be bridged"));
}

/// A CA and a server certificate for 127.0.0.1, made with openssl; `None` without openssl.
fn make_certificates(dir: &Path) -> Option<()> {
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|_| ())
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ])?;
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ])?;
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").ok()?;
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.crt",
    ])?;
    // mosquitto started as root reads them after dropping to its own user.
    use std::os::unix::fs::PermissionsExt;
    for (path, mode) in [(dir.to_path_buf(), 0o755), (dir.join("server.key"), 0o644)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).ok()?;
    }
    Some(())
}

/// mosquitto with a TLS listener (its port returned) beside its plain one, the certificates
/// in `dir`; `None` (the test is skipped) without openssl or mosquitto.
fn tls_broker(dir: &Path) -> Option<(TestBroker, u16)> {
    tls_broker_with(dir, "")
}

/// [`tls_broker`] with `extra` settings for the TLS listener.
fn tls_broker_with(dir: &Path, extra: &str) -> Option<(TestBroker, u16)> {
    if make_certificates(dir).is_none() {
        eprintln!("skipped: needs openssl");
        return None;
    }
    let tls_port = reserve_port();
    let certs = dir.display();
    let Some(broker) = TestBroker::start_mosquitto_with(&format!(
        "listener {tls_port} 127.0.0.1\n\
         cafile {certs}/ca.crt\ncertfile {certs}/server.crt\nkeyfile {certs}/server.key\n{extra}"
    )) else {
        eprintln!("skipped: needs mosquitto");
        return None;
    };
    Some((broker, tls_port))
}

/// Writes `run.toml` in `dir` for a gateway that polls `sim` fast and publishes under `base`
/// to the TLS listener of [`tls_broker`], trusting its CA; `mqtt_extra` adds `[mqtt]` keys.
fn tls_run_config(dir: &Path, sim: &Sim, tls_port: u16, base: &str, mqtt_extra: &str) -> PathBuf {
    let config = dir.join("run.toml");
    let body = format!(
        r#"
[connect]
url = "{url}"
access_token = "{TOKEN}"
poll_interval = "200ms"
max_requests_per_second = 0
[mqtt]
url = "mqtts://127.0.0.1:{tls_port}"
ca_file = "{certs}/ca.crt"
{mqtt_extra}base_topic = "{base}"
client_id = "{base}-run-{pid}"
[state]
dir = {state:?}
"#,
        url = sim.url(),
        certs = dir.display(),
        pid = std::process::id(),
        state = dir.join("state"),
    );
    std::fs::write(&config, body).unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_the_brokers_ca_says_which_key_to_set_and_with_it_connects() {
    let sim = Sim::start().await;
    sim.sim.add_printer(PrinterSpec::named("MINI"));
    let dir = tempfile::tempdir().unwrap();
    let Some((broker, tls_port)) = tls_broker(dir.path()) else {
        return;
    };
    let certs = dir.path().display();
    let token = format!("access_token = \"{TOKEN}\"");
    let url = format!("mqtts://127.0.0.1:{tls_port}");
    let out = check(dir.path(), &config(&sim, &url, dir.path(), &token, "")).await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stdout.contains("TLS failed"),
        "{}\nmosquitto: {}",
        out.stdout,
        broker.log()
    );
    assert!(out.stdout.contains("mqtt.ca_file"), "{}", out.stdout);

    let with_ca = config(&sim, &url, dir.path(), &token, "")
        .replace("[state]", &format!("ca_file = \"{certs}/ca.crt\"\n[state]"));
    let out = check(dir.path(), &with_ca).await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stdout
            .contains(&format!("MQTT broker {url}: connected")),
        "{}",
        out.stdout
    );
}

/// The gateway's own session speaks TLS as `check` does: given the broker's CA it connects
/// over mqtts://, publishes its printers, takes a command and answers it, and says `offline`
/// when it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_runs_over_tls_with_the_brokers_ca() {
    const WAIT: Duration = Duration::from_secs(20);
    let sim = Sim::start().await;
    let uuid = sim.sim.add_printer(PrinterSpec::named("Busy MK4"));
    sim.sim.start_job(&uuid, "cube.bgcode", 600, &[]);
    let dir = tempfile::tempdir().unwrap();
    let Some((broker, tls_port)) = tls_broker(dir.path()) else {
        return;
    };
    // The test listens on the broker's plain listener.
    let sub = Subscriber::connect(&broker, &["tls/#"]).await;
    let config = tls_run_config(dir.path(), &sim, tls_port, "tls", "");
    let mut gateway = common::process::spawn_config(&config, dir.path(), &[]);
    let log = || std::fs::read_to_string(dir.path().join("gateway.log")).unwrap_or_default();
    let online = tokio::time::timeout(
        WAIT,
        sub.wait_for("tls/bridge/state", WAIT, |m| m.payload == b"online"),
    )
    .await;
    assert!(
        online.is_ok(),
        "no `online` over TLS; gateway log:\n{}",
        log()
    );
    sub.wait_for("tls/busy_mk4/state", WAIT, |m| {
        m.json()["state"] == "PRINTING"
    })
    .await;
    sub.publish("tls/busy_mk4/command", "pause", false).await;
    let reply = sub
        .wait_for("tls/busy_mk4/command/response", WAIT, |_| true)
        .await
        .json();
    assert_eq!(reply["command"], "PAUSE_PRINT", "{reply}");
    assert!(
        sim.sim
            .requests()
            .iter()
            .any(|r| r.body.contains("PAUSE_PRINT")),
        "the pause did not reach Connect"
    );
    common::process::signal(&gateway, "-TERM");
    let status = common::process::exit_within(&mut gateway, WAIT).await;
    assert!(status.success(), "{status:?}; gateway log:\n{}", log());
    sub.wait_for("tls/bridge/state", WAIT, |m| m.payload == b"offline")
        .await;
}

/// A client certificate signed by the CA of [`make_certificates`] (`client.crt`,
/// `client.key`); `None` without openssl.
fn make_client_certificate(dir: &Path) -> Option<()> {
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|_| ())
    };
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=gateway",
        "-keyout",
        "client.key",
        "-out",
        "client.csr",
    ])?;
    // Extensions make it an X.509 v3 certificate: webpki refuses v1.
    std::fs::write(dir.join("client.cnf"), "extendedKeyUsage=clientAuth\n").ok()?;
    run(&[
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-extfile",
        "client.cnf",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "client.crt",
    ])
}

/// A broker that asks for a client certificate (`mqtt.client_cert_file`,
/// `mqtt.client_key_file`): the gateway's session shows one and is let in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_shows_its_client_certificate_to_a_broker_that_asks() {
    const WAIT: Duration = Duration::from_secs(20);
    let sim = Sim::start().await;
    sim.sim.add_printer(PrinterSpec::named("MINI"));
    let dir = tempfile::tempdir().unwrap();
    let Some((broker, tls_port)) = tls_broker_with(dir.path(), "require_certificate true\n") else {
        return;
    };
    assert!(
        make_client_certificate(dir.path()).is_some(),
        "openssl made the CA but not a client certificate"
    );
    let certs = dir.path().display();
    let sub = Subscriber::connect(&broker, &["tlscert/#"]).await;
    let client_keys = format!(
        "client_cert_file = \"{certs}/client.crt\"\nclient_key_file = \"{certs}/client.key\"\n"
    );
    let config = tls_run_config(dir.path(), &sim, tls_port, "tlscert", &client_keys);
    let _gateway = common::process::spawn_config(&config, dir.path(), &[]);
    let log = || std::fs::read_to_string(dir.path().join("gateway.log")).unwrap_or_default();
    let online = tokio::time::timeout(
        WAIT,
        sub.wait_for("tlscert/bridge/state", WAIT * 2, |m| m.payload == b"online"),
    )
    .await;
    assert!(
        online.is_ok(),
        "no `online` with a client certificate; gateway log:\n{}\nmosquitto: {}",
        log(),
        broker.log()
    );
    sub.wait_for("tlscert/mini/state", WAIT, |m| {
        m.json()["state"].is_string()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_channel_is_tried_and_a_refused_login_is_a_problem() {
    let (broker, sim, dir) = setup().await;
    let connect = format!(
        "access_token = \"{TOKEN}\"\nlive = true\nlive_url = \"ws://{}/mqtt\"",
        sim.addr
    );
    let cfg = config(&sim, &broker.url(), dir.path(), &connect, "");
    let out = check(dir.path(), &cfg).await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stdout.contains("live channel ws://")
            && out.stdout.contains("logged in; Busy MK4 said"),
        "{}",
        out.stdout
    );
    assert_eq!(sim.sim.live_stats().connects_ok, 1);

    sim.sim.set_live_refuse_all(true);
    let out = check(dir.path(), &cfg).await;
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(out.stdout.contains("was refused"), "{}", out.stdout);
    assert!(
        out.stdout.contains("keeps polling without it"),
        "{}",
        out.stdout
    );
}
