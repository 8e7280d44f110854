//! The web page end to end (`web.listen`): real HTTP over loopback to the gateway's page,
//! logging in against the simulator's account server; assertions on the page, on the token
//! file, on the broker and on what the account server was asked.

mod common;

use std::time::Duration;

use common::broker::{Subscriber, TestBroker};
use common::gateway::{BASE, Gateway, Sim, config_with_credentials};
use prusa_connect_mqtt::auth::TokenStore;
use prusa_connect_mqtt::config::Config;
use prusa_connect_sim::PrinterSpec;

const WAIT: Duration = Duration::from_secs(15);
const EMAIL: &str = "maker@example.com";
const PASSWORD: &str = "correct horse battery staple";
const TOTP_EMAIL: &str = "2fa@example.com";
const TOTP: &str = "424242";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A gateway without credentials and with its page on a free loopback port.
struct Setup {
    broker: TestBroker,
    sim: Sim,
    dir: tempfile::TempDir,
    page: String,
    gateway: Gateway,
}

async fn setup(web_extra: &str) -> Setup {
    setup_with(web_extra, |_| {}).await
}

async fn setup_with(web_extra: &str, adjust: impl FnOnce(&mut Config)) -> Setup {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    sim.sim.add_user(EMAIL, PASSWORD, None);
    sim.sim.add_user(TOTP_EMAIL, PASSWORD, Some(TOTP));
    sim.sim.add_printer(PrinterSpec::named("Web MK4"));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut config = config_with_credentials(
        &broker,
        &sim,
        dir.path(),
        "",
        &format!("[web]\nlisten = \"127.0.0.1:{port}\"\n{web_extra}"),
    );
    adjust(&mut config);
    let gateway = Gateway::start(config);
    let page = format!("http://127.0.0.1:{port}/");
    Setup {
        broker,
        sim,
        dir,
        page,
        gateway,
    }
}

/// The status part once it shows what `shown` wants (it is what the gateway last handed to
/// the broker), with a deadline.
async fn status_when(http: &reqwest::Client, url: &str, shown: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = open(http, url).await;
        if shown(&status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not shown within {WAIT:?}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The page's first answer to a plain GET, once it listens.
async fn first_answer(http: &reqwest::Client, url: &str) -> reqwest::Response {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match http.get(url).send().await {
            Ok(r) => return r,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A browser: keeps cookies, follows the redirect after a form.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The page, once it answers.
async fn open(http: &reqwest::Client, url: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match http.get(url).send().await {
            Ok(r) if r.status().is_success() => return r.text().await.unwrap(),
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the page does not answer: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    page[at..].split('"').next().unwrap().to_string()
}

/// Posts a form the way the page's form does and returns the page it leads back to.
async fn post(http: &reqwest::Client, url: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let r = http.post(url).form(fields).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_in_without_two_factor_then_the_printers_appear_and_log_out_forgets_the_token() {
    // Polls an hour apart: a login and a log-out show at once only because the page asks the
    // bridge to poll.
    let s = setup_with("", |c| {
        c.connect.poll_interval = Duration::from_secs(3600);
        c.connect.active_poll_interval = Duration::from_secs(3600);
    })
    .await;
    let sub = Subscriber::connect(&s.broker, &[&format!("{BASE}/#")]).await;
    let http = browser();
    let page = open(&http, &s.page).await;
    assert!(page.contains("Log in to Prusa Connect"), "{page}");
    assert!(page.contains("name=\"viewport\""));
    // Without a token the gateway runs and says a login is needed.
    sub.wait_for(&format!("{BASE}/bridge/info"), WAIT, |m| {
        m.json()["auth"]["status"] == "login_needed"
    })
    .await;

    let (status, page) = post(
        &http,
        &format!("{}login", s.page),
        &[
            ("csrf", &csrf(&page)),
            ("email", EMAIL),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert!(page.contains(&format!("Logged in as {EMAIL}")), "{page}");
    assert!(!page.contains(PASSWORD));
    let stored = TokenStore::new(s.dir.path())
        .load()
        .expect("auth.json written");
    assert!(s.sim.sim.is_refresh_token_valid(&stored.refresh_token));
    assert_eq!(stored.account.as_deref(), Some(EMAIL));
    let on_disk = std::fs::read_to_string(TokenStore::new(s.dir.path()).path()).unwrap();
    assert!(!on_disk.contains(PASSWORD));

    // The running gateway took the login up: the printer appears on the broker and the page.
    sub.wait_for(&format!("{BASE}/web_mk4/state"), WAIT, |m| {
        m.json()["state"] == "IDLE"
    })
    .await;
    // The printer's name comes with bridge/info, the last message of the poll: the state
    // can reach the broker before it.
    let status = status_when(&http, &format!("{}status", s.page), |status| {
        status.contains("Web MK4") && status.contains("IDLE")
    })
    .await;
    assert!(status.contains("pc/web_mk4"), "{status}");
    assert!(status.contains(EMAIL), "{status}");
    assert!(
        status.contains("logged in; the access token renews itself"),
        "{status}"
    );

    // Log out: the token is deleted and never used again; bridge/info asks for a login.
    let page = open(&http, &s.page).await;
    let mark = sub.messages().len();
    let (status, page) = post(
        &http,
        &format!("{}logout", s.page),
        &[("csrf", &csrf(&page))],
    )
    .await;
    assert_eq!(status, 200);
    assert!(page.contains("Logged out"), "{page}");
    assert!(TokenStore::new(s.dir.path()).load().is_none());
    sub.wait_for_after(mark, &format!("{BASE}/bridge/info"), WAIT, |m| {
        m.json()["auth"]["status"] == "login_needed"
    })
    .await;
    s.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_factor_login_and_wrong_password_and_wrong_code_say_what_went_wrong() {
    let s = setup("").await;
    let sub = Subscriber::connect(&s.broker, &[&format!("{BASE}/#")]).await;
    let http = browser();
    let page = open(&http, &s.page).await;
    let login = format!("{}login", s.page);
    let code = format!("{}code", s.page);

    let (_, page) = post(
        &http,
        &login,
        &[
            ("csrf", &csrf(&page)),
            ("email", TOTP_EMAIL),
            ("password", "wrong"),
        ],
    )
    .await;
    assert!(
        page.contains("Not logged in: wrong email or password"),
        "{page}"
    );
    assert!(page.contains("class=\"notice error\""));

    let (_, page) = post(
        &http,
        &login,
        &[
            ("csrf", &csrf(&page)),
            ("email", TOTP_EMAIL),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert!(page.contains("Two-factor code"), "{page}");
    let (_, page) = post(&http, &code, &[("csrf", &csrf(&page)), ("code", "000000")]).await;
    assert!(
        page.contains("Not logged in: wrong two-factor code"),
        "{page}"
    );
    assert!(TokenStore::new(s.dir.path()).load().is_none());

    let (_, page) = post(
        &http,
        &login,
        &[
            ("csrf", &csrf(&page)),
            ("email", TOTP_EMAIL),
            ("password", PASSWORD),
        ],
    )
    .await;
    let (_, page) = post(&http, &code, &[("csrf", &csrf(&page)), ("code", TOTP)]).await;
    assert!(
        page.contains(&format!("Logged in as {TOTP_EMAIL}")),
        "{page}"
    );
    sub.wait_for(&format!("{BASE}/web_mk4/state"), WAIT, |m| {
        m.json()["state"] == "IDLE"
    })
    .await;
    let stats = s.sim.sim.account_stats();
    assert_eq!((stats.logins_failed, stats.totp_failed), (1, 1));
    assert_eq!(stats.codes_exchanged, 1);
    s.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_without_the_session_s_csrf_token_are_refused() {
    let s = setup("").await;
    let http = browser();
    let page = open(&http, &s.page).await;
    let token = csrf(&page);
    let login = format!("{}login", s.page);
    let fields = |csrf: &'static str| [("csrf", csrf), ("email", EMAIL), ("password", PASSWORD)];
    // No token, a wrong token, and the right token from another browser (no session cookie).
    let (status, body) = post(&http, &login, &[("email", EMAIL), ("password", PASSWORD)]).await;
    assert_eq!(status, 403);
    assert!(body.contains("CSRF"), "{body}");
    assert_eq!(post(&http, &login, &fields("forged")).await.0, 403);
    let stranger = reqwest::Client::new();
    let (status, _) = post(
        &stranger,
        &login,
        &[("csrf", &token), ("email", EMAIL), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(status, 403);
    for form in ["logout", "code"] {
        assert_eq!(
            post(&http, &format!("{}{form}", s.page), &[("csrf", "forged")])
                .await
                .0,
            403
        );
    }
    // None of them reached the account server.
    let stats = s.sim.sim.account_stats();
    assert_eq!(stats.logins_ok + stats.logins_failed, 0);
    assert!(TokenStore::new(s.dir.path()).load().is_none());
    s.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_ingress_a_loopback_client_is_refused_unless_it_gives_the_password() {
    let s = setup("ingress = true\npassword = \"open sesame\"\n").await;
    let http = reqwest::Client::new();
    let refused = first_answer(&http, &s.page).await;
    // Loopback is not the ingress proxy: the password is asked for.
    assert_eq!(refused.status(), 401);
    assert!(
        refused.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let wrong = http
        .get(&s.page)
        .basic_auth("anyone", Some("guess"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = http
        .get(&s.page)
        .basic_auth("anyone", Some("open sesame"))
        .header("X-Ingress-Path", "/api/hassio_ingress/t0k3n")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let cookie = ok.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("Path=/api/hassio_ingress/t0k3n/"),
        "{cookie}"
    );
    assert!(cookie.contains("SameSite=Strict") && cookie.contains("HttpOnly"));
    let page = ok.text().await.unwrap();
    assert!(page.contains("action=\"login\""), "relative form actions");
    s.gateway.stop().await;
}

/// Review of issue 23: a site whose name was rebound to 127.0.0.1 reaches the page from the
/// user's browser; its `Host` header gives it away. With a password, loopback clients give it
/// too (a TLS proxy on this host makes every client loopback).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebound_name_and_a_same_host_proxy_do_not_open_the_page() {
    let s = setup("").await;
    let http = reqwest::Client::new();
    let ok = first_answer(&http, &s.page).await;
    assert_eq!(ok.status(), 200);
    let rebound = http
        .get(&s.page)
        .header("Host", "evil.example:8099")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);
    s.gateway.stop().await;

    let s = setup("password = \"open sesame\"\n").await;
    let asked = first_answer(&http, &s.page).await;
    assert_eq!(asked.status(), 401, "loopback gives the password too");
    let ok = http
        .get(&s.page)
        .basic_auth("anyone", Some("open sesame"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    s.gateway.stop().await;
}

/// The page in a real browser (headless Chromium over WebDriver, phone-sized): a wrong
/// password and a wrong code each show a clear message; the 2FA login works and the printer
/// appears in the status part, which reloads itself. With `WEB_SCREENSHOTS=DIR` it saves
/// the login and status pages there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_logs_in_with_two_factor_and_sees_the_printer() {
    let browser = match common::webdriver::Browser::start().await {
        Ok(b) => b,
        Err(why) => {
            eprintln!("skipped: {why} (apt-get install chromium chromium-driver)");
            return;
        }
    };
    let s = setup("").await;
    let http = browser_client_waits_for(&s.page).await;
    drop(http);
    let shots = std::env::var_os("WEB_SCREENSHOTS").map(std::path::PathBuf::from);

    browser.go(&s.page).await;
    browser.wait_for_text("Log in to Prusa Connect").await;
    browser.wait_for_text("not logged in").await;
    if let Some(dir) = &shots {
        std::fs::write(dir.join("web-login-phone.png"), browser.screenshot().await).unwrap();
    }
    let log_in = |password: &'static str| {
        let browser = &browser;
        async move {
            browser.type_into("#email", TOTP_EMAIL).await;
            browser.type_into("#password", password).await;
            browser.click("form[action=\"login\"] button").await;
        }
    };
    log_in("wrong").await;
    browser
        .wait_for_text("Not logged in: wrong email or password")
        .await;
    log_in(PASSWORD).await;
    browser.wait_for_text("Two-factor code").await;
    browser.type_into("#code", "000000").await;
    browser.click("form[action=\"code\"] button").await;
    browser
        .wait_for_text("Not logged in: wrong two-factor code")
        .await;
    log_in(PASSWORD).await;
    browser.wait_for_text("Two-factor code").await;
    browser.type_into("#code", TOTP).await;
    browser.click("form[action=\"code\"] button").await;
    browser
        .wait_for_text(&format!("Logged in as {TOTP_EMAIL}"))
        .await;
    // No reload: the status part fetches itself until the printer is there.
    let text = browser.wait_for_text("Web MK4").await;
    let text = if text.contains("IDLE") {
        text
    } else {
        browser.wait_for_text("IDLE").await
    };
    assert!(
        text.contains("logged in; the access token renews itself"),
        "{text}"
    );
    assert!(!browser.source().await.contains(PASSWORD));
    if let Some(dir) = &shots {
        std::fs::write(dir.join("web-status-phone.png"), browser.screenshot().await).unwrap();
    }
    browser.quit().await;
    s.gateway.stop().await;
}

/// Waits until the page answers (the gateway binds it at start).
async fn browser_client_waits_for(url: &str) -> reqwest::Client {
    let http = browser();
    open(&http, url).await;
    http
}
