use super::*;

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
    let mut b = Bridge::with_memory("", b.core.state_file());
    let out = b.poll_settled(&[printer(A, "MK4", "IDLE")]);
    assert_eq!(out.reads, [Read::Notifications { after: Some(4) }]);
    let out = b.answer(
        Read::Notifications { after: Some(4) },
        ReadResult::Notifications(Ok(list)),
    );
    assert!(out.events("pc/bridge/notification").is_empty());
}
