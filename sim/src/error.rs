//! Connect's JSON error answers.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer: `{"code": .., "message": .., "reason": ..}` with an HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub reason: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            reason: None,
        }
    }

    /// 400 BAD_REQUEST; `reason` is a short machine-readable tag, `message` a sentence.
    pub fn bad_request(reason: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            reason: Some(reason.to_string()),
            ..ApiError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
        }
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "Missing or invalid security token",
        )
    }

    pub fn printer_not_found() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND_PRINTER",
            "Printer not found",
        )
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "CONFLICT", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "code": self.code, "message": self.message });
        if let (Some(reason), Some(map)) = (self.reason, body.as_object_mut()) {
            map.insert("reason".into(), json!(reason));
        }
        (self.status, Json(body)).into_response()
    }
}
