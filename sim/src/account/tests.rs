//! The account server over real HTTP (127.0.0.1 only), and its rules with a fake clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{StatusCode, Url};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::super::tests::{Server, TOKEN, start, start_empty};
use super::super::{Fault, Scenario, SimOptions};
use super::oauth::{TokenError, s256_challenge};
use super::state::micros;
use super::*;

const EMAIL: &str = "maker@example.com";
const PASSWORD: &str = "correct horse battery staple";
const STATE: &str = "st/ate with spaces&more";
const UNAUTHORIZED: &str =
    r#"{"code":"UNAUTHORIZED","message":"Missing or invalid security token"}"#;

/// A browser: keeps cookies and follows redirects, but only within 127.0.0.1. It stops at
/// the redirect URI, whose answer is the code.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let loopback = attempt.url().host_str() == Some("127.0.0.1");
            if attempt.url().as_str().starts_with(REDIRECT_URI) || !loopback {
                attempt.stop()
            } else {
                attempt.follow()
            }
        }))
        .build()
        .expect("browser client")
}

/// A client that shows every answer as it is: no cookies kept, no redirects followed.
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("raw client")
}

struct Pkce {
    verifier: String,
    challenge: String,
}

fn new_pkce() -> Pkce {
    let verifier = random_token(64);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    Pkce {
        verifier,
        challenge,
    }
}

fn authorize_path(challenge: &str) -> String {
    let query: String = [
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", REDIRECT_URI),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
        ("state", STATE),
        ("scope", "basic_info"),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", pages::url_encode(v)))
    .collect::<Vec<_>>()
    .join("&");
    format!("/o/authorize/?{query}")
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The value of attribute `name` in the first tag of `html` that has it.
fn attribute(html: &str, name: &str) -> Option<String> {
    let start = html.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = html[start..].find('"')? + start;
    Some(unescape(&html[start..end]))
}

/// The first `<form>..</form>` of `page` that contains `needle`: (action, csrf token).
fn form_with(page: &str, needle: &str) -> (String, String) {
    let form = page
        .split("<form")
        .skip(1)
        .filter_map(|f| f.split("</form>").next())
        .find(|f| f.contains(needle))
        .unwrap_or_else(|| panic!("no form with {needle} in {page}"));
    let action = attribute(form, "action").expect("form action");
    let csrf_input = form
        .split("<input")
        .find(|i| i.contains("name=\"csrfmiddlewaretoken\""))
        .expect("csrf input");
    let csrf = attribute(csrf_input, "value").expect("csrf value");
    (action, csrf)
}

/// The code and state from a redirect to the redirect URI.
fn code_from(response: &reqwest::Response) -> (String, String) {
    assert_eq!(response.status(), StatusCode::FOUND, "{response:?}");
    let location = response.headers()["location"].to_str().expect("location");
    assert!(location.starts_with(REDIRECT_URI), "{location}");
    let url = Url::parse(location).expect("redirect URL");
    let params: HashMap<String, String> = url.query_pairs().into_owned().collect();
    (params["code"].clone(), params["state"].clone())
}

/// Follows the browser flow to the login page; gives the page.
async fn open_login(server: &Server, browser: &reqwest::Client, pkce: &Pkce) -> String {
    let response = browser
        .get(server.url(&authorize_path(&pkce.challenge)))
        .send()
        .await
        .expect("authorize");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.url().path(), "/login/");
    response.text().await.expect("login page")
}

async fn submit(
    server: &Server,
    browser: &reqwest::Client,
    page: &str,
    needle: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let (action, csrf) = form_with(page, needle);
    let mut form: Vec<(&str, &str)> = vec![("csrfmiddlewaretoken", &csrf)];
    form.extend_from_slice(fields);
    browser
        .post(server.url(&action))
        .form(&form)
        .send()
        .await
        .expect("form submitted")
}

/// Logs in through the HTML forms and gives the authorization code.
async fn log_in(server: &Server, browser: &reqwest::Client, pkce: &Pkce) -> String {
    let page = open_login(server, browser, pkce).await;
    let response = submit(
        server,
        browser,
        &page,
        "type=\"password\"",
        &[("email", EMAIL), ("password", PASSWORD)],
    )
    .await;
    let (code, state) = code_from(&response);
    assert_eq!(state, STATE);
    code
}

async fn token_request(server: &Server, form: &[(&str, &str)]) -> (StatusCode, Value) {
    server
        .send(server.client.post(server.url("/o/token/")).form(form))
        .await
}

async fn exchange(server: &Server, code: &str, verifier: &str) -> (StatusCode, Value) {
    token_request(
        server,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("client_id", CLIENT_ID),
            ("code_verifier", verifier),
        ],
    )
    .await
}

async fn refresh(server: &Server, refresh_token: &str) -> (StatusCode, Value) {
    token_request(
        server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", CLIENT_ID),
        ],
    )
    .await
}

fn field(body: &Value, key: &str) -> String {
    body[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {body}"))
        .to_string()
}

async fn printers_with(server: &Server, access_token: &str) -> StatusCode {
    let request = server
        .client
        .get(server.url("/app/printers"))
        .bearer_auth(access_token);
    server.send(request).await.0
}

fn decode_part(part: &str) -> Value {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url without padding");
    serde_json::from_slice(&bytes).expect("JSON")
}

fn invalid_grant(body: &Value) -> bool {
    body["error"] == "invalid_grant" && body["error_description"].is_string()
}

#[tokio::test]
async fn pkce_login_gives_tokens_that_connect_accepts() {
    let server = start(SimOptions {
        token: Some("connect-only".into()),
        scenario: Scenario::Empty,
    })
    .await;
    server.sim.add_user(EMAIL, PASSWORD, None);
    let browser = browser();
    let pkce = new_pkce();

    let page = open_login(&server, &browser, &pkce).await;
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    let language_form = page
        .find("action=\"/i18n/setlang/\"")
        .expect("language form");
    let password = page.find("type=\"password\"").expect("password field");
    assert!(language_form < password, "the language switch comes first");
    assert!(
        page.contains("<input type=\"email\" name=\"email\""),
        "{page}"
    );

    let code = log_in(&server, &browser, &pkce).await;
    assert!(code.len() >= 30, "{code}");
    let (status, body) = exchange(&server, &code, &pkce.verifier).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "basic_info");
    assert_eq!(body["expires_in"], 7200);
    let refresh_token = field(&body, "refresh_token");
    assert!(refresh_token.len() >= 30, "{refresh_token}");
    assert!(
        refresh_token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{refresh_token}"
    );

    let access_token = field(&body, "access_token");
    let parts: Vec<&str> = access_token.split('.').collect();
    assert_eq!(parts.len(), 3, "{access_token}");
    assert_eq!(
        decode_part(parts[0]),
        json!({ "alg": "RS256", "typ": "JWT" })
    );
    let claims = decode_part(parts[1]);
    assert_eq!(
        (claims["app"].clone(), claims["type"].clone()),
        (json!("connect"), json!("access"))
    );
    assert!(
        claims["sub"].is_string() && claims["jti"].is_string(),
        "{claims}"
    );
    assert!(claims["connect_id"].is_u64(), "{claims}");
    let lifetime = claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0);
    assert!((7199..=7200).contains(&lifetime), "{claims}");
    assert_eq!(
        URL_SAFE_NO_PAD.decode(parts[2]).map(|s| s.len()).ok(),
        Some(32)
    );

    // Issued tokens pass whatever Connect's own token is.
    assert_eq!(printers_with(&server, &access_token).await, StatusCode::OK);
    assert_eq!(
        printers_with(&server, "made-up").await,
        StatusCode::UNAUTHORIZED
    );
    let stats = server.sim.account_stats();
    assert_eq!(
        (
            stats.logins_ok,
            stats.codes_exchanged,
            stats.access_tokens_issued
        ),
        (1, 1, 1)
    );
    assert!(server.sim.is_refresh_token_valid(&refresh_token));
    let token_posts = server
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/o/token/")
        .count();
    assert_eq!(token_posts, 1, "account requests are recorded");
    server.stop().await;
}

#[tokio::test]
async fn two_factor_login_refuses_a_wrong_code_then_accepts_the_right_one() {
    let server = start_empty().await;
    server.sim.add_user(EMAIL, PASSWORD, Some("123456"));
    let browser = browser();
    let pkce = new_pkce();
    let page = open_login(&server, &browser, &pkce).await;
    let response = submit(
        &server,
        &browser,
        &page,
        "type=\"password\"",
        &[("email", EMAIL), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.url().path(), "/login/2fa/");
    let page = response.text().await.expect("2FA page");
    assert!(
        page.contains(
            r#"<input type="text" name="token" inputmode="numeric" autocomplete="one-time-code""#
        ),
        "{page}"
    );

    let response = submit(
        &server,
        &browser,
        &page,
        "name=\"token\"",
        &[("token", "654321")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let again = response.text().await.expect("2FA page again");
    assert!(
        again.contains(r#"<p class="errorlist">Invalid token.</p>"#),
        "{again}"
    );
    assert_eq!(server.sim.account_stats().totp_failed, 1);
    // Still waiting for the code: authorizing now sends the browser to log in.
    let response = browser
        .get(server.url(&authorize_path(&pkce.challenge)))
        .send()
        .await
        .expect("authorize");
    assert_eq!(response.url().path(), "/login/");

    let response = submit(
        &server,
        &browser,
        &again,
        "name=\"token\"",
        &[("token", "123 456")],
    )
    .await;
    let (code, _) = code_from(&response);
    let (status, body) = exchange(&server, &code, &pkce.verifier).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Without a session waiting for a code, the 2FA page sends the browser to log in.
    let response = raw_client()
        .get(server.url("/login/2fa/?next=/o/authorize/%3Fx%3D1"))
        .send()
        .await
        .expect("2FA page");
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(
        response.headers()["location"],
        "/login/?next=/o/authorize/%3Fx%3D1"
    );
    server.stop().await;
}

#[tokio::test]
async fn wrong_password_shows_the_form_again_and_is_counted() {
    let server = start_empty().await;
    server.sim.add_user(EMAIL, PASSWORD, None);
    let browser = browser();
    let pkce = new_pkce();
    let page = open_login(&server, &browser, &pkce).await;
    for (email, password) in [(EMAIL, "wrong"), ("nobody@example.com", PASSWORD)] {
        let response = submit(
            &server,
            &browser,
            &page,
            "type=\"password\"",
            &[("email", email), ("password", password)],
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.url().path(), "/login/");
        assert!(response.headers().get("set-cookie").is_none());
        let again = response.text().await.expect("login page again");
        assert!(
            again
                .contains(r#"<p class="errorlist">Please enter a correct email and password.</p>"#),
            "{again}"
        );
        assert!(again.contains(&format!("value=\"{email}\"")), "{again}");
        form_with(&again, "type=\"password\"");
    }
    let stats = server.sim.account_stats();
    assert_eq!((stats.logins_failed, stats.logins_ok), (2, 0));
    // Email case does not matter; the password's does.
    let code = {
        let response = submit(
            &server,
            &browser,
            &page,
            "type=\"password\"",
            &[("email", "Maker@Example.COM"), ("password", PASSWORD)],
        )
        .await;
        code_from(&response).0
    };
    assert!(!code.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn login_needs_the_csrf_token_and_sets_an_http_only_session() {
    let server = start_empty().await;
    server.sim.add_user(EMAIL, PASSWORD, None);
    let client = raw_client();
    let next = "/o/authorize/?client_id=x&state=\"y\"";
    let login_url = server.url(&format!("/login/?next={}", pages::url_encode(next)));
    let response = client.get(&login_url).send().await.expect("login page");
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_string();
    let page = response.text().await.expect("page");
    let (action, csrf) = form_with(&page, "type=\"password\"");
    assert_eq!(action, format!("/login/?next={}", pages::url_encode(next)));
    assert!(
        set_cookie.starts_with(&format!("csrftoken={csrf};")),
        "{set_cookie}"
    );
    let cookie = format!("csrftoken={csrf}");

    let post = |fields: Vec<(&'static str, String)>, cookie: Option<&str>| {
        let mut request = client.post(&login_url).form(&fields);
        if let Some(cookie) = cookie {
            request = request.header("Cookie", cookie.to_string());
        }
        request.send()
    };
    let credentials = || {
        vec![
            ("email", EMAIL.to_string()),
            ("password", PASSWORD.to_string()),
        ]
    };
    let mut wrong_token = credentials();
    wrong_token.push(("csrfmiddlewaretoken", "x".repeat(32)));
    let mut right_token = credentials();
    right_token.push(("csrfmiddlewaretoken", csrf.clone()));
    for (fields, cookie) in [
        (credentials(), Some(cookie.as_str())),
        (wrong_token, Some(cookie.as_str())),
        (right_token.clone(), None),
    ] {
        let response = post(fields, cookie).await.expect("login post");
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let page = response.text().await.expect("403 page");
        assert!(page.contains("CSRF verification failed"), "{page}");
    }
    assert_eq!(server.sim.account_stats().logins_failed, 0);

    let response = post(right_token, Some(&cookie)).await.expect("login post");
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()["location"], next.replace('"', "%22"));
    let cookies: Vec<&str> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("sessionid="))
        .expect("session cookie");
    assert!(
        session.contains("; HttpOnly") && session.contains("; Path=/"),
        "{session}"
    );
    assert!(
        cookies.iter().any(|c| c.starts_with("csrftoken=")),
        "the CSRF token rotates at login: {cookies:?}"
    );

    // `next` may only lead back into the authorization flow.
    let response = client
        .post(server.url("/login/?next=https://evil.example/"))
        .header("Cookie", cookie.clone())
        .form(&[
            ("csrfmiddlewaretoken", csrf.as_str()),
            ("email", EMAIL),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .expect("login post");
    assert_eq!(response.headers()["location"], "/");
    server.stop().await;
}

#[tokio::test]
async fn authorize_refuses_bad_requests_with_an_html_page() {
    let server = start_empty().await;
    let challenge = new_pkce().challenge;
    let good = authorize_path(&challenge);
    for bad in [
        good.replace(CLIENT_ID, "SomeoneElse"),
        good.replace("response_type=code", "response_type=token"),
        good.replace(
            &pages::url_encode(REDIRECT_URI),
            "https%3A//evil.example/cb",
        ),
        good.replace("code_challenge_method=S256", "code_challenge_method=plain"),
        good.replace(&challenge, "short"),
        "/o/authorize/".to_string(),
    ] {
        let response = raw_client()
            .get(server.url(&bad))
            .send()
            .await
            .expect("authorize");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .is_ok_and(|c| c.starts_with("text/html")),
            "{bad}"
        );
    }
    // Without a session: to the login page, carrying the whole request in `next`.
    let response = raw_client()
        .get(server.url(&good))
        .send()
        .await
        .expect("authorize");
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(
        response.headers()["location"],
        format!("/login/?next={}", pages::url_encode(&good)).as_str()
    );
    server.stop().await;
}

#[tokio::test]
async fn codes_are_single_use_and_bound_to_the_verifier() {
    let server = start_empty().await;
    server.sim.add_user(EMAIL, PASSWORD, None);
    let browser = browser();
    let pkce = new_pkce();
    let first = log_in(&server, &browser, &pkce).await;
    // The session is logged in now: authorizing again gives a new code at once.
    let response = browser
        .get(server.url(&authorize_path(&pkce.challenge)))
        .send()
        .await
        .expect("authorize");
    let (second, _) = code_from(&response);
    assert_ne!(first, second);

    let (status, body) = exchange(&server, &first, &new_pkce().verifier).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(invalid_grant(&body), "{body}");
    // A failed exchange used the code up.
    let (status, body) = exchange(&server, &first, &pkce.verifier).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(invalid_grant(&body), "{body}");

    // A request missing a parameter is refused before the code is looked at.
    let (status, body) = token_request(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", &second),
            ("redirect_uri", REDIRECT_URI),
            ("client_id", CLIENT_ID),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request");
    let (status, body) = exchange(&server, &second, &pkce.verifier).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = exchange(&server, &second, &pkce.verifier).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(invalid_grant(&body), "{body}");
    let stats = server.sim.account_stats();
    assert_eq!((stats.codes_exchanged, stats.codes_refused), (1, 3));

    let (status, body) = token_request(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_id", "SomeoneElse"),
        ],
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::UNAUTHORIZED,
            json!({ "error": "invalid_client" })
        )
    );
    for form in [vec![], vec![("grant_type", "password")]] {
        let (status, body) = token_request(&server, &form).await;
        assert_eq!(
            (status, body),
            (
                StatusCode::BAD_REQUEST,
                json!({ "error": "unsupported_grant_type" })
            )
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn refresh_tokens_rotate() {
    let server = start_empty().await;
    server.sim.add_user(EMAIL, PASSWORD, None);
    let first = server.sim.issue_refresh_token(EMAIL);
    assert!(server.sim.is_refresh_token_valid(&first));

    let (status, body) = refresh(&server, &first).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = field(&body, "refresh_token");
    let access_token = field(&body, "access_token");
    assert_ne!(first, second);
    assert!(!server.sim.is_refresh_token_valid(&first));
    assert!(server.sim.is_refresh_token_valid(&second));
    assert_eq!(printers_with(&server, &access_token).await, StatusCode::OK);

    let refused = json!({ "error": "invalid_grant", "error_description": "Invalid refresh token" });
    assert_eq!(
        refresh(&server, &first).await,
        (StatusCode::BAD_REQUEST, refused.clone())
    );
    assert_eq!(
        refresh(&server, "never-issued").await,
        (StatusCode::BAD_REQUEST, refused.clone())
    );
    let (status, body) = refresh(&server, &second).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let third = field(&body, "refresh_token");

    // Revoking refresh tokens leaves issued access tokens working until they expire.
    server.sim.revoke_refresh_tokens();
    assert!(!server.sim.is_refresh_token_valid(&third));
    assert_eq!(
        refresh(&server, &third).await,
        (StatusCode::BAD_REQUEST, refused)
    );
    assert_eq!(printers_with(&server, &access_token).await, StatusCode::OK);
    let stats = server.sim.account_stats();
    assert_eq!((stats.refreshes_ok, stats.refreshes_refused), (2, 3));
    assert_eq!(stats.access_tokens_issued, 2);
    server.stop().await;
}

/// Polls `/app/printers` with the token until it is refused; panics after `within`.
async fn wait_until_refused(server: &Server, access_token: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let response = server
            .client
            .get(server.url("/app/printers"))
            .bearer_auth(access_token)
            .send()
            .await
            .expect("request");
        if response.status() == StatusCode::UNAUTHORIZED {
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            assert_eq!(response.text().await.expect("body"), UNAUTHORIZED);
            return;
        }
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            Instant::now() < deadline,
            "token still accepted after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn connect_refuses_issued_access_tokens_once_expired() {
    // With no Connect token configured, any other token passes; expired issued ones do not.
    let server = start_empty().await;
    server.sim.add_user(EMAIL, PASSWORD, None);
    server.sim.set_access_ttl(Duration::from_millis(2500));
    let (status, body) = refresh(&server, &server.sim.issue_refresh_token(EMAIL)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expires_in"], 3, "whole seconds, rounded up");
    let short_lived = field(&body, "access_token");
    assert_eq!(printers_with(&server, &short_lived).await, StatusCode::OK);
    wait_until_refused(&server, &short_lived, Duration::from_secs(10)).await;
    assert_eq!(printers_with(&server, TOKEN).await, StatusCode::OK);
    assert_eq!(server.sim.account_stats().access_tokens_rejected, 1);

    server.sim.set_access_ttl(DEFAULT_ACCESS_TTL);
    let (_, body) = refresh(&server, &field(&body, "refresh_token")).await;
    let long_lived = field(&body, "access_token");
    assert_eq!(printers_with(&server, &long_lived).await, StatusCode::OK);
    server.sim.expire_access_tokens();
    assert_eq!(
        printers_with(&server, &long_lived).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(server.sim.account_stats().access_tokens_rejected, 2);
    server.stop().await;
}

#[tokio::test]
async fn account_faults_hit_the_account_server_only() {
    let server = start_empty().await;
    server.sim.add_user(EMAIL, PASSWORD, None);
    let refresh_token = server.sim.issue_refresh_token(EMAIL);

    server.sim.set_account_fault(Some(Fault::Status(503)));
    let (status, body) = refresh(&server, &refresh_token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.as_str().is_some_and(|b| b.contains("503")), "{body}");
    let (status, _) = server.send(server.client.get(server.url("/login/"))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.get("/app/printers").await.0, StatusCode::OK);
    assert!(
        server.sim.is_refresh_token_valid(&refresh_token),
        "a faulted request has no effect"
    );

    server
        .sim
        .set_account_fault(Some(Fault::TooManyRequests { retry_after_s: 9 }));
    let response = server
        .client
        .post(server.url("/o/token/"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "9");

    server.sim.set_account_fault(Some(Fault::MalformedJson));
    let (status, body) = refresh(&server, &refresh_token).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_string(), "not JSON: {body}");

    // Connect's fault switch leaves the account server alone.
    server.sim.set_account_fault(None);
    server.sim.set_fault(Some(Fault::Status(500)));
    let (status, body) = refresh(&server, &refresh_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        server.get("/app/printers").await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let token_posts = server
        .sim
        .requests()
        .iter()
        .filter(|r| r.path == "/o/token/")
        .count();
    assert_eq!(token_posts, 4, "faulted requests are recorded too");
    server.stop().await;
}

#[tokio::test]
async fn overlapping_token_requests_are_counted() {
    let server = start_empty().await;
    server.sim.add_user(EMAIL, PASSWORD, None);
    server
        .sim
        .set_token_endpoint_delay(Duration::from_millis(500));
    let (status, _) = refresh(&server, &server.sim.issue_refresh_token(EMAIL)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.sim.account_stats().max_concurrent_token_requests, 1);

    let (a, b) = (
        server.sim.issue_refresh_token(EMAIL),
        server.sim.issue_refresh_token(EMAIL),
    );
    let started = Instant::now();
    let (first, second) = tokio::join!(refresh(&server, &a), refresh(&server, &b));
    assert_eq!((first.0, second.0), (StatusCode::OK, StatusCode::OK));
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(server.sim.account_stats().max_concurrent_token_requests, 2);
    server.stop().await;
}

#[tokio::test]
async fn admin_interface_scripts_the_account_server() {
    let server = start_empty().await;
    let admin = |method: reqwest::Method, path: &str, body: Value| {
        server
            .client
            .request(method, server.url(&format!("/_sim/account{path}")))
            .json(&body)
    };
    let post = |path: &str, body: Value| admin(reqwest::Method::POST, path, body);
    let (status, _) = server
        .send(post(
            "/users",
            json!({ "email": EMAIL, "password": PASSWORD }),
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server
        .send(post("/refresh-tokens", json!({ "email": EMAIL })))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refresh_token = field(&body, "refresh_token");
    let (status, _) = server
        .send(admin(
            reqwest::Method::PUT,
            "/access-ttl",
            json!({ "seconds": 3 }),
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = refresh(&server, &refresh_token).await;
    assert_eq!(
        (status, body["expires_in"].clone()),
        (StatusCode::OK, json!(3))
    );
    let access_token = field(&body, "access_token");
    server.send(post("/expire", Value::Null)).await;
    assert_eq!(
        printers_with(&server, &access_token).await,
        StatusCode::UNAUTHORIZED
    );

    server
        .send(post("/fault", json!({ "kind": "status", "status": 502 })))
        .await;
    assert_eq!(refresh(&server, "x").await.0, StatusCode::BAD_GATEWAY);
    server.send(post("/fault", Value::Null)).await;
    let (status, _) = server
        .send(admin(
            reqwest::Method::PUT,
            "/token-delay",
            json!({ "ms": 20 }),
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server
        .send(admin(
            reqwest::Method::PUT,
            "/token-delay",
            json!({ "ms": -1 }),
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    server.send(post("/revoke", Value::Null)).await;
    assert!(
        !server
            .sim
            .is_refresh_token_valid(&field(&body, "refresh_token"))
    );
    let (status, body) = server
        .send(post(
            "/refresh-tokens",
            json!({ "email": "nobody@example.com" }),
        ))
        .await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::NOT_FOUND, json!("NOT_FOUND_USER"))
    );
    let (status, stats) = server
        .send(server.client.get(server.url("/_sim/account/stats")))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats["refreshes_ok"], 1);
    assert_eq!(stats["access_tokens_issued"], 1);
    assert!(
        server
            .sim
            .requests()
            .iter()
            .all(|r| r.path == "/o/token/" || r.path == "/app/printers"),
        "admin requests are not recorded"
    );
    server.stop().await;
}

// ---------------------------------------------------------------- rules, with a fake clock

const T0: i64 = 1_750_000_000_000_000;

fn logged_in_code(accounts: &mut Accounts, challenge: &str, now_us: i64) -> String {
    accounts.add_user(EMAIL, PASSWORD, None);
    let PasswordStep::LoggedIn(session) = accounts.check_password(EMAIL, PASSWORD) else {
        panic!("no 2FA configured");
    };
    let request = AuthorizeRequest {
        client_id: CLIENT_ID.to_string(),
        redirect_uri: REDIRECT_URI.to_string(),
        challenge: challenge.to_string(),
        state: None,
    };
    accounts
        .authorize(Some(&session), &request, now_us)
        .expect("logged in")
}

fn code_exchange(code: &str, verifier: &str) -> TokenRequest {
    TokenRequest::AuthorizationCode {
        code: code.to_string(),
        redirect_uri: REDIRECT_URI.to_string(),
        code_verifier: verifier.to_string(),
    }
}

#[test]
fn s256_matches_the_rfc_7636_example() {
    assert_eq!(
        s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
}

#[test]
fn codes_expire_after_a_minute() {
    let pkce = new_pkce();
    let mut accounts = Accounts::default();
    let code = logged_in_code(&mut accounts, &pkce.challenge, T0);
    let late = T0 + micros(CODE_TTL);
    assert_eq!(
        accounts.exchange(code_exchange(&code, &pkce.verifier), late),
        Err(TokenError::InvalidGrant("Authorization code expired"))
    );
    let code = logged_in_code(&mut accounts, &pkce.challenge, T0);
    assert!(
        accounts
            .exchange(code_exchange(&code, &pkce.verifier), late - 1)
            .is_ok()
    );
}

#[test]
fn refresh_tokens_expire_after_thirty_days_and_access_tokens_after_their_ttl() {
    let mut accounts = Accounts::default();
    accounts.add_user(EMAIL, PASSWORD, None);
    accounts.access_ttl = Duration::from_millis(2500);
    let token = accounts.issue_refresh_token(EMAIL, T0).expect("known user");
    let end = T0 + micros(REFRESH_TTL);
    assert!(accounts.is_refresh_token_valid(&token, end - 1));
    assert!(!accounts.is_refresh_token_valid(&token, end));

    let grant = accounts
        .exchange(
            TokenRequest::RefreshToken {
                refresh_token: token,
            },
            T0,
        )
        .expect("refreshed");
    assert_eq!(grant.expires_in, 3);
    let claims = decode_part(grant.access_token.split('.').nth(1).expect("claims"));
    assert_eq!(claims["exp"], (T0 + 2_500_000) / 1_000_000, "rounded down");
    let offered = [grant.access_token];
    assert!(accounts.admits(&offered, Some("other"), T0 + 2_499_999));
    assert!(!accounts.admits(&offered, None, T0 + 2_500_000));
    assert_eq!(accounts.stats.access_tokens_rejected, 1);
}

#[test]
fn token_requests_are_checked_in_order_grant_client_parameters() {
    let form = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        TokenRequest::parse(&form(&[("client_id", "nope")])),
        Err(TokenError::UnsupportedGrantType)
    );
    assert_eq!(
        TokenRequest::parse(&form(&[("grant_type", "refresh_token")])),
        Err(TokenError::InvalidClient)
    );
    assert_eq!(
        TokenRequest::parse(&form(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("refresh_token", ""),
        ])),
        Err(TokenError::InvalidRequest(
            "Missing refresh token parameter."
        ))
    );
    assert_eq!(
        TokenRequest::parse(&form(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("refresh_token", "abc"),
        ])),
        Ok(TokenRequest::RefreshToken {
            refresh_token: "abc".to_string()
        })
    );
}
