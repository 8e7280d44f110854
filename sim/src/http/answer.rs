//! Pieces of an answer the handlers share: a printer or its 404, a body with an ETag.

use std::hash::{DefaultHasher, Hash, Hasher};

use axum::Json;
use axum::http::header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::Simulator;
use crate::error::ApiError;
use crate::world::{Printer, real_now_us};

pub(super) type JsonResult = Result<Json<Value>, ApiError>;

pub(super) fn with_printer<T>(
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

pub(super) fn job_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND_JOB", "Job not found")
}

pub(super) fn camera_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NOT_FOUND_CAMERA",
        "Camera not found",
    )
}

pub(super) fn unix_now() -> i64 {
    real_now_us().div_euclid(1_000_000)
}

/// Answers `bytes` with a strong ETag, or 304 with no body when the client has them.
pub(super) fn conditional(
    headers: &HeaderMap,
    content_type: &'static str,
    bytes: Vec<u8>,
) -> Response {
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
