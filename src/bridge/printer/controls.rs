//! What the printer's controls need: its `supported-commands` (read when it is first seen,
//! when its firmware changes and after Connect refused a command), the device triggers, and
//! the dialog a "Dialog response" answers.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use crate::bridge::account::{Kind, SupportedPool};
use crate::bridge::printer::Runtime;
use crate::bridge::printer::{Ctx, PrinterEntry};
use crate::bridge::reads::Read;
use crate::bridge::schedule::Retried;
use crate::command::{CommandError, CommandRequest, ErrorCode};
use crate::connect::client::ConnectError;
use crate::connect::model::{DialogInfo, Printer, PrinterState, SupportedCommand};
use crate::message::Message;

/// A failed read of `supported-commands` is tried again after this, doubling...
const SUPPORTED_RETRY: Duration = Duration::from_secs(30);
/// ...up to this.
const SUPPORTED_RETRY_MAX: Duration = Duration::from_secs(3600);

/// What a printer's supported commands are, as far as the gateway knows.
#[derive(Debug, Clone)]
pub struct SupportedInfo {
    /// Shared between the printers that have the same list (a farm's printers of one model
    /// and firmware): one copy, not one per printer.
    pub list: Option<Arc<Vec<SupportedCommand>>>,
    /// Connect refused a command: the list may be out of date; commands read it afresh
    /// (the controls keep showing the old one until then).
    pub stale: bool,
    pub due: Retried,
    /// The firmware the list was read for: a new firmware may support other commands.
    pub firmware: Option<String>,
    /// The printer type and firmware of the read in flight, when it is read for every
    /// printer of that kind.
    pub reading: Option<Kind>,
}

impl SupportedInfo {
    pub fn new(now: Instant) -> SupportedInfo {
        SupportedInfo {
            list: None,
            stale: false,
            due: Retried::now(now),
            firmware: None,
            reading: None,
        }
    }

    /// The list a command may be checked against; `None`: read it first.
    pub fn for_command(&self) -> Option<Vec<SupportedCommand>> {
        self.list
            .as_ref()
            .filter(|_| !self.stale)
            .map(|l| l.as_ref().clone())
    }

    /// A list read for a command (or by the core), shared through `pool`.
    pub fn set(&mut self, list: Vec<SupportedCommand>, pool: &mut SupportedPool) {
        self.list = Some(pool.intern(list));
        self.stale = false;
    }
}

impl Runtime {
    /// The printer type and firmware its supported commands depend on, when it says both.
    fn kind(&self) -> Option<Kind> {
        Some((
            self.printer.printer_type.clone()?,
            self.printer.firmware.clone()?,
        ))
    }

    /// Takes the list read for another printer of its type and firmware, when its own read is
    /// due (and not after Connect refused one of its commands); true when it did.
    pub fn take_shared_supported(&mut self, pool: &SupportedPool, now: Instant) -> bool {
        let due = self.supported.due.due.next().is_some_and(|t| t <= now);
        let shared = self
            .kind()
            .filter(|_| due && !self.supported.stale)
            .and_then(|kind| pool.of_kind(&kind));
        let Some(list) = shared else {
            return false;
        };
        self.supported.due.due.start(now);
        self.supported.due.succeeded();
        self.supported.firmware = self.printer.firmware.clone();
        self.supported.list = Some(list);
        self.discovery_inputs = None;
        self.succeeded("supported commands");
        true
    }

    /// Starts the read of `supported-commands` when it is due, spending from the poll's
    /// `budget` of extra requests (a farm's first polls spread them). A printer of a type and
    /// firmware another printer's list was read for takes that list instead (unless Connect
    /// refused a command of this printer: then it reads its own), and waits while one is
    /// being read.
    pub fn start_supported_read(
        &mut self,
        uuid: &str,
        budget: &mut u32,
        pool: &mut SupportedPool,
        now: Instant,
    ) -> Option<Read> {
        if self.printer.firmware != self.supported.firmware && self.supported.list.is_some() {
            self.supported.due.due.request(now);
        }
        if self.supported.due.due.next().is_none_or(|t| t > now) {
            return None;
        }
        let kind = self.kind().filter(|_| !self.supported.stale);
        if let Some(kind) = &kind {
            if self.take_shared_supported(pool, now) || pool.is_reading(kind, now) {
                return None;
            }
        }
        if *budget == 0 {
            return None;
        }
        self.supported.due.due.start(now).then(|| {
            *budget -= 1;
            self.supported.firmware = self.printer.firmware.clone();
            if let Some(kind) = kind {
                pool.reading(kind.clone(), now);
                self.supported.reading = Some(kind);
            }
            Read::Supported {
                uuid: uuid.to_string(),
            }
        })
    }
}

/// What a trigger says on `P/trigger`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    PrintStarted,
    PrintFinished,
    PrintFailed,
    PrintStopped,
    AttentionNeeded,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::PrintStarted => "print_started",
            Trigger::PrintFinished => "print_finished",
            Trigger::PrintFailed => "print_failed",
            Trigger::PrintStopped => "print_stopped",
            Trigger::AttentionNeeded => "attention_needed",
        }
    }

    /// The trigger of a job's end (`event_type` of `job/finished`).
    pub fn of_end(event_type: &str) -> Option<Trigger> {
        match event_type {
            "FIN_OK" => Some(Trigger::PrintFinished),
            "FIN_ERROR" => Some(Trigger::PrintFailed),
            "FIN_STOPPED" => Some(Trigger::PrintStopped),
            _ => None,
        }
    }
}

impl PrinterEntry {
    pub(super) fn on_supported(
        &mut self,
        cx: &mut Ctx,
        result: Result<crate::connect::model::SupportedCommands, ConnectError>,
        now: Instant,
        wall: f64,
    ) {
        let missing =
            cx.account
                .unavailable
                .observe("supported_commands", &self.uuid, &result, now, wall);
        let Some(live) = self.runtime.as_mut() else {
            return;
        };
        let pool = &mut cx.account.supported_pool;
        let kind = live.supported.reading.take();
        match result {
            Ok(s) => {
                live.succeeded("supported commands");
                live.supported.due.succeeded();
                live.supported.set(s.commands, pool);
                if let Some(kind) = &kind {
                    pool.read(kind, live.supported.list.clone());
                }
            }
            Err(e) => {
                if let Some(kind) = &kind {
                    pool.read(kind, None);
                }
                if !missing {
                    live.failed("supported commands", &e.to_string());
                }
                live.supported
                    .due
                    .failed(now, SUPPORTED_RETRY, SUPPORTED_RETRY_MAX);
            }
        }
        self.render(cx, wall);
    }
}

/// Publishes a device trigger of printer `id`.
pub fn trigger(cx: &mut Ctx, id: &str, trigger: Trigger) {
    cx.fx.publish(Message::event(
        cx.settings.topics.trigger(id),
        trigger.as_str(),
    ));
}

/// The triggers a printer's move from the state `before` (`None`: first look in this run) to
/// `now` fires, apart from a job's end (announced with `job/finished`).
pub fn state_triggers(before: Option<&PrinterState>, now: &Printer, started: bool) -> Vec<Trigger> {
    let mut triggers = Vec::new();
    if started {
        triggers.push(Trigger::PrintStarted);
    }
    if let Some(before) = before
        && now.effective_state() == PrinterState::Attention
        && *before != PrinterState::Attention
    {
        triggers.push(Trigger::AttentionNeeded);
    }
    triggers
}

/// Fills in a DIALOG_ACTION for the dialog the printer shows: its `dialog_id` when not
/// given, and the button as the dialog spells it. A dialog that is not (or no longer)
/// shown, or a button it does not have, is refused before Connect is asked.
pub fn resolve_dialog(req: &mut CommandRequest, printer: &Printer) -> Result<(), CommandError> {
    let Some(dialog) = &printer.dialog_info else {
        return Err(CommandError::new(
            ErrorCode::PrinterState,
            "the printer shows no dialog to answer",
        ));
    };
    let shown = dialog.id.clone().unwrap_or(serde_json::Value::Null);
    match req.kwargs.get("dialog_id") {
        None | Some(serde_json::Value::Null) => {
            if shown.is_null() {
                return Err(CommandError::new(
                    ErrorCode::InvalidArgument,
                    "Connect gives the dialog no id: send \"dialog_id\"",
                ));
            }
            req.kwargs.insert("dialog_id".into(), shown);
        }
        Some(given) if !shown.is_null() && given.as_f64() != shown.as_f64() => {
            return Err(CommandError::new(
                ErrorCode::InvalidArgument,
                format!("dialog {given} is not shown (the printer shows dialog {shown})"),
            ));
        }
        Some(_) => {}
    }
    let buttons = printer.dialog_buttons();
    let Some(given) = req.kwargs.get("button").and_then(|b| b.as_str()) else {
        return Err(CommandError::new(
            ErrorCode::InvalidArgument,
            format!(
                "DIALOG_ACTION needs \"button\", one of: {}",
                buttons.join(", ")
            ),
        ));
    };
    match buttons
        .iter()
        .find(|b| b.eq_ignore_ascii_case(given.trim()))
    {
        Some(button) => {
            req.kwargs.insert("button".into(), json!(button));
            Ok(())
        }
        None if buttons.is_empty() => Ok(()),
        None => Err(CommandError::new(
            ErrorCode::InvalidArgument,
            format!(
                "the dialog has no button {given:?}; it has: {}",
                buttons.join(", ")
            ),
        )),
    }
}

/// What identifies a dialog: Connect's id, else its title and text.
pub(crate) fn dialog_key(d: &DialogInfo) -> String {
    match &d.id {
        Some(id) => id.to_string(),
        None => format!(
            "{}|{}",
            d.title.as_deref().unwrap_or(""),
            d.text.as_deref().unwrap_or("")
        ),
    }
}

/// `DIALOG_SHOWN` with the dialog the printer shows, or `DIALOG_CLOSED` with the one it
/// showed before.
pub(crate) fn dialog_event(printer: &Printer, previous: Option<&DialogInfo>, wall: f64) -> String {
    let (event, dialog) = match &printer.dialog_info {
        Some(d) => ("DIALOG_SHOWN", Some(d)),
        None => ("DIALOG_CLOSED", previous),
    };
    tracing::info!(
        "{}: {} {}",
        printer.display_name(),
        if printer.dialog_info.is_some() {
            "shows a dialog:"
        } else {
            "dialog closed:"
        },
        dialog
            .and_then(|d| d.title.as_deref())
            .unwrap_or("(untitled)")
    );
    json!({
        "event": event,
        "source": "GATEWAY",
        "state": printer.effective_state().as_str(),
        "created": wall,
        "dialog": dialog,
    })
    .to_string()
}
