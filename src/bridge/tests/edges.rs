//! Issue 22's edges in the core: no two printers on one topic id, none on the bridge's own
//! topics, a printer briefly missing from the list keeps its device, and a renamed printer's
//! thumbnail follows it.

use super::*;
use crate::bridge::settings::list_page_gap;
use crate::command::ErrorCode;
use crate::connect::model::PrinterState;

fn id_of(b: &Bridge, uuid: &str) -> Option<String> {
    b.core.registry().get(uuid)?.id().map(str::to_string)
}

fn refused(prepared: Prepared) -> Value {
    match prepared {
        Prepared::Reply(Message::Event { payload, .. }) => {
            serde_json::from_slice(&payload).unwrap()
        }
        other => panic!("expected a reply, got {other:?}"),
    }
}

/// Item 1: a name override two printers match gives neither the id (each keeps its slug),
/// and is reported; a command to the override's id reaches nobody.
#[test]
fn a_name_override_two_printers_share_is_a_clash() {
    let mut b = Bridge::new("[mqtt.printer_ids]\nMK4 = \"left\"");
    let out = b.poll_settled(&[printer(A, "MK4", "IDLE"), printer(B, "MK4", "IDLE")]);
    assert_eq!(id_of(&b, A).as_deref(), Some("mk4"));
    assert_eq!(id_of(&b, B).as_deref(), Some("mk4_0000bb"));
    assert!(
        !out.topics().iter().any(|t| t.contains("/left/")),
        "{:?}",
        out.topics()
    );
    let clashes = b.core.registry().clashes();
    assert_eq!(clashes.len(), 1);
    assert_eq!(clashes[0].uuids, [A, B]);
    assert!(clashes[0].to_string().contains("mqtt.printer_ids.\"MK4\""));
    let reply = refused(b.command("pc/left/command", "home"));
    assert_eq!(reply["code"], "UNKNOWN_PRINTER");
    // One of them goes for good: the other takes the override.
    b.advance(60);
    for _ in 0..REMOVE_AFTER_MISSING_POLLS {
        b.advance(30);
        b.poll_settled(&[printer(A, "MK4", "IDLE")]);
    }
    assert!(b.core.registry().get(B).is_none());
    assert_eq!(id_of(&b, A).as_deref(), Some("left"));
    assert!(b.core.registry().clashes().is_empty());
}

/// Item 1: an override that takes the id of a printer missing from the list leaves that
/// printer without it, across restarts; the printer gets a new id when it comes back, and
/// removing it later clears none of the override printer's topics.
#[test]
fn an_override_takes_a_missing_printers_id_for_good() {
    let mut b = Bridge::new("");
    b.poll_settled(&[printer(A, "MK4", "IDLE")]);
    assert_eq!(id_of(&b, A).as_deref(), Some("mk4"));
    let memory = b.core.state_file();
    // Restarted with B given "mk4"; A is not in the list.
    let overrides = format!("[mqtt.printer_ids]\n\"{B}\" = \"mk4\"");
    let mut b = Bridge::with_memory(&overrides, memory);
    b.poll_settled(&[printer(B, "Other", "IDLE")]);
    assert_eq!(id_of(&b, B).as_deref(), Some("mk4"));
    let memory = b.core.state_file();
    assert_eq!(memory.printers[A].id, None, "A no longer owns mk4");
    // Another restart: still B's; A comes back under a new id.
    let mut b = Bridge::with_memory(&overrides, memory);
    let out = b.poll_settled(&[printer(B, "Other", "IDLE"), printer(A, "MK4", "IDLE")]);
    assert_eq!(id_of(&b, B).as_deref(), Some("mk4"));
    assert_eq!(id_of(&b, A).as_deref(), Some("mk4_0000aa"));
    assert!(
        !out.topics().iter().any(|t| t.starts_with("clear pc/mk4/")),
        "{:?}",
        out.topics()
    );
    // A goes for good: only its own topics are cleared.
    let mut cleared = Vec::new();
    for _ in 0..REMOVE_AFTER_MISSING_POLLS + 1 {
        b.advance(30);
        let out = b.poll_settled(&[printer(B, "Other", "IDLE")]);
        cleared.extend(out.topics().into_iter().filter(|t| t.starts_with("clear")));
    }
    assert!(b.core.registry().get(A).is_none());
    assert!(
        cleared.contains(&"clear pc/mk4_0000aa/state".to_string()),
        "{cleared:?}"
    );
    assert!(
        !cleared.iter().any(|t| t.starts_with("clear pc/mk4/")),
        "{cleared:?}"
    );
}

/// Item 2: a printer called "Bridge" never publishes on the bridge's topics.
#[test]
fn a_printer_named_bridge_gets_a_suffix() {
    let mut b = Bridge::new("");
    let out = b.poll_settled(&[printer(A, "Bridge", "IDLE")]);
    assert_eq!(id_of(&b, A).as_deref(), Some("bridge_0000aa"));
    assert!(
        !out.topics()
            .iter()
            .any(|t| t.contains("pc/bridge/state") || t.contains("pc/bridge/availability")),
        "{:?}",
        out.topics()
    );
    assert_eq!(
        out.payload("pc/bridge_0000aa/availability"),
        Some(json!("online"))
    );
}

/// Item 2: a state file of an earlier version that gave a printer `bridge`: it moves to the
/// suffixed id, its stale topics under `bridge` are cleared but the bridge's own state.
#[test]
fn a_stored_bridge_id_moves_off_the_bridges_topics() {
    let mut memory = StateFile::default();
    memory.printers.insert(
        A.into(),
        PrinterRecord {
            id: Some("bridge".into()),
            id_name: Some("Bridge".into()),
            ..Default::default()
        },
    );
    let mut b = Bridge::with_memory("", memory);
    let out = b.poll_settled(&[printer(A, "Bridge", "IDLE")]);
    assert_eq!(id_of(&b, A).as_deref(), Some("bridge_0000aa"));
    let topics = out.topics();
    assert!(topics.contains(&"clear pc/bridge/availability".to_string()));
    assert!(topics.contains(&"clear pc/bridge/job".to_string()));
    assert!(
        !topics.iter().any(|t| t.contains("pc/bridge/state")),
        "{topics:?}"
    );
}

/// Item 3: three polls in a second (as after a command) do not remove a printer: it keeps
/// its device, topics and record, and a command to it is checked as for an offline printer.
/// It goes only after two `poll_interval`s.
#[test]
fn a_printer_missing_for_a_second_keeps_its_device() {
    let mut b = Bridge::new("");
    b.poll_settled(&[printer(A, "MK4", "IDLE"), printer(B, "Other", "IDLE")]);
    for _ in 0..REMOVE_AFTER_MISSING_POLLS + 2 {
        b.now += Duration::from_millis(300);
        let out = b.poll_settled(&[printer(B, "Other", "IDLE")]);
        assert!(
            !out.topics().iter().any(|t| t.starts_with("clear")),
            "{:?}",
            out.topics()
        );
    }
    assert_eq!(id_of(&b, A).as_deref(), Some("mk4"));
    let Prepared::Run(job) = b.command("pc/mk4/command", "home") else {
        panic!("a missing printer is still known");
    };
    let CommandTask::Command { state, .. } = job.task else {
        panic!("a command");
    };
    assert_eq!(state, PrinterState::Offline);
    // Back: nothing is published again (it never left).
    let back = b.poll_settled(&[printer(A, "MK4", "IDLE"), printer(B, "Other", "IDLE")]);
    assert!(back.topics().is_empty(), "{:?}", back.topics());
    // Missing for two poll intervals (30 s each) and three polls: gone.
    let mut cleared = Vec::new();
    for _ in 0..REMOVE_AFTER_MISSING_POLLS {
        b.advance(30);
        let out = b.poll_settled(&[printer(B, "Other", "IDLE")]);
        cleared.extend(out.topics().into_iter().filter(|t| t.starts_with("clear")));
    }
    assert!(b.core.registry().get(A).is_none());
    assert!(cleared.contains(&"clear pc/mk4/state".to_string()));
    let reply = refused(b.command("pc/mk4/command", "home"));
    assert_eq!(reply["code"], ErrorCode::UnknownPrinter.as_str());
}

/// Item 9: a renamed printer's thumbnail leaves the old id and is fetched for the new one.
#[test]
fn a_renamed_printers_thumbnail_follows_it() {
    let mut b = Bridge::new("");
    let mut p = printing(A, "MK4", 7);
    p["job_info"]["preview_url"] = json!("/app/jobs/7/preview.png");
    let first = b.poll(std::slice::from_ref(&p));
    let preview = first
        .reads
        .iter()
        .find(|r| matches!(r, Read::Preview { .. }))
        .cloned()
        .expect("the thumbnail is fetched");
    b.settle(first.reads);
    let shown = b.answer(preview, ReadResult::Preview(Ok(b"png".to_vec())));
    assert!(
        shown
            .topics()
            .contains(&"retain pc/mk4/job/preview".to_string())
    );
    p["name"] = json!("Left");
    let out = b.poll(std::slice::from_ref(&p));
    assert!(
        out.topics()
            .contains(&"clear pc/mk4/job/preview".to_string()),
        "{:?}",
        out.topics()
    );
    let again = out
        .reads
        .iter()
        .find(|r| matches!(r, Read::Preview { .. }))
        .cloned()
        .expect("fetched again for the new id");
    b.settle(out.reads);
    let shown = b.answer(again, ReadResult::Preview(Ok(b"png".to_vec())));
    assert!(
        shown
            .topics()
            .contains(&"retain pc/left/job/preview".to_string())
    );
}

/// Item 14: the failure reason of a job follows `commands.allow` (`SET_JOB_REASON`).
#[test]
fn a_job_reason_follows_the_allow_list() {
    let reason = r#"{"tags": ["WARPING"], "job_id": 7, "transaction": "r1"}"#;
    let mut b = Bridge::new("[commands]\nallow = [\"BEEP\"]");
    b.poll_settled(&[printer(A, "MK4", "IDLE")]);
    let reply = refused(b.command("pc/mk4/job/reason", reason));
    assert_eq!(reply["code"], "NOT_ALLOWED", "{reply}");
    assert_eq!(reply["command"], "SET_JOB_REASON");
    assert_eq!(reply["transaction"], "r1");
    // Allowed by default.
    let mut b = Bridge::new("");
    b.poll_settled(&[printer(A, "MK4", "IDLE")]);
    let Prepared::Run(job) = b.command("pc/mk4/job/reason", reason) else {
        panic!("runs by default");
    };
    assert!(matches!(job.task, CommandTask::JobReason { job_id: 7, .. }));
}

/// Item 16: while Connect has not answered since the start, a command is not refused as
/// for an unknown printer: the printers are not known yet.
#[test]
fn commands_before_connect_ever_answered_are_connect_errors() {
    let mut memory = StateFile::default();
    memory.printers.insert(
        A.into(),
        PrinterRecord {
            id: Some("mk4".into()),
            ..Default::default()
        },
    );
    let mut b = Bridge::with_memory("", memory);
    b.fail_poll(ConnectError::Transport("connection refused".into()));
    for topic in ["pc/mk4/command", "pc/other/command"] {
        let reply = refused(b.command(topic, "home"));
        assert_eq!(reply["code"], "CONNECT_ERROR", "{reply}");
        assert!(
            reply["error"]
                .as_str()
                .unwrap()
                .contains("connection refused"),
            "{reply}"
        );
    }
    // Once the list came, an id nobody has is unknown again.
    b.poll_settled(&[printer(A, "MK4", "IDLE")]);
    let reply = refused(b.command("pc/other/command", "home"));
    assert_eq!(reply["code"], "UNKNOWN_PRINTER", "{reply}");
}

/// Item 6: a printer whose JSON Connect sends unreadable goes `offline` (the reason in
/// `bridge/info`), its feed is still read, and it is `online` again once readable.
#[test]
fn an_unreadable_printer_is_offline_and_its_feed_still_read() {
    use crate::connect::client::RejectedPrinter;
    let mut b = Bridge::new("");
    b.poll_settled(&[printer(A, "MK4", "PRINTING")]);
    let rejected = vec![RejectedPrinter {
        uuid: Some(A.into()),
        error: "invalid type: string \"hot\", expected f64".into(),
    }];
    b.advance(1);
    b.core.on_list(
        b.now,
        b.wall,
        b.now,
        Ok((Vec::new(), rejected.clone())),
        auth(),
    );
    let out = b.take();
    assert_eq!(
        out.payload("pc/mk4/availability"),
        Some(json!("offline")),
        "{:?}",
        out.topics()
    );
    let info = out.payload("pc/bridge/info").unwrap();
    assert!(
        info["rejected_printers"][0]
            .as_str()
            .unwrap()
            .contains("expected f64"),
        "{info}"
    );
    let feed = out
        .reads
        .iter()
        .find(|r| matches!(r, Read::Feed { uuid, .. } if uuid == A))
        .cloned()
        .expect("its feed is read");
    // The feed read's result does not bring `online` back.
    let after = b.settle(vec![feed]);
    assert!(
        !after.topics().iter().any(|t| t.contains("availability")),
        "{:?}",
        after.topics()
    );
    // Still unreadable: nothing again.
    b.advance(1);
    b.core
        .on_list(b.now, b.wall, b.now, Ok((Vec::new(), rejected)), auth());
    assert!(b.take().payload("pc/mk4/availability").is_none());
    let back = b.poll_settled(&[printer(A, "MK4", "PRINTING")]);
    assert_eq!(back.payload("pc/mk4/availability"), Some(json!("online")));
}

/// A list of many pages is polled no more often than half the request budget allows: 250
/// printers (3 pages) at one request a second wait 6 s between polls, not the 5 s that a
/// busy printer asks for.
#[test]
fn a_long_list_is_polled_within_half_the_request_budget() {
    let mut fleet = idle_fleet(249);
    fleet.push(printing(A, "Busy", 7));
    let printers: Vec<Printer> = fleet
        .iter()
        .map(|p| serde_json::from_value(p.clone()).unwrap())
        .collect();
    let wait = |budget: f64| {
        let settings = Settings {
            list_page_gap: list_page_gap(budget),
            ..settings("")
        };
        let mut core = Core::new(settings, StateFile::default());
        let (now, listed) = (Instant::now(), Ok((printers.clone(), Vec::new())));
        core.on_list(now, WALL, now, listed, auth())
    };
    assert_eq!(wait(1.0), Duration::from_secs(6));
    assert_eq!(wait(0.0), Duration::from_secs(5));
    // 250 printers at the default 5 a second: 3 pages take 1.2 s of the 5.
    assert_eq!(wait(5.0), Duration::from_secs(5));
}
