use super::*;

/// The `today` of printer A's last `P/stats` in `out`.
fn today(out: &Out) -> Option<Value> {
    out.payload("pc/mk4/stats").map(|s| s["today"].clone())
}

#[test]
fn the_days_use_counts_the_time_in_each_state_in_pieces_and_skips_gaps() {
    let mut b = Bridge::new("");
    let out = b.poll_settled(&[printing(A, "MK4", 7)]);
    assert_eq!(today(&out).unwrap()["utilization"], Value::Null);
    // Polls every 60 s: counted every 15 minutes, not at every look.
    let mut published = Vec::new();
    for _ in 0..30 {
        b.advance(60);
        published.extend(today(&b.poll_settled(&[printing(A, "MK4", 7)])));
    }
    assert_eq!(published.len(), 2, "{published:?}");
    assert_eq!(published[0]["printing_s"], 900);
    assert_eq!(published[1]["printing_s"], 1800);
    // A change of state counts at once.
    b.advance(30);
    let idle = printer(A, "MK4", "IDLE");
    let out = b.poll_settled(std::slice::from_ref(&idle));
    assert_eq!(today(&out).unwrap()["printing_s"], 1830);
    b.advance(90);
    let out = b.poll_settled(&[printing(A, "MK4", 8)]);
    let day = today(&out).unwrap();
    assert_eq!(
        (day["idle_s"].clone(), day["printing_s"].clone()),
        (json!(90), json!(1830))
    );
    assert_eq!(day["utilization"], 95.3);
    assert_eq!(day["date"], "2027-01-15");
    // Not seen for an hour (Connect away): that hour is nobody's.
    b.advance(3600);
    let out = b.poll_settled(std::slice::from_ref(&idle));
    assert_eq!(today(&out).unwrap()["printing_s"], 1830);
    // Kept across a restart; the time the gateway was stopped is not counted.
    let stats = b.core.state_file().printers[A].stats.days.today.clone();
    assert_eq!(stats.idle_s, 90.0);
    let mut b = Bridge::with_memory("", b.core.state_file());
    b.advance(7200);
    let out = b.poll_settled(std::slice::from_ref(&idle));
    assert_eq!(today(&out).unwrap()["printing_s"], 1830);
    let mut last = None;
    for _ in 0..15 {
        b.advance(60);
        last = today(&b.poll_settled(std::slice::from_ref(&idle))).or(last);
    }
    assert_eq!(last.unwrap()["idle_s"], 990);
}

#[test]
fn a_new_printers_totals_are_seeded_from_connects_statistics_once_across_restarts() {
    const SEEDED: &str = "[stats]\nbackfill = \"90d\"";
    let asked: Vec<Read> = StatsKind::ALL.map(stats_read).to_vec();
    let stats_in = |reads: &[Read]| -> Vec<Read> {
        (reads.iter().filter(|r| matches!(r, Read::Stats { .. })))
            .cloned()
            .collect()
    };
    let mut b = Bridge::new(SEEDED);
    // Asked for once the printer is known (its start-up reads back), not before.
    let first = b.poll(&[printer(A, "MK4", "IDLE")]);
    assert!(stats_in(&first.reads).is_empty(), "{:?}", first.reads);
    b.settle(first.reads);
    b.advance(10);
    let next = b.poll(&[printer(A, "MK4", "IDLE")]);
    assert_eq!(stats_in(&next.reads), asked);
    let answer =
        |b: &mut Bridge, kind, result| b.answer(stats_read(kind), ReadResult::Stats(result));
    let jobs = json!({"series": [{"name": "FIN_OK", "data": [4, 1]},
        {"name": "FIN_STOPPED", "data": [0, 1]}]});
    answer(&mut b, StatsKind::Jobs, Ok(jobs));
    let material = json!({"data": [{"name": "PLA", "value": 250}]});
    let seeded = answer(&mut b, StatsKind::Material, Ok(material));
    // The third fails: asked again at the next start, the two others not.
    let reset = Err(ConnectError::Transport("connection reset".into()));
    let out = answer(&mut b, StatsKind::Printing, reset);
    assert!(out.payload("pc/mk4/stats").is_none(), "nothing new");
    let stats = seeded
        .payload("pc/mk4/stats")
        .expect("P/stats with the seed");
    assert_eq!(
        (stats["ok"].clone(), stats["stopped"].clone()),
        (json!(5), json!(1))
    );
    assert_eq!(stats["filament_by_material"], json!({"PLA": 250.0}));
    assert_eq!(
        stats["seeded"]["read"],
        json!(["jobs_success", "material_quantity"])
    );
    assert_eq!(stats["seeded"]["to"], "2027-01-14T23:59:59Z");

    let mut b = Bridge::with_memory(SEEDED, b.core.state_file());
    b.advance(600);
    let first = b.poll(&[printer(A, "MK4", "IDLE")]);
    b.settle(first.reads);
    b.advance(10);
    let again = b.poll(&[printer(A, "MK4", "IDLE")]);
    // Over the same range as before, not from this start.
    assert_eq!(stats_in(&again.reads), [stats_read(StatsKind::Printing)]);
    let printing = json!({"data": [{"name": "printing", "value": 7200},
        {"name": "not_printing", "value": 1}]});
    let out = answer(&mut b, StatsKind::Printing, Ok(printing));
    let stats = out.payload("pc/mk4/stats").unwrap();
    assert_eq!(stats["print_s"], 7200);
    assert_eq!(stats["jobs"], 6, "the jobs are not seeded twice");
    assert_eq!(stats["seeded"]["read"].as_array().map(Vec::len), Some(3));

    let mut b = Bridge::with_memory(SEEDED, b.core.state_file());
    let first = b.poll(&[printer(A, "MK4", "IDLE")]);
    let rest = b.settle(first.reads);
    b.advance(10);
    let third = b.poll(&[printer(A, "MK4", "IDLE")]);
    assert!(stats_in(&[rest.reads, third.reads].concat()).is_empty());
}

/// Statistics that add nothing (a printer new to Connect too) still show in `P/stats`'s
/// `seeded` once all three are read, in one message.
#[test]
fn a_seeding_that_adds_nothing_shows_once_it_is_complete() {
    let mut b = Bridge::new("[stats]\nbackfill = \"90d\"");
    let first = b.poll(&[printer(A, "MK4", "IDLE")]);
    b.settle(first.reads);
    b.advance(10);
    b.poll(&[printer(A, "MK4", "IDLE")]);
    let mut published = Vec::new();
    for (kind, body) in [
        (StatsKind::Jobs, json!({"series": []})),
        (StatsKind::Material, json!({"data": []})),
        (StatsKind::Printing, json!({"data": []})),
    ] {
        let out = b.answer(stats_read(kind), ReadResult::Stats(Ok(body)));
        published.extend(out.payload("pc/mk4/stats"));
    }
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(
        published[0]["seeded"]["read"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(published[0]["jobs"], 0);
}

#[test]
fn the_state_file_is_written_from_the_registry_as_it_reads_back() {
    let mut b = Bridge::new("");
    b.poll_settled(&[printing(A, "MK4", 7)]);
    b.advance(1000);
    b.poll_settled(&[printer(A, "MK4", "IDLE")]);
    let owned = b.core.state_file();
    assert!(!owned.printers.is_empty());
    let written = serde_json::to_vec(&b.core.state_view()).unwrap();
    assert_eq!(written, serde_json::to_vec(&owned).unwrap());
    let read: StateFile = serde_json::from_slice(&written).unwrap();
    assert_eq!(read, owned);
}
