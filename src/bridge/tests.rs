//! The core's decisions, in-process: a previous state and an input (a printer list, a read's
//! result, a command), then exactly the messages and reads that come out. No broker, no HTTP.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::commands::{CommandDone, CommandTask, Outcome, Prepared};
use super::core::{Core, REMOVE_AFTER_MISSING_POLLS, Settings};
use super::reads::{Read, ReadDone, ReadResult};
use super::registry::{Memory, PrinterRecord};
use crate::command::{CommandReply, ErrorCode};
use crate::config::Config;
use crate::connect::client::{AuthStatus, ConnectError, FeedBatch};
use crate::connect::model::{FeedEvent, Job, JobState, Printer};
use crate::message::{Incoming, Message};

const WALL: f64 = 1_800_000_000.0;
const A: &str = "00000000-0000-4000-8000-0000000000aa";
const B: &str = "00000000-0000-4000-8000-0000000000bb";

/// The test config: cameras off unless `extra` has a `[camera]` table.
fn settings(extra: &str) -> Settings {
    let cameras = if extra.contains("[camera]") {
        ""
    } else {
        "[camera]\nenabled = false"
    };
    let config = Config::from_toml(&format!(
        "[connect]\naccess_token = \"t\"\nurl = \"http://127.0.0.1:9\"\n\
         [mqtt]\nbase_topic = \"pc\"\n{cameras}\n{extra}"
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
        Bridge::with_memory(extra, Memory::default())
    }

    fn with_memory(extra: &str, memory: Memory) -> Bridge {
        Bridge {
            core: Core::new(settings(extra), memory),
            now: Instant::now(),
            wall: WALL,
        }
    }

    fn take(&mut self) -> Out {
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
                Read::Preview { .. } => continue,
                Read::PrinterTypes => ReadResult::PrinterTypes(Ok(Default::default())),
                Read::Version => ReadResult::Version(Ok(Default::default())),
                Read::Unseen => ReadResult::Unseen(Ok(Default::default())),
                Read::Job { job, .. } => {
                    ReadResult::Job(Box::new(Ok(job_record(*job, JobState::Printing))))
                }
                Read::Jobs { .. } => ReadResult::Jobs(Ok(Vec::new())),
                Read::Notifications { .. } => ReadResult::Notifications(Ok(Vec::new())),
                Read::Snapshot { .. } => continue,
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

#[test]
fn a_new_printer_is_published_whole_once_its_first_reads_are_back() {
    let mut b = Bridge::new("[camera]\nenabled = true");
    let first = b.poll(&[printer(A, "Busy MK4", "IDLE")]);
    assert_eq!(
        first.reads,
        [
            Read::PrinterTypes,
            Read::Version,
            Read::Cameras { uuid: A.into() },
            Read::Feed {
                uuid: A.into(),
                from: None,
                rewound: false
            },
            Read::Supported { uuid: A.into() },
            jobs_read(None),
            Read::Unseen,
        ],
        "queue_count 0: no queue read"
    );
    assert!(
        first.topics().is_empty(),
        "nothing of the printer before its feed cursor and cameras are known: {:?}",
        first.topics()
    );
    let rest = b.settle(first.reads);
    assert_eq!(
        rest.topics(),
        [
            "retain pc/busy_mk4/state",
            "retain homeassistant/device/prusa_connect_00000000-0000-4000-8000-0000000000aa/config",
            "retain pc/busy_mk4/availability",
            "retain pc/bridge/info",
        ]
    );
    assert_eq!(
        rest.payload("pc/busy_mk4/availability"),
        Some(json!("online"))
    );
    assert_eq!(rest.payload("pc/busy_mk4/state").unwrap()["queue_count"], 0);
    // The same list again: no read, no message.
    let again = b.poll(&[printer(A, "Busy MK4", "IDLE")]);
    assert!(again.reads.is_empty(), "{:?}", again.reads);
    assert!(again.topics().is_empty(), "{:?}", again.topics());
    // Connect fails: offline once, and once again online.
    let failed = b.fail_poll(ConnectError::Transport("reset".into()));
    assert_eq!(
        failed.payload("pc/busy_mk4/availability"),
        Some(json!("offline"))
    );
    assert!(
        b.fail_poll(ConnectError::Transport("reset".into()))
            .topics()
            .iter()
            .all(|t| !t.contains("availability"))
    );
    let back = b.poll(&[printer(A, "Busy MK4", "IDLE")]);
    assert_eq!(
        back.payload("pc/busy_mk4/availability"),
        Some(json!("online"))
    );
}

#[test]
fn ids_stay_with_their_printers_when_a_namesake_is_missing() {
    let mut b = Bridge::new("");
    b.poll_settled(&[
        printer(B, "Workshop MK4", "IDLE"),
        printer(A, "Workshop MK4", "IDLE"),
    ]);
    let id = |b: &Bridge, uuid: &str| {
        b.core
            .registry()
            .get(uuid)
            .unwrap()
            .id()
            .unwrap()
            .to_string()
    };
    assert_eq!(id(&b, A), "workshop_mk4");
    assert_eq!(id(&b, B), "workshop_mk4_0000bb");
    // A is missing from two polls: B keeps its id and nothing of either is cleared.
    for _ in 0..REMOVE_AFTER_MISSING_POLLS - 1 {
        let out = b.poll_settled(&[printer(B, "Workshop MK4", "IDLE")]);
        assert!(
            !out.topics().iter().any(|t| t.starts_with("clear")),
            "{:?}",
            out.topics()
        );
        assert_eq!(id(&b, B), "workshop_mk4_0000bb");
    }
    // Commands go by id to the printer that has it.
    let Prepared::Run(job) = b.command("pc/workshop_mk4_0000bb/command", "home") else {
        panic!("runs");
    };
    assert_eq!(job.uuid, B);
    let Prepared::Run(job) = b.command("pc/workshop_mk4/command", "home") else {
        panic!("runs");
    };
    assert_eq!(job.uuid, A, "a missing printer keeps taking commands");
    // Back: the same ids.
    b.poll_settled(&[
        printer(A, "Workshop MK4", "IDLE"),
        printer(B, "Workshop MK4", "IDLE"),
    ]);
    assert_eq!(id(&b, A), "workshop_mk4");
    assert_eq!(id(&b, B), "workshop_mk4_0000bb");
    // Gone for good (three polls, two poll intervals): only A's topics go, and B keeps its
    // id.
    let mut cleared = Vec::new();
    for _ in 0..REMOVE_AFTER_MISSING_POLLS {
        b.advance(30);
        cleared.extend(
            b.poll_settled(&[printer(B, "Workshop MK4", "IDLE")])
                .topics()
                .into_iter()
                .filter(|t| t.starts_with("clear")),
        );
    }
    assert_eq!(
        cleared,
        [
            "clear homeassistant/device/prusa_connect_00000000-0000-4000-8000-0000000000aa/config",
            "clear pc/workshop_mk4/state",
            "clear pc/workshop_mk4/job",
            "clear pc/workshop_mk4/job/preview",
            "clear pc/workshop_mk4/availability",
        ]
    );
    assert_eq!(id(&b, B), "workshop_mk4_0000bb");
    assert!(matches!(
        b.command("pc/workshop_mk4/command", "home"),
        Prepared::Reply(_)
    ));
}

#[test]
fn ids_survive_a_restart_and_change_only_when_the_printer_is_renamed() {
    let mut b = Bridge::new("");
    b.poll_settled(&[printer(A, "MK4", "IDLE"), printer(B, "MK4", "IDLE")]);
    let memory = b.core.memory();
    assert_eq!(memory.printers[B].id.as_deref(), Some("mk4_0000bb"));
    // After a restart B comes back alone first: it keeps its id.
    let mut b = Bridge::with_memory("", memory);
    b.poll_settled(&[printer(B, "MK4", "IDLE")]);
    assert_eq!(b.core.registry().get(B).unwrap().id(), Some("mk4_0000bb"));
    // Renamed in Connect: a new id, and the old topics are cleared.
    let out = b.poll_settled(&[printer(B, "Left", "IDLE"), printer(A, "MK4", "IDLE")]);
    assert_eq!(b.core.registry().get(B).unwrap().id(), Some("left"));
    for topic in ["state", "job", "availability"] {
        assert!(
            out.topics()
                .contains(&format!("clear pc/mk4_0000bb/{topic}")),
            "{:?}",
            out.topics()
        );
    }
    assert_eq!(out.payload("pc/left/availability"), Some(json!("online")));
    assert_eq!(b.core.registry().get(A).unwrap().id(), Some("mk4"));
}

#[test]
fn the_operators_id_wins_and_takes_effect_at_once() {
    let mut b = Bridge::new("[mqtt.printer_ids]\n\"MK4\" = \"left\"");
    b.poll_settled(&[printer(A, "MK4", "IDLE"), printer(B, "Other", "IDLE")]);
    assert_eq!(b.core.registry().get(A).unwrap().id(), Some("left"));
    assert_eq!(b.core.registry().get(B).unwrap().id(), Some("other"));
}

#[test]
fn a_job_that_started_and_ended_between_two_polls_is_announced_once() {
    let mut b = Bridge::new("");
    b.poll_settled(&[printing(A, "MK4", 7)]);
    // Next poll: the job is over (the list says FIN_OK) and the printer idle.
    let mut idle = printer(A, "MK4", "IDLE");
    idle["job_info"] = json!({"id": 7, "state": "FIN_OK"});
    let out = b.poll(std::slice::from_ref(&idle));
    // Connect's job list tells how it ended (and whether others ran since).
    let reads: Vec<&Read> = out
        .reads
        .iter()
        .filter(|r| matches!(r, Read::Job { .. } | Read::Jobs { .. }))
        .collect();
    assert_eq!(reads, [&jobs_read(Some(7))]);
    let done = b.answer(
        jobs_read(Some(7)),
        ReadResult::Jobs(Ok(vec![job(7, JobState::FinOk)])),
    );
    let ends = done.events("pc/mk4/job/finished");
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0]["event_type"], "FIN_OK");
    assert_eq!(ends[0]["job_id"], 7);
    assert_eq!(ends[0]["duration"], 60);
    // Nothing more: not on the next poll, nor after a restart.
    b.advance(30);
    let out = b.poll_settled(std::slice::from_ref(&idle));
    assert!(out.events("pc/mk4/job/finished").is_empty());
    let mut b = Bridge::with_memory("", b.core.memory());
    let out = b.poll_settled(&[idle]);
    assert!(out.events("pc/mk4/job/finished").is_empty());
}

#[test]
fn a_job_ended_before_the_printer_was_first_seen_is_never_announced() {
    let mut b = Bridge::new("");
    let mut idle = printer(A, "MK4", "IDLE");
    idle["job_info"] = json!({"id": 3, "state": "FIN_ERROR"});
    let out = b.poll_settled(&[idle]);
    assert!(out.events("pc/mk4/job/finished").is_empty());
    assert_eq!(b.core.memory().printers[A].jobs.announced_job, Some(3));
}

#[test]
fn a_lagging_job_record_is_read_again_with_backoff_for_more_than_an_hour() {
    let mut b = Bridge::new("");
    b.poll_settled(&[printing(A, "MK4", 9)]);
    let idle = printer(A, "MK4", "IDLE");
    let job_read = || job_read(9);
    let out = b.poll(std::slice::from_ref(&idle));
    assert!(out.reads.contains(&jobs_read(Some(9))));
    // The job list says it still runs: its record is read again, with backoff.
    b.answer(
        jobs_read(Some(9)),
        ReadResult::Jobs(Ok(vec![job(9, JobState::Printing)])),
    );
    b.advance(5);
    let mut out = b.poll(std::slice::from_ref(&idle));
    let mut reads_made = 0;
    let mut waits = Vec::new();
    let mut last_read_at = b.wall;
    // Connect's record says PRINTING for an hour and a half.
    while b.wall < WALL + 5400.0 {
        if out.reads.contains(&job_read()) {
            reads_made += 1;
            waits.push(b.wall - last_read_at);
            last_read_at = b.wall;
            let answer = b.answer(
                job_read(),
                ReadResult::Job(Box::new(Ok(job(9, JobState::Printing)))),
            );
            assert!(answer.events("pc/mk4/job/finished").is_empty());
        }
        b.advance(5);
        out = b.poll(std::slice::from_ref(&idle));
    }
    assert!(
        (10..40).contains(&reads_made),
        "read {reads_made} times: {waits:?}"
    );
    assert!(
        waits.iter().skip(2).all(|w| *w > 5.0),
        "backs off: {waits:?}"
    );
    assert!(
        waits.iter().all(|w| *w <= 305.0),
        "at most 5 min apart: {waits:?}"
    );
    // Then the record says how it ended: announced.
    while !out.reads.contains(&job_read()) {
        b.advance(5);
        out = b.poll(std::slice::from_ref(&idle));
    }
    let done = b.answer(
        job_read(),
        ReadResult::Job(Box::new(Ok(job(9, JobState::FinStopped)))),
    );
    assert_eq!(
        done.events("pc/mk4/job/finished")[0]["event_type"],
        "FIN_STOPPED"
    );
}

#[test]
fn a_printer_state_change_reads_the_feed_and_publishes_each_event_once() {
    let mut b = Bridge::new("");
    b.poll_settled(&[printer(A, "MK4", "IDLE")]);
    let quiet = b.poll(&[printer(A, "MK4", "IDLE")]);
    assert!(quiet.reads.is_empty(), "nothing changed, no feed read");
    let out = b.poll(&[printing(A, "MK4", 5)]);
    let feed = out
        .reads
        .iter()
        .find(|r| matches!(r, Read::Feed { .. }))
        .cloned()
        .expect("a feed read");
    assert_eq!(
        feed,
        Read::Feed {
            uuid: A.into(),
            from: Some(0.0),
            rewound: false
        }
    );
    let event = |name: &str, at: f64| {
        FeedEvent::from_value(json!({"event": name, "created": at, "state": "PRINTING"})).unwrap()
    };
    let batch = || {
        ReadResult::Feed(Ok(FeedBatch {
            events: vec![event("JOB_INFO", WALL - 1.0), event("STATE_CHANGED", WALL)],
            server_now: Some(WALL),
            capped: false,
        }))
    };
    let published = b.answer(feed.clone(), batch());
    let events = published.events("pc/mk4/event");
    assert_eq!(
        events
            .iter()
            .map(|e| e["event"].clone())
            .collect::<Vec<_>>(),
        [json!("JOB_INFO"), json!("STATE_CHANGED")]
    );
    assert!(b.answer(feed, batch()).events("pc/mk4/event").is_empty());
}

#[test]
fn dialogs_are_announced_once_and_their_closing_too() {
    let mut b = Bridge::new("");
    b.poll_settled(&[printer(A, "MK4", "IDLE")]);
    let mut asking = printer(A, "MK4", "ATTENTION");
    asking["dialog_info"] = json!({"id": 42, "title": "Filament runout", "buttons": ["Continue"]});
    let shown = b.poll_settled(&[asking.clone()]).events("pc/mk4/event");
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0]["event"], "DIALOG_SHOWN");
    assert!(b.poll_settled(&[asking]).events("pc/mk4/event").is_empty());
    let closed = b
        .poll_settled(&[printer(A, "MK4", "IDLE")])
        .events("pc/mk4/event");
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0]["event"], "DIALOG_CLOSED");
    assert_eq!(closed[0]["dialog"]["title"], "Filament runout");
}

#[test]
fn a_failed_list_marks_every_known_printer_offline_even_those_known_only_from_the_state_file() {
    let mut memory = Memory::default();
    for (uuid, id) in [(A, "left"), (B, "right")] {
        memory.printers.insert(
            uuid.into(),
            PrinterRecord {
                id: Some(id.into()),
                id_name: Some(id.into()),
                ..Default::default()
            },
        );
    }
    let mut b = Bridge::with_memory("", memory);
    let out = b.fail_poll(ConnectError::Unauthorized {
        message: "token expired".into(),
    });
    assert_eq!(
        out.topics(),
        [
            "retain pc/left/availability",
            "retain pc/right/availability",
            "retain pc/bridge/info"
        ]
    );
    assert_eq!(out.payload("pc/left/availability"), Some(json!("offline")));
    let info = out.payload("pc/bridge/info").unwrap();
    assert_eq!(info["connect"]["reachable"], false);
}

#[test]
fn commands_are_checked_here_and_their_replies_change_the_polls() {
    let mut b = Bridge::new("");
    b.poll_settled(&[printer(A, "MK4", "IDLE")]);
    // Unknown printer, retained message, oversized message: answered (or cleared) at once.
    let Prepared::Reply(Message::Event { topic, payload }) = b.command("pc/nope/command", "home")
    else {
        panic!("a reply")
    };
    assert_eq!(topic, "pc/nope/command/response");
    let reply: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(reply["code"], "UNKNOWN_PRINTER");
    let retained = b.core.prepare(&Incoming {
        topic: "pc/mk4/command".into(),
        payload: b"stop".to_vec().into(),
        retain: true,
        generation: 1,
    });
    assert!(matches!(retained, Prepared::Reply(Message::Clear { .. })));
    // A command for a printer runs with what the core knows of it.
    let Prepared::Run(job) = b.command(
        "pc/mk4/command",
        r#"{"command": "MOVE", "kwargs": {"x": 1}, "transaction": "t1"}"#,
    ) else {
        panic!("runs")
    };
    let CommandTask::Command { req, supported, .. } = &job.task else {
        panic!("a command")
    };
    assert_eq!(req.command, "MOVE");
    assert_eq!(
        supported.as_deref(),
        Some(&[][..]),
        "the list read when the printer was first seen"
    );
    // Connect took it: the reply, and fast polls from now on.
    let soon = b.core.command_done(
        CommandDone {
            printer_id: job.printer_id.clone(),
            uuid: job.uuid.clone(),
            reply: CommandReply::ok(req, Some(77)),
            replied: false,
            supported: Some(Vec::new()),
            outcome: Outcome::Accepted,
        },
        b.now,
    );
    assert!(soon.is_some_and(|t| t <= b.now + Duration::from_secs(1)));
    let out = b.take();
    assert_eq!(
        out.events("pc/mk4/command/response")[0],
        json!({"transaction": "t1", "command": "MOVE", "status": "ok", "connect_command_id": 77})
    );
    let wait = b.core.on_list(
        b.now,
        b.wall,
        b.now,
        Ok((
            vec![serde_json::from_value(printer(A, "MK4", "IDLE")).unwrap()],
            Vec::new(),
        )),
        auth(),
    );
    assert_eq!(wait, Duration::from_secs(5), "the active poll interval");
}

#[test]
fn messages_the_gateway_will_not_run_are_answered_job_reasons_included() {
    let mut b = Bridge::new("");
    b.poll_settled(&[printer(A, "MK4", "IDLE")]);
    let msg = |topic: &str, payload: &str| Incoming {
        topic: topic.into(),
        payload: payload.as_bytes().to_vec().into(),
        retain: false,
        generation: 1,
    };
    let reason = b.core.refuse(
        &msg(
            "pc/mk4/job/reason",
            r#"{"tags": ["WARPING"], "transaction": "r1"}"#,
        ),
        ErrorCode::ConnectError,
        "the gateway is stopping",
    );
    let Some(Message::Event { topic, payload }) = reason else {
        panic!("a reply");
    };
    assert_eq!(topic, "pc/mk4/command/response");
    let reply: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(reply["transaction"], "r1");
    assert_eq!(reply["command"], "SET_JOB_REASON");
    assert_eq!(reply["code"], "CONNECT_ERROR");
    let busy = b
        .core
        .refuse(
            &msg("pc/mk4/command", "not json {"),
            ErrorCode::RateLimited,
            "busy",
        )
        .unwrap();
    let Message::Event { payload, .. } = busy else {
        panic!("a reply")
    };
    let reply: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(reply["code"], "RATE_LIMITED");
    assert!(
        b.core
            .refuse(&msg("pc/mk4/state", "x"), ErrorCode::Expired, "")
            .is_none()
    );
}

#[test]
fn a_picture_read_that_never_answered_does_not_stop_its_camera() {
    let mut b =
        Bridge::new("[camera]\nenabled = true\ninterval = \"10s\"\nidle_interval = \"10s\"");
    let first = b.poll(&[printer(A, "MK4", "IDLE")]);
    let mut snapshot = None;
    for read in first.reads {
        let result = match &read {
            Read::Cameras { .. } => ReadResult::Cameras(Ok(serde_json::from_value(
                json!({"cameras": [{"id": 5, "name": "Top"}]}),
            )
            .unwrap())),
            Read::Feed { .. } => ReadResult::Feed(Ok(FeedBatch {
                events: Vec::new(),
                server_now: None,
                capped: false,
            })),
            Read::Version => ReadResult::Version(Ok(Default::default())),
            Read::PrinterTypes => ReadResult::PrinterTypes(Ok(Default::default())),
            _ => continue,
        };
        let out = b.answer(read, result);
        snapshot = snapshot.or(out
            .reads
            .into_iter()
            .find(|r| matches!(r, Read::Snapshot { .. })));
    }
    let snapshot = snapshot.expect("the camera's picture is asked for once it is listed");
    // The read's task died (the shell reports it as failed): the camera is asked again
    // when its interval comes round.
    b.answer(
        snapshot.clone(),
        ReadResult::failed(
            &snapshot,
            ConnectError::Transport("the read stopped".into()),
        ),
    );
    b.advance(10);
    let out = b.poll(&[printer(A, "MK4", "IDLE")]);
    assert!(out.reads.contains(&snapshot), "{:?}", out.reads);
}

#[test]
fn a_job_the_list_never_showed_running_is_announced_too() {
    let mut b = Bridge::new("");
    let mut idle = printer(A, "MK4", "IDLE");
    idle["job_info"] = json!({"id": 6, "state": "FIN_OK"});
    b.poll_settled(std::slice::from_ref(&idle));
    // Job 7 started and ended between two polls: the list shows it over at once.
    idle["job_info"] = json!({"id": 7, "state": "FIN_ERROR"});
    let out = b.poll(std::slice::from_ref(&idle));
    assert!(out.reads.contains(&jobs_read(Some(6))), "{:?}", out.reads);
    let list = vec![job(6, JobState::FinOk), job(7, JobState::FinError)];
    let done = b.answer(jobs_read(Some(6)), ReadResult::Jobs(Ok(list)));
    let ends = done.events("pc/mk4/job/finished");
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0]["job_id"], 7);
    assert_eq!(ends[0]["event_type"], "FIN_ERROR");
    let again = b.poll_settled(&[idle]);
    assert!(again.events("pc/mk4/job/finished").is_empty());
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

#[test]
fn the_previous_jobs_objects_are_never_offered_or_cancelled() {
    let mut b = Bridge::new("");
    let out = b.poll(&[printing(A, "MK4", 7)]);
    b.answer_jobs_then_settle(out.reads, with_objects(7, &["old_a"]));
    // Job 8 starts; its detail is not read yet.
    let out = b.poll(&[printing(A, "MK4", 8)]);
    let job = out.payload("pc/mk4/job").unwrap();
    assert_eq!(job["id"], 8);
    assert_eq!(job["cancelable_objects"], json!([]));
    let Prepared::Reply(Message::Event { payload, .. }) = b.command(
        "pc/mk4/command",
        r#"{"command": "CANCEL_OBJECT", "kwargs": {"object_name": "old_a"}}"#,
    ) else {
        panic!("refused here")
    };
    let reply: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(reply["code"], "INVALID_ARGUMENT");
}

#[test]
fn an_accepted_command_keeps_the_jobs_detail_until_it_is_read_again() {
    let mut b = Bridge::new("");
    let out = b.poll(&[printing(A, "MK4", 7)]);
    b.answer_jobs_then_settle(out.reads, with_objects(7, &["a", "b"]));
    let Prepared::Run(job) = b.command(
        "pc/mk4/command",
        r#"{"command": "CANCEL_OBJECT", "kwargs": {"object_name": "a"}}"#,
    ) else {
        panic!("runs")
    };
    let CommandTask::Command { req, .. } = &job.task else {
        panic!("a command")
    };
    assert_eq!(req.kwargs["object_id"], 70);
    b.core.command_done(
        CommandDone {
            printer_id: job.printer_id.clone(),
            uuid: job.uuid.clone(),
            reply: CommandReply::ok(req, Some(1)),
            replied: false,
            supported: None,
            outcome: Outcome::Accepted,
        },
        b.now,
    );
    b.take();
    let mut moved = printing(A, "MK4", 7);
    moved["job_info"]["progress"] = json!(20.0);
    let out = b.poll(&[moved]);
    assert!(out.reads.contains(&job_read(7)), "read again");
    let job = out.payload("pc/mk4/job").unwrap();
    assert_eq!(
        job["cancelable_objects"].as_array().map(Vec::len),
        Some(2),
        "the detail read before is still shown: {job}"
    );
}

#[test]
fn a_camera_gone_from_connect_takes_only_its_own_entity() {
    let mut b = Bridge::new("[camera]\nenabled = true");
    let first = b.poll(&[printer(A, "MK4", "IDLE")]);
    let mut snapshots = Vec::new();
    for read in first.reads {
        let result = match &read {
            Read::Cameras { .. } => ReadResult::Cameras(Ok(serde_json::from_value(json!(
                {"cameras": [{"id": 1, "name": "Top"}, {"id": 2, "name": "Side"}]}
            ))
            .unwrap())),
            Read::Feed { .. } => ReadResult::Feed(Ok(FeedBatch {
                events: Vec::new(),
                server_now: None,
                capped: false,
            })),
            Read::Supported { .. } => ReadResult::Supported(Ok(Default::default())),
            _ => continue,
        };
        snapshots.extend(
            b.answer(read, result)
                .reads
                .into_iter()
                .filter(|r| matches!(r, Read::Snapshot { .. })),
        );
    }
    let gone = snapshots
        .iter()
        .find(|r| matches!(r, Read::Snapshot { camera, .. } if camera == "2"))
        .unwrap()
        .clone();
    let out = b.answer(
        gone,
        ReadResult::Snapshot(Err(ConnectError::Api {
            status: 404,
            code: None,
            message: "gone".into(),
            retry_after: None,
            body: None,
        })),
    );
    assert!(
        out.messages.contains(&Message::Forget {
            topic: "pc/mk4/camera/2".into()
        }),
        "its last picture is not sent again"
    );
    // The next poll lists the cameras again; meanwhile both entities stay.
    let out = b.poll(&[printer(A, "MK4", "IDLE")]);
    assert!(out.reads.contains(&Read::Cameras { uuid: A.into() }));
    assert!(
        !out.topics().iter().any(|t| t.contains("homeassistant")),
        "{:?}",
        out.topics()
    );
    let listed = b.answer(
        Read::Cameras { uuid: A.into() },
        ReadResult::Cameras(Ok(serde_json::from_value(json!(
            {"cameras": [{"id": 1, "name": "Top"}]}
        ))
        .unwrap())),
    );
    let device = listed
        .payload("homeassistant/device/prusa_connect_00000000-0000-4000-8000-0000000000aa/config")
        .expect("discovery without the camera that went");
    let device = crate::discovery::long_form::long_form(&device);
    let components = device["components"].as_object().unwrap();
    assert!(components.contains_key("camera_1") && !components.contains_key("camera_2"));
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

#[test]
fn an_idle_fleets_feeds_are_read_every_interval_at_most_three_a_poll() {
    let mut b = Bridge::new("");
    let fleet = idle_fleet(50);
    b.poll_settled(&fleet);
    let mut last: std::collections::HashMap<String, f64> = Default::default();
    let mut gaps = Vec::new();
    let mut per_poll = Vec::new();
    // 40 idle polls of 30 s: two feed intervals of 10 minutes.
    for _ in 0..40 {
        b.advance(30);
        let out = b.poll(&fleet);
        let reads = feed_reads(&out);
        per_poll.push(reads.len());
        for uuid in reads {
            if let Some(at) = last.insert(uuid.clone(), b.wall) {
                gaps.push(b.wall - at);
            }
            let read = Read::Feed {
                uuid,
                from: Some(0.0),
                rewound: false,
            };
            let wall = b.wall;
            b.answer(read, empty_feed(wall));
        }
    }
    assert_eq!(last.len(), 50, "every printer's feed is read");
    assert!(per_poll.iter().all(|n| *n <= 3), "{per_poll:?}");
    assert!(gaps.iter().all(|g| (570.0..=630.0).contains(g)), "{gaps:?}");
    let total: usize = per_poll.iter().sum();
    // The first round is spread over the first 10 minutes, then one read per printer each.
    assert!((95..=105).contains(&total), "{total} reads: {per_poll:?}");
    // Off (`feed_interval = "0s"`): no scheduled read at all.
    let mut b = Bridge::new("");
    b.core.s.feed_interval = Duration::ZERO;
    b.poll_settled(&fleet);
    for _ in 0..40 {
        b.advance(30);
        assert!(feed_reads(&b.poll(&fleet)).is_empty());
    }
}

#[test]
fn a_job_only_the_feed_names_is_announced_once_from_the_job_list() {
    let mut b = Bridge::new("");
    let idle = printer(A, "MK4", "IDLE");
    // A new printer without a job: the first read of its job list places the boundary (jobs
    // that ended before are never announced).
    let first = b.poll(std::slice::from_ref(&idle));
    assert!(first.reads.contains(&jobs_read(None)));
    let out = b.answer(
        jobs_read(None),
        ReadResult::Jobs(Ok(vec![job(11, JobState::FinOk)])),
    );
    assert!(out.events("pc/mk4/job/finished").is_empty());
    let others = first.reads.into_iter().filter(|r| *r != jobs_read(None));
    b.settle(others.collect());
    b.advance(30);
    b.poll_settled(std::slice::from_ref(&idle));
    // Job 12 started and ended between two polls; the list never showed it. The feed read on
    // schedule names it.
    b.advance(600);
    let out = b.poll(std::slice::from_ref(&idle));
    assert_eq!(feed_reads(&out), [A]);
    let event = |name: &str, created: f64| {
        FeedEvent::from_value(json!({"event": name, "created": created, "job_id": 12})).unwrap()
    };
    let batch = FeedBatch {
        events: vec![
            event("JOB_INFO", b.wall - 20.0),
            event("JOB_INFO", b.wall - 5.0),
        ],
        server_now: Some(b.wall),
        capped: false,
    };
    let feed = Read::Feed {
        uuid: A.into(),
        from: Some(0.0),
        rewound: false,
    };
    let out = b.answer(feed, ReadResult::Feed(Ok(batch)));
    assert_eq!(out.events("pc/mk4/event").len(), 2);
    assert!(out.reads.contains(&jobs_read(Some(11))), "{:?}", out.reads);
    let list = vec![job(11, JobState::FinOk), job(12, JobState::FinError)];
    let out = b.answer(jobs_read(Some(11)), ReadResult::Jobs(Ok(list.clone())));
    let ends = out.events("pc/mk4/job/finished");
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0]["job_id"], 12);
    assert_eq!(ends[0]["event_type"], "FIN_ERROR");
    // The same list again (another feed event, a restart): nothing.
    assert!(
        b.answer(jobs_read(Some(12)), ReadResult::Jobs(Ok(list.clone())))
            .events("pc/mk4/job/finished")
            .is_empty()
    );
    let mut b = Bridge::with_memory("", b.core.memory());
    let out = b.poll(std::slice::from_ref(&idle));
    assert!(out.reads.contains(&jobs_read(Some(12))));
    let out = b.answer(jobs_read(Some(12)), ReadResult::Jobs(Ok(list)));
    assert!(out.events("pc/mk4/job/finished").is_empty());
}

#[test]
fn jobs_that_ended_while_the_gateway_was_stopped_are_announced_in_order_after_the_restart() {
    let mut b = Bridge::new("");
    b.poll_settled(&[printing(A, "MK4", 20)]);
    // Stopped; meanwhile 20 ended, 21 and 22 ran. The list shows 22 ended.
    let mut b = Bridge::with_memory("", b.core.memory());
    let mut idle = printer(A, "MK4", "FINISHED");
    idle["job_info"] = json!({"id": 22, "state": "FIN_STOPPED"});
    let out = b.poll(std::slice::from_ref(&idle));
    assert!(out.reads.contains(&jobs_read(Some(20))), "{:?}", out.reads);
    assert!(
        !out.reads
            .iter()
            .any(|r| matches!(r, Read::Job { job: 20 | 21, .. })),
        "the job list says how they ended: {:?}",
        out.reads
    );
    // The detail of the job the list shows (22) is read for `P/job`; it does not announce
    // the job ahead of the older ones.
    let detail = b.answer(
        job_read(22),
        ReadResult::Job(Box::new(Ok(job(22, JobState::FinStopped)))),
    );
    assert!(detail.events("pc/mk4/job/finished").is_empty());
    let list = vec![
        job(19, JobState::FinOk),
        job(20, JobState::FinOk),
        job(21, JobState::FinError),
        job(22, JobState::FinStopped),
    ];
    let out = b.answer(jobs_read(Some(20)), ReadResult::Jobs(Ok(list)));
    let ends: Vec<(Value, Value)> = out
        .events("pc/mk4/job/finished")
        .into_iter()
        .map(|e| (e["job_id"].clone(), e["event_type"].clone()))
        .collect();
    assert_eq!(
        ends,
        [
            (json!(20), json!("FIN_OK")),
            (json!(21), json!("FIN_ERROR")),
            (json!(22), json!("FIN_STOPPED"))
        ]
    );
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

#[test]
fn each_new_notification_is_published_once_and_none_again_after_a_restart() {
    let mut b = Bridge::new("");
    let unseen = |n: u64| ReadResult::Unseen(Ok(crate::connect::model::Unseen { unseen: n }));
    // The unseen count is read at start (0 here); the first read of the list only marks what
    // is there.
    let out = b.poll_settled(&[printer(A, "MK4", "IDLE")]);
    assert_eq!(out.reads, [Read::Notifications { after: None }]);
    let first = vec![notification(2, A), notification(1, A)];
    let out = b.answer(
        Read::Notifications { after: None },
        ReadResult::Notifications(Ok(first.clone())),
    );
    assert!(out.events("pc/bridge/notification").is_empty());
    // Unchanged count: no read.
    assert!(b.answer(Read::Unseen, unseen(0)).reads.is_empty());
    let out = b.answer(Read::Unseen, unseen(1));
    assert_eq!(out.reads, [Read::Notifications { after: Some(2) }]);
    let mut list = vec![notification(3, A)];
    list.extend(first);
    let out = b.answer(
        Read::Notifications { after: Some(2) },
        ReadResult::Notifications(Ok(list.clone())),
    );
    let published = out.events("pc/bridge/notification");
    assert_eq!(published.len(), 1);
    let n = &published[0];
    assert_eq!(n["id"], 3);
    assert_eq!(n["printer"], "mk4");
    assert_eq!(n["printer_uuid"], A);
    assert_eq!(n["severity"], "ERROR");
    assert_eq!(n["job_id"], 30);
    assert_eq!(n["text"], "print 3 failed");
    assert_eq!(n["event_type"], "notification");
    // The count moves again while the list is read: it is read once more after.
    let out = b.answer(Read::Unseen, unseen(2));
    assert_eq!(out.reads, [Read::Notifications { after: Some(3) }]);
    assert!(
        b.answer(Read::Unseen, unseen(3)).reads.is_empty(),
        "one read at a time"
    );
    let out = b.answer(
        Read::Notifications { after: Some(3) },
        ReadResult::Notifications(Ok(list.clone())),
    );
    assert_eq!(out.reads, [Read::Notifications { after: Some(3) }]);
    let mut newer = vec![notification(4, B)];
    newer.extend(list.clone());
    let out = b.answer(
        Read::Notifications { after: Some(3) },
        ReadResult::Notifications(Ok(newer.clone())),
    );
    let published = out.events("pc/bridge/notification");
    assert_eq!(published.len(), 1);
    assert_eq!(published[0]["id"], 4);
    assert_eq!(published[0]["printer"], Value::Null, "B is not bridged");
    let list = newer;
    // A restart reads the list again (the count is new to it) and publishes nothing.
    let mut b = Bridge::with_memory("", b.core.memory());
    let out = b.poll_settled(&[printer(A, "MK4", "IDLE")]);
    assert_eq!(out.reads, [Read::Notifications { after: Some(4) }]);
    let out = b.answer(
        Read::Notifications { after: Some(4) },
        ReadResult::Notifications(Ok(list)),
    );
    assert!(out.events("pc/bridge/notification").is_empty());
}

#[test]
fn jobs_ended_while_stopped_are_all_announced_after_an_upgrade_from_an_older_state_file() {
    // A state file written before the job list was read: no `jobs_seen_up_to`.
    let mut b = Bridge::new("");
    b.poll_settled(&[printing(A, "MK4", 7)]);
    let mut memory = b.core.memory();
    memory.printers.get_mut(A).unwrap().jobs.seen_up_to = None;
    let mut b = Bridge::with_memory("", memory);
    // While it was stopped 7, 8 and 9 ended; the list shows 9.
    let mut idle = printer(A, "MK4", "FINISHED");
    idle["job_info"] = json!({"id": 9, "state": "FIN_OK"});
    let out = b.poll(std::slice::from_ref(&idle));
    assert!(out.reads.contains(&jobs_read(Some(7))), "{:?}", out.reads);
    let list = vec![
        job(7, JobState::FinOk),
        job(8, JobState::FinError),
        job(9, JobState::FinOk),
    ];
    let out = b.answer(jobs_read(Some(7)), ReadResult::Jobs(Ok(list)));
    let ids: Vec<Value> = out
        .events("pc/mk4/job/finished")
        .iter()
        .map(|e| e["job_id"].clone())
        .collect();
    assert_eq!(ids, [json!(7), json!(8), json!(9)]);
}

#[test]
fn a_job_list_that_cannot_be_read_is_tried_again_with_backoff() {
    let mut b = Bridge::new("");
    b.poll_settled(&[printing(A, "MK4", 3)]);
    let mut idle = printer(A, "MK4", "FINISHED");
    idle["job_info"] = json!({"id": 3, "state": "FIN_OK"});
    let mut out = b.poll(std::slice::from_ref(&idle));
    let mut tried_at = Vec::new();
    for _ in 0..400 {
        if out.reads.contains(&jobs_read(Some(3))) {
            tried_at.push(b.wall - WALL);
            let error = ConnectError::Transport("reset".into());
            b.answer(jobs_read(Some(3)), ReadResult::Jobs(Err(error)));
        }
        b.advance(5);
        out = b.poll(std::slice::from_ref(&idle));
    }
    let gaps: Vec<f64> = tried_at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 5, "{tried_at:?}");
    assert!(
        gaps.windows(2).all(|g| g[1] >= g[0]),
        "never sooner: {gaps:?}"
    );
    assert!(
        gaps.iter().any(|g| *g >= 300.0),
        "up to 5 minutes apart: {gaps:?}"
    );
    assert!(gaps.iter().all(|g| *g <= 305.0), "{gaps:?}");
}

#[path = "tests_controls.rs"]
mod controls;

#[path = "tests_live.rs"]
mod live;

#[path = "tests_edges.rs"]
mod edges;
