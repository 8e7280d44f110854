use super::*;

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
            Read::Storages { .. } => ReadResult::Storages(Ok(Vec::new())),
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
            Read::PrinterTypes => ReadResult::PrinterTypes(Ok(Default::default())),
            Read::Storages { .. } => ReadResult::Storages(Ok(Vec::new())),
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

#[test]
fn an_ended_job_takes_one_picture_with_a_camera_and_none_without() {
    let mut b = Bridge::new("[camera]\nenabled = true");
    let printers = [printing(A, "MK4", 7), printing(B, "MINI", 3)];
    let first = b.poll(&printers);
    for read in first.reads {
        let result = match &read {
            // A has a camera, B none.
            Read::Cameras { uuid } if uuid == A => ReadResult::Cameras(Ok(serde_json::from_value(
                json!({"cameras": [{"id": 5, "name": "Top"}]}),
            )
            .unwrap())),
            Read::Cameras { .. } => ReadResult::Cameras(Ok(Default::default())),
            _ => continue,
        };
        b.answer(read, result);
    }
    b.advance(30);
    let mut a_idle = printer(A, "MK4", "IDLE");
    a_idle["job_info"] = json!({"id": 7, "state": "FIN_ERROR"});
    let mut b_idle = printer(B, "MINI", "IDLE");
    b_idle["job_info"] = json!({"id": 3, "state": "FIN_OK"});
    b.poll(&[a_idle, b_idle]);
    let ends = |uuid: &str, id: i64, state| {
        (
            Read::Jobs {
                uuid: uuid.into(),
                after: Some(id),
            },
            ReadResult::Jobs(Ok(vec![job(id, state)])),
        )
    };
    let (read, result) = ends(A, 7, JobState::FinError);
    let out = b.answer(read, result);
    assert_eq!(out.events("pc/mk4/job/finished").len(), 1);
    let picture = Read::EndPicture {
        uuid: A.into(),
        camera: "5".into(),
        job: 7,
    };
    assert_eq!(
        out.reads
            .iter()
            .filter(|r| matches!(r, Read::EndPicture { .. }))
            .collect::<Vec<_>>(),
        [&picture]
    );
    let out = b.answer(
        picture,
        ReadResult::Snapshot(Ok(crate::connect::client::Snapshot::Image {
            bytes: b"\xff\xd8 the end".to_vec(),
            etag: None,
            last_modified: None,
        })),
    );
    let retained: Vec<&Message> = out
        .messages
        .iter()
        .filter(|m| matches!(m, Message::Retain { topic, .. } if topic == "pc/mk4/job/finished/picture"))
        .collect();
    assert!(
        matches!(retained[..], [Message::Retain { payload, .. }] if payload == b"\xff\xd8 the end"),
        "{retained:?}"
    );
    // The MINI has no camera: its end asks for no picture.
    let (read, result) = ends(B, 3, JobState::FinOk);
    let out = b.answer(read, result);
    assert_eq!(out.events("pc/mini/job/finished").len(), 1);
    assert!(
        !out.reads
            .iter()
            .any(|r| matches!(r, Read::EndPicture { .. })),
        "{:?}",
        out.reads
    );
}
