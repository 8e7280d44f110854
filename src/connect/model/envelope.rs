//! What wraps Connect's answers: the pager of every collection, the body of an error.

use serde::Deserialize;
use serde_json::Value;

/// `{"<key>": [...], "pager": {...}}`: every collection has this shape.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Pager {
    pub limit: Option<u64>,
    pub offset: Option<u64>,
    pub total: Option<u64>,
    pub from: Option<f64>,
    pub to: Option<f64>,
}

/// Connect's JSON error body: `{"code": "UNAUTHORIZED", "message": "..."}`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ApiError {
    pub code: Option<String>,
    pub message: Option<String>,
    pub reason: Option<Value>,
}
