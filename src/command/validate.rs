//! Checking a command before it goes to Connect: the allow list, the printer's
//! `supported-commands` (names, argument types, limits, states) and its type's limits.

use serde_json::Value;

use super::request::{CommandError, CommandRequest, ErrorCode};
use crate::connect::model::{CommandArg, PrinterState, SupportedCommand};

/// Limits from Connect's documentation, used when `supported-commands` gives none.
fn builtin_limit(command: &str, arg: &str) -> (Option<f64>, Option<f64>) {
    match (command, arg) {
        ("MOVE", "feedrate") => (Some(1.0), Some(3000.0)),
        ("MOVE_Z", "feedrate") => (Some(1.0), Some(720.0)),
        ("SET_SPEED", "speed") => (Some(10.0), Some(300.0)),
        ("SET_FLOW", "flow") => (Some(10.0), Some(150.0)),
        ("SET_NOZZLE_TEMPERATURE", "nozzle_temperature") => (Some(0.0), Some(290.0)),
        ("SET_HEATBED_TEMPERATURE", "bed_temperature") => (Some(0.0), Some(150.0)),
        _ => (None, None),
    }
}

/// A limit of one command argument from the printer's type (`/app/printer-types`), applied
/// on top of the limits in `supported-commands`.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgLimit {
    pub command: &'static str,
    pub arg: &'static str,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Where the limit comes from, for the error message ("Original Prusa MINI+").
    pub source: String,
}

/// Which printer-type parameter limits which command argument, and whether the argument is a
/// distance from the head's position (MOVE's `x`/`y` and MOVE_Z's `distance` are: G91). An
/// axis range (`{"min": 0, "max": 210}`) bounds such a distance by plus or minus its length.
const TYPE_PARAMETERS: &[(&str, &str, &str, bool)] = &[
    (
        "temp_nozzle",
        "SET_NOZZLE_TEMPERATURE",
        "nozzle_temperature",
        false,
    ),
    (
        "temp_bed",
        "SET_HEATBED_TEMPERATURE",
        "bed_temperature",
        false,
    ),
    ("print_flow", "SET_FLOW", "flow", false),
    ("print_speed", "SET_SPEED", "speed", false),
    ("axis_x", "MOVE", "x", true),
    ("axis_y", "MOVE", "y", true),
    ("axis_z", "MOVE_Z", "distance", true),
];

/// The argument limits a printer type's `parameters` give. Anything not shaped like
/// `{"min": number, "max": number}` is ignored.
pub fn type_limits(parameters: Option<&Value>, source: &str) -> Vec<ArgLimit> {
    let Some(Value::Object(params)) = parameters else {
        return Vec::new();
    };
    TYPE_PARAMETERS
        .iter()
        .filter_map(|(param, command, arg, relative)| {
            let p = params.get(*param)?;
            let bound = |k: &str| p.get(k).and_then(Value::as_f64).filter(|v| v.is_finite());
            let (mut min, mut max) = (bound("min"), bound("max"));
            if *relative {
                // A move of at most the axis' length, either way.
                let length = (max? - min.unwrap_or(0.0)).abs();
                (min, max) = (Some(-length), Some(length));
            }
            (min.is_some() || max.is_some()).then(|| ArgLimit {
                command,
                arg,
                min,
                max,
                source: source.to_string(),
            })
        })
        .collect()
}

/// Checks a request before anything is sent to Connect.
pub fn validate(
    req: &CommandRequest,
    allow: &[String],
    supported: &[SupportedCommand],
    state: &PrinterState,
) -> Result<(), CommandError> {
    validate_with_limits(req, allow, supported, state, &[])
}

/// [`validate`], with the printer type's limits as well: the tighter of both applies.
pub fn validate_with_limits(
    req: &CommandRequest,
    allow: &[String],
    supported: &[SupportedCommand],
    state: &PrinterState,
    type_limits: &[ArgLimit],
) -> Result<(), CommandError> {
    let Some(spec) = supported.iter().find(|c| c.command == req.command) else {
        return Err(CommandError::new(
            ErrorCode::UnknownCommand,
            format!("{} is not a command this printer supports", req.command),
        ));
    };
    if !allow.iter().any(|a| a.eq_ignore_ascii_case(&req.command)) {
        return Err(CommandError::new(
            ErrorCode::NotAllowed,
            format!(
                "{} is not allowed from MQTT; add it to commands.allow in the config to enable it",
                req.command
            ),
        ));
    }
    check_argument_names(req, spec)?;
    for arg in &spec.args {
        let value = req.kwargs.get(&arg.name).filter(|v| !v.is_null());
        let Some(value) = value else {
            if arg.required {
                return Err(CommandError::new(
                    ErrorCode::InvalidArgument,
                    format!("{} needs the argument {:?}", req.command, arg.name),
                ));
            }
            continue;
        };
        check_argument_type(req, arg, value)?;
        if let Some(n) = value.as_f64() {
            check_argument_range(req, arg, n, type_limits)?;
        }
    }
    check_state(req, spec, state)
}

/// Every argument given is one the command takes.
fn check_argument_names(req: &CommandRequest, spec: &SupportedCommand) -> Result<(), CommandError> {
    for key in req.kwargs.keys() {
        if !spec.args.iter().any(|a| &a.name == key) {
            let known: Vec<&str> = spec.args.iter().map(|a| a.name.as_str()).collect();
            return Err(CommandError::new(
                ErrorCode::InvalidArgument,
                if known.is_empty() {
                    format!("{} takes no arguments, but got {key:?}", req.command)
                } else {
                    format!(
                        "{} has no argument {key:?} (it takes {})",
                        req.command,
                        known.join(", ")
                    )
                },
            ));
        }
    }
    Ok(())
}

/// The value is of the argument's type (a whole number may come as `3.0`).
fn check_argument_type(
    req: &CommandRequest,
    arg: &CommandArg,
    value: &Value,
) -> Result<(), CommandError> {
    let type_ok = match arg.kind.as_deref() {
        Some("integer" | "int") => {
            value.as_i64().is_some()
                || value
                    .as_f64()
                    .is_some_and(|f| f.fract() == 0.0 && f.is_finite())
        }
        Some("number" | "float") => value.is_number(),
        Some("string" | "str") => value.is_string(),
        Some("boolean" | "bool") => value.is_boolean(),
        _ => true,
    };
    if type_ok {
        return Ok(());
    }
    let expected = match arg.kind.as_deref() {
        Some("integer" | "int") => "a whole number",
        Some("number" | "float") => "a number",
        Some("string" | "str") => "a string",
        _ => "true or false",
    };
    Err(CommandError::new(
        ErrorCode::InvalidArgument,
        format!(
            "{} argument {:?} must be {expected}, got {value}",
            req.command, arg.name
        ),
    ))
}

/// The tightest bounds of one argument, each with the unit (and the source of a printer
/// type's limit) its refusal names.
struct Bounds {
    min: Option<f64>,
    min_unit: String,
    max: Option<f64>,
    max_unit: String,
}

/// The bounds `supported-commands` gives (else Connect's documented ones), tightened by the
/// printer type's limits.
fn bounds(command: &str, arg: &CommandArg, type_limits: &[ArgLimit]) -> Bounds {
    let (builtin_min, builtin_max) = builtin_limit(command, &arg.name);
    let mut min = arg.min.or(builtin_min);
    let mut max = arg.max.or(builtin_max);
    let unit = arg
        .unit
        .as_deref()
        .map(|u| format!(" {u}"))
        .unwrap_or_default();
    let (mut min_unit, mut max_unit) = (unit.clone(), unit);
    for limit in type_limits
        .iter()
        .filter(|l| l.command == command && l.arg == arg.name)
    {
        if let Some(m) = limit.min
            && min.is_none_or(|old| m > old)
        {
            min = Some(m);
            min_unit = format!("{min_unit} (limit of the {})", limit.source);
        }
        if let Some(m) = limit.max
            && max.is_none_or(|old| m < old)
        {
            max = Some(m);
            max_unit = format!("{max_unit} (limit of the {})", limit.source);
        }
    }
    Bounds {
        min,
        min_unit,
        max,
        max_unit,
    }
}

fn check_argument_range(
    req: &CommandRequest,
    arg: &CommandArg,
    n: f64,
    type_limits: &[ArgLimit],
) -> Result<(), CommandError> {
    let Bounds {
        min,
        min_unit,
        max,
        max_unit,
    } = bounds(&req.command, arg, type_limits);
    if let Some(min) = min
        && n < min
    {
        return Err(CommandError::new(
            ErrorCode::InvalidArgument,
            format!(
                "{} argument {:?} = {n} is below the printer's minimum of {min}{min_unit}",
                req.command, arg.name
            ),
        ));
    }
    if let Some(max) = max
        && n > max
    {
        return Err(CommandError::new(
            ErrorCode::InvalidArgument,
            format!(
                "{} argument {:?} = {n} is above the printer's maximum of {max}{max_unit}",
                req.command, arg.name
            ),
        ));
    }
    Ok(())
}

/// The printer is in a state the command may run from.
fn check_state(
    req: &CommandRequest,
    spec: &SupportedCommand,
    state: &PrinterState,
) -> Result<(), CommandError> {
    if let Some(states) = &spec.executable_from_state
        && !states.is_empty()
        && !states.contains(state)
    {
        let needed: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        return Err(CommandError::new(
            ErrorCode::PrinterState,
            format!(
                "{} needs the printer to be {} (it is {state})",
                req.command,
                join_or(&needed)
            ),
        ));
    }
    Ok(())
}

fn join_or(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}
