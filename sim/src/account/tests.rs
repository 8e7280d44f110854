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

mod login;
mod rules;
mod tokens;

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
