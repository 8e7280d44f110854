//! Commands from MQTT, pure: `(payload) -> CommandRequest` and validation against the allow
//! list, the printer's `supported-commands` and its state. Every outcome becomes exactly one
//! [`CommandReply`].

use serde_json::{Map, Value, json};

use crate::connect::model::{PrinterState, SupportedCommand};

/// Command payloads larger than this are refused unread.
/// The largest `mqtt.max_payload_bytes` allowed; the parser's own guard.
pub const MAX_COMMAND_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidPayload,
    UnknownCommand,
    NotAllowed,
    InvalidArgument,
    PrinterState,
    ConnectError,
    UnknownPrinter,
    /// More command messages wait than the gateway keeps; this one was not run.
    RateLimited,
    /// The MQTT connection dropped after the message came and before it ran: not run.
    Expired,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidPayload => "INVALID_PAYLOAD",
            Self::UnknownCommand => "UNKNOWN_COMMAND",
            Self::NotAllowed => "NOT_ALLOWED",
            Self::InvalidArgument => "INVALID_ARGUMENT",
            Self::PrinterState => "PRINTER_STATE",
            Self::ConnectError => "CONNECT_ERROR",
            Self::UnknownPrinter => "UNKNOWN_PRINTER",
            Self::RateLimited => "RATE_LIMITED",
            Self::Expired => "EXPIRED",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommandError {
    pub code: ErrorCode,
    pub message: String,
}

impl CommandError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// A parsed command message.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRequest {
    /// Connect's name, upper case (`PAUSE_PRINT`).
    pub command: String,
    pub kwargs: Map<String, Value>,
    /// Echoed back as given (string or number).
    pub transaction: Option<Value>,
}

/// What goes back on `B/P/command/response`.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandReply {
    pub transaction: Option<Value>,
    pub command: Option<String>,
    pub outcome: Result<Option<i64>, CommandError>,
}

impl CommandReply {
    pub fn ok(req: &CommandRequest, connect_command_id: Option<i64>) -> Self {
        Self {
            transaction: req.transaction.clone(),
            command: Some(req.command.clone()),
            outcome: Ok(connect_command_id),
        }
    }

    pub fn error(req: &CommandRequest, err: CommandError) -> Self {
        Self {
            transaction: req.transaction.clone(),
            command: Some(req.command.clone()),
            outcome: Err(err),
        }
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "transaction": self.transaction,
            "command": self.command,
        });
        let o = v.as_object_mut().expect("object literal");
        match &self.outcome {
            Ok(id) => {
                o.insert("status".into(), json!("ok"));
                if let Some(id) = id {
                    o.insert("connect_command_id".into(), json!(id));
                }
            }
            Err(e) => {
                o.insert("status".into(), json!("error"));
                o.insert("error".into(), json!(e.message));
                o.insert("code".into(), json!(e.code.as_str()));
            }
        }
        v
    }
}

/// Short names a person or a Home Assistant button may send.
fn alias(name: &str) -> String {
    match name.to_ascii_lowercase().as_str() {
        "pause" => "PAUSE_PRINT".into(),
        "resume" => "RESUME_PRINT".into(),
        "stop" => "STOP_PRINT".into(),
        "ready" => "SET_PRINTER_READY".into(),
        "not_ready" | "cancel_ready" => "CANCEL_PRINTER_READY".into(),
        "home" => "HOME".into(),
        _ => name.to_ascii_uppercase(),
    }
}

fn is_command_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses a command message. On failure, whatever could be read (transaction, command) is
/// returned with the error so the reply can still echo it.
pub fn parse(payload: &[u8]) -> Result<CommandRequest, CommandReply> {
    let fail = |transaction: Option<Value>, command: Option<String>, msg: String| CommandReply {
        transaction,
        command,
        outcome: Err(CommandError::new(ErrorCode::InvalidPayload, msg)),
    };
    if payload.len() > MAX_COMMAND_BYTES {
        return Err(fail(
            None,
            None,
            format!(
                "the message is {} bytes; commands are at most {MAX_COMMAND_BYTES}",
                payload.len()
            ),
        ));
    }
    let Ok(text) = std::str::from_utf8(payload) else {
        return Err(fail(None, None, "the message is not UTF-8 text".into()));
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(fail(
            None,
            None,
            "the message is empty: send a command name or JSON like {\"command\": \"PAUSE_PRINT\"}"
                .into(),
        ));
    }
    let value = match serde_json::from_str::<Value>(trimmed) {
        Ok(v) => v,
        Err(_) if is_command_name(trimmed) => Value::String(trimmed.to_string()),
        Err(e) => {
            return Err(fail(
                None,
                None,
                format!("not a command name nor valid JSON ({e})"),
            ));
        }
    };
    match value {
        Value::String(name) if is_command_name(&name) => Ok(CommandRequest {
            command: alias(&name),
            kwargs: Map::new(),
            transaction: None,
        }),
        Value::Object(mut o) => {
            let transaction = o.remove("transaction").filter(|t| !t.is_null());
            if let Some(t) = &transaction
                && !(t.is_string() || t.is_number())
            {
                return Err(fail(
                    None,
                    None,
                    "\"transaction\" must be a string or a number".into(),
                ));
            }
            let command = match o.remove("command") {
                Some(Value::String(c)) if is_command_name(&c) => alias(&c),
                Some(Value::String(c)) => {
                    return Err(fail(
                        transaction,
                        None,
                        format!("{c:?} is not a command name"),
                    ));
                }
                Some(_) => {
                    return Err(fail(
                        transaction,
                        None,
                        "\"command\" must be a string".into(),
                    ));
                }
                None => {
                    return Err(fail(
                        transaction,
                        None,
                        "the JSON has no \"command\"".into(),
                    ));
                }
            };
            let kwargs = match o.remove("kwargs") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(k)) => k,
                Some(_) => {
                    return Err(fail(
                        transaction,
                        Some(command),
                        "\"kwargs\" must be a JSON object".into(),
                    ));
                }
            };
            if let Some(extra) = o.keys().next() {
                return Err(fail(
                    transaction,
                    Some(command),
                    format!(
                        "unknown field {extra:?}: a command has \"command\", \"kwargs\" and \"transaction\""
                    ),
                ));
            }
            Ok(CommandRequest {
                command,
                kwargs,
                transaction,
            })
        }
        Value::String(s) => Err(fail(None, None, format!("{s:?} is not a command name"))),
        _ => Err(fail(
            None,
            None,
            "send a command name or a JSON object like {\"command\": \"PAUSE_PRINT\"}".into(),
        )),
    }
}

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
        let bad_type = |expected: &str| {
            CommandError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "{} argument {:?} must be {expected}, got {value}",
                    req.command, arg.name
                ),
            )
        };
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
        if !type_ok {
            let expected = match arg.kind.as_deref() {
                Some("integer" | "int") => "a whole number",
                Some("number" | "float") => "a number",
                Some("string" | "str") => "a string",
                _ => "true or false",
            };
            return Err(bad_type(expected));
        }
        let (builtin_min, builtin_max) = builtin_limit(&req.command, &arg.name);
        if let Some(n) = value.as_f64() {
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
                .filter(|l| l.command == req.command && l.arg == arg.name)
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
        }
    }
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

/// Failure reasons Connect accepts on a job (`PATCH /jobs/{id}`).
pub const REASON_TAGS: &[&str] = &[
    "CLOGGED_NOZZLE",
    "NON_ADHERENT_BED",
    "UNDER_EXTRUSION",
    "OVER_EXTRUSION",
    "STRINGING_OR_OOZING",
    "GAPS_IN_THIN_WALLS",
    "OVERHEATING",
    "LAYER_SHIFTING",
    "SPAGHETTI_MONSTER",
    "LAYER_SEPARATION",
    "WARPING",
    "POOR_BRIDGING",
    "OTHER",
];

/// The name replies to `B/P/job/reason` carry.
pub const SET_JOB_REASON: &str = "SET_JOB_REASON";

/// A message on `B/P/job/reason`: `{"job_id": optional, "tags": [...], "other": "..."}`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobReason {
    pub job_id: Option<i64>,
    pub reason: Value,
    pub request: CommandRequest,
}

pub fn parse_job_reason(payload: &[u8]) -> Result<JobReason, CommandReply> {
    let mut request = CommandRequest {
        command: SET_JOB_REASON.into(),
        kwargs: Map::new(),
        transaction: None,
    };
    let fail = |request: &CommandRequest, code, msg: String| {
        CommandReply::error(request, CommandError::new(code, msg))
    };
    if payload.len() > MAX_COMMAND_BYTES {
        return Err(fail(
            &request,
            ErrorCode::InvalidPayload,
            "the message is too large".into(),
        ));
    }
    let Ok(Value::Object(mut o)) = serde_json::from_slice::<Value>(payload) else {
        return Err(fail(
            &request,
            ErrorCode::InvalidPayload,
            "send JSON like {\"tags\": [\"WARPING\"], \"other\": \"comment\", \"job_id\": 123}"
                .into(),
        ));
    };
    request.transaction = o
        .remove("transaction")
        .filter(|t| t.is_string() || t.is_number());
    let job_id = match o.remove("job_id") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64() {
            Some(id) => Some(id),
            None => {
                return Err(fail(
                    &request,
                    ErrorCode::InvalidArgument,
                    "\"job_id\" must be a whole number".into(),
                ));
            }
        },
    };
    let tags = match o.remove("tags") {
        Some(Value::Array(tags)) => tags,
        None => Vec::new(),
        Some(_) => {
            return Err(fail(
                &request,
                ErrorCode::InvalidArgument,
                "\"tags\" must be a list".into(),
            ));
        }
    };
    let mut checked = Vec::new();
    for tag in tags {
        match tag.as_str().map(str::to_ascii_uppercase) {
            Some(t) if REASON_TAGS.contains(&t.as_str()) => checked.push(Value::String(t)),
            _ => {
                return Err(fail(
                    &request,
                    ErrorCode::InvalidArgument,
                    format!("unknown tag {tag}; tags are {}", REASON_TAGS.join(", ")),
                ));
            }
        }
    }
    let other = match o.remove("other") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            return Err(fail(
                &request,
                ErrorCode::InvalidArgument,
                "\"other\" must be text".into(),
            ));
        }
    };
    if let Some(extra) = o.keys().next() {
        return Err(fail(
            &request,
            ErrorCode::InvalidPayload,
            format!("unknown field {extra:?}: use job_id, tags, other and transaction"),
        ));
    }
    if checked.is_empty() && other.is_none() {
        return Err(fail(
            &request,
            ErrorCode::InvalidArgument,
            "give at least one tag or an \"other\" comment".into(),
        ));
    }
    let mut reason = json!({"tag": checked});
    if let Some(other) = other {
        reason["other"] = json!(other);
    }
    request.kwargs.insert("reason".into(), reason.clone());
    Ok(JobReason {
        job_id,
        reason,
        request,
    })
}

fn join_or(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests;
