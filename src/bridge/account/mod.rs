//! The account: what Connect says of all printers at once, read only when it can have
//! changed (printer types, Connect's version, unseen notifications and the notifications
//! themselves), which optional endpoints rest after a 404, and the supported-command lists
//! printers share. Pure decisions: the reads are made by the shell.

pub mod catch_up;
pub mod notifications;
pub mod spools;
mod supported;
pub mod unavailable;

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::bridge::effects::Effects;
use crate::bridge::reads::{Read, ReadResult};
use crate::bridge::schedule::{CAMERAS_RELIST, Due, EXTRAS_RETRY};
use crate::connect::client::ConnectError;
use crate::connect::model::{Printer, PrinterType, ServerVersion};
use notifications::NotificationCursor;
pub use supported::{Kind, SupportedPool};
use unavailable::Unavailable;

/// Which answer from Connect a list is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Answer {
    First,
    AfterOutage,
    Again,
}

/// Account-wide data: read once and then rarely.
#[derive(Debug, Default)]
pub struct Account {
    /// Connect's printer types by id (`None`: not read yet), and when they were last asked.
    pub printer_types: Option<HashMap<String, PrinterType>>,
    types_asked_at: Option<Instant>,
    types: Due,
    pub server_version: Option<ServerVersion>,
    version: Due,
    /// The unseen count last read; its read is asked for when a printer changed, and made
    /// at most every few active polls.
    pub unseen: Option<u64>,
    pub unseen_read: Due,
    unseen_read_at: Option<Instant>,
    /// Which notifications were published (persisted), and the read of the list.
    pub notifications: NotificationCursor,
    notifications_read: Due,
    /// The notifications list was not read while it answered 404: the next unseen count is
    /// taken as a move.
    notifications_skipped: bool,
    /// A feed catch-up hit the page cap (said once, not for every printer of a farm).
    pub feed_cap_told: bool,
    /// Optional endpoints that answered 404, left alone for an hour.
    pub unavailable: Unavailable,
    pub supported_pool: SupportedPool,
    /// `connect.shard`: a shard publishes the notifications of its own printers (shard 1
    /// those of no printer), so each is published once whichever shard reads it.
    pub shard: Option<crate::shard::Shard>,
    /// Spoolman's spools and reports (`spoolman.url`).
    pub spools: spools::Spools,
}

impl Account {
    pub fn new(notifications: NotificationCursor) -> Account {
        Account {
            notifications,
            ..Default::default()
        }
    }

    /// Connect answered: its version is read at the first answer and after an outage (often
    /// a new release), the unseen count at the first.
    pub fn connect_answered(&mut self, answer: Answer, now: Instant) {
        if answer != Answer::Again {
            self.version.request(now);
        }
        if answer == Answer::First {
            self.unseen_read.request(now);
        }
    }

    pub fn printer_type(&self, printer: &Printer) -> Option<&PrinterType> {
        let id = printer.printer_type.as_ref()?;
        self.printer_types.as_ref()?.get(id)
    }

    /// The model for the device info: Connect's name of the printer's type.
    pub fn model_name<'a>(&'a self, printer: &'a Printer) -> Option<&'a str> {
        printer
            .printer_type_name
            .as_deref()
            .or_else(|| self.printer_type(printer).and_then(|t| t.name.as_deref()))
            .or(printer.printer_model.as_deref())
    }

    /// Whether the printer types are being read: a printer's first publication shows them
    /// (its model, the latest firmware), so it waits for them.
    pub fn types_reading(&self) -> bool {
        self.types.is_running()
    }

    /// Whether `bridge/info` should wait: it shows what these reads bring.
    pub fn info_reads_running(&self) -> bool {
        self.version.is_running() || self.unseen_read.is_running()
    }

    /// At a poll's start: printer types once, again hourly while a printer's type (one of
    /// `types_in_use`) is missing from them; Connect's version when asked for.
    pub fn poll_reads<'a>(
        &mut self,
        mut types_in_use: impl Iterator<Item = &'a String>,
        fx: &mut Effects,
        now: Instant,
    ) {
        let (wanted, wait) = match &self.printer_types {
            None => (true, EXTRAS_RETRY),
            Some(types) => (
                types_in_use.any(|id| !types.contains_key(id)),
                CAMERAS_RELIST,
            ),
        };
        if wanted
            && !self.unavailable.resting("printer_types", "", now)
            && self
                .types_asked_at
                .is_none_or(|t| now.duration_since(t) >= wait)
        {
            self.types.request(now);
        }
        if self.types.start(now) {
            self.types_asked_at = Some(now);
            fx.read(Read::PrinterTypes);
        }
        if !self.unavailable.resting("version", "", now) && self.version.start(now) {
            fx.read(Read::Version);
        }
    }

    /// At a poll's end: the unseen count, after a printer changed, at most every `every`.
    pub fn unseen_reads(&mut self, every: Duration, fx: &mut Effects, now: Instant) {
        if !self.unavailable.resting("notifications_unseen", "", now)
            && self
                .unseen_read_at
                .is_none_or(|t| now.duration_since(t) >= every)
            && self.unseen_read.start(now)
        {
            self.unseen_read_at = Some(now);
            fx.read(Read::Unseen);
        }
    }

    /// Takes the result of an account-wide read; `printer_id` names a printer by uuid.
    pub fn on_read(
        &mut self,
        result: ReadResult,
        topics: &crate::topics::Topics,
        printer_id: impl Fn(&str) -> Option<String>,
        fx: &mut Effects,
        now: Instant,
        wall: f64,
    ) {
        match result {
            ReadResult::PrinterTypes(result) => {
                self.types.finish();
                let missing = self
                    .unavailable
                    .observe("printer_types", "", &result, now, wall);
                match result {
                    Ok(types) => {
                        self.printer_types = Some(
                            types
                                .printer_types
                                .into_iter()
                                .map(|t| (t.id.clone(), t))
                                .collect(),
                        )
                    }
                    Err(_) if missing => {}
                    Err(e) => tracing::warn!("cannot read Connect's printer types: {e}"),
                }
            }
            ReadResult::Version(result) => self.on_version(result, now, wall),
            ReadResult::Unseen(result) => {
                self.unavailable
                    .observe("notifications_unseen", "", &result, now, wall);
                self.unseen_read.finish();
                match result {
                    Ok(n) => self.notifications_moved(n.unseen, fx, now),
                    Err(e) => {
                        tracing::debug!("cannot read the unseen notifications: {e}");
                        self.unseen_read.request(now);
                    }
                }
            }
            ReadResult::Notifications(result) => {
                self.on_notifications(result, topics, printer_id, fx, now, wall)
            }
            other => tracing::error!("not an account read's result: {other:?}"),
        }
    }

    fn on_version(&mut self, result: Result<ServerVersion, ConnectError>, now: Instant, wall: f64) {
        let missing = self.unavailable.observe("version", "", &result, now, wall);
        self.version.finish();
        if missing {
            // Asked again when the rest is over.
            self.version.request(now);
        }
        match result {
            Ok(v) => {
                if self.server_version.as_ref() != Some(&v) {
                    tracing::info!(
                        "Prusa Connect version {}",
                        v.version.as_deref().unwrap_or("unknown")
                    );
                }
                self.server_version = Some(v);
            }
            Err(e) => tracing::debug!("cannot read Connect's version: {e}"),
        }
    }
}
