//! The core's decisions, in-process: a previous state and an input (a printer list, a read's
//! result, a command), then exactly the messages and reads that come out. No broker, no HTTP.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::bridge::commands::{CommandDone, CommandTask, Outcome, Prepared};
use crate::bridge::core::{Core, REMOVE_AFTER_MISSING_POLLS};
use crate::bridge::reads::{Read, ReadDone, ReadResult, StatsKind};
use crate::bridge::registry::{PrinterRecord, StateFile};
use crate::bridge::settings::Settings;
use crate::command::{CommandReply, ErrorCode};
use crate::config::Config;
use crate::connect::client::{AuthStatus, ConnectError, FeedBatch};
use crate::connect::model::{FeedEvent, Job, JobState, Printer};
use crate::message::{Incoming, Message};

const WALL: f64 = 1_800_000_000.0;
const A: &str = "00000000-0000-4000-8000-0000000000aa";
const B: &str = "00000000-0000-4000-8000-0000000000bb";

/// The test config: cameras off unless `extra` has a `[camera]` table, totals not seeded
/// from Connect unless it has a `[stats]` one.
fn settings(extra: &str) -> Settings {
    let cameras = if extra.contains("[camera]") {
        ""
    } else {
        "[camera]\nenabled = false"
    };
    let stats = if extra.contains("[stats]") {
        ""
    } else {
        "[stats]\nbackfill = \"0s\""
    };
    let config = Config::from_toml(&format!(
        "[connect]\naccess_token = \"t\"\nurl = \"http://127.0.0.1:9\"\n\
         [mqtt]\nbase_topic = \"pc\"\n{cameras}\n{stats}\n{extra}"
    ))
    .unwrap();
    Settings::from_config(&config).unwrap()
}

fn auth() -> AuthStatus {
    AuthStatus {
        method: "access_token",
        status: "ok",
        action: None,
        detail: None,
    }
}

fn printer(uuid: &str, name: &str, state: &str) -> Value {
    json!({"uuid": uuid, "name": name, "printer_state": state, "connect_state": state,
           "job_queue_count": 0})
}

fn printing(uuid: &str, name: &str, job: i64) -> Value {
    let mut p = printer(uuid, name, "PRINTING");
    p["job_info"] = json!({"id": job, "state": "PRINTING", "progress": 10.0});
    p
}

fn job(id: i64, state: JobState) -> Job {
    Job {
        id,
        state: Some(state),
        ts_started: Some(WALL - 60.0),
        ts_ended: Some(WALL),
        ..Default::default()
    }
}

/// A core and its clock.
struct Bridge {
    core: Core,
    now: Instant,
    wall: f64,
}

/// What came out of one input.
#[derive(Debug)]
struct Out {
    messages: Vec<Message>,
    reads: Vec<Read>,
}

impl Out {
    /// `retain TOPIC`, `clear TOPIC` or `event TOPIC`, in order.
    fn topics(&self) -> Vec<String> {
        self.messages
            .iter()
            .map(|m| match m {
                Message::Retain { topic, .. } => format!("retain {topic}"),
                Message::Clear { topic } => format!("clear {topic}"),
                Message::Event { topic, .. } => format!("event {topic}"),
                Message::Image { topic, .. } => format!("image {topic}"),
                Message::Forget { topic } => format!("forget {topic}"),
            })
            .collect()
    }

    fn payload(&self, topic: &str) -> Option<Value> {
        self.messages.iter().rev().find_map(|m| match m {
            Message::Retain {
                topic: t, payload, ..
            }
            | Message::Event { topic: t, payload }
                if t == topic =>
            {
                serde_json::from_slice(payload)
                    .ok()
                    .or(Some(json!(String::from_utf8_lossy(payload).into_owned())))
            }
            _ => None,
        })
    }

    fn events(&self, topic: &str) -> Vec<Value> {
        self.messages
            .iter()
            .filter_map(|m| match m {
                Message::Event { topic: t, payload } if t == topic => {
                    serde_json::from_slice(payload).ok()
                }
                _ => None,
            })
            .collect()
    }
}

impl Bridge {
    fn new(extra: &str) -> Bridge {
        Bridge::with_memory(extra, StateFile::default())
    }

    fn with_memory(extra: &str, memory: StateFile) -> Bridge {
        Bridge {
            core: Core::new(settings(extra), memory),
            now: Instant::now(),
            wall: WALL,
        }
    }

    /// Renders `printers` as the shell does (all at once here).
    fn render_each(&mut self, printers: Vec<String>, wall: f64) {
        if !printers.is_empty() {
            for uuid in printers {
                self.core.introduce(&uuid, wall);
            }
            self.core.introduced();
        }
    }

    /// Publishes every printer whose first publication waited, as the shell's timer does.
    fn introduce_overdue(&mut self, wall: f64) {
        let waiting = self.core.waiting_printers();
        self.render_each(waiting, wall);
    }

    fn take(&mut self) -> Out {
        let renders = self.core.take_renders();
        self.render_each(renders, self.wall);
        Out {
            messages: self.core.take_messages(),
            reads: self.core.take_reads(),
        }
    }

    fn poll(&mut self, printers: &[Value]) -> Out {
        let printers: Vec<Printer> = printers
            .iter()
            .map(|p| serde_json::from_value(p.clone()).unwrap())
            .collect();
        self.core.on_list(
            self.now,
            self.wall,
            self.now,
            Ok((printers, Vec::new())),
            auth(),
        );
        self.take()
    }

    fn fail_poll(&mut self, error: ConnectError) -> Out {
        self.core
            .on_list(self.now, self.wall, self.now, Err(error), auth());
        self.take()
    }

    fn answer(&mut self, read: Read, result: ReadResult) -> Out {
        self.core
            .on_read(ReadDone { read, result }, self.now, self.wall);
        self.take()
    }

    /// Answers the account reads and a printer's first reads with "nothing there".
    fn settle(&mut self, reads: Vec<Read>) -> Out {
        let mut messages = Vec::new();
        let mut more = Vec::new();
        for read in reads {
            let result = match &read {
                Read::Feed { .. } => ReadResult::Feed(Ok(FeedBatch {
                    events: Vec::new(),
                    server_now: Some(self.wall),
                    capped: false,
                })),
                Read::Queue { .. } => ReadResult::Queue(Ok(Default::default())),
                Read::Cameras { .. } => ReadResult::Cameras(Ok(Default::default())),
                Read::Supported { .. } => ReadResult::Supported(Ok(Default::default())),
                Read::Files { .. } => ReadResult::Files(Ok(Vec::new())),
                Read::Storages { .. } => ReadResult::Storages(Ok(Vec::new())),
                Read::Preview { .. } => continue,
                Read::PrinterTypes => ReadResult::PrinterTypes(Ok(Default::default())),
                Read::Version => ReadResult::Version(Ok(Default::default())),
                Read::Unseen => ReadResult::Unseen(Ok(Default::default())),
                Read::Job { job, .. } => {
                    ReadResult::Job(Box::new(Ok(job_record(*job, JobState::Printing))))
                }
                Read::Jobs { .. } => ReadResult::Jobs(Ok(Vec::new())),
                Read::Notifications { .. } => ReadResult::Notifications(Ok(Vec::new())),
                Read::Snapshot { .. } | Read::EndPicture { .. } => continue,
                // Connect's statistics are empty: no job ended in the range.
                Read::Stats { .. } => ReadResult::Stats(Ok(json!({"series": [], "data": []}))),
            };
            let out = self.answer(read, result);
            messages.extend(out.messages);
            more.extend(out.reads);
        }
        Out {
            messages,
            reads: more,
        }
    }

    /// A poll whose reads are all answered with "nothing there".
    fn poll_settled(&mut self, printers: &[Value]) -> Out {
        let first = self.poll(printers);
        let rest = self.settle(first.reads);
        let mut messages = first.messages;
        messages.extend(rest.messages);
        Out {
            messages,
            reads: rest.reads,
        }
    }

    /// Answers the job reads with `detail`, the others with "nothing there".
    fn answer_jobs_then_settle(&mut self, reads: Vec<Read>, detail: Job) -> Out {
        let (jobs, others): (Vec<Read>, Vec<Read>) = reads
            .into_iter()
            .partition(|r| matches!(r, Read::Job { .. }));
        for read in jobs {
            self.answer(read, ReadResult::Job(Box::new(Ok(detail.clone()))));
        }
        self.settle(others)
    }

    fn advance(&mut self, seconds: u64) {
        self.now += Duration::from_secs(seconds);
        self.wall += seconds as f64;
    }

    fn command(&mut self, topic: &str, payload: &str) -> Prepared {
        self.core.prepare(&Incoming {
            topic: topic.into(),
            payload: payload.as_bytes().to_vec().into(),
            retain: false,
            generation: 1,
        })
    }
}

/// The read of printer A's job list down to job `after`.
fn jobs_read(after: Option<i64>) -> Read {
    Read::Jobs {
        uuid: A.into(),
        after,
    }
}

/// The read of printer A's statistics `kind` that seeds its totals (`stats.backfill`: the
/// 90 whole days before the day of the tests' start, 2027-01-15T08:00Z).
fn stats_read(kind: StatsKind) -> Read {
    Read::Stats {
        uuid: A.into(),
        kind,
        from: 1_800_000_000 - 8 * 3600 - 90 * 86_400,
        to: 1_800_000_000 - 8 * 3600 - 1,
    }
}

/// The read of printer A's job `job`.
fn job_read(job: i64) -> Read {
    Read::Job {
        uuid: A.into(),
        job,
    }
}

fn job_record(id: i64, state: JobState) -> Job {
    Job {
        id,
        state: Some(state),
        ..Default::default()
    }
}

/// Job `id`'s detail with cancelable objects.
fn with_objects(id: i64, names: &[&str]) -> Job {
    serde_json::from_value(json!({
        "id": id, "state": "PRINTING",
        "cancelable": {"objects": names.iter().enumerate()
            .map(|(i, n)| json!({"id": i as i64 + id * 10, "name": n})).collect::<Vec<_>>()}
    }))
    .unwrap()
}

/// `n` idle printers named P0..
fn idle_fleet(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            printer(
                &format!("00000000-0000-4000-8000-{i:012}"),
                &format!("P{i}"),
                "IDLE",
            )
        })
        .collect()
}

fn feed_reads(out: &Out) -> Vec<String> {
    out.reads
        .iter()
        .filter_map(|r| match r {
            Read::Feed { uuid, .. } => Some(uuid.clone()),
            _ => None,
        })
        .collect()
}

fn empty_feed(wall: f64) -> ReadResult {
    ReadResult::Feed(Ok(FeedBatch {
        events: Vec::new(),
        server_now: Some(wall),
        capped: false,
    }))
}

fn notification(id: i64, printer: &str) -> crate::connect::model::Notification {
    crate::connect::model::Notification::from_value(json!({
        "id": id, "severity": "ERROR", "category": "JOB", "name": "JOB_FAILED",
        "text": format!("print {id} failed"), "created": WALL,
        "data": {"printer_uuid": printer, "printer_name": "MK4", "job_id": id * 10,
                 "job_name": "cube.bgcode"}
    }))
    .unwrap()
}

mod cameras;
mod commands;
mod controls;
mod edges;
mod feed;
mod ids;
mod jobs;
mod live;
mod notifications;
mod shards;
mod spool;
mod stats;
