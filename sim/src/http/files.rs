//! A printer's files, its storages, and the previews of files (`/app/teams/{id}/files/..`).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::answer::{JsonResult, conditional, with_printer};
use super::request::{Params, PathArgs};
use crate::error::ApiError;
use crate::{Simulator, jpeg, render};

fn file_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND_FILE", "File not found")
}

/// A collection like Connect's others (`files` plus a pager), with an ETag: clients ask for
/// it with `If-None-Match`.
pub(super) async fn files(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let page = params.page(20, 1000)?;
    let body = with_printer(&sim, &uuid, |p| {
        let files: Vec<Value> = page
            .of(p.files.iter())
            .map(|f| render::file(f, p.team_id))
            .collect();
        json!({
            "files": files,
            "pager": { "limit": page.limit, "offset": page.offset, "total": p.files.len() },
        })
    })?;
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    Ok(conditional(&headers, "application/json", bytes))
}

pub(super) async fn storages(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
) -> JsonResult {
    with_printer(&sim, &uuid, |p| Json(render::storages(p)))
}

/// The thumbnail of a file any printer of the team has (or printed), as JPEG with an ETag.
pub(super) async fn preview(
    State(sim): State<Simulator>,
    PathArgs((team_id, hash)): PathArgs<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let team_id: i64 = team_id.parse().map_err(|_| file_not_found())?;
    let bytes = {
        let world = sim.world();
        let file = world
            .printers
            .iter()
            .filter(|p| p.team_id == team_id)
            .find_map(|p| p.file_by_hash(&hash))
            .ok_or_else(file_not_found)?;
        jpeg::preview(&file.hash, &file.name)
    };
    Ok(conditional(&headers, "image/jpeg", bytes))
}
