//! Printer commands: the table `supported-commands` shows, and `commands/sync`, which enforces
//! it the way Connect does (400 for a bad command or argument, 409 for the wrong state) and
//! applies the effect.

use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::render::num;
use super::world::{Cause, NewJob, Printer, World, secs};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArgType {
    Integer,
    Number,
    String,
}

impl ArgType {
    fn name(self) -> &'static str {
        match self {
            ArgType::Integer => "integer",
            ArgType::Number => "number",
            ArgType::String => "string",
        }
    }
}

#[derive(Debug)]
struct ArgSpec {
    name: &'static str,
    ty: ArgType,
    required: bool,
    min: Option<f64>,
    max: Option<f64>,
    unit: Option<&'static str>,
}

const fn arg(name: &'static str, ty: ArgType, required: bool) -> ArgSpec {
    ArgSpec {
        name,
        ty,
        required,
        min: None,
        max: None,
        unit: None,
    }
}

impl ArgSpec {
    const fn range(self, min: f64, max: f64, unit: &'static str) -> ArgSpec {
        ArgSpec {
            min: Some(min),
            max: Some(max),
            unit: Some(unit),
            ..self
        }
    }

    const fn unit(self, unit: &'static str) -> ArgSpec {
        ArgSpec {
            unit: Some(unit),
            ..self
        }
    }

    const fn min(self, min: f64) -> ArgSpec {
        ArgSpec {
            min: Some(min),
            ..self
        }
    }
}

#[derive(Debug)]
pub(crate) struct CommandSpec {
    name: &'static str,
    args: &'static [ArgSpec],
    from: &'static [&'static str],
    template: &'static str,
}

const NOT_PRINTING: &[&str] = &["IDLE", "READY", "FINISHED", "STOPPED"];
const PRINTING: &[&str] = &["PRINTING", "PAUSED"];

use ArgType::{Integer, Number, String as Str};

static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "PAUSE_PRINT",
        args: &[],
        from: &["PRINTING"],
        template: "M601",
    },
    CommandSpec {
        name: "RESUME_PRINT",
        args: &[],
        from: &["PAUSED"],
        template: "M602",
    },
    CommandSpec {
        name: "STOP_PRINT",
        args: &[],
        from: &["PAUSED", "PRINTING", "ATTENTION"],
        template: "M603",
    },
    CommandSpec {
        name: "SET_PRINTER_READY",
        args: &[],
        from: &["STOPPED", "IDLE", "FINISHED", "READY"],
        template: "M72 S1",
    },
    CommandSpec {
        name: "CANCEL_PRINTER_READY",
        args: &[],
        from: &["READY"],
        template: "M72 S0",
    },
    CommandSpec {
        name: "START_PRINT",
        args: &[arg("path", Str, true)],
        from: NOT_PRINTING,
        template: "M23 {path}\nM24",
    },
    CommandSpec {
        name: "CANCEL_OBJECT",
        args: &[arg("object_id", Integer, true).min(0.0)],
        from: PRINTING,
        template: "M486 P{object_id}",
    },
    CommandSpec {
        name: "MOVE",
        // Distances from where the head is (G91), without limits: as Connect's document.
        args: &[
            arg("x", Number, false).unit("mm"),
            arg("y", Number, false).unit("mm"),
            arg("feedrate", Number, true).range(1.0, 3000.0, "mm/min"),
        ],
        from: NOT_PRINTING,
        template: "G91\nG1 X{x} Y{y} F{feedrate}\nG90",
    },
    CommandSpec {
        name: "MOVE_Z",
        args: &[
            arg("distance", Number, true).range(-250.0, 250.0, "mm"),
            arg("feedrate", Number, true).range(1.0, 720.0, "mm/min"),
        ],
        from: NOT_PRINTING,
        template: "G91\nG1 Z{distance} F{feedrate}\nG90",
    },
    CommandSpec {
        name: "HOME",
        args: &[arg("axis", Str, false)],
        from: NOT_PRINTING,
        template: "G28 {axis}",
    },
    CommandSpec {
        name: "SET_SPEED",
        args: &[arg("speed", Integer, true).range(10.0, 300.0, "%")],
        from: PRINTING,
        template: "M220 S{speed}",
    },
    CommandSpec {
        name: "SEND_GCODE",
        args: &[arg("gcode", Str, true)],
        from: NOT_PRINTING,
        template: "{gcode}",
    },
    CommandSpec {
        name: "FLASH",
        args: &[arg("path", Str, true)],
        from: NOT_PRINTING,
        template: "M997 {path}",
    },
];

/// The body of `GET /app/printers/{uuid}/supported-commands`.
pub(crate) fn supported_commands() -> Value {
    let commands: Vec<Value> = COMMANDS
        .iter()
        .map(|c| {
            let args: Vec<Value> = c
                .args
                .iter()
                .map(|a| {
                    let mut v =
                        json!({ "name": a.name, "type": a.ty.name(), "required": a.required });
                    if let Some(map) = v.as_object_mut() {
                        if let Some(min) = a.min {
                            map.insert("min_limit".into(), num(min));
                        }
                        if let Some(max) = a.max {
                            map.insert("max_limit".into(), num(max));
                        }
                        if let Some(unit) = a.unit {
                            map.insert("unit".into(), json!(unit));
                        }
                    }
                    v
                })
                .collect();
            json!({
                "command": c.name,
                "args": args,
                "executable_from_state": c.from,
                "template": c.template,
            })
        })
        .collect();
    json!({ "commands": commands })
}

/// What a validated command does to the printer.
#[derive(Debug, Clone, PartialEq)]
enum Effect {
    State(&'static str),
    Stop,
    StartPrint(String),
    CancelObject(i64),
    Move { x: Option<f64>, y: Option<f64> },
    MoveZ(f64),
    Home { x: bool, y: bool, z: bool },
    Speed(i64),
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
    let spec = COMMANDS.iter().find(|c| c.name == name).ok_or_else(|| {
        ApiError::bad_request("UNKNOWN_COMMAND", format!("Unknown command {name}"))
    })?;
    let kwargs = match request.get("kwargs") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "INVALID_KWARGS",
                "Field kwargs must be an object",
            ));
        }
    };
    check_args(spec, &kwargs)?;
    let state = printer.effective_state();
    if !spec.from.contains(&state) {
        return Err(ApiError::conflict(format!(
            "Command {} cannot be executed in state {state}",
            spec.name
        )));
    }
    let effect = effect(spec, &kwargs, printer)?;

    let id = ctx.command_id();
    let received_us = ctx.clock.tick();
    let cause = Cause::command(spec.name, id);
    let state_before = printer.state.clone();
    let job_id = printer.active_job().map(|j| j.id);
    let created_us = printer.emit(ctx, "FINISHED", &cause, job_id, None);
    match effect {
        Effect::State(state) => {
            printer.set_state(ctx, state, &cause);
        }
        Effect::Stop => printer.finish_job(ctx, "FIN_STOPPED", &cause),
        Effect::StartPrint(path) => {
            let objects = ["Object 1", "Object 2"];
            printer.start_job(ctx, NewJob::new(&path, 60.0, &objects), &cause);
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
        Effect::None => {}
    }
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

/// An integer, also when written as `3.0`.
fn as_integer(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
}

fn effect(
    spec: &CommandSpec,
    kwargs: &Map<String, Value>,
    printer: &Printer,
) -> Result<Effect, ApiError> {
    let number = |name: &str| kwargs.get(name).and_then(Value::as_f64);
    let text = |name: &str| kwargs.get(name).and_then(Value::as_str);
    let invalid = |message: String| ApiError::bad_request("INVALID_ARGUMENT", message);
    Ok(match spec.name {
        "PAUSE_PRINT" => Effect::State("PAUSED"),
        "RESUME_PRINT" => Effect::State("PRINTING"),
        "STOP_PRINT" => Effect::Stop,
        "SET_PRINTER_READY" => Effect::State("READY"),
        "CANCEL_PRINTER_READY" => Effect::State("IDLE"),
        "START_PRINT" => {
            let path = text("path").unwrap_or_default().trim();
            if !path.starts_with('/') || path.len() < 2 {
                return Err(invalid(format!(
                    "Argument path of START_PRINT must be an absolute path, got {path:?}"
                )));
            }
            Effect::StartPrint(path.to_string())
        }
        "CANCEL_OBJECT" => {
            let object_id = kwargs.get("object_id").and_then(as_integer).unwrap_or(-1);
            let known = printer
                .active_job()
                .and_then(|j| {
                    usize::try_from(object_id)
                        .ok()
                        .and_then(|i| j.objects.get(i))
                })
                .is_some();
            if !known {
                return Err(invalid(format!(
                    "The current job has no object with id {object_id}"
                )));
            }
            Effect::CancelObject(object_id)
        }
        "MOVE" => Effect::Move {
            x: number("x"),
            y: number("y"),
        },
        "MOVE_Z" => Effect::MoveZ(number("distance").unwrap_or(0.0)),
        "HOME" => {
            let axis = text("axis").unwrap_or("").trim().to_ascii_uppercase();
            if !axis.chars().all(|c| matches!(c, 'X' | 'Y' | 'Z')) {
                return Err(invalid(format!(
                    "Argument axis of HOME must name axes X, Y and/or Z, got {axis:?}"
                )));
            }
            let all = axis.is_empty();
            Effect::Home {
                x: all || axis.contains('X'),
                y: all || axis.contains('Y'),
                z: all || axis.contains('Z'),
            }
        }
        "SET_SPEED" => Effect::Speed(kwargs.get("speed").and_then(as_integer).unwrap_or(100)),
        _ => Effect::None,
    })
}
