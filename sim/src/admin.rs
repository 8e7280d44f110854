//! `/_sim/`: scripting over HTTP for curl, Node-RED and other processes. Thin wrappers over
//! the Rust API; no authentication, never faulted, never recorded.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::http::{Params, PathArgs, method_not_allowed, not_found, parse_json};
use super::world::{Cause, Ctx, NewJob, Printer};
use super::{Fault, FaultRule, PathFilter, PrinterSpec, Simulator};

pub(crate) fn router() -> Router<Simulator> {
    Router::new()
        .route("/requests", get(requests).delete(clear_requests))
        .route("/printers", get(printers).post(add_printer))
        .route("/printers/{uuid}", delete(remove_printer))
        .route("/printers/{uuid}/state", post(set_state))
        .route("/printers/{uuid}/online", post(set_online))
        .route("/printers/{uuid}/job", post(start_job))
        .route("/printers/{uuid}/progress", post(set_progress))
        .route("/printers/{uuid}/finish", post(finish_job))
        .route("/printers/{uuid}/dialog", post(set_dialog))
        .route("/printers/{uuid}/dialog-answers", get(dialog_answers))
        .route("/printers/{uuid}/files", post(add_file).delete(remove_file))
        .route("/printers/{uuid}/temps", post(set_temps))
        .route("/printers/{uuid}/event", post(push_event))
        .route("/printers/{uuid}/queue", post(queue_job))
        .route("/printers/{uuid}/hidden", post(hide_printer))
        .route("/printers/{uuid}/quick-job", post(quick_job))
        .route("/printers/{uuid}/record-lag", post(set_record_lag))
        .route("/notifications", post(add_notification))
        .route("/fault", post(set_fault))
        .route("/faults", get(faults).post(add_fault))
        .route("/clock", post(set_clock))
        .route("/token", post(set_token))
        .route("/unseen", post(set_unseen))
        .route("/step", post(step))
        .route("/live", get(live_status).post(set_live))
        .route("/live/drop", post(drop_live))
        .route("/account/users", post(add_user))
        .route("/account/refresh-tokens", post(issue_refresh_token))
        .route("/account/revoke", post(revoke_refresh_tokens))
        .route("/account/expire", post(expire_access_tokens))
        .route("/account/access-ttl", put(set_access_ttl))
        .route("/account/token-delay", put(set_token_delay))
        .route("/account/fault", post(set_account_fault))
        .route("/account/stats", get(account_stats))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

type JsonResult = Result<Json<Value>, ApiError>;

fn ok() -> Json<Value> {
    Json(json!({ "ok": true }))
}

fn on_printer<T>(
    sim: &Simulator,
    uuid: &str,
    f: impl FnOnce(&mut Printer, &mut Ctx) -> T,
) -> Result<T, ApiError> {
    sim.try_script(uuid, f)
        .ok_or_else(ApiError::printer_not_found)
}

async fn requests(State(sim): State<Simulator>) -> Json<Value> {
    Json(json!(sim.requests()))
}

async fn clear_requests(State(sim): State<Simulator>) -> Json<Value> {
    sim.clear_requests();
    ok()
}

async fn printers(State(sim): State<Simulator>) -> Json<Value> {
    let world = sim.world();
    let printers: Vec<Value> = world
        .printers
        .iter()
        .map(|p| {
            json!({
                "uuid": p.uuid,
                "name": p.name,
                "printer_state": p.state,
                "connect_state": p.effective_state(),
                "scenario": p.pilot.is_some(),
            })
        })
        .collect();
    Json(json!({ "printers": printers }))
}

/// `{"name": "X", "model": "MK4IS"|"MINI"|"COREONE"|"XL", "uuid": ".."}`
async fn add_printer(State(sim): State<Simulator>, body: Bytes) -> JsonResult {
    #[derive(Deserialize)]
    struct Add {
        name: String,
        model: Option<String>,
        uuid: Option<String>,
        sn: Option<String>,
    }
    let add: Add = parse_json(&body)?;
    let mut spec = match add.model.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("MK4" | "MK4IS") => PrinterSpec::named(&add.name),
        Some("MINI") => PrinterSpec::mini(&add.name),
        Some("COREONE" | "CORE_ONE") => PrinterSpec::core_one(&add.name),
        Some("XL") => PrinterSpec::xl(&add.name),
        Some(other) => PrinterSpec {
            model: other.to_string(),
            ..PrinterSpec::named(&add.name)
        },
    };
    spec.uuid = add.uuid;
    spec.sn = add.sn.unwrap_or_default();
    let uuid = sim
        .world()
        .add_printer(spec, None)
        .map_err(ApiError::conflict)?;
    Ok(Json(json!({ "uuid": uuid })))
}

async fn remove_printer(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
) -> JsonResult {
    if sim.world().remove_printer(&uuid) {
        Ok(ok())
    } else {
        Err(ApiError::printer_not_found())
    }
}

/// `{"state": "PAUSED"}`
async fn set_state(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        state: String,
    }
    let Body { state } = parse_json(&body)?;
    let state = state.trim().to_ascii_uppercase();
    on_printer(&sim, &uuid, |p, ctx| {
        if state == "OFFLINE" {
            p.set_online(ctx, false);
        } else {
            p.set_state(ctx, &state, &Cause::FIRMWARE);
        }
    })?;
    Ok(ok())
}

/// `{"online": false}`
async fn set_online(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        online: bool,
    }
    let Body { online } = parse_json(&body)?;
    on_printer(&sim, &uuid, |p, ctx| p.set_online(ctx, online))?;
    Ok(ok())
}

/// `{"file": "x.bgcode", "duration": 60, "objects": ["a", "b"]}` → `{"job_id": N}`
async fn start_job(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        file: String,
        #[serde(default = "default_duration")]
        duration: f64,
        #[serde(default)]
        objects: Vec<String>,
    }
    fn default_duration() -> f64 {
        60.0
    }
    let job: Body = parse_json(&body)?;
    if job.file.trim().is_empty() || !job.duration.is_finite() {
        return Err(ApiError::bad_request(
            "INVALID_JOB",
            "file must not be empty and duration must be a number of seconds",
        ));
    }
    let objects: Vec<&str> = job.objects.iter().map(String::as_str).collect();
    let new = NewJob::new(&job.file, job.duration, &objects);
    let id = on_printer(&sim, &uuid, |p, ctx| {
        p.start_job(ctx, new, &Cause::FIRMWARE)
    })?;
    Ok(Json(json!({ "job_id": id })))
}

/// `{"progress": 42.5}`
async fn set_progress(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        progress: f64,
    }
    let Body { progress } = parse_json(&body)?;
    on_printer(&sim, &uuid, |p, _| p.set_progress(progress))?;
    Ok(ok())
}

/// `{"state": "FIN_ERROR"}` (default FIN_OK)
async fn finish_job(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        state: Option<String>,
    }
    let finish: Body = if body.is_empty() {
        Body { state: None }
    } else {
        parse_json(&body)?
    };
    let state = end_state(finish.state)?;
    on_printer(&sim, &uuid, |p, ctx| {
        p.finish_job(ctx, &state, &Cause::FIRMWARE)
    })?;
    Ok(ok())
}

/// The state a job ends in (FIN_OK when not given).
fn end_state(state: Option<String>) -> Result<String, ApiError> {
    let state = state.unwrap_or_else(|| "FIN_OK".to_string());
    if !(state.starts_with("FIN_") || state == "UNKNOWN") {
        return Err(ApiError::bad_request(
            "INVALID_STATE",
            format!(
                "A job ends as FIN_OK, FIN_ERROR, FIN_STOPPED, FIN_HARVESTED or UNKNOWN, not {state}"
            ),
        ));
    }
    Ok(state)
}

/// A dialog object (`{"title": .., "text": .., "buttons": [..]}`) or `null` to clear it.
async fn set_dialog(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    let dialog: Value = parse_json(&body)?;
    let dialog = (!dialog.is_null()).then_some(dialog);
    on_printer(&sim, &uuid, |p, ctx| {
        p.set_dialog(ctx, dialog, &Cause::FIRMWARE)
    })?;
    Ok(ok())
}

/// `{"nozzle": 215, "bed": 60, "target_nozzle": 215, "target_bed": 60}` (all optional)
async fn set_temps(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        nozzle: Option<f64>,
        bed: Option<f64>,
        target_nozzle: Option<f64>,
        target_bed: Option<f64>,
    }
    let t: Body = parse_json(&body)?;
    on_printer(&sim, &uuid, |p, _| {
        let temps = &mut p.temps;
        temps.nozzle = t.nozzle.unwrap_or(temps.nozzle);
        temps.bed = t.bed.unwrap_or(temps.bed);
        temps.target_nozzle = t.target_nozzle.unwrap_or(temps.target_nozzle);
        temps.target_bed = t.target_bed.unwrap_or(temps.target_bed);
        p.heating = false;
    })?;
    Ok(ok())
}

/// `[{"dialog_id": 3, "button": "Ok"}]`: the buttons pressed with DIALOG_ACTION, oldest first.
async fn dialog_answers(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
) -> JsonResult {
    let answers = on_printer(&sim, &uuid, |p, _| p.dialog_answers.clone())?;
    let answers: Vec<Value> = answers
        .into_iter()
        .map(|(dialog_id, button)| json!({ "dialog_id": dialog_id, "button": button }))
        .collect();
    Ok(Json(json!(answers)))
}

/// `{"path": "/usb/x.bgcode"}` (a bare name goes under `/usb/`) → `{"path": ..}` as stored.
async fn add_file(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    let path = file_path(&body, None)?;
    let path = on_printer(&sim, &uuid, |p, ctx| {
        let m_time = ctx.clock.now_us().div_euclid(1_000_000);
        p.add_file(&path, m_time)
    })?;
    Ok(Json(json!({ "path": path })))
}

/// The path in `{"path": ..}` or in `?path=`; 404 when the printer has no such file.
async fn remove_file(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    params: Params,
    body: Bytes,
) -> JsonResult {
    let path = file_path(&body, params.get("path"))?;
    if on_printer(&sim, &uuid, |p, _| p.remove_file(&path))? {
        Ok(ok())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND_FILE",
            format!("The printer has no file {path}"),
        ))
    }
}

/// A file's path from `{"path": ..}`, or from the query when the body is empty.
fn file_path(body: &[u8], query: Option<&str>) -> Result<String, ApiError> {
    #[derive(Deserialize)]
    struct Body {
        path: String,
    }
    let path = match query {
        Some(path) if body.iter().all(u8::is_ascii_whitespace) => path.to_string(),
        _ => parse_json::<Body>(body)?.path,
    };
    if path.trim().is_empty() {
        return Err(ApiError::bad_request(
            "INVALID_PATH",
            "path must not be empty",
        ));
    }
    Ok(path)
}

/// `{"event": "INFO", ...}`: every other key goes into the event.
async fn push_event(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    let mut fields: Map<String, Value> = parse_json(&body)?;
    let Some(Value::String(event)) = fields.remove("event") else {
        return Err(ApiError::bad_request(
            "MISSING_EVENT",
            "The body needs a string field event",
        ));
    };
    on_printer(&sim, &uuid, |p, ctx| {
        p.push_event(ctx, &event, Value::Object(fields))
    })?;
    Ok(ok())
}

/// `{"file": "calibration.gcode", "state": "FIN_OK"}` → `{"id": N}`: a job that starts and
/// ends before the printer list shows it.
async fn quick_job(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        file: String,
        state: Option<String>,
    }
    let Body { file, state } = parse_json(&body)?;
    let state = end_state(state)?;
    let id = on_printer(&sim, &uuid, |p, ctx| {
        p.quick_job(ctx, NewJob::new(&file, 20.0, &[]), &state)
    })?;
    Ok(Json(json!({ "id": id })))
}

/// `{"seconds": 30}`: Connect's record of each job ending from now on says PRINTING this long.
async fn set_record_lag(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        seconds: f64,
    }
    let Body { seconds } = parse_json(&body)?;
    if !seconds.is_finite() || !(0.0..=86_400.0).contains(&seconds) {
        return Err(ApiError::bad_request(
            "INVALID_LAG",
            "seconds must be between 0 and 86400",
        ));
    }
    on_printer(&sim, &uuid, |p, _| {
        p.record_lag = Duration::from_secs_f64(seconds)
    })?;
    Ok(ok())
}

/// `{"printer_uuid": "...", "severity": "WARNING", "text": "..."}` → `{"id": N}`
async fn add_notification(State(sim): State<Simulator>, body: Bytes) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        printer_uuid: Option<String>,
        severity: Option<String>,
        text: String,
    }
    let Body {
        printer_uuid,
        severity,
        text,
    } = parse_json(&body)?;
    let severity = severity.unwrap_or_else(|| "INFO".to_string());
    let id = sim.add_notification(printer_uuid.as_deref(), &severity, &text);
    Ok(Json(json!({ "id": id })))
}

/// `{"path": "/usb/x.bgcode"}` → `{"id": N}`
async fn queue_job(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        path: String,
    }
    let Body { path } = parse_json(&body)?;
    let id = on_printer(&sim, &uuid, |p, ctx| p.queue_job(ctx, &path, false, None))?;
    Ok(Json(json!({ "id": id })))
}

/// `null`/empty clears every fault; otherwise one of `{"kind":"status","status":503}`,
/// `{"kind":"too_many_requests","retry_after_s":5}`, `{"kind":"delay","ms":1500}`,
/// `{"kind":"malformed_json"}`, `{"kind":"truncated_json"}`, `{"kind":"connection_reset"}`
/// for every `/app/` request.
async fn set_fault(State(sim): State<Simulator>, body: Bytes) -> JsonResult {
    sim.set_fault(parse_fault(&body)?);
    Ok(ok())
}

/// A `/fault` body plus, optionally, `"path": "/app/printers"` (exactly) or
/// `"path_contains": "/events"`, and `"times": 3`: adds a rule after the others.
async fn add_fault(State(sim): State<Simulator>, body: Bytes) -> JsonResult {
    #[derive(Deserialize)]
    struct Scope {
        path: Option<String>,
        path_contains: Option<String>,
        times: Option<u32>,
    }
    let fault = parse_fault(&body)?.ok_or_else(|| {
        ApiError::bad_request("MISSING_FAULT", "The body needs a fault (\"kind\": ...)")
    })?;
    let scope: Scope = parse_json(&body)?;
    let mut rule = FaultRule::new(fault);
    rule.paths = match (scope.path, scope.path_contains) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "INVALID_FAULT",
                "Give path or path_contains, not both",
            ));
        }
        (Some(path), None) => PathFilter::Exactly(path),
        (None, Some(part)) => PathFilter::Containing(part),
        (None, None) => PathFilter::Any,
    };
    rule.remaining = scope.times;
    sim.add_fault(rule);
    Ok(ok())
}

/// The fault rules in force: `[{"fault": {...}, "path": .., "path_contains": .., "times": ..}]`.
async fn faults(State(sim): State<Simulator>) -> Json<Value> {
    let rules: Vec<Value> = sim
        .faults()
        .iter()
        .map(|r| {
            let (path, part) = match &r.paths {
                PathFilter::Any => (None, None),
                PathFilter::Exactly(p) => (Some(p), None),
                PathFilter::Containing(p) => (None, Some(p)),
            };
            json!({
                "fault": r.fault.to_json(),
                "path": path,
                "path_contains": part,
                "times": r.remaining,
            })
        })
        .collect();
    Json(json!(rules))
}

/// `{"hidden": true}`: left out of the fleet list (its own endpoints still answer).
async fn hide_printer(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        hidden: bool,
    }
    let Body { hidden } = parse_json(&body)?;
    on_printer(&sim, &uuid, |p, _| p.hidden = hidden)?;
    Ok(ok())
}

/// `{"offset_s": -600}`: Connect's clock jumps to real time plus the offset.
async fn set_clock(State(sim): State<Simulator>, body: Bytes) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        offset_s: f64,
    }
    let Body { offset_s } = parse_json(&body)?;
    if !offset_s.is_finite() || offset_s.abs() > 10.0 * 365.0 * 86_400.0 {
        return Err(ApiError::bad_request(
            "INVALID_OFFSET",
            "offset_s must be a number of seconds within ten years",
        ));
    }
    sim.set_clock_offset(offset_s);
    Ok(ok())
}

/// A fault body as `/fault` takes it.
fn parse_fault(body: &[u8]) -> Result<Option<Fault>, ApiError> {
    #[derive(Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum Body {
        Status {
            status: u16,
        },
        TooManyRequests {
            #[serde(default = "one")]
            retry_after_s: u64,
        },
        Delay {
            ms: u64,
        },
        MalformedJson,
        TruncatedJson,
        ConnectionReset,
    }
    fn one() -> u64 {
        1
    }
    let body: Option<Body> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        parse_json(body)?
    };
    Ok(body.map(|b| match b {
        Body::Status { status } => Fault::Status(status),
        Body::TooManyRequests { retry_after_s } => Fault::TooManyRequests { retry_after_s },
        Body::Delay { ms } => Fault::Delay(Duration::from_millis(ms)),
        Body::MalformedJson => Fault::MalformedJson,
        Body::TruncatedJson => Fault::TruncatedJson,
        Body::ConnectionReset => Fault::ConnectionReset,
    }))
}

/// `{"token": "secret"}` or `{"token": null}` (any token accepted).
async fn set_token(State(sim): State<Simulator>, body: Bytes) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        token: Option<String>,
    }
    let Body { token } = parse_json(&body)?;
    sim.set_token(token.as_deref());
    Ok(ok())
}

/// `{"unseen": 3}`
async fn set_unseen(State(sim): State<Simulator>, body: Bytes) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        unseen: u64,
    }
    let Body { unseen } = parse_json(&body)?;
    sim.set_unseen(unseen);
    Ok(ok())
}

/// `{"seconds": 10}`: advances scenario printers, in steps of at most one second. At most an
/// hour at a time: a farm's steps run on the server's thread.
async fn step(State(sim): State<Simulator>, body: Bytes) -> Result<StatusCode, ApiError> {
    #[derive(Deserialize)]
    struct Body {
        seconds: f64,
    }
    let Body { seconds } = parse_json(&body)?;
    if !seconds.is_finite() || !(0.0..=3_600.0).contains(&seconds) {
        return Err(ApiError::bad_request(
            "INVALID_STEP",
            "seconds must be between 0 and 3600",
        ));
    }
    let mut left = seconds;
    while left > 0.0 {
        let dt = left.min(1.0);
        sim.step(Duration::from_secs_f64(dt));
        left -= dt;
    }
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- the account server

/// `{"email": "a@b.c", "password": "pw", "totp": "123456"}` (`totp` optional)
async fn add_user(State(sim): State<Simulator>, body: Bytes) -> JsonResult {
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
async fn issue_refresh_token(State(sim): State<Simulator>, body: Bytes) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        email: String,
    }
    let Body { email } = parse_json(&body)?;
    let token = sim
        .account()
        .issue_refresh_token(&email, super::world::real_now_us())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND_USER",
                format!("No user with email {email}"),
            )
        })?;
    Ok(Json(json!({ "refresh_token": token })))
}

async fn revoke_refresh_tokens(State(sim): State<Simulator>) -> Json<Value> {
    sim.revoke_refresh_tokens();
    ok()
}

async fn expire_access_tokens(State(sim): State<Simulator>) -> Json<Value> {
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
async fn set_access_ttl(State(sim): State<Simulator>, body: Bytes) -> JsonResult {
    sim.set_access_ttl(parse_duration(&body, "seconds", Duration::from_secs(1))?);
    Ok(ok())
}

/// `{"ms": 500}`: how long `/o/token/` waits before it answers.
async fn set_token_delay(State(sim): State<Simulator>, body: Bytes) -> JsonResult {
    let delay = parse_duration(&body, "ms", Duration::from_millis(1))?;
    sim.set_token_endpoint_delay(delay);
    Ok(ok())
}

/// The same bodies as `/fault`, for `/o/*` and `/login/*`.
async fn set_account_fault(State(sim): State<Simulator>, body: Bytes) -> JsonResult {
    sim.set_account_fault(parse_fault(&body)?);
    Ok(ok())
}

async fn account_stats(State(sim): State<Simulator>) -> Json<Value> {
    Json(json!(sim.account_stats()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LiveSwitches {
    enabled: Option<bool>,
    refuse_all: Option<bool>,
    period_ms: Option<u64>,
}

/// `POST /_sim/live {"enabled": false, "refuse_all": true, "period_ms": 1000}` (any of them).
async fn set_live(State(sim): State<Simulator>, body: Bytes) -> Result<StatusCode, ApiError> {
    let s: LiveSwitches = parse_json(&body)?;
    if let Some(enabled) = s.enabled {
        sim.set_live_enabled(enabled);
    }
    if let Some(refuse) = s.refuse_all {
        sim.set_live_refuse_all(refuse);
    }
    if let Some(ms) = s.period_ms {
        sim.set_live_period(Duration::from_millis(ms));
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn drop_live(State(sim): State<Simulator>) -> StatusCode {
    sim.drop_live_connections();
    StatusCode::NO_CONTENT
}

/// `GET /_sim/live`: the stats, the sessions and what they are subscribed to.
async fn live_status(State(sim): State<Simulator>) -> Json<Value> {
    Json(json!({
        "stats": sim.live_stats(),
        "sessions": sim.live_sessions(),
        "subscriptions": sim.live_subscriptions(),
    }))
}
