//! What the admin handlers share: the `{}` they answer, a printer or its 404.

use axum::Json;
use serde_json::{Value, json};

use crate::Simulator;
use crate::error::ApiError;
use crate::world::{Ctx, Printer};

pub(super) type JsonResult = Result<Json<Value>, ApiError>;

pub(super) fn ok() -> Json<Value> {
    Json(json!({ "ok": true }))
}

pub(super) fn on_printer<T>(
    sim: &Simulator,
    uuid: &str,
    f: impl FnOnce(&mut Printer, &mut Ctx) -> T,
) -> Result<T, ApiError> {
    sim.try_script(uuid, f)
        .ok_or_else(ApiError::printer_not_found)
}
