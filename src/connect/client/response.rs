//! Reading what Connect answered: bodies within a size limit, error statuses as
//! [`ConnectError::Api`] (with `Retry-After`).

use reqwest::header;
use serde_json::Value;

use super::error::ConnectError;
use crate::connect::model::ApiError;
use crate::http::{describe_reqwest, parse_retry_after, read_capped};

pub(super) async fn error_body(resp: reqwest::Response) -> Option<ApiError> {
    let bytes = read_limited(resp, 64 * 1024).await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Turns a non-success status into [`ConnectError::Api`], otherwise reads the body.
pub(super) async fn check_and_read(
    resp: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, ConnectError> {
    let status = resp.status();
    if status.is_success() {
        return read_limited(resp, limit).await;
    }
    let retry_after = resp
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let bytes = read_limited(resp, 64 * 1024).await.unwrap_or_default();
    let body: Option<Value> = serde_json::from_slice(&bytes).ok();
    let parsed: Option<ApiError> = body
        .as_ref()
        .and_then(|b| serde_json::from_value(b.clone()).ok());
    let message = parsed
        .as_ref()
        .and_then(|e| e.message.clone())
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("unexpected status")
                .to_string()
        });
    Err(ConnectError::Api {
        status: status.as_u16(),
        code: parsed.and_then(|e| e.code),
        message,
        retry_after,
        body,
    })
}

async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, ConnectError> {
    let read = read_capped(&mut resp, limit)
        .await
        .map_err(|e| ConnectError::Transport(describe_reqwest(&e)))?;
    read.ok_or_else(|| ConnectError::Decode {
        what: resp.url().path().to_string(),
        detail: format!(
            "the response is over the limit of {limit} bytes (connect.max_response_bytes)"
        ),
    })
}
