//! End-to-end: shards (`connect.shard = "k/n"`). Three gateways share one simulated account
//! of 300 printers on one broker: each printer is bridged by exactly one; stopping one makes
//! only its printers unavailable; going from 3 to 4 shards moves about a quarter of them,
//! none cleared on the way and none published as a second device.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use common::broker::{Msg, Subscriber, TestBroker};
use common::gateway::{BASE, Gateway, Sim, config};
use prusa_connect_mqtt::shard::{Shard, owner};
use prusa_connect_sim::PrinterSpec;

const PRINTERS: usize = 300;
const WAIT: Duration = Duration::from_secs(120);

fn shard(broker: &TestBroker, sim: &Sim, state: &Path, k: u32, n: u32) -> Gateway {
    let mut c = config(broker, sim, state, "[camera]\nenabled = false");
    // One config for every shard, as with a systemd template: the shard number makes the
    // client id and the state folder of each its own.
    c.mqtt.client_id = "farm".into();
    c.connect.shard = Some(Shard { k, n });
    Gateway::start(c)
}

fn info_topic(k: u32) -> String {
    format!("{BASE}/bridge/{k}/info")
}

/// The uuids shard `k`'s `bridge/info` lists, once it knows all `expected` of them.
async fn bridged(sub: &Subscriber, k: u32, expected: usize) -> BTreeSet<String> {
    let known = format!("{expected}/{expected}");
    let info = sub
        .wait_for(&info_topic(k), WAIT, |m| {
            m.json()["known"] == known.as_str()
        })
        .await
        .json();
    info["printers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["uuid"].as_str().unwrap().to_string())
        .collect()
}

fn discovery_topic(uuid: &str) -> String {
    format!("homeassistant/device/prusa_connect_{uuid}/config")
}

/// The availability topics of the last discovery of printer `uuid` on the broker.
fn availability(sub: &Subscriber, uuid: &str) -> Vec<String> {
    let last = sub
        .on(&discovery_topic(uuid))
        .pop()
        .unwrap_or_else(|| panic!("no discovery for {uuid}"));
    last.discovery()["availability"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["topic"].as_str().unwrap().to_string())
        .collect()
}

fn last_text(sub: &Subscriber, topic: &str) -> Option<String> {
    sub.on(topic).pop().map(|m| m.text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_bridge_every_printer_once_and_a_fourth_takes_a_quarter() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let uuids: Vec<String> = (0..PRINTERS)
        .map(|i| {
            sim.sim
                .add_printer(PrinterSpec::named(&format!("Farm {i:03}")))
        })
        .collect();
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#"), "homeassistant/#"]).await;

    // Three shards.
    let expected = |k: u32, n: u32| uuids.iter().filter(|u| owner(u, n) == k).count();
    let mut gateways: BTreeMap<u32, Gateway> = (1..=3)
        .map(|k| (k, shard(&broker, &sim, state.path(), k, 3)))
        .collect();
    let mut all = BTreeSet::new();
    for k in 1..=3 {
        let mine = bridged(&sub, k, expected(k, 3)).await;
        for uuid in &mine {
            assert_eq!(owner(uuid, 3), k, "{uuid} is bridged by shard {k}");
            assert!(all.insert(uuid.clone()), "{uuid} is bridged twice");
        }
    }
    assert_eq!(all.len(), PRINTERS, "every printer is bridged");
    for uuid in &uuids {
        let bridge = format!("{BASE}/bridge/{}/state", owner(uuid, 3));
        assert!(
            availability(&sub, uuid).contains(&bridge),
            "{uuid}'s entities follow its shard's {bridge}"
        );
    }
    // Each shard has its own state folder (its login, its state file) in the one state.dir.
    for k in 1..=3 {
        let dir = state.path().join(format!("shard-{k}"));
        common::gateway::wait_until_or(
            || dir.join("state.json").exists(),
            || format!("no state file in {dir:?}"),
        )
        .await;
    }
    assert!(!state.path().join("state.json").exists());

    // Stopping shard 2 makes its printers unavailable, and only those.
    gateways.remove(&2).unwrap().stop().await;
    assert_eq!(
        last_text(&sub, &format!("{BASE}/bridge/2/state")).as_deref(),
        Some("offline")
    );
    for uuid in &uuids {
        let online = availability(&sub, uuid)
            .iter()
            .all(|t| last_text(&sub, t).as_deref() == Some("online"));
        assert_eq!(online, owner(uuid, 3) != 2, "{uuid} available");
    }

    // Four shards: the new one starts first, then the others come back with n = 4, one by
    // one. From here on no printer's discovery or state may be cleared.
    let mark = sub.mark();
    gateways.insert(4, shard(&broker, &sim, state.path(), 4, 4));
    let taken = bridged(&sub, 4, expected(4, 4)).await;
    let moved: Vec<&String> = uuids
        .iter()
        .filter(|u| owner(u, 3) != owner(u, 4))
        .collect();
    assert!(
        (PRINTERS / 4 - 30..=PRINTERS / 4 + 30).contains(&moved.len()),
        "{} of {PRINTERS} moved",
        moved.len()
    );
    for uuid in &moved {
        assert!(taken.contains(*uuid), "{uuid} moved to shard 4");
        assert!(
            availability(&sub, uuid).contains(&format!("{BASE}/bridge/4/state")),
            "{uuid} follows shard 4 before its old shard restarts"
        );
    }
    for k in 1..=3 {
        if let Some(old) = gateways.remove(&k) {
            old.stop().await;
        }
        gateways.insert(k, shard(&broker, &sim, state.path(), k, 4));
        let mine = bridged(&sub, k, expected(k, 4)).await;
        assert!(mine.iter().all(|u| owner(u, 4) == k));
    }
    let cleared: Vec<String> = sub
        .messages_since(mark)
        .into_iter()
        .filter(|m: &Msg| m.payload.is_empty())
        .map(|m| m.topic)
        .filter(|t| !t.starts_with(&format!("{BASE}/bridge/")))
        .collect();
    assert!(
        cleared.is_empty(),
        "{} topics cleared while moving, first: {:?}",
        cleared.len(),
        cleared.iter().take(5).collect::<Vec<_>>()
    );
    for uuid in &uuids {
        let bridge = format!("{BASE}/bridge/{}/state", owner(uuid, 4));
        assert!(availability(&sub, uuid).contains(&bridge), "{uuid}");
    }
    // One device per printer whichever shard serves it, and one bridge device per shard.
    let devices: BTreeSet<String> = sub
        .messages()
        .into_iter()
        .filter(|m| m.topic.starts_with("homeassistant/device/") && !m.payload.is_empty())
        .map(|m| m.topic)
        .collect();
    let mut wanted: BTreeSet<String> = uuids.iter().map(|u| discovery_topic(u)).collect();
    wanted.extend((1..=4).map(|k| format!("homeassistant/device/{BASE}_bridge_{k}/config")));
    assert_eq!(devices, wanted);
    for (_, g) in gateways {
        g.stop().await;
    }
}
