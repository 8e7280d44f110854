//! `/_sim/live`: scripting the live channel.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Simulator;
use crate::error::ApiError;
use crate::http::parse_json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LiveSwitches {
    enabled: Option<bool>,
    refuse_all: Option<bool>,
    period_ms: Option<u64>,
}

/// `POST /_sim/live {"enabled": false, "refuse_all": true, "period_ms": 1000}` (any of them).
pub(super) async fn set_live(
    State(sim): State<Simulator>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let s: LiveSwitches = parse_json(&body)?;
    if let Some(enabled) = s.enabled {
        sim.set_live_enabled(enabled);
    }
    if let Some(refuse) = s.refuse_all {
        sim.set_live_refuse_all(refuse);
    }
    if let Some(ms) = s.period_ms {
        sim.set_live_period(Duration::from_millis(ms));
    }
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn drop_live(State(sim): State<Simulator>) -> StatusCode {
    sim.drop_live_connections();
    StatusCode::NO_CONTENT
}

/// `GET /_sim/live`: the stats, the sessions and what they are subscribed to.
pub(super) async fn live_status(State(sim): State<Simulator>) -> Json<Value> {
    Json(json!({
        "stats": sim.live_stats(),
        "sessions": sim.live_sessions(),
        "subscriptions": sim.live_subscriptions(),
    }))
}
