//! A shard (`connect.shard`): which printers it bridges, which commands it answers and which
//! notifications it publishes.

use super::*;
use crate::shard::{Shard, owner};

/// A core that is shard `k` of 3.
fn shard(k: u32) -> Bridge {
    let config = Config::from_toml(&format!(
        "[connect]\naccess_token = \"t\"\nurl = \"http://127.0.0.1:9\"\nshard = \"{k}/3\"\n\
         [mqtt]\nbase_topic = \"pc\"\n[camera]\nenabled = false"
    ))
    .unwrap();
    let settings = Settings::from_config(&config).unwrap();
    assert_eq!(settings.shard, Some(Shard { k, n: 3 }));
    Bridge {
        core: Core::new(settings, StateFile::default()),
        now: Instant::now(),
        wall: WALL,
    }
}

/// The first printer of `fleet` that shard `k` of 3 bridges: (uuid, topic id).
fn first_of(fleet: &[Value], k: u32) -> (String, String) {
    let i = fleet
        .iter()
        .position(|p| owner(p["uuid"].as_str().unwrap(), 3) == k)
        .expect("the fleet has a printer of every shard");
    (
        fleet[i]["uuid"].as_str().unwrap().to_string(),
        format!("p{i}"),
    )
}

fn kind_of(prepared: &Prepared) -> &'static str {
    match prepared {
        Prepared::Ignore => "ignored",
        Prepared::Reply(_) => "reply",
        Prepared::Run(_) => "run",
    }
}

#[test]
fn a_shard_bridges_its_printers_and_answers_only_their_commands() {
    let fleet = idle_fleet(12);
    let mut two = shard(2);
    let out = two.poll_settled(&fleet);
    let (mine, my_id) = first_of(&fleet, 2);
    let (_, theirs) = first_of(&fleet, 3);
    assert!(out.payload(&format!("pc/{my_id}/state")).is_some());
    assert!(out.payload(&format!("pc/{theirs}/state")).is_none());
    let info = out
        .payload("pc/bridge/2/info")
        .expect("the shard's own bridge/info");
    let listed: Vec<&str> = info["printers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["uuid"].as_str().unwrap())
        .collect();
    assert!(listed.contains(&mine.as_str()));
    assert!(listed.iter().all(|u| owner(u, 3) == 2), "{listed:?}");

    let pause = r#"{"command": "PAUSE_PRINT"}"#;
    let command =
        |b: &mut Bridge, id: &str| kind_of(&b.command(&format!("pc/{id}/command"), pause));
    // Its own printer's command is taken (here: sent to Connect).
    assert_eq!(command(&mut two, &my_id), "run");
    assert!(two.core.answers_for(&my_id));
    // Another shard's printer: that shard answers, this one stays silent.
    assert_eq!(command(&mut two, &theirs), "ignored");
    // A printer no shard has: shard 1 alone says so.
    assert_eq!(command(&mut two, "nope"), "ignored");
    let mut one = shard(1);
    one.poll_settled(&fleet);
    match one.command("pc/nope/command", pause) {
        Prepared::Reply(Message::Event { payload, .. } | Message::Retain { payload, .. }) => {
            let reply: Value = serde_json::from_slice(&payload).unwrap();
            assert_eq!(reply["code"], "UNKNOWN_PRINTER", "{reply}");
        }
        other => panic!("{}", kind_of(&other)),
    }
    assert_eq!(command(&mut one, &theirs), "ignored");
}

#[test]
fn a_shard_publishes_the_notifications_of_its_own_printers() {
    let fleet = idle_fleet(12);
    let (mine, _) = first_of(&fleet, 2);
    let (theirs, _) = first_of(&fleet, 3);
    for (k, published) in [(2, vec![1, 3]), (1, vec![2])] {
        let mut b = shard(k);
        b.poll_settled(&fleet);
        b.answer(
            Read::Notifications { after: None },
            ReadResult::Notifications(Ok(Vec::new())),
        );
        let unseen = ReadResult::Unseen(Ok(crate::connect::model::Unseen { unseen: 3 }));
        b.answer(Read::Unseen, unseen);
        let mut account_wide = notification(2, A);
        account_wide.printer_uuid = None;
        let list = vec![
            notification(1, &mine),
            account_wide,
            notification(3, &mine),
            notification(4, &theirs),
        ];
        let out = b.answer(
            Read::Notifications { after: Some(0) },
            ReadResult::Notifications(Ok(list)),
        );
        let ids: Vec<i64> = out
            .events(&format!("pc/bridge/{k}/notification"))
            .iter()
            .map(|n| n["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, published, "shard {k}");
    }
}
