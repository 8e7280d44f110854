//! Starting a print from Home Assistant, and the current print's thumbnail.
//!
//! The printer's files are read only while START_PRINT is usable (on the allow list and
//! supported): when the printer is first seen, when it becomes ready for a print (IDLE,
//! READY, FINISHED, STOPPED) and when its feed says its files changed; not on every poll.
//! "File to print" (`P/print_file`) picks one; "Start print" (a bare `START_PRINT`) prints
//! it. The thumbnail of each job is fetched once and kept retained on `P/job/preview`.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use crate::bridge::printer::Runtime;
use crate::bridge::printer::{Ctx, PrinterEntry};
use crate::bridge::reads::Read;
use crate::bridge::schedule::Retried;
use crate::command::{CommandError, CommandRequest, ErrorCode};
use crate::connect::client::ConnectError;
use crate::connect::model::{PrintFile, PrinterState};
use crate::message::{Kind, Message};

/// A failed read of the files or a thumbnail is tried again after this, doubling...
const RETRY: Duration = Duration::from_secs(30);
/// ...up to this.
const RETRY_MAX: Duration = Duration::from_secs(1800);
/// Feed events that mean the printer's files changed.
pub const FILE_EVENTS: &[&str] = &[
    "FILE_CHANGED",
    "MEDIUM_INSERTED",
    "MEDIUM_EJECTED",
    "TRANSFER_FINISHED",
];

/// A file's label: its name, with its path when another file has the same name.
fn label(list: &[PrintFile], file: &PrintFile) -> String {
    if list.iter().filter(|o| o.name == file.name).count() > 1 {
        format!("{} ({})", file.name, file.path)
    } else {
        file.name.clone()
    }
}

/// The printer's files and the one chosen to print.
#[derive(Debug, Clone, Default)]
pub struct PrintFiles {
    pub list: Option<Vec<PrintFile>>,
    pub due: Retried,
    /// A path of `list`.
    pub selected: Option<String>,
}

impl PrintFiles {
    /// Unique labels of the files, for the select: `(path, label)`.
    pub fn labels(&self) -> Vec<(String, String)> {
        let list = self.list.as_deref().unwrap_or_default();
        list.iter()
            .map(|f| (f.path.clone(), label(list, f)))
            .collect()
    }

    /// The selected file's label (every `P/state` shows it: only that one is made).
    pub fn selected_label(&self) -> Option<String> {
        let selected = self.selected.as_ref()?;
        let list = self.list.as_deref()?;
        let file = list.iter().find(|f| &f.path == selected)?;
        Some(label(list, file))
    }

    /// The path a file is known by: its path or its label.
    fn find(&self, wanted: &str) -> Option<String> {
        let wanted = wanted.trim();
        self.labels()
            .into_iter()
            .find(|(path, label)| path == wanted || label == wanted)
            .map(|(path, _)| path)
    }
}

/// The thumbnail of the current job, fetched once per job.
#[derive(Debug, Clone, Default)]
pub struct Preview {
    /// The job whose thumbnail is published (or being fetched).
    pub job: Option<i64>,
    pub due: Retried,
}

fn ready_for_a_print(state: &PrinterState) -> bool {
    matches!(
        state,
        PrinterState::Idle | PrinterState::Ready | PrinterState::Finished | PrinterState::Stopped
    )
}

impl Runtime {
    /// Whether START_PRINT may be sent to this printer (allowed and supported).
    pub fn can_start_prints(&self, allow: &[String]) -> bool {
        allow.iter().any(|a| a.eq_ignore_ascii_case("START_PRINT"))
            && self
                .supported
                .list
                .as_ref()
                .is_some_and(|l| l.iter().any(|c| c.command == "START_PRINT"))
    }

    /// Starts the read of the printer's files when it is due (spending from the poll's
    /// `budget`); `before` is the printer's state at the previous poll.
    pub fn start_files_read(
        &mut self,
        uuid: &str,
        allow: &[String],
        before: Option<&PrinterState>,
        budget: &mut u32,
        now: Instant,
    ) -> Option<Read> {
        if !self.can_start_prints(allow) {
            return None;
        }
        let state = self.printer.effective_state();
        let became_ready =
            ready_for_a_print(&state) && before.is_none_or(|b| !ready_for_a_print(b));
        let never_asked = self.files.list.is_none()
            && !self.files.due.due.is_requested()
            && !self.files.due.has_failed();
        if never_asked || became_ready {
            self.files.due.due.request(now);
        }
        if *budget == 0 {
            return None;
        }
        self.files.due.due.start(now).then(|| {
            *budget -= 1;
            Read::Files {
                uuid: uuid.to_string(),
            }
        })
    }

    /// Starts fetching the current job's thumbnail, once per job, spending from the poll's
    /// `budget` (a farm seen for the first time fetches them over its first polls).
    pub fn start_preview_read(
        &mut self,
        uuid: &str,
        budget: &mut u32,
        now: Instant,
    ) -> Option<Read> {
        let job = self.printer.job_info.as_ref()?;
        let (id, url) = (job.id?, job.preview_url.clone()?);
        if self.preview.job != Some(id) {
            self.preview = Preview {
                job: Some(id),
                due: Retried::now(now),
            };
        }
        if *budget == 0 {
            return None;
        }
        self.preview.due.due.start(now).then(|| {
            *budget -= 1;
            Read::Preview {
                uuid: uuid.to_string(),
                job: id,
                url,
            }
        })
    }
}

impl PrinterEntry {
    pub(super) fn on_files(
        &mut self,
        cx: &mut Ctx,
        result: Result<Vec<PrintFile>, ConnectError>,
        now: Instant,
        wall: f64,
    ) {
        let missing = cx
            .account
            .unavailable
            .observe("files", &self.uuid, &result, now, wall);
        let Some(live) = self.runtime.as_mut() else {
            return;
        };
        match result {
            Ok(list) => {
                live.succeeded("files");
                live.files.due.succeeded();
                if let Some(selected) = &live.files.selected
                    && !list.iter().any(|f| &f.path == selected)
                {
                    live.files.selected = None;
                }
                live.files.list = Some(list);
            }
            Err(e) => {
                if !missing {
                    live.failed("files", &e.to_string());
                }
                live.files.due.failed(now, RETRY, RETRY_MAX);
            }
        }
        self.render(cx, wall);
    }

    pub(super) fn on_preview(
        &mut self,
        cx: &mut Ctx,
        job: i64,
        result: Result<Vec<u8>, ConnectError>,
        now: Instant,
    ) {
        let id = self.id().unwrap_or_default().to_string();
        let Some(live) = self.runtime.as_mut() else {
            return;
        };
        if live.preview.job != Some(job) {
            return; // another job started meanwhile
        }
        match result {
            Ok(bytes) => {
                live.succeeded("thumbnail");
                live.preview.due.succeeded();
                let topic = cx.settings.topics.job_preview(&id);
                cx.fx.publish(Message::Retain {
                    kind: Kind::Data,
                    topic,
                    payload: bytes,
                });
            }
            Err(ConnectError::Api { status: 404, .. }) => {
                live.preview.due.succeeded(); // none for this job
            }
            Err(e @ ConnectError::OffConnect(_)) => {
                // Asking again would not change where it leads.
                tracing::warn!(
                    "{}: the thumbnail of job {job} is not fetched: {e}",
                    live.printer.display_name()
                );
                live.preview.due.succeeded();
            }
            Err(e) => {
                live.failed("thumbnail", &e.to_string());
                live.preview.due.failed(now, RETRY, RETRY_MAX);
            }
        }
    }

    /// The feed said the printer's files changed: read them (when they are shown) and the
    /// free space again.
    pub fn files_changed(&mut self, now: Instant) {
        let Some(live) = self.runtime.as_mut() else {
            return;
        };
        if live.files.list.is_some() {
            live.files.due.due.request(now);
        }
        live.storage.due.due.request(now);
    }

    /// A message on `P/print_file`: the file "Start print" prints.
    pub fn select_file(&mut self, cx: &mut Ctx, payload: &[u8], wall: f64) {
        let printer_id = self.id().unwrap_or_default().to_string();
        let Some(live) = self.runtime.as_mut() else {
            return;
        };
        let wanted = String::from_utf8_lossy(payload);
        match live.files.find(&wanted) {
            Some(path) => live.files.selected = Some(path),
            None => {
                let shown: String = wanted.chars().take(120).collect();
                tracing::warn!(
                    "{printer_id}: no file {shown:?} to print (the printer's files were read {})",
                    if live.files.list.is_some() {
                        "and it is not among them"
                    } else {
                        "not yet"
                    }
                );
                return;
            }
        }
        self.render(cx, wall);
    }
}

/// Checks a START_PRINT against the printer's files: a path or a file's label is taken; no
/// path prints the file chosen in "File to print".
pub fn resolve_start_print(
    req: &mut CommandRequest,
    files: &PrintFiles,
) -> Result<(), CommandError> {
    let given = req.kwargs.get("path").cloned();
    let path = match given {
        None | Some(serde_json::Value::Null) => files.selected.clone().ok_or_else(|| {
            CommandError::new(
                ErrorCode::InvalidArgument,
                "no file chosen: pick one in \"File to print\" or send kwargs.path",
            )
        })?,
        Some(serde_json::Value::String(p)) => match (&files.list, files.find(&p)) {
            (_, Some(path)) => path,
            // Not read (yet): Connect checks it.
            (None, None) => p,
            (Some(list), None) => {
                let names: Vec<&str> = list.iter().take(10).map(|f| f.path.as_str()).collect();
                return Err(CommandError::new(
                    ErrorCode::InvalidArgument,
                    format!(
                        "{p:?} is not one of the printer's files ({}{})",
                        names.join(", "),
                        if list.len() > 10 { ", ..." } else { "" }
                    ),
                ));
            }
        },
        Some(_) => {
            return Err(CommandError::new(
                ErrorCode::InvalidArgument,
                "START_PRINT argument \"path\" must be a string",
            ));
        }
    };
    req.kwargs.insert("path".into(), json!(path));
    Ok(())
}
