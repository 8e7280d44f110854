//! A printer's endpoints: the list, one printer, its feed, its cameras, its commands.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};

use super::answer::{JsonResult, camera_not_found, conditional, with_printer};
use super::request::{Params, PathArgs};
use crate::error::ApiError;
use crate::world::real_now_us;
use crate::{Simulator, commands, jpeg, render};

pub(super) async fn list_printers(State(sim): State<Simulator>, params: Params) -> JsonResult {
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

pub(super) async fn get_printer(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
) -> JsonResult {
    let now = real_now_us();
    with_printer(&sim, &uuid, |p| Json(render::printer(p, now, true)))
}

/// The feed, newest first; `from`/`to` are Unix seconds (floats allowed), `from` defaulting to
/// 24 hours ago and `to` to no upper bound, both by Connect's clock (which may have jumped).
pub(super) async fn list_events(
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

pub(super) async fn cameras(
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
pub(super) async fn snapshot(
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

pub(super) async fn supported_commands(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
) -> JsonResult {
    with_printer(&sim, &uuid, |p| Json(commands::supported_commands(p)))
}

pub(super) async fn command_sync(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    commands::execute(&mut sim.world(), &uuid, &body).map(Json)
}
