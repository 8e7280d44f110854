use super::*;

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
            "clear pc/workshop_mk4/stats",
            "clear pc/workshop_mk4/job/finished/picture",
            "clear pc/workshop_mk4/spool",
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
    let memory = b.core.state_file();
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
