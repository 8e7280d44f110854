//! Commands and failure reasons from MQTT: what a message is, the request the shell makes for
//! it, and how Connect's answer is told. Every message on a command or job-reason topic gets
//! exactly one reply, whatever happens to it. The checks against one printer are in
//! `printer/commands.rs`.

use serde_json::Value;

use crate::bridge::Settings;
use crate::command::{self, ArgLimit, CommandError, CommandReply, CommandRequest, ErrorCode};
use crate::connect::client::ConnectError;
use crate::connect::model::{PrinterState, SupportedCommand};
use crate::message::{Incoming, Message};

/// How long the fleet is polled fast after a command, so its effect shows within seconds.
pub const FAST_AFTER_COMMAND: std::time::Duration = std::time::Duration::from_secs(30);
/// The first poll after a command comes this soon.
pub const POLL_AFTER_COMMAND: std::time::Duration = std::time::Duration::from_millis(300);

/// What a message from the broker is.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Command {
        printer_id: String,
    },
    JobReason {
        printer_id: String,
    },
    /// The file "Start print" prints.
    PrintFile {
        printer_id: String,
    },
    /// The printer's Spoolman spool.
    Spool {
        printer_id: String,
    },
    /// Not for the bridge (another subscription's echo).
    Other,
}

/// A command to run against Connect, with what the core knew when it started.
#[derive(Debug, Clone)]
pub struct CommandJob {
    pub printer_id: String,
    pub uuid: String,
    /// Where the reply goes: the shell's task publishes it as soon as Connect answered.
    pub reply_topic: String,
    pub task: CommandTask,
}

#[derive(Debug, Clone)]
pub enum CommandTask {
    Command {
        req: CommandRequest,
        state: PrinterState,
        limits: Vec<ArgLimit>,
        /// `None`: not read yet (the shell reads it first).
        supported: Option<Vec<SupportedCommand>>,
        allow: Vec<String>,
    },
    JobReason {
        req: CommandRequest,
        job_id: i64,
        reason: Value,
    },
}

/// What the shell brings back from Connect.
#[derive(Debug)]
pub struct CommandDone {
    pub printer_id: String,
    pub uuid: String,
    pub reply: CommandReply,
    /// The reply is published already (else the core publishes it).
    pub replied: bool,
    /// `supported-commands` as read for this command.
    pub supported: Option<Vec<SupportedCommand>>,
    pub outcome: Outcome,
}

impl CommandDone {
    /// Connect's answer (`reply`, not published yet) to `job`'s request.
    pub fn of(
        job: &CommandJob,
        reply: CommandReply,
        supported: Option<Vec<SupportedCommand>>,
        outcome: Outcome,
    ) -> CommandDone {
        CommandDone {
            printer_id: job.printer_id.clone(),
            uuid: job.uuid.clone(),
            reply,
            replied: false,
            supported,
            outcome,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Connect took it: poll fast until the printer shows it.
    Accepted,
    /// Connect refused it for the printer's state or an argument: the printer may have
    /// changed (firmware, limits), so its supported commands are read again next time.
    Refused,
    Other,
}

/// What to do with a message.
#[derive(Debug)]
pub enum Prepared {
    Ignore,
    Reply(Message),
    Run(CommandJob),
}

/// Which printer's command or job-reason topic `topic` is.
pub fn classify(settings: &Settings, topic: &str) -> Inbound {
    let topics = &settings.topics;
    if let Some(printer_id) = topics.parse_command(topic) {
        Inbound::Command { printer_id }
    } else if let Some(printer_id) = topics.parse_job_reason(topic) {
        Inbound::JobReason { printer_id }
    } else if let Some(printer_id) = topics.parse_print_file(topic) {
        Inbound::PrintFile { printer_id }
    } else if let Some(printer_id) = topics.parse_spool(topic) {
        Inbound::Spool { printer_id }
    } else {
        Inbound::Other
    }
}

/// The checks every message on a command or job-reason topic gets before its printer is
/// looked at: the printer id and whether it is a command, or the reply instead (`None`:
/// nothing to do).
pub fn check_message(
    settings: &Settings,
    msg: &Incoming,
) -> Result<(String, bool), Option<Message>> {
    let (printer_id, is_command) = match classify(settings, &msg.topic) {
        Inbound::Command { printer_id } => (printer_id, true),
        Inbound::JobReason { printer_id } => (printer_id, false),
        Inbound::PrintFile { .. } | Inbound::Spool { .. } | Inbound::Other => return Err(None),
    };
    if msg.retain {
        // A broker restart must never pause a print: retained commands are not replayed.
        // Clearing it stops the broker from handing it out again.
        tracing::warn!(
            "ignoring a retained message on {}: commands are never replayed (publish without retain); clearing it",
            msg.topic
        );
        return Err(Some(Message::Clear {
            topic: msg.topic.clone(),
        }));
    }
    if msg.payload.is_empty() {
        // The echo of clearing a retained command (or a blank message): nothing to do.
        return Err(None);
    }
    let limit = settings.max_payload_bytes;
    if msg.payload.len() > limit {
        let reply = CommandReply {
            transaction: None,
            command: None,
            outcome: Err(CommandError::new(
                ErrorCode::InvalidPayload,
                format!(
                    "the message is {} bytes; mqtt.max_payload_bytes allows {limit}",
                    msg.payload.len()
                ),
            )),
        };
        return Err(Some(reply_message(settings, &printer_id, reply)));
    }
    Ok((printer_id, is_command))
}

/// A job reason is sent only when `SET_JOB_REASON` is allowed: any broker user could tag any
/// job otherwise.
pub fn reason_allowed(settings: &Settings, request: &CommandRequest) -> Result<(), CommandReply> {
    if settings
        .allow
        .iter()
        .any(|a| a.eq_ignore_ascii_case(command::SET_JOB_REASON))
    {
        return Ok(());
    }
    Err(CommandReply::error(
        request,
        CommandError::new(
            ErrorCode::NotAllowed,
            format!(
                "{} is not allowed from MQTT; add it to commands.allow in the config to enable it",
                command::SET_JOB_REASON
            ),
        ),
    ))
}

/// The reply to a message the gateway does not run: it stops, the connection it came on
/// dropped, or too many wait. `None` for messages that are not commands.
pub fn refusal(settings: &Settings, msg: &Incoming, code: ErrorCode, why: &str) -> Option<Message> {
    let inbound = classify(settings, &msg.topic);
    let printer_id = match &inbound {
        Inbound::Command { printer_id } | Inbound::JobReason { printer_id } => printer_id,
        Inbound::PrintFile { .. } | Inbound::Spool { .. } | Inbound::Other => return None,
    };
    if msg.retain || msg.payload.is_empty() {
        return None;
    }
    let error = CommandError::new(code, why);
    let parsed = match inbound {
        Inbound::Command { .. } => command::parse(&msg.payload),
        _ => command::parse_job_reason(&msg.payload).map(|r| r.request),
    };
    let reply = match parsed {
        Ok(req) => CommandReply::error(&req, error),
        Err(reply) => CommandReply {
            outcome: Err(error),
            ..reply
        },
    };
    Some(reply_message(settings, printer_id, reply))
}

/// Logs a command Connect or the gateway refused.
pub fn log_refusal(done: &CommandDone) {
    if let Err(e) = &done.reply.outcome {
        tracing::info!(
            "{}: command {} refused: {} ({})",
            done.printer_id,
            done.reply.command.as_deref().unwrap_or("?"),
            e.message,
            e.code.as_str()
        );
    }
}

/// A reply on printer `printer_id`'s response topic.
pub fn reply_message(settings: &Settings, printer_id: &str, reply: CommandReply) -> Message {
    Message::event(
        settings.topics.command_response(printer_id),
        reply.to_json().to_string(),
    )
}

/// How a failed request to Connect is told in a command's reply.
pub fn connect_refusal(
    command: &str,
    printer_id: &str,
    e: &ConnectError,
) -> (CommandError, Outcome) {
    let (code, message) = match e {
        ConnectError::Api {
            status: 409 | 423,
            message,
            ..
        } => (
            ErrorCode::PrinterState,
            format!("Connect refused {command}: {message}"),
        ),
        ConnectError::Api {
            status: 400 | 422,
            message,
            ..
        } => (
            ErrorCode::InvalidArgument,
            format!("Connect refused {command}: {message}"),
        ),
        // A file or dialog Connect does not know is the argument's fault, not the printer's.
        ConnectError::Api {
            status: 404,
            code: Some(code),
            message,
            ..
        } if code != "NOT_FOUND_PRINTER" => (
            ErrorCode::InvalidArgument,
            format!("Connect refused {command}: {message}"),
        ),
        ConnectError::Api { status: 404, .. } => (
            ErrorCode::UnknownPrinter,
            format!("Connect does not know printer {printer_id} any more"),
        ),
        other => (
            ErrorCode::ConnectError,
            format!("{command} was not sent: {other}"),
        ),
    };
    let outcome = if matches!(code, ErrorCode::PrinterState | ErrorCode::InvalidArgument) {
        Outcome::Refused
    } else {
        Outcome::Other
    };
    (CommandError::new(code, message), outcome)
}

/// How a failed job-reason request is told in its reply.
pub fn reason_refusal(job_id: i64, e: ConnectError) -> CommandError {
    match e {
        ConnectError::Api {
            status: 400 | 404 | 422,
            message,
            ..
        } => CommandError::new(
            ErrorCode::InvalidArgument,
            format!("Connect refused the reason for job {job_id}: {message}"),
        ),
        other => CommandError::new(
            ErrorCode::ConnectError,
            format!("the reason was not sent: {other}"),
        ),
    }
}
