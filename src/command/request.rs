//! A command message as parsed, and the one reply every message gets: ok (with Connect's
//! command id) or an error with its code.

use serde_json::{Map, Value, json};

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
