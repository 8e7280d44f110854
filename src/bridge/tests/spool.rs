use super::*;
use crate::spoolman::{Report, Spool, SpoolmanEvent, Use};

const SPOOLMAN: &str = "[spoolman]\nurl = \"http://127.0.0.1:7912\"";

fn spool(id: u64, name: &str, remaining: f64) -> Spool {
    Spool {
        id,
        label: format!("#{id} {name}"),
        remaining_g: Some(remaining),
        used_g: Some(1000.0 - remaining),
    }
}

/// The "Spool" select's options in printer A's last discovery in `out`.
fn options(out: &Out) -> Option<Value> {
    let topic = "homeassistant/device/prusa_connect_00000000-0000-4000-8000-0000000000aa/config";
    out.payload(topic).map(|d| {
        crate::discovery::long_form::long_form(&d)["components"]["spool"]["options"].clone()
    })
}

/// An ended job of `grams` (its record's weight).
fn ended(id: i64, state: JobState, grams: f64) -> Job {
    let mut j = job(id, state);
    j.data = Some(crate::connect::model::JobData {
        weight: Some(grams),
        ..Default::default()
    });
    j
}

#[test]
fn a_printers_spool_is_chosen_on_its_topic_kept_and_shown() {
    let mut b = Bridge::new(SPOOLMAN);
    b.poll_settled(&[printer(A, "MK4", "IDLE")]);
    let listed = SpoolmanEvent::Listed(Ok(vec![
        spool(3, "PLA Black", 640.0),
        spool(4, "PETG", 1000.0),
    ]));
    b.core.on_spoolman(listed);
    let out = b.take();
    assert_eq!(
        options(&out).unwrap(),
        json!(["No spool", "#3 PLA Black", "#4 PETG"])
    );
    b.core.select_spool("mk4", b"3", WALL);
    let state = b.take().payload("pc/mk4/state").unwrap();
    assert_eq!(
        (state["spool_id"].clone(), state["spool"].clone()),
        (json!(3), json!("#3 PLA Black"))
    );
    assert_eq!(state["spool_remaining_g"], 640.0);
    // A payload naming no spool changes nothing; the select's label is taken.
    b.core.select_spool("mk4", b"a spool", WALL);
    assert!(b.take().payload("pc/mk4/state").is_none());
    b.core.select_spool("mk4", b"#4 PETG", WALL);
    assert_eq!(b.take().payload("pc/mk4/state").unwrap()["spool_id"], 4);
    // Kept across a restart.
    let memory = b.core.state_file();
    assert_eq!(memory.printers[A].spool, Some(4));
    let mut b = Bridge::with_memory(SPOOLMAN, memory);
    b.poll_settled(&[printer(A, "MK4", "IDLE")]);
    b.core
        .on_spoolman(SpoolmanEvent::Listed(Ok(vec![spool(4, "PETG", 1000.0)])));
    assert_eq!(
        b.take().payload("pc/mk4/state").unwrap()["spool"],
        "#4 PETG"
    );
    // Spoolman lists it no longer (archived): its id stays, its label goes.
    b.core.on_spoolman(SpoolmanEvent::Listed(Ok(vec![spool(
        3,
        "PLA Black",
        640.0,
    )])));
    let state = b.take().payload("pc/mk4/state").unwrap();
    assert_eq!(
        (state["spool_id"].clone(), state["spool"].clone()),
        (json!(4), Value::Null)
    );
    // A spool chosen before Spoolman lists it gets its label with the list, whose discovery
    // (the select's new option) goes first.
    b.core.select_spool("mk4", b"5", WALL);
    b.take();
    b.core
        .on_spoolman(SpoolmanEvent::Listed(Ok(vec![spool(5, "ASA", 900.0)])));
    let out = b.take();
    let at = |prefix: &str| {
        out.topics()
            .iter()
            .position(|t| t.starts_with(prefix))
            .unwrap()
    };
    assert!(
        at("retain homeassistant/device/") < at("retain pc/mk4/state"),
        "{:?}",
        out.topics()
    );
    assert_eq!(out.payload("pc/mk4/state").unwrap()["spool"], "#5 ASA");
    // An empty payload (the select's "No spool", a retained choice removed): none.
    b.core.select_spool("mk4", b"", WALL);
    assert_eq!(
        b.take().payload("pc/mk4/state").unwrap()["spool_id"],
        Value::Null
    );
    assert_eq!(b.core.state_file().printers[A].spool, None);
}

#[test]
fn an_ended_jobs_filament_goes_to_the_printers_spool_once() {
    let mut b = Bridge::new(SPOOLMAN);
    b.poll_settled(&[printing(A, "MK4", 7)]);
    b.core.select_spool("mk4", b"3", WALL);
    b.take();
    let mut idle = printer(A, "MK4", "IDLE");
    idle["job_info"] = json!({"id": 7, "state": "FIN_OK"});
    b.poll(std::slice::from_ref(&idle));
    let done = b.answer(
        jobs_read(Some(7)),
        ReadResult::Jobs(Ok(vec![ended(7, JobState::FinOk, 12.5)])),
    );
    assert_eq!(done.events("pc/mk4/job/finished").len(), 1);
    let expected = Use {
        printer: A.into(),
        job: 7,
        spool: 3,
        grams: 12.5,
        baseline: None,
    };
    assert_eq!(b.core.take_spool_uses(), std::slice::from_ref(&expected));
    b.advance(30);
    b.poll_settled(std::slice::from_ref(&idle));
    assert!(b.core.take_spool_uses().is_empty());
    // How the reports stand shows in bridge/info.
    b.core.on_spoolman(SpoolmanEvent::Reported(Report {
        settled: expected,
        given_up: None,
    }));
    let info = b.take().payload("pc/bridge/info").unwrap();
    assert_eq!(info["spoolman"]["reported"], 1);
    assert_eq!(info["spoolman"]["url"], "http://127.0.0.1:7912");
}

#[test]
fn without_spoolman_there_is_no_spool() {
    let mut b = Bridge::new("");
    let out = b.poll_settled(&[printing(A, "MK4", 7)]);
    assert_eq!(options(&out), Some(Value::Null), "no select");
    b.core.select_spool("mk4", b"3", WALL);
    assert!(b.take().messages.is_empty());
    assert_eq!(b.core.state_file().printers[A].spool, None);
    assert!(
        out.payload("pc/bridge/info")
            .unwrap()
            .get("spoolman")
            .is_none()
    );
}
