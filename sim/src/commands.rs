//! Printer commands: `commands/sync`, which enforces the table `supported-commands` shows (see
//! `table.rs`) the way Connect does (400 for a bad command or argument, 409 for the wrong
//! state) and applies the effect.

mod table;

use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::world::{Cause, Ctx, NewJob, Printer, World, secs};
use table::{ArgType, CommandSpec};

pub(crate) use table::supported_commands;

/// What a validated command does to the printer.
#[derive(Debug, Clone, PartialEq)]
enum Effect {
    State(&'static str),
    Stop,
    StartPrint(String),
    CancelObject(i64),
    Move {
        x: Option<f64>,
        y: Option<f64>,
    },
    MoveZ(f64),
    Home {
        x: bool,
        y: bool,
        z: bool,
    },
    Speed(i64),
    Flow(i64),
    NozzleTarget(f64),
    BedTarget(f64),
    ChamberLed(i64),
    LoadFilament(String),
    UnloadFilament,
    DialogAction {
        dialog_id: i64,
        button: String,
    },
    DeleteFile(String),
    /// Nothing to see: the feed's FINISHED event is all that tells.
    None,
}

/// `POST /app/printers/{uuid}/commands/sync`: validates, applies the effect, appends the feed
/// events and answers as Connect does.
pub(crate) fn execute(world: &mut World, uuid: &str, body: &[u8]) -> Result<Value, ApiError> {
    let (printer, ctx) = world
        .printer_ctx(uuid)
        .ok_or_else(ApiError::printer_not_found)?;
    let request: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request("INVALID_JSON", format!("The body is not valid JSON: {e}"))
    })?;
    let name = request
        .get("command")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::bad_request("MISSING_COMMAND", "The body needs a string field command")
        })?;
    let spec = table::find(printer, name).ok_or_else(|| {
        ApiError::bad_request("UNKNOWN_COMMAND", format!("Unknown command {name}"))
    })?;
    let kwargs = kwargs_of(&request)?;
    check_args(spec, &kwargs)?;
    check_runnable(spec, printer)?;
    let effect = effect(spec, &with_defaults(spec, &kwargs), printer)?;

    let id = ctx.command_id();
    let received_us = ctx.clock.tick();
    let cause = Cause::command(spec.name, id);
    let state_before = printer.state.clone();
    let job_id = printer.active_job().map(|j| j.id);
    let created_us = printer.emit(ctx, "FINISHED", &cause, job_id, None);
    apply(effect, printer, ctx, &cause);
    Ok(json!({
        "command": {
            "id": id,
            "state": "CREATED",
            "command": spec.name,
            "received": received_us.div_euclid(1_000_000),
            "source": "CONNECT_USER",
            "kwargs": kwargs,
        },
        "event": {
            "event": "FINISHED",
            "command": spec.name,
            "state": state_before,
            "created": secs(created_us),
        },
    }))
}

/// `kwargs`: an object, or nothing.
fn kwargs_of(request: &Value) -> Result<Map<String, Value>, ApiError> {
    match request.get("kwargs") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map.clone()),
        Some(_) => Err(ApiError::bad_request(
            "INVALID_KWARGS",
            "Field kwargs must be an object",
        )),
    }
}

/// The printer is in a state the command runs in (409 otherwise), with the nozzle hot enough
/// for a command that moves filament.
fn check_runnable(spec: &CommandSpec, printer: &Printer) -> Result<(), ApiError> {
    let state = printer.effective_state();
    if !spec.from.contains(&state) {
        return Err(ApiError::conflict(format!(
            "Command {} cannot be executed in state {state}",
            spec.name
        )));
    }
    if let Some(min) = spec.min_temp_nozzle_e
        && printer.temps.nozzle < min
    {
        return Err(ApiError::conflict(format!(
            "Command {} needs the nozzle at {min} °C at least, it is at {:.0} °C",
            spec.name, printer.temps.nozzle
        )));
    }
    Ok(())
}

/// Does what a validated command does to the printer.
fn apply(effect: Effect, printer: &mut Printer, ctx: &mut Ctx, cause: &Cause) {
    match effect {
        Effect::State(state) => {
            printer.set_state(ctx, state, cause);
        }
        Effect::Stop => printer.finish_job(ctx, "FIN_STOPPED", cause),
        Effect::StartPrint(path) => {
            let objects = ["Object 1", "Object 2"];
            printer.start_job(ctx, NewJob::new(&path, 60.0, &objects), cause);
        }
        Effect::CancelObject(object_id) => {
            // Checked by `effect`; a failure here cannot happen and changes nothing.
            let _ = printer.cancel_object(object_id);
        }
        Effect::Move { x, y } => {
            // Relative; the firmware stops the head at the ends of its axes.
            let (x_max, y_max) = crate::render::bed_size(&printer.printer_type);
            printer.axes.x = (printer.axes.x + x.unwrap_or(0.0)).clamp(0.0, x_max);
            printer.axes.y = (printer.axes.y + y.unwrap_or(0.0)).clamp(0.0, y_max);
        }
        Effect::MoveZ(distance) => printer.axes.z = (printer.axes.z + distance).clamp(0.0, 220.0),
        Effect::Home { x, y, z } => {
            if x {
                printer.axes.x = 0.0;
            }
            if y {
                printer.axes.y = 0.0;
            }
            if z {
                printer.axes.z = 0.0;
            }
        }
        Effect::Speed(speed) => printer.speed = speed,
        Effect::Flow(flow) => printer.flow = flow,
        Effect::NozzleTarget(target) => printer.set_nozzle_target(target),
        Effect::BedTarget(target) => printer.set_bed_target(target),
        Effect::ChamberLed(intensity) => printer.set_chamber_led(intensity),
        Effect::LoadFilament(material) => printer.load_filament(&material),
        Effect::UnloadFilament => printer.unload_filament(),
        Effect::DialogAction { dialog_id, button } => {
            printer.answer_dialog(ctx, dialog_id, button, cause)
        }
        Effect::DeleteFile(path) => {
            printer.remove_file(&path);
        }
        Effect::None => {}
    }
}

fn check_args(spec: &CommandSpec, kwargs: &Map<String, Value>) -> Result<(), ApiError> {
    for arg in spec.args {
        let Some(value) = kwargs.get(arg.name).filter(|v| !v.is_null()) else {
            if arg.required {
                return Err(ApiError::bad_request(
                    "MISSING_ARGUMENT",
                    format!("Command {} needs the argument {}", spec.name, arg.name),
                ));
            }
            continue;
        };
        let wrong_type = || {
            ApiError::bad_request(
                "INVALID_ARGUMENT",
                format!(
                    "Argument {} of {} must be of type {}",
                    arg.name,
                    spec.name,
                    arg.ty.name()
                ),
            )
        };
        let number = match arg.ty {
            ArgType::Integer => Some(as_integer(value).ok_or_else(wrong_type)? as f64),
            ArgType::Number => Some(value.as_f64().ok_or_else(wrong_type)?),
            ArgType::String => value.as_str().map(|_| None).ok_or_else(wrong_type)?,
            ArgType::Boolean => value.as_bool().map(|_| None).ok_or_else(wrong_type)?,
            ArgType::Object => value.as_object().map(|_| None).ok_or_else(wrong_type)?,
        };
        let Some(number) = number else { continue };
        let out_of_range = |bound: &str, limit: f64| {
            ApiError::bad_request(
                "INVALID_ARGUMENT",
                format!(
                    "Argument {} of {} must be {bound} {limit}, got {number}",
                    arg.name, spec.name
                ),
            )
        };
        if let Some(min) = arg.min.filter(|&min| number < min) {
            return Err(out_of_range("at least", min));
        }
        if let Some(max) = arg.max.filter(|&max| number > max) {
            return Err(out_of_range("at most", max));
        }
    }
    Ok(())
}

/// The arguments given, and the defaults of those that were not.
fn with_defaults(spec: &CommandSpec, kwargs: &Map<String, Value>) -> Map<String, Value> {
    let mut args = kwargs.clone();
    for arg in spec.args {
        if let Some(preset) = arg.default
            && args.get(arg.name).is_none_or(Value::is_null)
        {
            args.insert(arg.name.to_string(), preset.to_json());
        }
    }
    args
}

/// An integer, also when written as `3.0`.
fn as_integer(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
}

/// What the command will do, or why the printer refuses an argument it cannot act on.
fn effect(
    spec: &CommandSpec,
    args: &Map<String, Value>,
    printer: &Printer,
) -> Result<Effect, ApiError> {
    let number = |name: &str| args.get(name).and_then(Value::as_f64);
    let integer = |name: &str| args.get(name).and_then(as_integer);
    let text = |name: &str| args.get(name).and_then(Value::as_str).unwrap_or("").trim();
    let invalid = |message: String| ApiError::bad_request("INVALID_ARGUMENT", message);
    let stored_file = |path: &str| {
        printer
            .file(path)
            .map(|f| f.path.clone())
            .ok_or_else(|| invalid(format!("There is no file {path:?} on the printer")))
    };
    Ok(match spec.name {
        "PAUSE_PRINT" => Effect::State("PAUSED"),
        "RESUME_PRINT" => Effect::State("PRINTING"),
        "STOP_PRINT" => Effect::Stop,
        "SET_PRINTER_READY" => Effect::State("READY"),
        "CANCEL_PRINTER_READY" => Effect::State("IDLE"),
        "START_PRINT" => Effect::StartPrint(stored_file(text("path"))?),
        "DELETE_FILE" => Effect::DeleteFile(stored_file(text("path"))?),
        "CANCEL_OBJECT" => {
            cancel_object(printer, integer("object_id").unwrap_or(-1)).map_err(invalid)?
        }
        "MOVE" => Effect::Move {
            x: number("x"),
            y: number("y"),
        },
        "MOVE_Z" => Effect::MoveZ(number("distance").unwrap_or(0.0)),
        "HOME" => home(text("axis")).map_err(invalid)?,
        "SET_SPEED" => Effect::Speed(integer("speed").unwrap_or(100)),
        "SET_FLOW" => Effect::Flow(integer("flow").unwrap_or(100)),
        "SET_NOZZLE_TEMPERATURE" => {
            Effect::NozzleTarget(number("nozzle_temperature").unwrap_or(0.0))
        }
        "SET_HEATBED_TEMPERATURE" => Effect::BedTarget(number("bed_temperature").unwrap_or(0.0)),
        "SET_CHAMBER_LED_INTENSITY" => {
            Effect::ChamberLed(integer("chamber.led_intensity").unwrap_or(100))
        }
        "LOAD_FILAMENT" => {
            let material = text("filament");
            if material.is_empty() {
                return Err(invalid(
                    "Argument filament of LOAD_FILAMENT must name a material".into(),
                ));
            }
            Effect::LoadFilament(material.to_string())
        }
        "UNLOAD_FILAMENT" => Effect::UnloadFilament,
        "DIALOG_ACTION" => {
            let dialog_id = integer("dialog_id").unwrap_or(-1);
            let button = printer
                .dialog_button(dialog_id, text("button"))
                .map_err(invalid)?;
            Effect::DialogAction { dialog_id, button }
        }
        _ => Effect::None,
    })
}

/// CANCEL_OBJECT of an object the running job has.
fn cancel_object(printer: &Printer, object_id: i64) -> Result<Effect, String> {
    let known = printer
        .active_job()
        .and_then(|j| {
            usize::try_from(object_id)
                .ok()
                .and_then(|i| j.objects.get(i))
        })
        .is_some();
    if !known {
        return Err(format!("The current job has no object with id {object_id}"));
    }
    Ok(Effect::CancelObject(object_id))
}

/// HOME's `axis`: any of X, Y and Z, or nothing for all three.
fn home(axis: &str) -> Result<Effect, String> {
    let axis = axis.to_ascii_uppercase();
    if !axis.chars().all(|c| matches!(c, 'X' | 'Y' | 'Z')) {
        return Err(format!(
            "Argument axis of HOME must name axes X, Y and/or Z, got {axis:?}"
        ));
    }
    let all = axis.is_empty();
    Ok(Effect::Home {
        x: all || axis.contains('X'),
        y: all || axis.contains('Y'),
        z: all || axis.contains('Z'),
    })
}
