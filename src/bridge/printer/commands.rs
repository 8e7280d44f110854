//! Commands and failure reasons from MQTT: what the core decides before and after the
//! request to Connect (which the shell makes). Every message on a command or job-reason topic
//! gets exactly one reply, whatever happens to it.

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::bridge::core::Core;
use crate::command::{
    self, ArgLimit, CommandError, CommandReply, CommandRequest, ErrorCode, JobReason,
};
use crate::connect::client::ConnectError;
use crate::connect::model::{Job, PrinterState, SupportedCommand};
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

impl Core {
    /// Which printer's command or job-reason topic `topic` is.
    pub fn classify(&self, topic: &str) -> Inbound {
        if let Some(printer_id) = self.settings.topics.parse_command(topic) {
            Inbound::Command { printer_id }
        } else if let Some(printer_id) = self.settings.topics.parse_job_reason(topic) {
            Inbound::JobReason { printer_id }
        } else if let Some(printer_id) = self.settings.topics.parse_print_file(topic) {
            Inbound::PrintFile { printer_id }
        } else {
            Inbound::Other
        }
    }

    /// Checks a message on a command or job-reason topic: the reply at once, or the request
    /// to make.
    pub fn prepare(&mut self, msg: &Incoming) -> Prepared {
        let (printer_id, is_command) = match self.classify(&msg.topic) {
            Inbound::Command { printer_id } => (printer_id, true),
            Inbound::JobReason { printer_id } => (printer_id, false),
            Inbound::PrintFile { .. } | Inbound::Other => return Prepared::Ignore,
        };
        if msg.retain {
            // A broker restart must never pause a print: retained commands are not replayed.
            // Clearing it stops the broker from handing it out again.
            tracing::warn!(
                "ignoring a retained message on {}: commands are never replayed (publish without retain); clearing it",
                msg.topic
            );
            return Prepared::Reply(Message::Clear {
                topic: msg.topic.clone(),
            });
        }
        if msg.payload.is_empty() {
            // The echo of clearing a retained command (or a blank message): nothing to do.
            return Prepared::Ignore;
        }
        let limit = self.settings.max_payload_bytes;
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
            return Prepared::Reply(self.reply(&printer_id, reply));
        }
        let job = if is_command {
            self.prepare_command(&printer_id, &msg.payload)
        } else {
            self.prepare_reason(&printer_id, &msg.payload)
        };
        match job {
            Ok(job) => Prepared::Run(job),
            Err(reply) => Prepared::Reply(self.reply(&printer_id, reply)),
        }
    }

    fn prepare_command(
        &self,
        printer_id: &str,
        payload: &[u8],
    ) -> Result<CommandJob, CommandReply> {
        let mut req = command::parse(payload)?;
        let (uuid, live) = self
            .printer_by_id(printer_id)
            .map_err(|e| CommandReply::error(&req, e))?;
        if req.command == "CANCEL_OBJECT" {
            resolve_object_name(&mut req, live.current_detail())
                .map_err(|e| CommandReply::error(&req, e))?;
        }
        if req.command == "START_PRINT" {
            crate::bridge::printer::files::resolve_start_print(&mut req, &live.files)
                .map_err(|e| CommandReply::error(&req, e))?;
        }
        if req.command == "DIALOG_ACTION" {
            crate::bridge::printer::controls::resolve_dialog(&mut req, &live.printer)
                .map_err(|e| CommandReply::error(&req, e))?;
        }
        let limits = self
            .printer_type(&live.printer)
            .map(|t| {
                let name = t
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("printer type {}", t.id));
                command::type_limits(t.parameters.as_ref(), &name)
            })
            .unwrap_or_default();
        // Missing from Connect's list (not removed yet): as good as offline.
        let missing = self.registry.get(&uuid).is_some_and(|e| e.missing > 0);
        let state = if missing {
            PrinterState::Offline
        } else {
            live.printer.effective_state()
        };
        Ok(CommandJob {
            printer_id: printer_id.to_string(),
            uuid,
            reply_topic: self.settings.topics.command_response(printer_id),
            task: CommandTask::Command {
                state,
                supported: live.supported.for_command(),
                allow: self.settings.allow.clone(),
                limits,
                req,
            },
        })
    }

    fn prepare_reason(&self, printer_id: &str, payload: &[u8]) -> Result<CommandJob, CommandReply> {
        let JobReason {
            job_id,
            reason,
            request,
        } = command::parse_job_reason(payload)?;
        // Any broker user could tag any job otherwise.
        if !self
            .settings
            .allow
            .iter()
            .any(|a| a.eq_ignore_ascii_case(command::SET_JOB_REASON))
        {
            return Err(CommandReply::error(
                &request,
                CommandError::new(
                    ErrorCode::NotAllowed,
                    format!(
                        "{} is not allowed from MQTT; add it to commands.allow in the config to enable it",
                        command::SET_JOB_REASON
                    ),
                ),
            ));
        }
        let (uuid, _) = self
            .printer_by_id(printer_id)
            .map_err(|e| CommandReply::error(&request, e))?;
        let announced = self
            .registry
            .get(&uuid)
            .and_then(|e| e.record.jobs.announced_job);
        let job_id = job_id.or(announced).ok_or_else(|| {
            CommandReply::error(
                &request,
                CommandError::new(
                    ErrorCode::InvalidArgument,
                    "no job has ended yet: give \"job_id\"",
                ),
            )
        })?;
        Ok(CommandJob {
            printer_id: printer_id.to_string(),
            uuid,
            reply_topic: self.settings.topics.command_response(printer_id),
            task: CommandTask::JobReason {
                req: request,
                job_id,
                reason,
            },
        })
    }

    fn printer_by_id(
        &self,
        printer_id: &str,
    ) -> Result<(String, &crate::bridge::printer::Runtime), CommandError> {
        if let Some(entry) = self.registry.by_id(printer_id)
            && let Some(live) = &entry.runtime
        {
            return Ok((entry.uuid.clone(), live));
        }
        if let Some(why) = self.never_listed() {
            // Which printers there are is not known yet: not the command's fault.
            return Err(CommandError::new(
                ErrorCode::ConnectError,
                format!("the printers are not known yet: {why}"),
            ));
        }
        let known: Vec<&str> = self
            .registry
            .entries()
            .filter(|e| e.runtime.is_some())
            .filter_map(|e| e.id())
            .collect();
        Err(CommandError::new(
            ErrorCode::UnknownPrinter,
            format!(
                "no printer {printer_id:?} is bridged (known: {})",
                known.join(", ")
            ),
        ))
    }

    /// The reply to a message the gateway does not run: it stops, the connection it came on
    /// dropped, or too many wait. `None` for messages that are not commands.
    pub fn refuse(&self, msg: &Incoming, code: ErrorCode, why: &str) -> Option<Message> {
        let printer_id = match self.classify(&msg.topic) {
            Inbound::Command { printer_id } | Inbound::JobReason { printer_id } => printer_id,
            Inbound::PrintFile { .. } | Inbound::Other => return None,
        };
        if msg.retain || msg.payload.is_empty() {
            return None;
        }
        let error = CommandError::new(code, why);
        let parsed = match self.classify(&msg.topic) {
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
        Some(self.reply(&printer_id, reply))
    }

    /// Takes Connect's answer to a command: the reply, and what it changes. Returns when the
    /// next poll should come, when it should come soon.
    pub fn command_done(&mut self, done: CommandDone, now: Instant) -> Option<Instant> {
        if let Err(e) = &done.reply.outcome {
            tracing::info!(
                "{}: command {} refused: {} ({})",
                done.printer_id,
                done.reply.command.as_deref().unwrap_or("?"),
                e.message,
                e.code.as_str()
            );
        }
        if !done.replied {
            let reply = self.reply(&done.printer_id, done.reply);
            self.publish(reply);
        }
        let live = self
            .registry
            .get_mut(&done.uuid)
            .and_then(|e| e.runtime.as_mut());
        match done.outcome {
            Outcome::Accepted => {
                self.fast_until = Some(now + FAST_AFTER_COMMAND);
                if let Some(live) = live {
                    if let Some(s) = done.supported {
                        live.supported.set(s, &mut self.supported_pool);
                    }
                    // Object states change with CANCEL_OBJECT: read the job again (showing
                    // the detail read before until then).
                    live.detail_stale = true;
                    // What the live channel said before the command is older than what
                    // the poll after it shows.
                    live.pushed.received.clear();
                }
                Some(now + POLL_AFTER_COMMAND)
            }
            Outcome::Refused => {
                if let Some(live) = live {
                    // Read again, for the next command and for the controls.
                    live.supported.stale = true;
                    live.supported.due.due.request(now);
                }
                Some(now + POLL_AFTER_COMMAND)
            }
            Outcome::Other => {
                if let (Some(live), Some(s)) = (live, done.supported) {
                    live.supported.set(s, &mut self.supported_pool);
                }
                None
            }
        }
    }

    fn reply(&self, printer_id: &str, reply: CommandReply) -> Message {
        Message::event(
            self.settings.topics.command_response(printer_id),
            reply.to_json().to_string(),
        )
    }
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

/// Lets the "Cancel object" select send an object's name: swaps `object_name` for Connect's
/// `object_id`.
fn resolve_object_name(req: &mut CommandRequest, job: Option<&Job>) -> Result<(), CommandError> {
    let Some(name) = req.kwargs.remove("object_name") else {
        return Ok(());
    };
    let objects = job
        .and_then(|j| j.cancelable.as_ref())
        .map(|c| c.objects.as_slice())
        .unwrap_or_default();
    let labels = crate::discovery::object_labels(objects);
    match labels
        .iter()
        .find(|(_, label)| Some(label.as_str()) == name.as_str())
    {
        Some((id, _)) => {
            req.kwargs.insert("object_id".into(), json!(id));
            Ok(())
        }
        None => Err(CommandError::new(
            ErrorCode::InvalidArgument,
            format!(
                "the current job has no object {name}; it has: {}",
                labels
                    .iter()
                    .map(|(_, l)| l.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}
