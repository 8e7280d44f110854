//! `/_sim/printers/..`: scripting printers, their jobs, dialogs, files, events and queue.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::answer::{JsonResult, ok, on_printer};
use crate::error::ApiError;
use crate::http::{Params, PathArgs, parse_json};
use crate::world::{Cause, NewJob};
use crate::{PrinterSpec, Simulator};

pub(super) async fn printers(State(sim): State<Simulator>) -> Json<Value> {
    let world = sim.world();
    let printers: Vec<Value> = world
        .printers
        .iter()
        .map(|p| {
            json!({
                "uuid": p.uuid,
                "name": p.name,
                "printer_state": p.state,
                "connect_state": p.effective_state(),
                "scenario": p.pilot.is_some(),
            })
        })
        .collect();
    Json(json!({ "printers": printers }))
}

/// `{"name": "X", "model": "MK4IS"|"MINI"|"COREONE"|"XL", "uuid": ".."}`
pub(super) async fn add_printer(State(sim): State<Simulator>, body: Bytes) -> JsonResult {
    #[derive(Deserialize)]
    struct Add {
        name: String,
        model: Option<String>,
        uuid: Option<String>,
        sn: Option<String>,
    }
    let add: Add = parse_json(&body)?;
    let mut spec = match add.model.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("MK4" | "MK4IS") => PrinterSpec::named(&add.name),
        Some("MINI") => PrinterSpec::mini(&add.name),
        Some("COREONE" | "CORE_ONE") => PrinterSpec::core_one(&add.name),
        Some("XL") => PrinterSpec::xl(&add.name),
        Some(other) => PrinterSpec {
            model: other.to_string(),
            ..PrinterSpec::named(&add.name)
        },
    };
    spec.uuid = add.uuid;
    spec.sn = add.sn.unwrap_or_default();
    let uuid = sim
        .world()
        .add_printer(spec, None)
        .map_err(ApiError::conflict)?;
    Ok(Json(json!({ "uuid": uuid })))
}

pub(super) async fn remove_printer(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
) -> JsonResult {
    if sim.world().remove_printer(&uuid) {
        Ok(ok())
    } else {
        Err(ApiError::printer_not_found())
    }
}

/// `{"state": "PAUSED"}`
pub(super) async fn set_state(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        state: String,
    }
    let Body { state } = parse_json(&body)?;
    let state = state.trim().to_ascii_uppercase();
    on_printer(&sim, &uuid, |p, ctx| {
        if state == "OFFLINE" {
            p.set_online(ctx, false);
        } else {
            p.set_state(ctx, &state, &Cause::FIRMWARE);
        }
    })?;
    Ok(ok())
}

/// `{"online": false}`
pub(super) async fn set_online(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        online: bool,
    }
    let Body { online } = parse_json(&body)?;
    on_printer(&sim, &uuid, |p, ctx| p.set_online(ctx, online))?;
    Ok(ok())
}

/// `{"file": "x.bgcode", "duration": 60, "objects": ["a", "b"]}` → `{"job_id": N}`
pub(super) async fn start_job(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        file: String,
        #[serde(default = "default_duration")]
        duration: f64,
        #[serde(default)]
        objects: Vec<String>,
    }
    fn default_duration() -> f64 {
        60.0
    }
    let job: Body = parse_json(&body)?;
    if job.file.trim().is_empty() || !job.duration.is_finite() {
        return Err(ApiError::bad_request(
            "INVALID_JOB",
            "file must not be empty and duration must be a number of seconds",
        ));
    }
    let objects: Vec<&str> = job.objects.iter().map(String::as_str).collect();
    let new = NewJob::new(&job.file, job.duration, &objects);
    let id = on_printer(&sim, &uuid, |p, ctx| {
        p.start_job(ctx, new, &Cause::FIRMWARE)
    })?;
    Ok(Json(json!({ "job_id": id })))
}

/// `{"progress": 42.5}`
pub(super) async fn set_progress(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        progress: f64,
    }
    let Body { progress } = parse_json(&body)?;
    on_printer(&sim, &uuid, |p, _| p.set_progress(progress))?;
    Ok(ok())
}

/// `{"state": "FIN_ERROR"}` (default FIN_OK)
pub(super) async fn finish_job(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        state: Option<String>,
    }
    let finish: Body = if body.is_empty() {
        Body { state: None }
    } else {
        parse_json(&body)?
    };
    let state = end_state(finish.state)?;
    on_printer(&sim, &uuid, |p, ctx| {
        p.finish_job(ctx, &state, &Cause::FIRMWARE)
    })?;
    Ok(ok())
}

/// The state a job ends in (FIN_OK when not given).
fn end_state(state: Option<String>) -> Result<String, ApiError> {
    let state = state.unwrap_or_else(|| "FIN_OK".to_string());
    if !(state.starts_with("FIN_") || state == "UNKNOWN") {
        return Err(ApiError::bad_request(
            "INVALID_STATE",
            format!(
                "A job ends as FIN_OK, FIN_ERROR, FIN_STOPPED, FIN_HARVESTED or UNKNOWN, not {state}"
            ),
        ));
    }
    Ok(state)
}

/// A dialog object (`{"title": .., "text": .., "buttons": [..]}`) or `null` to clear it.
pub(super) async fn set_dialog(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    let dialog: Value = parse_json(&body)?;
    let dialog = (!dialog.is_null()).then_some(dialog);
    on_printer(&sim, &uuid, |p, ctx| {
        p.set_dialog(ctx, dialog, &Cause::FIRMWARE)
    })?;
    Ok(ok())
}

/// `{"nozzle": 215, "bed": 60, "target_nozzle": 215, "target_bed": 60}` (all optional)
pub(super) async fn set_temps(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        nozzle: Option<f64>,
        bed: Option<f64>,
        target_nozzle: Option<f64>,
        target_bed: Option<f64>,
    }
    let t: Body = parse_json(&body)?;
    on_printer(&sim, &uuid, |p, _| {
        let temps = &mut p.temps;
        temps.nozzle = t.nozzle.unwrap_or(temps.nozzle);
        temps.bed = t.bed.unwrap_or(temps.bed);
        temps.target_nozzle = t.target_nozzle.unwrap_or(temps.target_nozzle);
        temps.target_bed = t.target_bed.unwrap_or(temps.target_bed);
        p.heating = false;
    })?;
    Ok(ok())
}

/// `[{"dialog_id": 3, "button": "Ok"}]`: the buttons pressed with DIALOG_ACTION, oldest first.
pub(super) async fn dialog_answers(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
) -> JsonResult {
    let answers = on_printer(&sim, &uuid, |p, _| p.dialog_answers.clone())?;
    let answers: Vec<Value> = answers
        .into_iter()
        .map(|(dialog_id, button)| json!({ "dialog_id": dialog_id, "button": button }))
        .collect();
    Ok(Json(json!(answers)))
}

/// `{"path": "/usb/x.bgcode"}` (a bare name goes under `/usb/`) → `{"path": ..}` as stored.
pub(super) async fn add_file(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    let path = file_path(&body, None)?;
    let path = on_printer(&sim, &uuid, |p, ctx| {
        let m_time = ctx.clock.now_us().div_euclid(1_000_000);
        p.add_file(&path, m_time)
    })?;
    Ok(Json(json!({ "path": path })))
}

/// The path in `{"path": ..}` or in `?path=`; 404 when the printer has no such file.
pub(super) async fn remove_file(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    params: Params,
    body: Bytes,
) -> JsonResult {
    let path = file_path(&body, params.get("path"))?;
    if on_printer(&sim, &uuid, |p, _| p.remove_file(&path))? {
        Ok(ok())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND_FILE",
            format!("The printer has no file {path}"),
        ))
    }
}

/// A file's path from `{"path": ..}`, or from the query when the body is empty.
fn file_path(body: &[u8], query: Option<&str>) -> Result<String, ApiError> {
    #[derive(Deserialize)]
    struct Body {
        path: String,
    }
    let path = match query {
        Some(path) if body.iter().all(u8::is_ascii_whitespace) => path.to_string(),
        _ => parse_json::<Body>(body)?.path,
    };
    if path.trim().is_empty() {
        return Err(ApiError::bad_request(
            "INVALID_PATH",
            "path must not be empty",
        ));
    }
    Ok(path)
}

/// `{"event": "INFO", ...}`: every other key goes into the event.
pub(super) async fn push_event(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    let mut fields: Map<String, Value> = parse_json(&body)?;
    let Some(Value::String(event)) = fields.remove("event") else {
        return Err(ApiError::bad_request(
            "MISSING_EVENT",
            "The body needs a string field event",
        ));
    };
    on_printer(&sim, &uuid, |p, ctx| {
        p.push_event(ctx, &event, Value::Object(fields))
    })?;
    Ok(ok())
}

/// `{"file": "calibration.gcode", "state": "FIN_OK"}` → `{"id": N}`: a job that starts and
/// ends before the printer list shows it.
pub(super) async fn quick_job(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        file: String,
        state: Option<String>,
    }
    let Body { file, state } = parse_json(&body)?;
    let state = end_state(state)?;
    let id = on_printer(&sim, &uuid, |p, ctx| {
        p.quick_job(ctx, NewJob::new(&file, 20.0, &[]), &state)
    })?;
    Ok(Json(json!({ "id": id })))
}

/// `{"seconds": 30}`: Connect's record of each job ending from now on says PRINTING this long.
pub(super) async fn set_record_lag(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        seconds: f64,
    }
    let Body { seconds } = parse_json(&body)?;
    if !seconds.is_finite() || !(0.0..=86_400.0).contains(&seconds) {
        return Err(ApiError::bad_request(
            "INVALID_LAG",
            "seconds must be between 0 and 86400",
        ));
    }
    on_printer(&sim, &uuid, |p, _| {
        p.record_lag = Duration::from_secs_f64(seconds)
    })?;
    Ok(ok())
}

/// `{"path": "/usb/x.bgcode"}` → `{"id": N}`
pub(super) async fn queue_job(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        path: String,
    }
    let Body { path } = parse_json(&body)?;
    let id = on_printer(&sim, &uuid, |p, ctx| p.queue_job(ctx, &path, false, None))?;
    Ok(Json(json!({ "id": id })))
}

/// `{"hidden": true}`: left out of the fleet list (its own endpoints still answer).
pub(super) async fn hide_printer(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    body: Bytes,
) -> JsonResult {
    #[derive(Deserialize)]
    struct Body {
        hidden: bool,
    }
    let Body { hidden } = parse_json(&body)?;
    on_printer(&sim, &uuid, |p, _| p.hidden = hidden)?;
    Ok(ok())
}
