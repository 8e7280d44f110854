//! Scripting Connect itself: recorded requests, notifications, faults, the clock, the token
//! and simulated time.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::answer::{JsonResult, ok};
use crate::error::ApiError;
use crate::http::parse_json;
use crate::{Fault, FaultRule, PathFilter, Simulator};

pub(super) async fn requests(State(sim): State<Simulator>) -> Json<Value> {
    Json(json!(sim.requests()))
}

pub(super) async fn clear_requests(State(sim): State<Simulator>) -> Json<Value> {
    sim.clear_requests();
    ok()
}

/// `{"printer_uuid": "...", "severity": "WARNING", "text": "..."}` → `{"id": N}`
pub(super) async fn add_notification(State(sim): State<Simulator>, body: Bytes) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        printer_uuid: Option<String>,
        severity: Option<String>,
        text: String,
    }
    let Body {
        printer_uuid,
        severity,
        text,
    } = parse_json(&body)?;
    let severity = severity.unwrap_or_else(|| "INFO".to_string());
    let id = sim.add_notification(printer_uuid.as_deref(), &severity, &text);
    Ok(Json(json!({ "id": id })))
}

/// `null`/empty clears every fault; otherwise one of `{"kind":"status","status":503}`,
/// `{"kind":"too_many_requests","retry_after_s":5}`, `{"kind":"delay","ms":1500}`,
/// `{"kind":"malformed_json"}`, `{"kind":"truncated_json"}`, `{"kind":"connection_reset"}`
/// for every `/app/` request.
pub(super) async fn set_fault(State(sim): State<Simulator>, body: Bytes) -> JsonResult {
    sim.set_fault(parse_fault(&body)?);
    Ok(ok())
}

/// A `/fault` body plus, optionally, `"path": "/app/printers"` (exactly) or
/// `"path_contains": "/events"`, and `"times": 3`: adds a rule after the others.
pub(super) async fn add_fault(State(sim): State<Simulator>, body: Bytes) -> JsonResult {
    #[derive(Deserialize)]
    struct Scope {
        path: Option<String>,
        path_contains: Option<String>,
        times: Option<u32>,
    }
    let fault = parse_fault(&body)?.ok_or_else(|| {
        ApiError::bad_request("MISSING_FAULT", "The body needs a fault (\"kind\": ...)")
    })?;
    let scope: Scope = parse_json(&body)?;
    let mut rule = FaultRule::new(fault);
    rule.paths = match (scope.path, scope.path_contains) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "INVALID_FAULT",
                "Give path or path_contains, not both",
            ));
        }
        (Some(path), None) => PathFilter::Exactly(path),
        (None, Some(part)) => PathFilter::Containing(part),
        (None, None) => PathFilter::Any,
    };
    rule.remaining = scope.times;
    sim.add_fault(rule);
    Ok(ok())
}

/// The fault rules in force: `[{"fault": {...}, "path": .., "path_contains": .., "times": ..}]`.
pub(super) async fn faults(State(sim): State<Simulator>) -> Json<Value> {
    let rules: Vec<Value> = sim
        .faults()
        .iter()
        .map(|r| {
            let (path, part) = match &r.paths {
                PathFilter::Any => (None, None),
                PathFilter::Exactly(p) => (Some(p), None),
                PathFilter::Containing(p) => (None, Some(p)),
            };
            json!({
                "fault": r.fault.to_json(),
                "path": path,
                "path_contains": part,
                "times": r.remaining,
            })
        })
        .collect();
    Json(json!(rules))
}

/// `{"offset_s": -600}`: Connect's clock jumps to real time plus the offset.
pub(super) async fn set_clock(State(sim): State<Simulator>, body: Bytes) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        offset_s: f64,
    }
    let Body { offset_s } = parse_json(&body)?;
    if !offset_s.is_finite() || offset_s.abs() > 10.0 * 365.0 * 86_400.0 {
        return Err(ApiError::bad_request(
            "INVALID_OFFSET",
            "offset_s must be a number of seconds within ten years",
        ));
    }
    sim.set_clock_offset(offset_s);
    Ok(ok())
}

/// A fault body as `/fault` takes it.
pub(super) fn parse_fault(body: &[u8]) -> Result<Option<Fault>, ApiError> {
    #[derive(Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum Body {
        Status {
            status: u16,
        },
        TooManyRequests {
            #[serde(default = "one")]
            retry_after_s: u64,
        },
        Delay {
            ms: u64,
        },
        MalformedJson,
        TruncatedJson,
        ConnectionReset,
    }
    fn one() -> u64 {
        1
    }
    let body: Option<Body> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        parse_json(body)?
    };
    Ok(body.map(|b| match b {
        Body::Status { status } => Fault::Status(status),
        Body::TooManyRequests { retry_after_s } => Fault::TooManyRequests { retry_after_s },
        Body::Delay { ms } => Fault::Delay(Duration::from_millis(ms)),
        Body::MalformedJson => Fault::MalformedJson,
        Body::TruncatedJson => Fault::TruncatedJson,
        Body::ConnectionReset => Fault::ConnectionReset,
    }))
}

/// `{"token": "secret"}` or `{"token": null}` (any token accepted).
pub(super) async fn set_token(State(sim): State<Simulator>, body: Bytes) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        token: Option<String>,
    }
    let Body { token } = parse_json(&body)?;
    sim.set_token(token.as_deref());
    Ok(ok())
}

/// `{"unseen": 3}`
pub(super) async fn set_unseen(State(sim): State<Simulator>, body: Bytes) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        unseen: u64,
    }
    let Body { unseen } = parse_json(&body)?;
    sim.set_unseen(unseen);
    Ok(ok())
}

/// `{"seconds": 10}`: advances scenario printers, in steps of at most one second. At most an
/// hour at a time: a farm's steps run on the server's thread.
pub(super) async fn step(
    State(sim): State<Simulator>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    #[derive(Deserialize)]
    struct Body {
        seconds: f64,
    }
    let Body { seconds } = parse_json(&body)?;
    if !seconds.is_finite() || !(0.0..=3_600.0).contains(&seconds) {
        return Err(ApiError::bad_request(
            "INVALID_STEP",
            "seconds must be between 0 and 3600",
        ));
    }
    let mut left = seconds;
    while left > 0.0 {
        let dt = left.min(1.0);
        sim.step(Duration::from_secs_f64(dt));
        left -= dt;
    }
    Ok(StatusCode::NO_CONTENT)
}
