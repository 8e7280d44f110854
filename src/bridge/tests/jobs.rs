use super::*;

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
    let mut b = Bridge::with_memory("", b.core.state_file());
    let out = b.poll_settled(&[idle]);
    assert!(out.events("pc/mk4/job/finished").is_empty());
}

#[test]
fn each_announced_job_is_counted_once_in_the_totals_across_a_restart() {
    let mut b = Bridge::new("");
    let first = b.poll_settled(&[printing(A, "MK4", 7)]);
    let stats = first
        .payload("pc/mk4/stats")
        .expect("P/stats from the start");
    assert_eq!(
        (stats["jobs"].clone(), stats["success_rate"].clone()),
        (json!(0), Value::Null)
    );
    assert_eq!(stats["since"], crate::payloads::iso(WALL).unwrap());
    let mut idle = printer(A, "MK4", "IDLE");
    idle["job_info"] = json!({"id": 8, "state": "FIN_ERROR"});
    b.poll(std::slice::from_ref(&idle));
    // Job 7 ended well, job 8 started and failed between two polls.
    let mut seven = job(7, JobState::FinOk);
    seven.data =
        serde_json::from_value(json!({"material": "PLA", "weight": 12.5, "cost": 0.3})).ok();
    let mut eight = job(8, JobState::FinError);
    eight.data = serde_json::from_value(json!({"material": "PETG", "weight": 2.0})).ok();
    let done = b.answer(jobs_read(Some(7)), ReadResult::Jobs(Ok(vec![seven, eight])));
    assert_eq!(done.events("pc/mk4/job/finished").len(), 2);
    let stats = done
        .payload("pc/mk4/stats")
        .expect("P/stats after the jobs");
    assert_eq!(
        (stats["ok"].clone(), stats["failed"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(stats["print_s"], 120);
    assert_eq!(stats["filament_g"], 14.5);
    assert_eq!(
        stats["filament_by_material"],
        json!({"PETG": 2.0, "PLA": 12.5})
    );
    assert_eq!(stats["cost"], 0.3);
    assert_eq!(stats["success_rate"], 50.0);
    assert_eq!(stats["last_outcome"], "FIN_ERROR");
    // The fleet's totals follow on the next poll.
    b.advance(30);
    let out = b.poll_settled(std::slice::from_ref(&idle));
    assert_eq!(
        out.payload("pc/bridge/stats").expect("bridge/stats")["jobs"],
        2
    );
    assert!(
        out.payload("pc/mk4/stats").is_none(),
        "unchanged: not again"
    );
    // After a restart: the same totals, shown again, nothing counted twice.
    let mut b = Bridge::with_memory("", b.core.state_file());
    let out = b.poll_settled(&[idle]);
    assert!(out.events("pc/mk4/job/finished").is_empty());
    assert_eq!(out.payload("pc/mk4/stats"), Some(stats));
    let fleet = out.payload("pc/bridge/stats").expect("bridge/stats");
    assert_eq!(
        (fleet["jobs"].clone(), fleet["filament_g"].clone()),
        (json!(2), json!(14.5))
    );
    assert_eq!(
        out.payload("pc/bridge/info").unwrap()["stats"]["since"],
        crate::payloads::iso(WALL).unwrap()
    );
}

#[test]
fn a_job_ended_before_the_printer_was_first_seen_is_never_announced() {
    let mut b = Bridge::new("");
    let mut idle = printer(A, "MK4", "IDLE");
    idle["job_info"] = json!({"id": 3, "state": "FIN_ERROR"});
    let out = b.poll_settled(&[idle]);
    assert!(out.events("pc/mk4/job/finished").is_empty());
    assert_eq!(b.core.state_file().printers[A].jobs.announced_job, Some(3));
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
fn a_read_of_the_job_list_withdraws_the_ended_jobs_record_reads_but_not_the_running_jobs() {
    let mut b = Bridge::new("");
    b.poll_settled(&[printing(A, "MK4", 9)]);
    let idle = printer(A, "MK4", "IDLE");
    b.poll(std::slice::from_ref(&idle));
    // The list still says job 9 runs: its record is read again a little later.
    b.answer(
        jobs_read(Some(9)),
        ReadResult::Jobs(Ok(vec![job(9, JobState::Printing)])),
    );
    b.advance(5);
    let out = b.poll(std::slice::from_ref(&idle));
    assert!(out.reads.contains(&job_read(9)), "{:?}", out.reads);
    assert!(b.core.take_withdrawn().is_empty());
    // Before that read's turn comes, job 10 starts: the job list is read again, and it
    // tells how job 9 ended, so the read of job 9's record is withdrawn. Job 10's detail
    // is read all the same.
    b.advance(5);
    let out = b.poll(&[printing(A, "MK4", 10)]);
    assert!(out.reads.contains(&jobs_read(Some(9))), "{:?}", out.reads);
    assert!(out.reads.contains(&job_read(10)), "{:?}", out.reads);
    assert_eq!(b.core.take_withdrawn(), [job_read(9)]);
    // While that list waits for its turn, job 10 gives way to job 11: job 10's detail is no
    // one's any more (the list being read will tell how it ended).
    b.advance(5);
    let out = b.poll(&[printing(A, "MK4", 11)]);
    assert!(out.reads.contains(&job_read(11)), "{:?}", out.reads);
    assert!(
        !out.reads.iter().any(|r| matches!(r, Read::Jobs { .. })),
        "one list at a time"
    );
    assert_eq!(b.core.take_withdrawn(), [job_read(10)]);
    let list = vec![
        job(9, JobState::FinOk),
        job(10, JobState::FinOk),
        job(11, JobState::Printing),
    ];
    let done = b.answer(jobs_read(Some(9)), ReadResult::Jobs(Ok(list)));
    assert_eq!(done.events("pc/mk4/job/finished").len(), 2);
    // A withdrawn read that was already running comes back: nothing is announced twice,
    // and job 11's detail read is not asked for a second time meanwhile.
    let late = b.answer(
        job_read(9),
        ReadResult::Job(Box::new(Ok(job(9, JobState::FinOk)))),
    );
    assert!(late.events("pc/mk4/job/finished").is_empty());
    b.advance(5);
    let out = b.poll(&[printing(A, "MK4", 11)]);
    assert!(!out.reads.contains(&job_read(11)), "{:?}", out.reads);
    assert!(b.core.take_withdrawn().is_empty());
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
    let mut b = Bridge::with_memory("", b.core.state_file());
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
    let mut b = Bridge::with_memory("", b.core.state_file());
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

#[test]
fn jobs_ended_while_stopped_are_all_announced_after_an_upgrade_from_an_older_state_file() {
    // A state file written before the job list was read: no `jobs_seen_up_to`.
    let mut b = Bridge::new("");
    b.poll_settled(&[printing(A, "MK4", 7)]);
    let mut memory = b.core.state_file();
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
