//! Values at the far edge of their type, from outside the process: they are handled, never
//! panicked on. Each test here once crashed the gateway (found by `tests/parser_fuzz.rs`).

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prusa_connect_mqtt::auth::{self, StoredAuth, TokenStore};
use prusa_connect_mqtt::config::Config;
use prusa_connect_sim::{Fault, PrinterSpec};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use common::broker::{Msg, Subscriber, TestBroker};
use common::fake_http::{FakeHttp, Reply};
use common::gateway::{BASE, Gateway, Sim, config};

fn jwt_expiring_at(exp: serde_json::Value) -> String {
    let claims = URL_SAFE_NO_PAD.encode(json!({"exp": exp, "type": "access"}).to_string());
    format!("eyJhbGciOiJSUzI1NiJ9.{claims}.c2ln")
}

/// An access token whose `exp` is beyond the year 292 billion, without `expires_in`: the
/// time it is due for renewal used to overflow the clock.
#[tokio::test]
async fn a_token_that_never_expires_is_used() {
    let account = FakeHttp::start().await;
    for exp in [json!(1e19), json!(u64::MAX), json!(i64::MAX)] {
        let token = jwt_expiring_at(exp);
        account.set(Reply::ok(
            json!({"access_token": token, "refresh_token": "next"}).to_string(),
        ));
        let dir = tempfile::tempdir().unwrap();
        let refresher = auth::Refresher::new(
            &account.url(),
            dir.path(),
            Some(&SecretString::from("configured")),
            None,
            Duration::from_secs(5),
        )
        .unwrap();
        let got = refresher
            .access_token()
            .await
            .expect("the token is adopted");
        assert_eq!(got.expose_secret(), token);
        // Still valid: handed out again without asking the account server.
        let asked = account.requests();
        refresher.access_token().await.unwrap();
        assert_eq!(account.requests(), asked);
    }
}

/// An `auth.json` whose access token "expires" at u64::MAX seconds is not trusted: the
/// gateway renews instead of crashing at start.
#[tokio::test]
async fn an_absurd_expiry_in_auth_json_is_renewed() {
    let account = FakeHttp::start().await;
    account.set(Reply::ok(
        json!({"access_token": "fresh", "refresh_token": "next", "expires_in": 7200}).to_string(),
    ));
    for expires in [u64::MAX, i64::MAX as u64, 1 << 40] {
        let dir = tempfile::tempdir().unwrap();
        TokenStore::new(dir.path())
            .save(&StoredAuth {
                refresh_token: "stored".into(),
                access_token: Some("stale".into()),
                access_expires_at: Some(expires),
                obtained_at: 0,
                configured_sha256: None,
                source: "refresh".into(),
                account: None,
            })
            .unwrap();
        let refresher = auth::Refresher::new(
            &account.url(),
            dir.path(),
            None,
            None,
            Duration::from_secs(5),
        )
        .unwrap();
        let got = refresher.access_token().await.expect("renewed");
        assert_eq!(got.expose_secret(), "fresh", "expiry {expires}");
    }
}

/// Connect answering 429 with `Retry-After: 18446744073709551615`: the gateway waited
/// `Instant::now() + u64::MAX s`, which overflowed and killed the bridge task.
#[tokio::test]
async fn a_huge_retry_after_is_survived() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    sim.sim.add_printer(PrinterSpec::named("MK4"));
    let info = format!("{BASE}/bridge/info");
    let sub = Subscriber::connect(&broker, &[&info]).await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(config(&broker, &sim, dir.path(), ""));
    let reachable = |up: bool| move |m: &Msg| m.json()["connect"]["reachable"] == up;
    sub.wait_for(&info, Duration::from_secs(10), reachable(true))
        .await;
    sim.sim.set_fault(Some(Fault::TooManyRequests {
        retry_after_s: u64::MAX,
    }));
    let down = sub
        .wait_for(&info, Duration::from_secs(10), reachable(false))
        .await;
    assert!(
        down.json()["connect"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("429")),
        "{}",
        down.text()
    );
    // The next poll is scheduled after bridge/info goes out, before the loop takes the next
    // message: two answered commands, the second sent after the first reply, show the loop
    // went past that point (a panic there would leave them unanswered).
    let lists = sim.list_requests().len();
    let reply = format!("{BASE}/mk4/command/response");
    let replies = Subscriber::connect(&broker, &[&reply]).await;
    for _ in 0..2 {
        let mark = replies.mark();
        replies
            .publish(&format!("{BASE}/mk4/command"), b"not json".to_vec(), false)
            .await;
        let answer = replies
            .wait_for_after(mark, &reply, Duration::from_secs(10), |_| true)
            .await;
        assert_eq!(
            answer.json()["code"],
            "INVALID_PAYLOAD",
            "{}",
            answer.text()
        );
    }
    assert_eq!(
        sim.list_requests().len(),
        lists,
        "the wait Retry-After asked for (at most an hour) is kept: no list request since"
    );
    sim.sim.set_fault(None);
    gateway.stop().await;
}

/// `poll_interval = "18446744073709551615s"` parsed, and the first poll then scheduled the
/// next at `Instant::now() + u64::MAX s`: the bridge task panicked. Absurd intervals are now
/// refused at start, naming the key.
#[test]
fn absurd_intervals_are_refused_naming_the_key() {
    for (section, key) in [
        ("connect", "poll_interval"),
        ("connect", "active_poll_interval"),
        ("connect", "request_timeout"),
        ("camera", "interval"),
    ] {
        for value in ["18446744073709551615s", "100years", "25h"] {
            let err =
                Config::from_toml(&format!("[{section}]\n{key} = \"{value}\"\n")).expect_err(value);
            let msg = format!("{err:#}");
            assert!(msg.contains(&format!("{section}.{key}")), "{msg}");
            assert!(msg.contains("too long"), "{msg}");
        }
        Config::from_toml(&format!("[{section}]\n{key} = \"1day\"\n")).expect("a day is fine");
    }
}
