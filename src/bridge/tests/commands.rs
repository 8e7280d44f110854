use super::*;

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
        CommandDone::of(
            &job,
            CommandReply::ok(req, Some(77)),
            Some(Vec::new()),
            Outcome::Accepted,
        ),
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
        CommandDone::of(
            &job,
            CommandReply::ok(req, Some(1)),
            None,
            Outcome::Accepted,
        ),
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
