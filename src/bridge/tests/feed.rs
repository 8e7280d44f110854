use super::*;

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
            Read::Storages { uuid: A.into() },
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
            "retain homeassistant/device/prusa_connect_00000000-0000-4000-8000-0000000000aa/config",
            "retain pc/busy_mk4/state",
            "retain pc/busy_mk4/stats",
            "retain pc/busy_mk4/availability",
            "retain pc/bridge/info",
            "retain pc/bridge/stats",
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
    let mut memory = StateFile::default();
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
            "retain pc/bridge/info",
            "retain pc/bridge/stats",
        ]
    );
    assert_eq!(out.payload("pc/left/availability"), Some(json!("offline")));
    let info = out.payload("pc/bridge/info").unwrap();
    assert_eq!(info["connect"]["reachable"], false);
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
    b.core.settings.feed_interval = Duration::ZERO;
    b.poll_settled(&fleet);
    for _ in 0..40 {
        b.advance(30);
        assert!(feed_reads(&b.poll(&fleet)).is_empty());
    }
}

/// The printer's model and latest firmware come from the printer types: its first
/// publication waits for them, so `P/state` is not published twice in its first seconds.
#[test]
fn a_new_printers_first_publication_waits_for_the_printer_types() {
    let mut b = Bridge::new("");
    let mut mk4 = printer(A, "MK4", "IDLE");
    mk4["printer_type"] = json!("1.4.0");
    let first = b.poll(&[mk4]);
    let (types, rest): (Vec<Read>, Vec<Read>) = first
        .reads
        .into_iter()
        .partition(|r| *r == Read::PrinterTypes);
    assert_eq!(types.len(), 1);
    let out = b.settle(rest);
    assert!(
        out.payload("pc/mk4/state").is_none(),
        "published before the types: {:?}",
        out.topics()
    );
    let types = serde_json::from_value(json!({"printer_types": [
        {"id": "1.4.0", "name": "Original Prusa MK4", "support": {"stable": "6.3.2"}}
    ]}))
    .unwrap();
    let out = b.answer(Read::PrinterTypes, ReadResult::PrinterTypes(Ok(types)));
    assert_eq!(
        out.payload("pc/mk4/state").unwrap()["firmware_latest"],
        "6.3.2"
    );
    assert_eq!(out.payload("pc/mk4/availability"), Some(json!("online")));
}

/// `bridge/info.known` says how far a farm's start-up reads are: the request budget of a
/// poll reads the supported commands of 64 printers, the rest (and the free space) follow at
/// the next polls. It is shown at the end of a poll (a farm's start would publish it once per
/// printer else).
#[test]
fn bridge_info_says_how_many_printers_are_fully_known() {
    let mut b = Bridge::new("");
    let first = b.poll_settled(&idle_fleet(70));
    let known = first.payload("pc/bridge/info").unwrap()["known"].clone();
    let (done, all) = known.as_str().unwrap().split_once('/').unwrap();
    assert_eq!(all, "70");
    let done: usize = done.parse().unwrap();
    assert!(
        done < 70,
        "one poll's budget cannot read all of a 70-printer farm: {known}"
    );
    // Supported commands first, then the free space, with what each poll's budget leaves.
    let mut shown = Vec::new();
    for _ in 0..4 {
        let out = b.poll_settled(&idle_fleet(70));
        shown.extend(out.payload("pc/bridge/info").map(|i| i["known"].clone()));
    }
    assert_eq!(shown.last(), Some(&json!("70/70")), "{shown:?}");
}

/// The free space on a printer's storages is in `P/state` (its first publication waits for
/// it), read at first sight and again when its feed says its files changed.
#[test]
fn a_printers_free_storage_is_read_at_first_sight_and_when_its_files_change() {
    let mut b = Bridge::new("");
    let first = b.poll(&[printer(A, "MK4", "IDLE")]);
    let storages = Read::Storages { uuid: A.into() };
    assert!(first.reads.contains(&storages), "{:?}", first.reads);
    let rest: Vec<Read> = first.reads.into_iter().filter(|r| *r != storages).collect();
    let out = b.settle(rest);
    assert!(
        out.payload("pc/mk4/state").is_none(),
        "the first publication shows the free space: it waits for it"
    );
    let body = json!({"storages": [
        {"name": "usb", "read_only": false, "free_space": 7_000_000_000u64, "total_space": 8_000_000_000u64},
        {"name": "flash", "read_only": true, "free_space": 1, "total_space": 2},
        "not a storage"
    ]});
    let list = crate::connect::model::storages(&body);
    let out = b.answer(storages.clone(), ReadResult::Storages(Ok(list)));
    let state = out.payload("pc/mk4/state").unwrap();
    assert_eq!(state["storage_free"], 7_000_000_000u64);
    assert_eq!(state["storage_total"], 8_000_000_000u64);
    // Nothing changed: no read. A file event: read again.
    assert!(
        !b.poll(&[printer(A, "MK4", "IDLE")])
            .reads
            .contains(&storages)
    );
    b.core.files_changed(A, b.now);
    assert!(
        b.poll(&[printer(A, "MK4", "IDLE")])
            .reads
            .contains(&storages)
    );
}

/// ...for a second at most: a farm's first reads that wait for the request budget do not
/// hold its printers' state back; what they bring is published when they come back.
#[test]
fn a_printers_first_publication_waits_a_second_at_most_for_its_first_reads() {
    let mut b = Bridge::new("");
    let first = b.poll(&[printer(A, "MK4", "IDLE")]);
    assert!(first.payload("pc/mk4/state").is_none());
    assert_eq!(b.core.introduce_due(b.wall), Some(Duration::from_secs(1)));
    b.introduce_overdue(b.wall + 0.5);
    assert!(b.take().payload("pc/mk4/state").is_none(), "not yet");
    b.advance(1);
    b.introduce_overdue(b.wall);
    let out = b.take();
    assert_eq!(
        out.payload("pc/mk4/state").unwrap()["storage_free"],
        Value::Null
    );
    assert_eq!(out.payload("pc/mk4/availability"), Some(json!("online")));
    assert_eq!(b.core.introduce_due(b.wall), None);
    // A second printer seen half a second later: due at its own second, and still due once
    // that passed without it being published (the shell looks again after each wake-up).
    b.wall += 0.5;
    let both = [printer(A, "MK4", "IDLE"), printer(B, "XL", "IDLE")];
    assert!(b.poll(&both).payload("pc/xl/state").is_none());
    assert_eq!(b.core.introduce_due(b.wall), Some(Duration::from_secs(1)));
    assert_eq!(b.core.introduce_due(b.wall + 1.2), Some(Duration::ZERO));
    b.introduce_overdue(b.wall + 1.2);
    assert!(b.take().payload("pc/xl/state").is_some());
    // The reads come back: what they bring is published.
    let storages = Read::Storages { uuid: A.into() };
    let body = json!({"storages": [{"name": "usb", "free_space": 5, "total_space": 8}]});
    let list = crate::connect::model::storages(&body);
    let out = b.answer(storages, ReadResult::Storages(Ok(list)));
    assert_eq!(out.payload("pc/mk4/state").unwrap()["storage_free"], 5);
}

/// A printer once known stays known while a later read of it runs: `bridge/info` is not
/// republished because a queue read is in flight.
#[test]
fn a_known_printer_stays_known_while_its_queue_is_read_again() {
    let mut b = Bridge::new("");
    let mut queued = printer(A, "MK4", "IDLE");
    queued["job_queue_count"] = json!(1);
    let first = b.poll_settled(std::slice::from_ref(&queued));
    let second = b.poll_settled(std::slice::from_ref(&queued));
    let info = second
        .payload("pc/bridge/info")
        .or_else(|| first.payload("pc/bridge/info"))
        .unwrap();
    assert_eq!(info["known"], "1/1");
    queued["printer_state"] = json!("READY");
    queued["connect_state"] = json!("READY");
    let out = b.poll(&[queued]);
    assert!(
        out.reads.contains(&Read::Queue { uuid: A.into() }),
        "{:?}",
        out.reads
    );
    assert!(
        out.payload("pc/bridge/info").is_none(),
        "bridge/info unchanged while the queue is read: {:?}",
        out.payload("pc/bridge/info")
    );
}

/// At a farm's start the reads the controls need come first: a poll's request budget goes
/// to supported commands before any storage read.
#[test]
fn storage_reads_never_push_out_a_farms_supported_commands() {
    let mut b = Bridge::new("");
    let first = b.poll(&idle_fleet(70));
    let count = |f: fn(&Read) -> bool| first.reads.iter().filter(|r| f(r)).count();
    assert_eq!(count(|r| matches!(r, Read::Supported { .. })), 64);
    assert_eq!(count(|r| matches!(r, Read::Storages { .. })), 0);
}

/// A printer whose free space is the last of its start-up reads gets that read although the
/// poll's budget went to other printers' supported commands: printers of a farm become
/// known one after the other.
#[test]
fn a_printer_missing_only_its_free_space_reads_it_whatever_the_budget() {
    let mut b = Bridge::new("");
    let fleet = idle_fleet(200);
    let first = b.poll(&fleet);
    let p0 = "00000000-0000-4000-8000-000000000000";
    let mine: Vec<Read> = first
        .reads
        .into_iter()
        .filter(|r| r.uuid().is_none_or(|u| u == p0))
        .collect();
    assert!(
        mine.contains(&Read::Supported { uuid: p0.into() }),
        "{mine:?}"
    );
    b.settle(mine);
    let second = b.poll(&fleet);
    let storages: Vec<&Read> = second
        .reads
        .iter()
        .filter(|r| matches!(r, Read::Storages { .. }))
        .collect();
    assert_eq!(storages, [&Read::Storages { uuid: p0.into() }]);
    let supported = |r: &Read| matches!(r, Read::Supported { .. });
    assert_eq!(second.reads.iter().filter(|r| supported(r)).count(), 64);
}

/// Start-up reads still waiting for their turn count against the poll's budget of extra
/// reads: 60 waiting leave 4 of the 64.
#[test]
fn start_up_reads_still_waiting_count_against_the_polls_budget() {
    let mut b = Bridge::new("");
    b.core.reads_waiting(60);
    let first = b.poll(&idle_fleet(70));
    let supported = first
        .reads
        .iter()
        .filter(|r| matches!(r, Read::Supported { .. }))
        .count();
    assert_eq!(supported, 4);
}

/// The budget of extra reads counts the active poll intervals since the last list: a poll
/// at the idle pace (30 s: an idle farm, or the live channel covering one that prints) may
/// ask six times as many, so a farm becomes known as fast as at the active pace.
#[test]
fn a_poll_after_the_idle_interval_may_ask_as_many_start_up_reads_as_six_active_polls() {
    let mut b = Bridge::new("");
    let fleet = idle_fleet(1000);
    let supported = |b: &mut Bridge| {
        let out = b.poll(&fleet);
        out.reads
            .iter()
            .filter(|r| matches!(r, Read::Supported { .. }))
            .count()
    };
    assert_eq!(supported(&mut b), 64, "the first list");
    b.advance(5);
    assert_eq!(supported(&mut b), 64, "one active interval later");
    b.advance(30);
    assert_eq!(supported(&mut b), 6 * 64, "the idle interval later");
    b.advance(3600);
    assert_eq!(
        supported(&mut b),
        6 * 64,
        "never more than six intervals' worth"
    );
}

/// A printer missing from a list (not removed yet) is not asked for its free space; it is
/// once it is back.
#[test]
fn a_printer_missing_from_the_list_gets_no_storage_read() {
    let mut b = Bridge::new("");
    let both = [printer(A, "MK4", "IDLE"), printer(B, "XL", "IDLE")];
    b.poll_settled(&both);
    b.core.files_changed(A, b.now);
    let storages = Read::Storages { uuid: A.into() };
    let without = b.poll(&[printer(B, "XL", "IDLE")]);
    assert!(!without.reads.contains(&storages), "{:?}", without.reads);
    assert!(b.poll(&both).reads.contains(&storages));
}
