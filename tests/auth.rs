//! Authentication end to end: the gateway and `login` against the simulator's account server
//! over HTTP; assertions on the broker, on the requests the simulator received, and on the
//! token file in the state directory.

mod common;

use std::time::Duration;

use common::broker::{Subscriber, TestBroker};
use common::gateway::{BASE, Gateway, Sim, config_with_credentials};
use prusa_connect_mqtt::auth::{self, StoredAuth, TokenStore, login::LoginError};
use prusa_connect_mqtt::connect::{ConnectClient, TokenSource};
use prusa_connect_sim::{Fault, FaultRule, PrinterSpec};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);
const EMAIL: &str = "maker@example.com";
const PASSWORD: &str = "correct horse battery staple";

fn refresh_config(
    broker: &TestBroker,
    sim: &Sim,
    dir: &std::path::Path,
    token: &str,
) -> prusa_connect_mqtt::config::Config {
    config_with_credentials(
        broker,
        sim,
        dir,
        &format!("refresh_token = \"{token}\""),
        "",
    )
}

fn token_requests(sim: &Sim) -> Vec<String> {
    sim.sim
        .requests()
        .into_iter()
        .filter(|r| r.path == "/o/token/")
        .map(|r| r.body)
        .collect()
}

fn form_value(body: &str, key: &str) -> Option<String> {
    url_pairs(body)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn url_pairs(body: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{body}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Waits until `cond` holds, polling; panics with `what` after `timeout`.
async fn until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn info(sub: &Subscriber) -> Value {
    sub.on(&format!("{BASE}/bridge/info"))
        .last()
        .map(|m| m.json())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expiring_every_two_seconds_during_a_print_lose_nothing() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    sim.sim.add_user(EMAIL, PASSWORD, None);
    sim.sim.set_access_ttl(Duration::from_secs(2));
    // A slow token endpoint: two refreshes at once would overlap and be counted.
    sim.sim.set_token_endpoint_delay(Duration::from_millis(150));
    let printers: Vec<String> = (0..12)
        .map(|i| {
            sim.sim
                .add_printer(PrinterSpec::named(&format!("Farm {i:02}")))
        })
        .collect();
    let r0 = sim.sim.issue_refresh_token(EMAIL);
    let dir = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let gateway = Gateway::start(refresh_config(&broker, &sim, dir.path(), &r0));

    let first = format!("{BASE}/farm_00/state");
    sub.wait_for(&first, WAIT, |m| m.json()["state"] == "IDLE")
        .await;
    for uuid in &printers {
        sim.sim.start_job(uuid, "part.bgcode", 3600, &[]);
    }
    sub.wait_for(&first, WAIT, |m| m.json()["state"] == "PRINTING")
        .await;
    let started = std::time::Instant::now();
    let before = token_requests(&sim).len();
    // Eight seconds of printing across four token lifetimes: every progress step must reach
    // the broker, on every printer.
    for step in 1..=16u32 {
        let progress = f64::from(step * 5);
        for uuid in &printers {
            sim.sim.set_progress(uuid, progress);
        }
        for i in 0..printers.len() {
            sub.wait_for(&format!("{BASE}/farm_{i:02}/state"), WAIT, |m| {
                m.json()["progress"] == progress
            })
            .await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    gateway.stop().await;

    let stats = sim.sim.account_stats();
    // Not one poll failed: no request was refused for an expired token, no printer went
    // offline, Connect was reachable throughout.
    assert_eq!(stats.access_tokens_rejected, 0, "{stats:?}");
    for i in 0..printers.len() {
        let avail = sub.on(&format!("{BASE}/farm_{i:02}/availability"));
        assert!(avail.iter().all(|m| m.text() == "online"), "farm_{i:02}");
    }
    assert!(
        sub.on(&format!("{BASE}/bridge/info"))
            .iter()
            .all(|m| m.json()["connect"]["reachable"] == true && m.json()["auth"]["status"] == "ok")
    );
    // One refresh per token lifetime (renewed at 3/4 of it), not one per printer or request,
    // never two at once, and every one rotated the refresh token.
    let bodies = token_requests(&sim);
    let lifetimes = elapsed / 2.0;
    let during = (bodies.len() - before) as f64;
    assert!(
        during >= lifetimes - 1.0 && during <= lifetimes / 0.75 + 1.0,
        "{during} refreshes in {elapsed:.1}s of 2s tokens"
    );
    assert_eq!(stats.max_concurrent_token_requests, 1);
    assert_eq!(stats.refreshes_refused, 0);
    assert_eq!(stats.refreshes_ok as usize, bodies.len());
    let used: Vec<String> = bodies
        .iter()
        .map(|b| form_value(b, "refresh_token").expect("refresh_token in the form"))
        .collect();
    let distinct: std::collections::HashSet<&String> = used.iter().collect();
    assert_eq!(distinct.len(), used.len(), "a refresh token was used twice");
    assert_eq!(used[0], r0);
    // The token on disk is the live one, stored privately.
    let stored = TokenStore::new(dir.path()).load().expect("auth.json");
    assert!(sim.sim.is_refresh_token_valid(&stored.refresh_token));
    assert!(!sim.sim.is_refresh_token_valid(&r0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_requests_on_an_expired_token_make_one_refresh() {
    let sim = Sim::start().await;
    sim.sim.add_user(EMAIL, PASSWORD, None);
    sim.sim.set_token_endpoint_delay(Duration::from_millis(200));
    let uuid = sim.sim.add_printer(PrinterSpec::named("MK4"));
    let r0 = sim.sim.issue_refresh_token(EMAIL);
    let dir = tempfile::tempdir().unwrap();
    let refresher = auth::Refresher::new(
        &sim.url(),
        dir.path(),
        Some(&SecretString::from(r0.clone())),
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    let client = ConnectClient::new(
        &sim.url(),
        TokenSource::Refresh(std::sync::Arc::new(refresher)),
        Duration::from_secs(5),
    )
    .unwrap();
    client.printer(&uuid).await.unwrap();
    assert_eq!(token_requests(&sim).len(), 1);
    // Fifty requests in flight at once with the same token, held up inside Connect...
    sim.sim
        .set_fault(Some(Fault::Delay(Duration::from_millis(400))));
    let path = format!("/app/printers/{uuid}");
    let in_flight = || sim.sim.requests().iter().filter(|r| r.path == path).count();
    let before = in_flight();
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let c = client.clone();
            let u = uuid.clone();
            tokio::spawn(async move { c.printer(&u).await })
        })
        .collect();
    until("50 requests in flight", WAIT, || in_flight() >= before + 50).await;
    // ...when the token dies: all fifty come back 401 and each asks for a renewal.
    sim.sim.expire_access_tokens();
    sim.sim.set_fault(None);
    for call in calls {
        call.await
            .unwrap()
            .expect("every request succeeds after one refresh");
    }
    let stats = sim.sim.account_stats();
    assert_eq!(stats.access_tokens_rejected, 50, "{stats:?}");
    assert_eq!(token_requests(&sim).len(), 2, "{stats:?}");
    assert_eq!(stats.max_concurrent_token_requests, 1);
    assert_eq!(stats.refreshes_refused, 0);
    assert_eq!(client.auth_status().status, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_refresh_token_says_run_login_and_recovers_once_a_new_one_is_stored() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    sim.sim.add_user(EMAIL, PASSWORD, None);
    sim.sim.add_printer(PrinterSpec::named("MK4"));
    let r0 = sim.sim.issue_refresh_token(EMAIL);
    let dir = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let gateway = Gateway::start(refresh_config(&broker, &sim, dir.path(), &r0));
    let avail = format!("{BASE}/mk4/availability");
    sub.wait_for(&avail, WAIT, |m| m.text() == "online").await;

    // The user signs out everywhere: every refresh token is revoked, the access token dies.
    sim.sim.revoke_refresh_tokens();
    sim.sim.expire_access_tokens();
    let info_topic = format!("{BASE}/bridge/info");
    let failed = sub
        .wait_for(&info_topic, WAIT, |m| {
            // (A printer's own request may meet the refusal first, in a poll whose list
            // still succeeded: the next poll fails as a whole.)
            m.json()["auth"]["status"] == "refresh_token_rejected"
                && m.json()["connect"]["reachable"] == false
        })
        .await
        .json();
    assert_eq!(failed["auth"]["action"], "run prusa-connect-mqtt login");
    assert_eq!(failed["auth"]["method"], "refresh_token");
    assert_eq!(failed["connect"]["reachable"], false);
    let error = failed["connect"]["last_error"].as_str().unwrap();
    assert!(
        error.contains("refused the refresh token") && error.contains("prusa-connect-mqtt login"),
        "{error}"
    );
    sub.wait_for(&avail, WAIT, |m| m.text() == "offline").await;

    // Waiting for a person costs the account server nothing: the refused token is not sent
    // again, however many polls pass. Such a poll asks Connect nothing (there is no token to
    // send); it shows as `bridge/info` saying when the last poll failed (to the second): wait
    // for two more failed polls, in two later seconds.
    let refused_at = token_requests(&sim).len();
    let mut last_failed = failed["connect"]["last_error_at"].clone();
    for _ in 0..2 {
        let later = sub
            .wait_for(&info_topic, WAIT, |m| {
                let failed_at = &m.json()["connect"]["last_error_at"];
                failed_at.as_str() > last_failed.as_str()
                    && m.json()["connect"]["reachable"] == false
            })
            .await;
        last_failed = later.json()["connect"]["last_error_at"].clone();
    }
    assert_eq!(token_requests(&sim).len(), refused_at);

    // `login` stores a new token in the state directory; no restart needed.
    let mark = sub.mark();
    let fresh = sim.sim.issue_refresh_token(EMAIL);
    TokenStore::new(dir.path())
        .save(&StoredAuth {
            refresh_token: fresh.clone(),
            access_token: None,
            access_expires_at: None,
            obtained_at: 1,
            configured_sha256: None,
            source: "login".into(),
            account: None,
        })
        .unwrap();
    sub.wait_for_after(mark, &info_topic, WAIT, |m| {
        m.json()["auth"]["status"] == "ok" && m.json()["connect"]["reachable"] == true
    })
    .await;
    sub.wait_for_after(mark, &avail, WAIT, |m| m.text() == "online")
        .await;
    assert!(!sim.sim.is_refresh_token_valid(&fresh), "it was rotated");
    gateway.stop().await;
    assert!(info(&sub)["auth"]["action"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_used_elsewhere_is_refused_with_advice() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    sim.sim.add_user(EMAIL, PASSWORD, None);
    sim.sim.add_printer(PrinterSpec::named("MK4"));
    let r0 = sim.sim.issue_refresh_token(EMAIL);
    // Someone else (a second gateway, a script) uses the same token first.
    let other = reqwest::Client::new()
        .post(format!("{}/o/token/", sim.url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", r0.as_str()),
            ("client_id", auth::CLIENT_ID),
        ])
        .send()
        .await
        .unwrap();
    assert!(other.status().is_success());
    let dir = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let gateway = Gateway::start(refresh_config(&broker, &sim, dir.path(), &r0));
    let info = sub
        .wait_for(&format!("{BASE}/bridge/info"), WAIT, |m| {
            m.json()["auth"]["status"] == "refresh_token_rejected"
        })
        .await
        .json();
    assert!(
        info["auth"]["detail"]
            .as_str()
            .unwrap()
            .contains("invalid_grant")
    );
    assert_eq!(sim.sim.account_stats().refreshes_refused, 1);
    gateway.stop().await;
    assert!(TokenStore::new(dir.path()).load().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_server_down_keeps_the_valid_token_and_reports_when_it_runs_out() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    sim.sim.add_user(EMAIL, PASSWORD, None);
    sim.sim.set_access_ttl(Duration::from_secs(3));
    sim.sim.add_printer(PrinterSpec::named("MK4"));
    let r0 = sim.sim.issue_refresh_token(EMAIL);
    let dir = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let gateway = Gateway::start(refresh_config(&broker, &sim, dir.path(), &r0));
    let info_topic = format!("{BASE}/bridge/info");
    sub.wait_for(&info_topic, WAIT, |m| m.json()["auth"]["status"] == "ok")
        .await;
    sim.sim.set_account_fault(Some(Fault::Status(503)));
    let down = sub
        .wait_for(&info_topic, WAIT, |m| {
            m.json()["auth"]["status"] == "account_server_unreachable"
        })
        .await
        .json();
    assert!(down["auth"]["action"].is_null(), "temporary: no action");
    assert!(
        down["connect"]["last_error"]
            .as_str()
            .unwrap()
            .contains("HTTP 503"),
        "{down}"
    );
    let mark = sub.mark();
    sim.sim.set_account_fault(None);
    sub.wait_for_after(mark, &info_topic, WAIT, |m| {
        m.json()["auth"]["status"] == "ok" && m.json()["connect"]["reachable"] == true
    })
    .await;
    gateway.stop().await;
    assert_eq!(sim.sim.account_stats().refreshes_refused, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_new_token_is_stored_loses_nothing() {
    let sim = Sim::start().await;
    sim.sim.add_user(EMAIL, PASSWORD, None);
    let uuid = sim.sim.add_printer(PrinterSpec::named("MK4"));
    let r0 = sim.sim.issue_refresh_token(EMAIL);
    let dir = tempfile::tempdir().unwrap();
    let configured = SecretString::from(r0.clone());
    let new = || {
        auth::Refresher::new(
            &sim.url(),
            dir.path(),
            Some(&configured),
            None,
            Duration::from_secs(5),
        )
        .unwrap()
    };
    // Receive a new token, then die before using it.
    new().refresh_now().await.unwrap();
    assert!(!sim.sim.is_refresh_token_valid(&r0));
    let stored = TokenStore::new(dir.path()).load().unwrap();
    assert!(sim.sim.is_refresh_token_valid(&stored.refresh_token));
    // The restarted process still has the old token in its config: the stored one wins, and
    // the token it gets works with Connect.
    let restarted = std::sync::Arc::new(new());
    restarted.refresh_now().await.unwrap();
    let client = ConnectClient::new(
        &sim.url(),
        TokenSource::Refresh(restarted),
        Duration::from_secs(5),
    )
    .unwrap();
    client.printer(&uuid).await.unwrap();
    assert_eq!(sim.sim.account_stats().refreshes_refused, 0);
    // A token the user pastes into the config later wins over the stored one.
    let pasted = sim.sim.issue_refresh_token(EMAIL);
    let pasted_secret = SecretString::from(pasted.clone());
    let with_pasted = auth::Refresher::new(
        &sim.url(),
        dir.path(),
        Some(&pasted_secret),
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    with_pasted.refresh_now().await.unwrap();
    assert!(
        !sim.sim.is_refresh_token_valid(&pasted),
        "the pasted one was used"
    );
    assert_eq!(sim.sim.account_stats().refreshes_refused, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_mid_run_restarts_on_the_stored_token() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    sim.sim.add_user(EMAIL, PASSWORD, None);
    sim.sim.set_access_ttl(Duration::from_secs(2));
    sim.sim.add_printer(PrinterSpec::named("MK4"));
    let r0 = sim.sim.issue_refresh_token(EMAIL);
    let dir = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let gateway = Gateway::start(refresh_config(&broker, &sim, dir.path(), &r0));
    // Killed after a refresh whose new token is stored (a kill between Connect's answer and
    // the write would lose the rotated token, as any crash at that moment would).
    until("two refreshes, the last one stored", WAIT, || {
        token_requests(&sim).len() >= 2
            && TokenStore::new(dir.path())
                .load()
                .is_some_and(|s| sim.sim.is_refresh_token_valid(&s.refresh_token))
    })
    .await;
    gateway.kill().await;

    let before = sub.on(&format!("{BASE}/bridge/info")).len();
    let gateway = Gateway::start(refresh_config(&broker, &sim, dir.path(), &r0));
    until("a fresh bridge/info", WAIT, || {
        sub.on(&format!("{BASE}/bridge/info"))
            .iter()
            .skip(before)
            .any(|m| m.json()["connect"]["reachable"] == true)
    })
    .await;
    gateway.stop().await;
    assert_eq!(sim.sim.account_stats().refreshes_refused, 0);
}

async fn login(
    sim: &Sim,
    email: &str,
    password: &str,
    code: Option<&str>,
) -> Result<auth::login::LoginTokens, LoginError> {
    let code = code.map(|c| SecretString::from(c.to_string()));
    auth::login::login(
        &sim.url(),
        email,
        &SecretString::from(password.to_string()),
        move || Ok(code.clone()),
        Duration::from_secs(5),
    )
    .await
}

#[tokio::test]
async fn login_without_and_with_two_factor_and_with_mistakes() {
    let sim = Sim::start().await;
    sim.sim.add_user(EMAIL, PASSWORD, None);
    sim.sim
        .add_user("2fa@example.com", "second pw", Some("123456"));

    let tokens = login(&sim, EMAIL, PASSWORD, None).await.unwrap();
    assert!(
        sim.sim
            .is_refresh_token_valid(tokens.refresh_token.expose_secret())
    );
    let ok = reqwest::Client::new()
        .get(format!("{}/app/printers", sim.url()))
        .bearer_auth(tokens.access_token.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // The code went to the token endpoint with the PKCE verifier; nothing was fetched from
    // the app's callback (it is not on this server).
    let exchange = token_requests(&sim).pop().unwrap();
    assert_eq!(
        form_value(&exchange, "grant_type").unwrap(),
        "authorization_code"
    );
    assert!(form_value(&exchange, "code_verifier").unwrap().len() >= 43);

    let tokens = login(&sim, "2fa@example.com", "second pw", Some("123456"))
        .await
        .unwrap();
    assert!(
        sim.sim
            .is_refresh_token_valid(tokens.refresh_token.expose_secret())
    );

    let wrong = login(&sim, EMAIL, "wrong", None).await.err().unwrap();
    assert!(matches!(wrong, LoginError::WrongCredentials(_)), "{wrong}");
    assert!(wrong.to_string().starts_with("wrong email or password"));
    let wrong_code = login(&sim, "2fa@example.com", "second pw", Some("000000"))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(wrong_code, LoginError::WrongCode(_)),
        "{wrong_code}"
    );
    let no_code = login(&sim, "2fa@example.com", "second pw", None)
        .await
        .err()
        .unwrap();
    assert!(matches!(no_code, LoginError::CodeNeeded), "{no_code}");
    let stats = sim.sim.account_stats();
    assert_eq!(stats.logins_failed, 1);
    assert_eq!(stats.totp_failed, 1);
    assert_eq!(stats.codes_exchanged, 2);

    // Nothing listens here.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let err = auth::login::login(
        &url,
        EMAIL,
        &SecretString::from(PASSWORD.to_string()),
        || Ok(None),
        Duration::from_secs(2),
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(err, LoginError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("connect.auth_url"));
}

/// The binary, as a user runs it, with the answers piped in.
fn run_login(config: &std::path::Path, input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_prusa-connect-mqtt"))
        .args(["login", "--config"])
        .arg(config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_command_stores_a_working_token_and_never_prints_secrets() {
    let sim = Sim::start().await;
    sim.sim.add_user(EMAIL, PASSWORD, Some("424242"));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[connect]\nurl = {url:?}\nauth_url = {url:?}\n[state]\ndir = {:?}\n",
            dir.path().join("state"),
            url = sim.url()
        ),
    )
    .unwrap();

    let c = config.clone();
    let out = tokio::task::spawn_blocking(move || run_login(&c, &format!("{EMAIL}\nwrong\n")))
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("wrong email or password"), "{stderr}");

    let c = config.clone();
    let out = tokio::task::spawn_blocking(move || {
        run_login(&c, &format!("{EMAIL}\n{PASSWORD}\n424242\n"))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("Logged in"), "{stdout}");
    let stored = TokenStore::new(&dir.path().join("state")).load().unwrap();
    assert!(sim.sim.is_refresh_token_valid(&stored.refresh_token));
    for secret in [PASSWORD, stored.refresh_token.as_str()] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret));
    }
    let on_disk = std::fs::read_to_string(dir.path().join("state").join(auth::AUTH_FILE)).unwrap();
    assert!(!on_disk.contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_rotating_the_token_does_not_interrupt_the_gateway() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    sim.sim.add_user(EMAIL, PASSWORD, None);
    sim.sim.set_access_ttl(Duration::from_secs(2));
    sim.sim.add_printer(PrinterSpec::named("MK4"));
    let r0 = sim.sim.issue_refresh_token(EMAIL);
    let dir = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let gateway = Gateway::start(refresh_config(&broker, &sim, dir.path(), &r0));
    let avail = format!("{BASE}/mk4/availability");
    sub.wait_for(&avail, WAIT, |m| m.text() == "online").await;
    until("a first renewal", WAIT, || !token_requests(&sim).is_empty()).await;

    // `check` (or `login`) on the same state directory rotates the token behind its back.
    let mark = sub.mark();
    let other =
        auth::Refresher::new(&sim.url(), dir.path(), None, None, Duration::from_secs(5)).unwrap();
    other.refresh_now().await.unwrap();
    let before = sim.sim.account_stats().refreshes_ok;
    until("the gateway's next renewals", WAIT, || {
        sim.sim.account_stats().refreshes_ok >= before + 2
    })
    .await;
    gateway.stop().await;
    let stats = sim.sim.account_stats();
    assert_eq!(
        stats.refreshes_refused, 1,
        "one refused try, then the new token: {stats:?}"
    );
    let after: Vec<_> = sub.messages().into_iter().skip(mark).collect();
    assert!(
        after
            .iter()
            .filter(|m| m.topic == avail)
            .all(|m| m.text() == "online"),
        "the printer never went offline"
    );
    assert!(
        after
            .iter()
            .filter(|m| m.topic == format!("{BASE}/bridge/info"))
            .all(|m| m.json()["auth"]["status"] == "ok")
    );
}

/// Where a refresh token replaces a refused one: `auth.json` (written by `login`) or
/// `connect.refresh_token_file`.
#[derive(Clone, Copy, Debug)]
enum NewTokenIn {
    AuthJson,
    RefreshTokenFile,
}

/// The refresh token in use is refused; a new one is in a file that blocks until a task of the
/// same (one-thread) runtime writes it. Reading it must not hold up that runtime.
fn refresh_with_a_new_token_in_a_file_that_blocks(place: NewTokenIn) {
    common::blocking::on_one_thread("a refresh reading the new token", move || async move {
        let sim = Sim::start().await;
        sim.sim.add_user(EMAIL, PASSWORD, None);
        let refused = sim.sim.issue_refresh_token(EMAIL);
        sim.sim.revoke_refresh_tokens();
        let fresh = sim.sim.issue_refresh_token(EMAIL);
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("refresh_token");
        let refresher = auth::Refresher::new(
            &sim.url(),
            dir.path(),
            Some(&SecretString::from(refused)),
            Some(token_file.clone()),
            Duration::from_secs(5),
        )
        .unwrap();
        let writer = match place {
            NewTokenIn::AuthJson => {
                let stored = StoredAuth {
                    refresh_token: fresh.clone(),
                    access_token: None,
                    access_expires_at: None,
                    obtained_at: 1,
                    configured_sha256: None,
                    source: "login".into(),
                    account: None,
                };
                let fifo = common::blocking::make_fifo(&dir.path().join(auth::AUTH_FILE));
                common::blocking::write_fifo_when_read(&fifo, serde_json::to_vec(&stored).unwrap())
            }
            NewTokenIn::RefreshTokenFile => {
                let fifo = common::blocking::make_fifo(&token_file);
                common::blocking::write_fifo_when_read(&fifo, fresh.clone())
            }
        };
        refresher
            .refresh_now()
            .await
            .unwrap_or_else(|e| panic!("{place:?}: {e}"));
        writer.await.unwrap();
        assert!(!sim.sim.is_refresh_token_valid(&fresh), "it was used");
        let stored = TokenStore::new(dir.path()).load().expect("auth.json");
        assert!(sim.sim.is_refresh_token_valid(&stored.refresh_token));
    });
}

#[test]
fn a_new_refresh_token_in_auth_json_is_read_off_the_runtime() {
    refresh_with_a_new_token_in_a_file_that_blocks(NewTokenIn::AuthJson);
}

#[test]
fn a_new_refresh_token_in_the_token_file_is_read_off_the_runtime() {
    refresh_with_a_new_token_in_a_file_that_blocks(NewTokenIn::RefreshTokenFile);
}

/// How long a stop may take: the bridge's grace for Connect (2 s), the flush of `offline`,
/// and a little slack. (`Gateway::stop` itself would wait 10 s.)
const STOP_WITHIN: Duration = Duration::from_secs(6);

/// A gateway on a refresh token whose account server takes longer to answer than the
/// gateway's request timeout (30 s): only abandoning the refresh gets it out in time.
fn hanging_account_server_config(
    broker: &TestBroker,
    sim: &Sim,
    dir: &std::path::Path,
) -> prusa_connect_mqtt::config::Config {
    sim.sim.add_user(EMAIL, PASSWORD, None);
    let r0 = sim.sim.issue_refresh_token(EMAIL);
    let mut config = refresh_config(broker, sim, dir, &r0);
    config.connect.request_timeout = Duration::from_secs(30);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_a_hanging_token_renewal_for_a_command_exits_within_a_few_seconds() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let uuid = sim.sim.add_printer(PrinterSpec::named("MK4"));
    sim.sim.start_job(&uuid, "cube.bgcode", 3600, &[]);
    let dir = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let gateway = Gateway::start(hanging_account_server_config(&broker, &sim, dir.path()));
    sub.wait_for(&format!("{BASE}/mk4/availability"), WAIT, |m| {
        m.text() == "online"
    })
    .await;

    // The account server stops answering, and Connect refuses the token of the command's
    // first request: the command waits for a renewal that hangs.
    sim.sim.set_token_endpoint_delay(Duration::from_secs(60));
    sim.sim.add_fault(
        FaultRule::new(Fault::Status(401))
            .on_paths_containing("/commands")
            .times(1),
    );
    sub.publish(&format!("{BASE}/mk4/command"), "pause", false)
        .await;
    until(
        "the command refused, then a renewal under way",
        WAIT,
        || {
            let requests = sim.sim.requests();
            let refused = requests
                .iter()
                .position(|r| r.path.contains("/commands") && r.status == Some(401));
            refused.is_some_and(|at| requests[at..].iter().any(|r| r.path == "/o/token/"))
        },
    )
    .await;

    tokio::time::timeout(STOP_WITHIN, gateway.stop())
        .await
        .expect("the gateway exits within a few seconds of the stop");
    let reply = sub
        .wait_for(&format!("{BASE}/mk4/command/response"), WAIT, |_| true)
        .await
        .json();
    assert_eq!(reply["status"], "error", "{reply}");
    assert!(
        reply["error"].as_str().unwrap_or("").contains("stopping"),
        "{reply}"
    );
    sub.wait_for(&format!("{BASE}/bridge/state"), WAIT, |m| {
        m.text() == "offline"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_the_first_poll_waits_for_a_hanging_token_renewal_exits_within_a_few_seconds()
{
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    sim.sim.add_printer(PrinterSpec::named("MK4"));
    sim.sim.set_token_endpoint_delay(Duration::from_secs(60));
    let dir = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let gateway = Gateway::start(hanging_account_server_config(&broker, &sim, dir.path()));
    until("the first renewal under way", WAIT, || {
        !token_requests(&sim).is_empty()
    })
    .await;

    tokio::time::timeout(STOP_WITHIN, gateway.stop())
        .await
        .expect("the gateway exits within a few seconds of the stop");
    sub.wait_for(&format!("{BASE}/bridge/state"), WAIT, |m| {
        m.text() == "offline"
    })
    .await;
}
