//! A printer's jobs, a job's failure reason, and its queues.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::answer::{JsonResult, job_not_found, unix_now, with_printer};
use super::request::{Params, PathArgs, parse_json};
use crate::error::ApiError;
use crate::{Simulator, render};

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

pub(super) async fn list_jobs(
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

pub(super) async fn get_job(
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
pub(super) async fn patch_job(
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

pub(super) async fn queue(
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
pub(super) async fn add_to_queue(
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

pub(super) async fn download_queue(
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
