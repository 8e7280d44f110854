//! What is not about one printer: Connect's version, printer types, the account's
//! notifications, invitations and config.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::answer::JsonResult;
use super::request::Params;
use crate::{Simulator, render};

pub(super) async fn version(State(sim): State<Simulator>) -> Json<Value> {
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

pub(super) async fn printer_types() -> Json<Value> {
    Json(render::printer_types())
}

/// The account's notifications, newest first.
pub(super) async fn notifications(State(sim): State<Simulator>, params: Params) -> JsonResult {
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

pub(super) async fn unseen(State(sim): State<Simulator>) -> Json<Value> {
    Json(json!({ "unseen": sim.world().ctx.unseen }))
}

pub(super) async fn invitations() -> Json<Value> {
    Json(json!({ "invitations": [], "refused": [] }))
}

pub(super) async fn config() -> Json<Value> {
    Json(json!({
        "auth": { "server_url": "https://account.prusa3d.com" },
        "upload": { "max_file_size": 1_073_741_824u64 },
        "camera": { "snapshot_interval": 30 },
        "simulated": true,
    }))
}
