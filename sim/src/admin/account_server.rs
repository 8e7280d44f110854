//! `/_sim/account/..`: scripting the account server.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::answer::{JsonResult, ok};
use super::server::parse_fault;
use crate::Simulator;
use crate::error::ApiError;
use crate::http::parse_json;

/// `{"email": "a@b.c", "password": "pw", "totp": "123456"}` (`totp` optional)
pub(super) async fn add_user(State(sim): State<Simulator>, body: Bytes) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        email: String,
        password: String,
        totp: Option<String>,
    }
    let user: Body = parse_json(&body)?;
    if user.email.trim().is_empty() || user.password.is_empty() {
        return Err(ApiError::bad_request(
            "INVALID_USER",
            "email and password must not be empty",
        ));
    }
    sim.add_user(&user.email, &user.password, user.totp.as_deref());
    Ok(ok())
}

/// `{"email": "a@b.c"}` → `{"refresh_token": ".."}`, as if the user had logged in.
pub(super) async fn issue_refresh_token(State(sim): State<Simulator>, body: Bytes) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        email: String,
    }
    let Body { email } = parse_json(&body)?;
    let token = sim
        .account()
        .issue_refresh_token(&email, crate::world::real_now_us())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND_USER",
                format!("No user with email {email}"),
            )
        })?;
    Ok(Json(json!({ "refresh_token": token })))
}

pub(super) async fn revoke_refresh_tokens(State(sim): State<Simulator>) -> Json<Value> {
    sim.revoke_refresh_tokens();
    ok()
}

pub(super) async fn expire_access_tokens(State(sim): State<Simulator>) -> Json<Value> {
    sim.expire_access_tokens();
    ok()
}

/// Reads `{"<key>": n}` as n times `unit`; n is a non-negative number, fractions allowed.
fn parse_duration(body: &[u8], key: &'static str, unit: Duration) -> Result<Duration, ApiError> {
    let value: Value = parse_json(body)?;
    value
        .get(key)
        .and_then(Value::as_f64)
        .and_then(|n| Duration::try_from_secs_f64(n * unit.as_secs_f64()).ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "INVALID_DURATION",
                format!("The body needs a non-negative number {key}, not too large"),
            )
        })
}

/// `{"seconds": 5}`: the lifetime of access tokens issued from now on.
pub(super) async fn set_access_ttl(State(sim): State<Simulator>, body: Bytes) -> JsonResult {
    sim.set_access_ttl(parse_duration(&body, "seconds", Duration::from_secs(1))?);
    Ok(ok())
}

/// `{"ms": 500}`: how long `/o/token/` waits before it answers.
pub(super) async fn set_token_delay(State(sim): State<Simulator>, body: Bytes) -> JsonResult {
    let delay = parse_duration(&body, "ms", Duration::from_millis(1))?;
    sim.set_token_endpoint_delay(delay);
    Ok(ok())
}

/// The same bodies as `/fault`, for `/o/*` and `/login/*`.
pub(super) async fn set_account_fault(State(sim): State<Simulator>, body: Bytes) -> JsonResult {
    sim.set_account_fault(parse_fault(&body)?);
    Ok(ok())
}

pub(super) async fn account_stats(State(sim): State<Simulator>) -> Json<Value> {
    Json(json!(sim.account_stats()))
}
