//! The HTTP edge: Connect's `/app/` API, `/version.json`, and the middleware every request
//! goes through (recording, faults, authentication). The account server's routes
//! (`/o/*`, `/login/*`) are merged in from `account/http.rs`; files and their previews are in
//! `http/files.rs`.

mod files;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, OriginalUri, Path, Query, Request, State};
use axum::http::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, ETAG, IF_NONE_MATCH, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::error::ApiError;
use super::world::{Printer, real_now_us};
use super::{Fault, RecordedRequest, Simulator, account, admin, commands, jpeg, render};

/// Larger bodies are refused with 413.
const MAX_BODY: usize = 1 << 20;
const AUTH_COOKIE: &str = "auth.access_token";
/// Failure reasons the simulated Connect accepts on a job (`PATCH /jobs/{id}`); the gateway
/// keeps its own list (`prusa_connect_mqtt::command::REASON_TAGS`), tested to be the same.
pub const REASON_TAGS: &[&str] = &[
    "CLOGGED_NOZZLE",
    "NON_ADHERENT_BED",
    "UNDER_EXTRUSION",
    "OVER_EXTRUSION",
    "STRINGING_OR_OOZING",
    "GAPS_IN_THIN_WALLS",
    "OVERHEATING",
    "LAYER_SHIFTING",
    "SPAGHETTI_MONSTER",
    "LAYER_SEPARATION",
    "WARPING",
    "POOR_BRIDGING",
    "OTHER",
];

pub(crate) fn router(sim: Simulator) -> Router {
    let app = Router::new()
        .route("/printers", get(list_printers))
        .route("/printers/{uuid}", get(get_printer))
        .route("/printers/{uuid}/jobs", get(list_jobs))
        .route("/printers/{uuid}/jobs/{id}", get(get_job).patch(patch_job))
        .route("/printers/{uuid}/events", get(list_events))
        .route("/printers/{uuid}/queue", get(queue).post(add_to_queue))
        .route("/printers/{uuid}/download-queue", get(download_queue))
        .route("/printers/{uuid}/files", get(files::files))
        .route("/printers/{uuid}/storages", get(files::storages))
        .route("/printers/{uuid}/cameras", get(cameras))
        .route(
            "/printers/{uuid}/supported-commands",
            get(supported_commands),
        )
        .route("/printers/{uuid}/commands/sync", post(command_sync))
        .route("/cameras/{id}/snapshots/last", get(snapshot))
        .route("/teams/{team_id}/files/{hash}/preview", get(files::preview))
        .route("/printer-types", get(printer_types))
        .route("/notifications", get(notifications))
        .route("/notifications/unseen", get(unseen))
        .route("/invitations", get(invitations))
        .route("/config", get(config))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // The last layer added runs first: a fault hits even unauthenticated requests.
        .layer(middleware::from_fn_with_state(sim.clone(), authenticate))
        .layer(middleware::from_fn(apply_fault));
    Router::new()
        .route("/version.json", get(version))
        .route("/mqtt", get(super::live::upgrade))
        .nest("/app", app)
        .nest("/_sim", admin::router())
        .merge(account::http::router(sim.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(sim.clone(), record))
        .with_state(sim)
}

// ---------------------------------------------------------------- middleware

/// The fault chosen for a Connect request when it was recorded, for [`apply_fault`].
#[derive(Debug, Clone)]
struct ChosenFault(Option<Fault>);

/// Buffers the body and records the request (admin requests excepted). Connect's fault for
/// the request is chosen here, so that the record says which fault it got.
async fn record(State(sim): State<Simulator>, request: Request, next: Next) -> Response {
    let at = sim.world().started.elapsed();
    let (mut parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("Request bodies are limited to {MAX_BODY} bytes"),
        )
        .into_response();
    };
    let path = parts.uri.path().to_string();
    if path != "/_sim" && !path.starts_with("/_sim/") {
        let seq = {
            let mut world = sim.world();
            let fault = if path == "/app" || path.starts_with("/app/") {
                world.take_fault(&path)
            } else {
                None
            };
            parts.extensions.insert(ChosenFault(fault.clone()));
            world.record(RecordedRequest {
                method: parts.method.to_string(),
                path: path.to_string(),
                query: parts.uri.query().unwrap_or_default().to_string(),
                authorization: parts
                    .headers
                    .get(AUTHORIZATION)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
                body: String::from_utf8_lossy(&bytes).into_owned(),
                at,
                fault,
                status: None,
                took: None,
                seq: 0,
            })
        };
        let started = std::time::Instant::now();
        let response = next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
        sim.world()
            .answered(seq, response.status().as_u16(), started.elapsed());
        return response;
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

async fn apply_fault(request: Request, next: Next) -> Response {
    let fault = request
        .extensions()
        .get::<ChosenFault>()
        .and_then(|c| c.0.clone());
    with_fault(fault, Service::Connect, request, next).await
}

/// Which server a fault hits: the error bodies differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    /// Connect's JSON errors.
    Connect,
    /// The account server's HTML error pages.
    Account,
}

/// Answers `request` as `fault` says, or passes it on when there is none.
pub(crate) async fn with_fault(
    fault: Option<Fault>,
    service: Service,
    request: Request,
    next: Next,
) -> Response {
    let error = |status: StatusCode, code: &'static str, message: String| match service {
        Service::Connect => ApiError::new(status, code, message).into_response(),
        Service::Account => account::http::status_page(status),
    };
    match fault {
        None => next.run(request).await,
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error(
                status,
                "SIMULATED_FAULT",
                format!("Simulated fault: HTTP {}", status.as_u16()),
            )
        }
        Some(Fault::TooManyRequests { retry_after_s }) => {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "TOO_MANY_REQUESTS",
                "Too many requests, slow down".to_string(),
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry_after_s));
            response
        }
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            next.run(request).await
        }
        Some(Fault::MalformedJson) => {
            let body = match service {
                Service::Connect => r#"{"printers": [oops"#,
                Service::Account => r#"{"access_token": oops"#,
            };
            ([(CONTENT_TYPE, "application/json")], body).into_response()
        }
        Some(Fault::TruncatedJson) => {
            let (mut parts, body) = next.run(request).await.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            parts.headers.remove(CONTENT_LENGTH);
            let half = bytes.slice(..bytes.len() / 2);
            Response::from_parts(parts, Body::from(half))
        }
        Some(Fault::ConnectionReset) => {
            // hyper writes nothing until the body gives its first chunk, and closes the
            // connection when the body fails: the client gets no status line at all.
            Body::from_stream(tokio_util::io::ReaderStream::new(FailingReader)).into_response()
        }
    }
}

/// A body source that fails at once, for [`Fault::ConnectionReset`].
struct FailingReader;

impl tokio::io::AsyncRead for FailingReader {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        _buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "simulated connection reset",
        )))
    }
}

/// `Authorization: Bearer <token>` or the `auth.access_token` cookie. Access tokens the
/// account server issued pass while unexpired; other tokens must be the configured one, or
/// anything non-empty when none is configured.
async fn authenticate(State(sim): State<Simulator>, request: Request, next: Next) -> Response {
    let expected = sim.world().token.clone();
    let offered = offered_tokens(request.headers());
    let accepted = sim
        .account()
        .admits(&offered, expected.as_deref(), real_now_us());
    if !accepted {
        let mut response = ApiError::unauthorized().into_response();
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    next.run(request).await
}

fn offered_tokens(headers: &HeaderMap) -> Vec<String> {
    let bearer = headers
        .get_all(AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    bearer
        .chain(cookie_values(headers, AUTH_COOKIE))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// The values of every cookie called `name` in the request's `Cookie` headers.
pub(crate) fn cookie_values<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then(|| value.trim())
        })
}

// ---------------------------------------------------------------- extractors

/// Query parameters; a malformed query string is a JSON 400, unknown parameters are ignored.
pub(crate) struct Params(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .map(|Query(map)| Params(map))
            .map_err(|e| ApiError::bad_request("INVALID_QUERY", e.body_text()))
    }
}

impl Params {
    /// A parameter's value; present but empty counts as absent.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// A comma-separated list (`state=FIN_OK,FIN_ERROR`); empty when absent.
    fn list(&self, key: &str) -> Vec<&str> {
        self.get(key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.get(key)
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(
                        "INVALID_QUERY",
                        format!("Query parameter {key} must be an integer, got {v:?}"),
                    )
                })
            })
            .transpose()
    }

    fn float(&self, key: &str) -> Result<Option<f64>, ApiError> {
        self.get(key)
            .map(|v| {
                v.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "INVALID_QUERY",
                            format!("Query parameter {key} must be a number, got {v:?}"),
                        )
                    })
            })
            .transpose()
    }

    /// `limit` (clamped to 1..=max) and `offset` (not negative).
    fn page(&self, default_limit: usize, max_limit: usize) -> Result<Page, ApiError> {
        let limit = match self.int("limit")? {
            None => default_limit,
            Some(n) => usize::try_from(n.max(1)).unwrap_or(max_limit),
        }
        .min(max_limit);
        let offset = match self.int("offset")? {
            None => 0,
            Some(n) => usize::try_from(n).map_err(|_| {
                ApiError::bad_request(
                    "INVALID_QUERY",
                    "Query parameter offset must not be negative",
                )
            })?,
        };
        Ok(Page { limit, offset })
    }
}

#[derive(Debug, Clone, Copy)]
struct Page {
    limit: usize,
    offset: usize,
}

impl Page {
    fn of<'a, T>(&self, items: impl Iterator<Item = T> + 'a) -> impl Iterator<Item = T> + 'a {
        items.skip(self.offset).take(self.limit)
    }
}

/// Path parameters, with a JSON 400 when they cannot be read.
pub(crate) struct PathArgs<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathArgs<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| PathArgs(t))
            .map_err(|e| ApiError::bad_request("INVALID_PATH", e.body_text()))
    }
}

/// A JSON body, with a JSON 400 when it cannot be read.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "INVALID_JSON",
            format!("The body is not what was expected: {e}"),
        )
    })
}

type JsonResult = Result<Json<Value>, ApiError>;

fn with_printer<T>(
    sim: &Simulator,
    uuid: &str,
    f: impl FnOnce(&Printer) -> T,
) -> Result<T, ApiError> {
    let world = sim.world();
    world
        .printer(uuid)
        .map(f)
        .ok_or_else(ApiError::printer_not_found)
}

fn job_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND_JOB", "Job not found")
}

fn camera_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NOT_FOUND_CAMERA",
        "Camera not found",
    )
}

fn unix_now() -> i64 {
    real_now_us().div_euclid(1_000_000)
}

// ---------------------------------------------------------------- handlers

async fn version(State(sim): State<Simulator>) -> Json<Value> {
    let started_us = sim.world().started_us;
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    let date = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(started_us) * 1000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default();
    Json(json!({ "commit": "5e1f7e57", "version": "5e1f7e57", "date": date }))
}

async fn list_printers(State(sim): State<Simulator>, params: Params) -> JsonResult {
    let page = params.page(20, 1000)?;
    let team = params.int("team_id")?;
    let now = real_now_us();
    let world = sim.world();
    let matching = || {
        world
            .printers
            .iter()
            .filter(|p| !p.hidden && team.is_none_or(|t| p.team_id == t))
    };
    let printers: Vec<Value> = page
        .of(matching())
        .map(|p| render::printer(p, now, false))
        .collect();
    Ok(Json(json!({
        "printers": printers,
        "pager": { "limit": page.limit, "offset": page.offset, "total": matching().count() },
    })))
}

async fn get_printer(State(sim): State<Simulator>, PathArgs(uuid): PathArgs<String>) -> JsonResult {
    let now = real_now_us();
    with_printer(&sim, &uuid, |p| Json(render::printer(p, now, true)))
}

async fn list_jobs(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    params: Params,
) -> JsonResult {
    let page = params.page(20, 1000)?;
    let states = params.list("state");
    with_printer(&sim, &uuid, |p| {
        let recorded: Vec<_> = p.jobs.iter().rev().map(|j| j.as_recorded()).collect();
        let matching = || {
            recorded
                .iter()
                .filter(|j| states.is_empty() || states.contains(&j.state.as_str()))
        };
        let jobs: Vec<Value> = page
            .of(matching())
            .map(|j| render::job_item(j, p.team_id))
            .collect();
        let mut pager =
            json!({ "limit": page.limit, "offset": page.offset, "total": matching().count() });
        if let (Some(oldest), Some(map)) = (matching().next_back(), pager.as_object_mut()) {
            map.insert(
                "from".into(),
                json!(oldest.started_us.div_euclid(1_000_000)),
            );
            map.insert("to".into(), json!(unix_now()));
        }
        Json(json!({ "jobs": jobs, "pager": pager }))
    })
}

async fn get_job(
    State(sim): State<Simulator>,
    PathArgs((uuid, id)): PathArgs<(String, String)>,
) -> JsonResult {
    let id: i64 = id.parse().map_err(|_| job_not_found())?;
    with_printer(&sim, &uuid, |p| {
        p.job(id)
            .map(|j| render::job_detail(&j.as_recorded(), p.team_id))
    })?
    .map(Json)
    .ok_or_else(job_not_found)
}

/// `{"reason": {"tag": [...], "other": "..."}}`, stored and shown in the job detail.
async fn patch_job(
    State(sim): State<Simulator>,
    PathArgs((uuid, id)): PathArgs<(String, String)>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let request: Value = parse_json(&body)?;
    let reason = request
        .get("reason")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            ApiError::bad_request("MISSING_REASON", "The body needs an object reason")
        })?;
    let tags = match reason.get("tag") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(tags)) => tags.clone(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "INVALID_TAG",
                "reason.tag must be an array",
            ));
        }
    };
    for tag in &tags {
        if !tag.as_str().is_some_and(|t| REASON_TAGS.contains(&t)) {
            return Err(ApiError::bad_request(
                "INVALID_TAG",
                format!(
                    "Unknown reason tag {tag}; known: {}",
                    REASON_TAGS.join(", ")
                ),
            ));
        }
    }
    let other = match reason.get("other") {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(s)) => json!(s),
        Some(_) => {
            return Err(ApiError::bad_request(
                "INVALID_REASON",
                "reason.other must be a string",
            ));
        }
    };
    let id: i64 = id.parse().map_err(|_| job_not_found())?;
    let mut world = sim.world();
    let printer = world
        .printer_mut(&uuid)
        .ok_or_else(ApiError::printer_not_found)?;
    let job = printer.job_mut(id).ok_or_else(job_not_found)?;
    job.reason = Some(json!({ "tag": tags, "other": other }));
    Ok(StatusCode::NO_CONTENT)
}

/// The feed, newest first; `from`/`to` are Unix seconds (floats allowed), `from` defaulting to
/// 24 hours ago and `to` to no upper bound, both by Connect's clock (which may have jumped).
async fn list_events(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    params: Params,
) -> JsonResult {
    let page = params.page(20, 500)?;
    let now = sim.world().ctx.clock.now_us();
    let from = params.float("from")?;
    let to = params.float("to")?;
    let names = params.list("event");
    let from_us = from.map_or(now - 86_400_000_000, |f| (f * 1e6).round() as i64);
    let to_us = to.map(|t| (t * 1e6).round() as i64);
    with_printer(&sim, &uuid, |p| {
        let events: Vec<Value> = p
            .feed(from_us, to_us, &names, page.offset, page.limit)
            .into_iter()
            .map(|e| Value::Object(e.json.clone()))
            .collect();
        Json(json!({
            "events": events,
            "pager": {
                "limit": page.limit,
                "offset": page.offset,
                "from": from.map_or_else(|| json!(from_us.div_euclid(1_000_000)), render::num),
                "to": to.map_or_else(|| json!(now.div_euclid(1_000_000) + 1), render::num),
            },
        }))
    })
}

async fn queue(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    params: Params,
) -> JsonResult {
    let page = params.page(20, 1000)?;
    with_printer(&sim, &uuid, |p| {
        let jobs: Vec<Value> = page
            .of(p.queue.iter().enumerate())
            .map(|(i, planned)| render::planned_job(planned, i, p))
            .collect();
        Json(json!({
            "planned_jobs": jobs,
            "pager": { "limit": page.limit, "offset": page.offset, "total": p.queue.len(), "from": unix_now() },
        }))
    })
}

/// `{"path": "/usb/x.bgcode", "set_ready": true, "position": 0}` adds a planned job.
async fn add_to_queue(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    #[derive(serde::Deserialize)]
    struct Planned {
        path: String,
        #[serde(default)]
        set_ready: bool,
        position: Option<usize>,
    }
    let planned: Planned = parse_json(&body)?;
    if !planned.path.starts_with('/') {
        return Err(ApiError::bad_request(
            "INVALID_PATH",
            "path must be absolute",
        ));
    }
    let mut world = sim.world();
    let (printer, ctx) = world
        .printer_ctx(&uuid)
        .ok_or_else(ApiError::printer_not_found)?;
    let id = printer.queue_job(ctx, &planned.path, planned.set_ready, planned.position);
    let (position, job) = printer
        .queue
        .iter()
        .enumerate()
        .find(|(_, j)| j.id == id)
        .ok_or_else(job_not_found)?;
    let body = render::planned_job(job, position, printer);
    Ok((StatusCode::CREATED, Json(body)))
}

async fn download_queue(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    params: Params,
) -> JsonResult {
    let page = params.page(20, 1000)?;
    with_printer(&sim, &uuid, |_| {
        Json(json!({
            "planned_jobs": [],
            "pager": { "limit": page.limit, "offset": page.offset, "total": 0, "from": unix_now() },
        }))
    })
}

async fn cameras(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    params: Params,
) -> JsonResult {
    let page = params.page(20, 1000)?;
    let world = sim.world();
    world
        .printer(&uuid)
        .ok_or_else(ApiError::printer_not_found)?;
    let matching = || world.cameras.iter().filter(|c| c.printer_uuid == uuid);
    let cameras: Vec<Value> = page.of(matching()).map(render::camera).collect();
    Ok(Json(json!({
        "cameras": cameras,
        "pager": { "limit": page.limit, "offset": page.offset, "total": matching().count() },
    })))
}

/// The last snapshot as JPEG, with an ETag; 304 when `If-None-Match` already has it.
async fn snapshot(
    State(sim): State<Simulator>,
    PathArgs(id): PathArgs<String>,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id: i64 = id.parse().map_err(|_| camera_not_found())?;
    let bytes = {
        let world = sim.world();
        let camera = world
            .cameras
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(camera_not_found)?;
        if params
            .get("printer_uuid")
            .is_some_and(|u| u != camera.printer_uuid)
        {
            return Err(camera_not_found());
        }
        let printer = world
            .printer(&camera.printer_uuid)
            .ok_or_else(camera_not_found)?;
        let picture = jpeg::snapshot(&jpeg::Scene {
            camera_id: camera.id,
            printer_number: printer.number,
            state: printer.effective_state(),
            progress: printer.info_job().map_or(0.0, |j| j.progress),
        });
        jpeg::padded(picture, camera.min_bytes)
    };
    Ok(conditional(&headers, "image/jpeg", bytes))
}

/// Answers `bytes` with a strong ETag, or 304 with no body when the client has them.
fn conditional(headers: &HeaderMap, content_type: &'static str, bytes: Vec<u8>) -> Response {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    let etag = format!("\"{:016x}\"", hasher.finish());
    let known = headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*");
    if known {
        (StatusCode::NOT_MODIFIED, [(ETAG, etag)]).into_response()
    } else {
        (
            [(CONTENT_TYPE, content_type.to_string()), (ETAG, etag)],
            bytes,
        )
            .into_response()
    }
}

async fn supported_commands(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
) -> JsonResult {
    with_printer(&sim, &uuid, |p| Json(commands::supported_commands(p)))
}

async fn command_sync(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    commands::execute(&mut sim.world(), &uuid, &body).map(Json)
}

async fn printer_types() -> Json<Value> {
    Json(render::printer_types())
}

/// The account's notifications, newest first.
async fn notifications(State(sim): State<Simulator>, params: Params) -> JsonResult {
    let page = params.page(20, 100)?;
    let world = sim.world();
    let all = &world.ctx.notifications;
    let items: Vec<Value> = page
        .of(all.iter().rev())
        .map(render::notification)
        .collect();
    let pager = json!({ "limit": page.limit, "offset": page.offset, "total": all.len() });
    Ok(Json(json!({ "notifications": items, "pager": pager })))
}

async fn unseen(State(sim): State<Simulator>) -> Json<Value> {
    Json(json!({ "unseen": sim.world().ctx.unseen }))
}

async fn invitations() -> Json<Value> {
    Json(json!({ "invitations": [], "refused": [] }))
}

async fn config() -> Json<Value> {
    Json(json!({
        "auth": { "server_url": "https://account.prusa3d.com" },
        "upload": { "max_file_size": 1_073_741_824u64 },
        "camera": { "snapshot_interval": 30 },
        "simulated": true,
    }))
}

pub(crate) async fn not_found(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("Nothing at {method} {}", uri.path()),
    )
}

pub(crate) async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("{method} is not allowed on {}", uri.path()),
    )
}
