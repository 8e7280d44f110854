//! A command message: a bare name (`pause`), a JSON string, or a JSON object with `command`,
//! `kwargs` and `transaction`.

use serde_json::{Map, Value};

use super::request::{CommandError, CommandReply, CommandRequest, ErrorCode};
use crate::message::MAX_COMMAND_BYTES;

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

/// The refusal of an unreadable message, echoing what could be read of it.
fn invalid_payload(
    transaction: Option<Value>,
    command: Option<String>,
    message: String,
) -> CommandReply {
    CommandReply {
        transaction,
        command,
        outcome: Err(CommandError::new(ErrorCode::InvalidPayload, message)),
    }
}

/// Parses a command message. On failure, whatever could be read (transaction, command) is
/// returned with the error so the reply can still echo it.
pub fn parse(payload: &[u8]) -> Result<CommandRequest, CommandReply> {
    let value = read_value(payload).map_err(|message| invalid_payload(None, None, message))?;
    match value {
        Value::String(name) if is_command_name(&name) => Ok(CommandRequest {
            command: alias(&name),
            kwargs: Map::new(),
            transaction: None,
        }),
        Value::Object(o) => parse_object(o),
        Value::String(s) => Err(invalid_payload(
            None,
            None,
            format!("{s:?} is not a command name"),
        )),
        _ => Err(invalid_payload(
            None,
            None,
            "send a command name or a JSON object like {\"command\": \"PAUSE_PRINT\"}".into(),
        )),
    }
}

/// The message as JSON (a bare command name becomes a JSON string), or why it cannot be read.
fn read_value(payload: &[u8]) -> Result<Value, String> {
    if payload.len() > MAX_COMMAND_BYTES {
        return Err(format!(
            "the message is {} bytes; commands are at most {MAX_COMMAND_BYTES}",
            payload.len()
        ));
    }
    let Ok(text) = std::str::from_utf8(payload) else {
        return Err("the message is not UTF-8 text".into());
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(
            "the message is empty: send a command name or JSON like {\"command\": \"PAUSE_PRINT\"}"
                .into(),
        );
    }
    match serde_json::from_str::<Value>(trimmed) {
        Ok(v) => Ok(v),
        Err(_) if is_command_name(trimmed) => Ok(Value::String(trimmed.to_string())),
        Err(e) => Err(format!("not a command name nor valid JSON ({e})")),
    }
}

/// `{"command": .., "kwargs": {..}, "transaction": ..}`, and no other field.
fn parse_object(mut o: Map<String, Value>) -> Result<CommandRequest, CommandReply> {
    let transaction = o.remove("transaction").filter(|t| !t.is_null());
    if let Some(t) = &transaction
        && !(t.is_string() || t.is_number())
    {
        return Err(invalid_payload(
            None,
            None,
            "\"transaction\" must be a string or a number".into(),
        ));
    }
    let command = match o.remove("command") {
        Some(Value::String(c)) if is_command_name(&c) => alias(&c),
        Some(Value::String(c)) => {
            return Err(invalid_payload(
                transaction,
                None,
                format!("{c:?} is not a command name"),
            ));
        }
        Some(_) => {
            return Err(invalid_payload(
                transaction,
                None,
                "\"command\" must be a string".into(),
            ));
        }
        None => {
            return Err(invalid_payload(
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
            return Err(invalid_payload(
                transaction,
                Some(command),
                "\"kwargs\" must be a JSON object".into(),
            ));
        }
    };
    if let Some(extra) = o.keys().next() {
        return Err(invalid_payload(
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
