//! The account server's HTTP edge: `/o/authorize/`, `/o/token/`, `/login/` and `/login/2fa/`,
//! served next to Connect's `/app` but outside it: Connect's fault switch and token check do
//! not apply here; the account's own fault switch covers `/o/*` and `/login/*`.

use std::collections::HashMap;

use axum::extract::rejection::FormRejection;
use axum::extract::{OriginalUri, Query, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, PRAGMA, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Form, Json, Router};

use super::super::Simulator;
use super::super::http::{Service, cookie_values, with_fault};
use super::super::world::real_now_us;
use super::pages::{self, url_encode};
use super::{AuthorizeRequest, PasswordStep, Session, TokenRequest, TotpStep};

const TOKEN_PATH: &str = "/o/token/";
const SESSION_COOKIE: &str = "sessionid";
const CSRF_COOKIE: &str = "csrftoken";
const CSRF_FIELD: &str = "csrfmiddlewaretoken";
const WRONG_CREDENTIALS: &str = "Please enter a correct email and password.";
const WRONG_TOTP: &str = "Invalid token.";
const FIELD_REQUIRED: &str = "This field is required.";

pub(crate) fn router(sim: Simulator) -> Router<Simulator> {
    Router::new()
        .route("/o/authorize/", get(authorize))
        .route(TOKEN_PATH, post(token))
        .route("/o/{*rest}", any(not_found))
        .route("/login/", get(login_page).post(login))
        .route("/login/2fa/", get(totp_page).post(totp))
        .route("/login/{*rest}", any(not_found))
        .route("/api/v1/me", get(me))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(sim, count_and_fault))
}

/// `GET /api/v1/me`: the account the bearer token belongs to; the live channel's username is
/// its `id`.
async fn me(State(sim): State<Simulator>, headers: HeaderMap) -> Response {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_string())
        .filter(|t| !t.is_empty());
    let connect_token = sim.world().token.clone();
    let me = token.and_then(|t| {
        sim.account()
            .me(&t, connect_token.as_deref(), real_now_us())
    });
    match me {
        Some(me) => Json(me).into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({ "detail": "Authentication credentials were not provided." })),
        )
            .into_response(),
    }
}

// ---------------------------------------------------------------- middleware

/// Counts `/o/token/` requests in progress (faulted ones too, so a client retrying in
/// parallel is seen), then applies the account's fault.
async fn count_and_fault(State(sim): State<Simulator>, request: Request, next: Next) -> Response {
    let _in_flight =
        (request.uri().path() == TOKEN_PATH).then(|| TokenRequestInFlight::start(&sim));
    let fault = sim.account().fault.clone();
    with_fault(fault, Service::Account, request, next).await
}

/// Marks one `/o/token/` request in progress until dropped, also when the client hangs up.
struct TokenRequestInFlight(Simulator);

impl TokenRequestInFlight {
    fn start(sim: &Simulator) -> TokenRequestInFlight {
        sim.account().token_request_started();
        TokenRequestInFlight(sim.clone())
    }
}

impl Drop for TokenRequestInFlight {
    fn drop(&mut self) {
        self.0.account().token_request_ended();
    }
}

// ---------------------------------------------------------------- helpers

fn html(status: StatusCode, body: String) -> Response {
    (status, [(CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// A bare HTML page for `status`, as the account server's front proxy sends.
pub(crate) fn status_page(status: StatusCode) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    html(status, pages::status(status.as_u16(), reason))
}

/// 302, as Django's `HttpResponseRedirect` (axum's `Redirect` has only 303, 307 and 308).
fn found(location: &str) -> Response {
    match HeaderValue::from_str(&pages::iri_to_uri(location)) {
        Ok(location) => (StatusCode::FOUND, [(LOCATION, location)]).into_response(),
        Err(_) => status_page(StatusCode::BAD_REQUEST),
    }
}

fn with_cookie(mut response: Response, cookie: String) -> Response {
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

fn session_cookie(key: &str) -> String {
    format!("{SESSION_COOKIE}={key}; HttpOnly; Max-Age=1209600; Path=/; SameSite=Lax")
}

fn csrf_cookie(token: &str) -> String {
    format!("{CSRF_COOKIE}={token}; Max-Age=31449600; Path=/; SameSite=Lax")
}

fn cookie<'a>(headers: &'a HeaderMap, name: &'a str) -> Option<&'a str> {
    cookie_values(headers, name).find(|v| !v.is_empty())
}

/// The query parameters; a malformed query string counts as none.
fn query(uri: &Uri) -> HashMap<String, String> {
    Query::try_from_uri(uri)
        .map(|Query(params)| params)
        .unwrap_or_default()
}

/// The `next` parameter, `/` when there is none.
fn next_param(uri: &Uri) -> String {
    query(uri)
        .remove("next")
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "/".to_string())
}

/// Where to go after logging in: only back into the authorization flow, so that the login
/// page cannot be used to send someone elsewhere.
fn safe_next(next: &str) -> &str {
    if next.starts_with("/o/authorize/") && !next.chars().any(char::is_control) {
        next
    } else {
        "/"
    }
}

/// The `csrftoken` cookie when the browser has a usable one, else a new token to set.
fn csrf_token(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, CSRF_COOKIE).filter(|c| c.bytes().all(|b| b.is_ascii_alphanumeric())) {
        Some(token) => (token.to_string(), false),
        None => (super::random_token(32), true),
    }
}

/// A page with a form: sets the `csrftoken` cookie its hidden field repeats, when new.
fn form_page(csrf: (String, bool), page: impl FnOnce(&str) -> String) -> Response {
    let (token, fresh) = csrf;
    let response = html(StatusCode::OK, page(&token));
    if fresh {
        with_cookie(response, csrf_cookie(&token))
    } else {
        response
    }
}

/// Django's check: the form's `csrfmiddlewaretoken` must equal the `csrftoken` cookie.
/// Gives the token, or the reason for the 403.
fn check_csrf<'a>(
    headers: &'a HeaderMap,
    form: &HashMap<String, String>,
) -> Result<&'a str, &'static str> {
    let cookie = cookie(headers, CSRF_COOKIE).ok_or("CSRF cookie not set.")?;
    match form.get(CSRF_FIELD).map(String::as_str) {
        None | Some("") => Err("CSRF token missing."),
        Some(token) if token == cookie => Ok(cookie),
        Some(_) => Err("CSRF token incorrect."),
    }
}

fn csrf_failure(reason: &str) -> Response {
    html(StatusCode::FORBIDDEN, pages::csrf_failure(reason))
}

/// A fully logged-in session: Django's `login()` also rotates the CSRF token.
fn logged_in(response: Response, session_key: &str) -> Response {
    let response = with_cookie(response, session_cookie(session_key));
    with_cookie(response, csrf_cookie(&super::random_token(32)))
}

// ---------------------------------------------------------------- handlers

/// Checks the request, then either sends the browser to log in or back to the redirect URI
/// with a new code.
async fn authorize(
    State(sim): State<Simulator>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let request = match AuthorizeRequest::parse(&query(&uri)) {
        Ok(request) => request,
        Err(e) => {
            return html(
                StatusCode::BAD_REQUEST,
                pages::authorize_error(e.error, e.description),
            );
        }
    };
    let session = cookie(&headers, SESSION_COOKIE);
    let code = sim.account().authorize(session, &request, real_now_us());
    match code {
        None => {
            let here = uri
                .path_and_query()
                .map_or("/o/authorize/", |pq| pq.as_str());
            found(&format!("/login/?next={}", url_encode(here)))
        }
        Some(code) => {
            let mut location = format!("{}?code={code}", request.redirect_uri);
            if let Some(state) = &request.state {
                location.push_str(&format!("&state={}", url_encode(state)));
            }
            found(&location)
        }
    }
}

async fn login_page(OriginalUri(uri): OriginalUri, headers: HeaderMap) -> Response {
    let next = next_param(&uri);
    form_page(csrf_token(&headers), |csrf| {
        pages::login(&next, csrf, "", None)
    })
}

async fn login(
    State(sim): State<Simulator>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    // Another content type reads as an empty form, as Django's `request.POST` does.
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let csrf = match check_csrf(&headers, &form) {
        Ok(csrf) => csrf,
        Err(reason) => return csrf_failure(reason),
    };
    let next = next_param(&uri);
    let email = form.get("email").map_or("", |e| e.trim());
    let password = form.get("password").map_or("", String::as_str);
    let again = |error| {
        html(
            StatusCode::OK,
            pages::login(&next, csrf, email, Some(error)),
        )
    };
    if email.is_empty() || password.is_empty() {
        return again(FIELD_REQUIRED);
    }
    let step = sim.account().check_password(email, password);
    match step {
        PasswordStep::Refused => again(WRONG_CREDENTIALS),
        PasswordStep::LoggedIn(key) => logged_in(found(safe_next(&next)), &key),
        PasswordStep::NeedsTotp(key) => {
            let location = format!("/login/2fa/?next={}", url_encode(safe_next(&next)));
            with_cookie(found(&location), session_cookie(&key))
        }
    }
}

fn session(sim: &Simulator, headers: &HeaderMap) -> Option<Session> {
    cookie(headers, SESSION_COOKIE).and_then(|key| sim.account().session(key))
}

async fn totp_page(
    State(sim): State<Simulator>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let next = next_param(&uri);
    match session(&sim, &headers) {
        Some(Session::AwaitingTotp { .. }) => {
            form_page(csrf_token(&headers), |csrf| pages::totp(&next, csrf, None))
        }
        Some(Session::LoggedIn { .. }) => found(safe_next(&next)),
        None => found(&format!("/login/?next={}", url_encode(&next))),
    }
}

async fn totp(
    State(sim): State<Simulator>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let csrf = match check_csrf(&headers, &form) {
        Ok(csrf) => csrf,
        Err(reason) => return csrf_failure(reason),
    };
    let next = next_param(&uri);
    let key = cookie(&headers, SESSION_COOKIE).unwrap_or_default();
    let code = form.get("token").map_or("", String::as_str);
    let step = sim.account().check_totp(key, code);
    match step {
        TotpStep::NoPendingSession => found(&format!("/login/?next={}", url_encode(&next))),
        TotpStep::Refused => html(StatusCode::OK, pages::totp(&next, csrf, Some(WRONG_TOTP))),
        TotpStep::LoggedIn => logged_in(found(safe_next(&next)), key),
    }
}

/// The token endpoint: waits the configured delay, then exchanges a code or refresh token.
async fn token(
    State(sim): State<Simulator>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let delay = sim.account().token_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    // Another content type reads as an empty form (so: unsupported_grant_type), as in Django.
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let result = TokenRequest::parse(&form)
        .and_then(|request| sim.account().exchange(request, real_now_us()));
    let (status, body) = match result {
        Ok(grant) => (StatusCode::OK, grant.body()),
        Err(e) => (e.status(), e.body()),
    };
    (
        status,
        [(CACHE_CONTROL, "no-store"), (PRAGMA, "no-cache")],
        Json(body),
    )
        .into_response()
}

async fn not_found() -> Response {
    status_page(StatusCode::NOT_FOUND)
}

async fn method_not_allowed() -> Response {
    status_page(StatusCode::METHOD_NOT_ALLOWED)
}
