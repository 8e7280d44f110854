//! No token, code or password appears in any log line at any level: every log line of a run
//! through refreshes, a revoked token, a recovery and logins (right and wrong) is captured at
//! TRACE and searched for every secret that crossed the wire.

mod common;

use std::time::Duration;

use common::broker::{Subscriber, TestBroker};
use common::gateway::{BASE, Gateway, Sim, config_with_credentials};
use prusa_connect_mqtt::auth::{self, StoredAuth, TokenStore};
use prusa_connect_sim::PrinterSpec;
use secrecy::SecretString;

const WAIT: Duration = Duration::from_secs(15);
const PASSWORD: &str = "pw-Zebra-Quartz-91";
const TOTP: &str = "770077";

fn form_values(body: &str) -> Vec<String> {
    reqwest::Url::parse(&format!("http://x/?{body}"))
        .unwrap()
        .query_pairs()
        .filter(|(k, _)| {
            matches!(
                k.as_ref(),
                "refresh_token" | "code" | "code_verifier" | "password"
            )
        })
        .map(|(_, v)| v.into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log_at_any_level() {
    let captured = common::logs::capture("trace");

    let broker = TestBroker::start();
    let sim = Sim::start().await;
    sim.sim.add_user("log@example.com", PASSWORD, Some(TOTP));
    sim.sim.set_access_ttl(Duration::from_secs(1));
    sim.sim.add_printer(PrinterSpec::named("MK4"));
    let r0 = sim.sim.issue_refresh_token("log@example.com");
    let dir = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let config = config_with_credentials(
        &broker,
        &sim,
        dir.path(),
        &format!("refresh_token = \"{r0}\""),
        "[log]\nlevel = \"trace\"",
    );
    let gateway = Gateway::start(config);
    let info = format!("{BASE}/bridge/info");
    sub.wait_for(&info, WAIT, |m| m.json()["auth"]["status"] == "ok")
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while sim.sim.account_stats().refreshes_ok < 4 {
        assert!(tokio::time::Instant::now() < deadline, "refreshes happen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.sim.revoke_refresh_tokens();
    sim.sim.expire_access_tokens();
    sub.wait_for(&info, WAIT, |m| {
        m.json()["auth"]["status"] == "refresh_token_rejected"
    })
    .await;

    // A login, a wrong one, and the token stored for the gateway to find.
    let password = SecretString::from(PASSWORD.to_string());
    let totp = SecretString::from(TOTP.to_string());
    let _ = auth::login::login(
        &sim.url(),
        "log@example.com",
        &SecretString::from("not-the-password".to_string()),
        || Ok(None),
        Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    let tokens = auth::login::login(
        &sim.url(),
        "log@example.com",
        &password,
        move || Ok(Some(totp.clone())),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    use secrecy::ExposeSecret;
    let mark = sub.mark();
    TokenStore::new(dir.path())
        .save(&StoredAuth {
            refresh_token: tokens.refresh_token.expose_secret().to_string(),
            access_token: None,
            access_expires_at: None,
            obtained_at: 1,
            configured_sha256: None,
            source: "login".into(),
            account: None,
        })
        .unwrap();
    sub.wait_for_after(mark, &info, WAIT, |m| {
        m.json()["auth"]["status"] == "ok" && m.json()["connect"]["reachable"] == true
    })
    .await;
    gateway.stop().await;

    // (The six-digit 2FA code is not searched for: it lives 30 seconds, and six digits turn
    // up in any log's timestamps.)
    let mut secrets: Vec<String> = vec![PASSWORD.into(), r0];
    for r in sim.sim.requests() {
        if let Some(auth) = &r.authorization
            && let Some(token) = auth.strip_prefix("Bearer ")
        {
            secrets.push(token.to_string());
        }
        secrets.extend(form_values(&r.body));
    }
    secrets.push(TokenStore::new(dir.path()).load().unwrap().refresh_token);
    secrets.sort();
    secrets.dedup();
    let access_tokens = secrets
        .iter()
        .filter(|s| s.matches('.').count() == 2)
        .count();
    assert!(access_tokens >= 4, "the run used several access tokens");

    let log = String::from_utf8(captured.text().into_bytes()).unwrap();
    assert!(
        log.lines().count() > 100,
        "the capture works: {} lines",
        log.lines().count()
    );
    assert!(log.contains("renewing the Connect access token"));
    for secret in &secrets {
        // Also the JWT's parts: a signature or payload alone is as bad as the whole token.
        for part in
            std::iter::once(secret.as_str()).chain(secret.split('.').filter(|p| p.len() >= 16))
        {
            if let Some(line) = log.lines().find(|l| l.contains(part)) {
                panic!("a secret reached the log: {line}");
            }
        }
    }
}
