//! A command checked against one printer: what the gateway knows of it (state, job objects,
//! files, dialog, type limits, supported commands) before the request goes to Connect, and
//! what Connect's answer changes.

use serde_json::json;
use tokio::time::Instant;

use crate::bridge::Settings;
use crate::bridge::account::{Account, SupportedPool};
use crate::bridge::commands::{CommandJob, CommandTask, Outcome};
use crate::bridge::printer::PrinterEntry;
use crate::command::{self, CommandError, CommandReply, CommandRequest, ErrorCode, JobReason};
use crate::connect::model::{Job, PrinterState, SupportedCommand};

impl PrinterEntry {
    /// The request for command `req` sent to printer `printer_id` (this one), or the reply
    /// that refuses it.
    pub fn command_job(
        &self,
        settings: &Settings,
        account: &Account,
        printer_id: &str,
        mut req: CommandRequest,
    ) -> Result<CommandJob, CommandReply> {
        let Some(live) = self.runtime.as_ref() else {
            return Err(CommandReply::error(
                &req,
                CommandError::new(ErrorCode::UnknownPrinter, "the printer is not bridged yet"),
            ));
        };
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
        let limits = account
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
        let state = if self.missing > 0 {
            PrinterState::Offline
        } else {
            live.printer.effective_state()
        };
        Ok(CommandJob {
            printer_id: printer_id.to_string(),
            uuid: self.uuid.clone(),
            reply_topic: settings.topics.command_response(printer_id),
            task: CommandTask::Command {
                state,
                supported: live.supported.for_command(),
                allow: settings.allow.clone(),
                limits,
                req,
            },
        })
    }

    /// The request that tags a job of printer `printer_id` (this one) with a failure
    /// reason: the job given, else the last one announced.
    pub fn reason_job(
        &self,
        settings: &Settings,
        printer_id: &str,
        reason: JobReason,
    ) -> Result<CommandJob, CommandReply> {
        let JobReason {
            job_id,
            reason,
            request,
        } = reason;
        let job_id = job_id.or(self.record.jobs.announced_job).ok_or_else(|| {
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
            uuid: self.uuid.clone(),
            reply_topic: settings.topics.command_response(printer_id),
            task: CommandTask::JobReason {
                req: request,
                job_id,
                reason,
            },
        })
    }

    /// What Connect's answer to a command changes of the printer.
    pub fn on_command_done(
        &mut self,
        outcome: Outcome,
        supported: Option<Vec<SupportedCommand>>,
        pool: &mut SupportedPool,
        now: Instant,
    ) {
        let Some(live) = self.runtime.as_mut() else {
            return;
        };
        match outcome {
            Outcome::Accepted => {
                if let Some(s) = supported {
                    live.supported.set(s, pool);
                }
                // Object states change with CANCEL_OBJECT: read the job again (showing
                // the detail read before until then).
                live.detail_stale = true;
                // What the live channel said before the command is older than what
                // the poll after it shows.
                live.pushed.forget_received();
            }
            Outcome::Refused => {
                // Read again, for the next command and for the controls.
                live.supported.stale = true;
                live.supported.due.due.request(now);
            }
            Outcome::Other => {
                if let Some(s) = supported {
                    live.supported.set(s, pool);
                }
            }
        }
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
