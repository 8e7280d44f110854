//! End-to-end: a printer's totals (`P/stats`) and the fleet's (`bridge/stats`) count every
//! ended job once, with what its `P/job/finished` said: ten jobs of mixed outcomes, some
//! between two polls, some while the gateway was stopped, a clean restart and a SIGKILL among
//! them. The gateway runs as a process of its own (for the signals).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::broker::{Subscriber, TestBroker};
use common::gateway::{BASE, Sim, wait_polls, wait_until_or};
use common::process::{exit_within, signal, spawn};
use prusa_connect_sim::PrinterSpec;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

fn topic(rest: &str) -> String {
    format!("{BASE}/{rest}")
}

/// Every `job/finished` seen, by job id (a job announced twice shows as a count of 2).
fn announced(sub: &Subscriber) -> BTreeMap<i64, (usize, Value)> {
    let mut out: BTreeMap<i64, (usize, Value)> = BTreeMap::new();
    for m in sub.on(&topic("mk4/job/finished")) {
        let f = m.json();
        let id = f["job_id"].as_i64().unwrap_or_default();
        out.entry(id).or_insert((0, f.clone())).0 += 1;
    }
    out
}

/// Waits until jobs `ids` are announced.
async fn wait_announced(sub: &Subscriber, ids: &[i64], log: impl Fn() -> String) {
    wait_until_or(
        || ids.iter().all(|id| announced(sub).contains_key(id)),
        || {
            format!(
                "announced {:?}, waiting for {ids:?}; log:\n{}",
                announced(sub).keys(),
                log()
            )
        },
    )
    .await;
}

/// A job between two polls shows only in the feed: it is read every second.
fn env() -> [(&'static str, String); 1] {
    [(
        "PRUSA_CONNECT_MQTT__CONNECT__FEED_INTERVAL",
        "1s".to_string(),
    )]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_jobs_across_a_restart_and_a_crash_are_each_counted_once() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    // The first printer of a simulator has a camera; the second none.
    let mk4 = sim.sim.add_printer(PrinterSpec::named("MK4"));
    let mini = sim.sim.add_printer(PrinterSpec::named("MINI"));
    let dir = tempfile::tempdir().unwrap();
    let log = || std::fs::read_to_string(dir.path().join("gateway.log")).unwrap_or_default();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let mut gateway = spawn(&broker, &sim, dir.path(), &env());
    sub.wait_for(&topic("mk4/stats"), WAIT, |m| m.json()["jobs"] == 0)
        .await;
    let mut ids = Vec::new();

    // Three jobs the list shows running, then ended one way or another.
    for outcome in ["FIN_OK", "FIN_ERROR", "FIN_STOPPED"] {
        let id = sim.sim.start_job(&mk4, "part.bgcode", 600, &[]);
        sub.wait_for(&topic("mk4/state"), WAIT, |m| m.json()["job_id"] == id)
            .await;
        sim.sim.finish_job(&mk4, outcome);
        wait_announced(&sub, &[id], log).await;
        ids.push(id);
    }
    // One between two polls.
    ids.push(sim.sim.quick_job(&mk4, "calibration.bgcode", "FIN_OK"));
    wait_announced(&sub, &ids, log).await;

    // A clean stop; two jobs end while the gateway is away.
    wait_polls(&sim, 3).await;
    signal(&gateway, "-TERM");
    assert!(exit_within(&mut gateway, WAIT).await.success());
    ids.push(sim.sim.quick_job(&mk4, "bracket.bgcode", "FIN_OK"));
    ids.push(sim.sim.quick_job(&mk4, "hook.bgcode", "FIN_ERROR"));
    let mut gateway = spawn(&broker, &sim, dir.path(), &env());
    wait_announced(&sub, &ids, log).await;

    // Two more, then a crash once the state file has them (every poll saves it); one ends
    // while the gateway is dead, one after it is back.
    for outcome in ["FIN_OK", "FIN_STOPPED"] {
        let id = sim.sim.start_job(&mk4, "lid.bgcode", 600, &[]);
        sub.wait_for(&topic("mk4/state"), WAIT, |m| m.json()["job_id"] == id)
            .await;
        sim.sim.finish_job(&mk4, outcome);
        wait_announced(&sub, &[id], log).await;
        ids.push(id);
    }
    wait_polls(&sim, 3).await;
    signal(&gateway, "-KILL");
    exit_within(&mut gateway, WAIT).await;
    ids.push(sim.sim.quick_job(&mk4, "clip.bgcode", "FIN_OK"));
    let mut gateway = spawn(&broker, &sim, dir.path(), &env());
    wait_announced(&sub, &ids, log).await;
    ids.push(sim.sim.quick_job(&mk4, "knob.bgcode", "FIN_OK"));
    wait_announced(&sub, &ids, log).await;

    // The MINI's job ends: no picture (it has no camera).
    let id = sim.sim.start_job(&mini, "plate.bgcode", 600, &[]);
    sub.wait_for(&topic("mini/state"), WAIT, |m| m.json()["job_id"] == id)
        .await;
    sim.sim.finish_job(&mini, "FIN_OK");
    sub.wait_for(&topic("mini/job/finished"), WAIT, |_| true)
        .await;

    // Each of the ten announced once.
    let all = announced(&sub);
    assert_eq!(all.len(), 10, "{:?}", all.keys());
    assert!(all.values().all(|(n, _)| *n == 1), "{all:?}");
    // The totals are the sum of what the ten announcements said.
    let finished: Vec<&Value> = all.values().map(|(_, f)| f).collect();
    let count = |outcome: &str| {
        finished
            .iter()
            .filter(|f| f["event_type"] == outcome)
            .count()
    };
    let grams: f64 = finished
        .iter()
        .filter_map(|f| f["filament_g"].as_f64())
        .sum();
    let seconds: u64 = finished
        .iter()
        .filter_map(|f| f["duration_s"].as_u64())
        .sum();
    assert!(grams > 0.0 && seconds > 0, "{finished:?}");
    let stats = sub
        .wait_for(&topic("mk4/stats"), WAIT, |m| m.json()["jobs"] == 10)
        .await
        .json();
    assert_eq!(stats["ok"], count("FIN_OK"));
    assert_eq!(stats["failed"], count("FIN_ERROR"));
    assert_eq!(stats["stopped"], count("FIN_STOPPED"));
    assert_eq!(stats["print_s"], seconds, "{stats}\n{finished:?}");
    let total = stats["filament_g"].as_f64().unwrap();
    assert!((total - grams).abs() < 0.01, "{total} against {grams}");
    // The day's use: the printer printed and sat finished or idle between the jobs.
    let today = &stats["today"];
    assert!(today["date"].is_string(), "{today}");
    assert!(today["printing_s"].as_u64() > Some(0), "{today}");
    assert!(
        today["utilization"]
            .as_f64()
            .is_some_and(|u| u > 0.0 && u <= 100.0),
        "{today}"
    );
    let fleet = sub
        .wait_for(&topic("bridge/stats"), WAIT, |m| m.json()["jobs"] == 10)
        .await
        .json();
    assert_eq!(fleet["filament_g"], stats["filament_g"]);
    // Never more than ten on the way: no job counted twice, even for a moment.
    let most = sub
        .on(&topic("mk4/stats"))
        .iter()
        .filter_map(|m| m.json()["jobs"].as_u64())
        .max();
    assert_eq!(most, Some(10));
    // How the last job ended, as the MK4's camera saw it: retained for a later subscriber.
    // One camera picture per job announced with the camera known (at least the last seven:
    // the first three may end before the camera is listed), besides the camera's own.
    let later = Subscriber::connect(&broker, &[&topic("+/job/finished/picture")]).await;
    let picture = later
        .wait_for(&topic("mk4/job/finished/picture"), WAIT, |m| m.retain)
        .await;
    assert!(
        picture.payload.len() > 100,
        "{} bytes",
        picture.payload.len()
    );
    wait_polls(&sim, 3).await;
    assert!(later.on(&topic("mini/job/finished/picture")).is_empty());
    let pictures_of = |uuid: &str| {
        let query = format!("printer_uuid={uuid}");
        let requests = sim.sim.requests();
        let pictures = requests
            .iter()
            .filter(|r| r.path.ends_with("/snapshots/last") && r.query.contains(&query));
        pictures.count()
    };
    assert_eq!(pictures_of(&mini), 0);
    assert!(pictures_of(&mk4) >= 7, "{} pictures", pictures_of(&mk4));
    signal(&gateway, "-TERM");
    assert!(exit_within(&mut gateway, WAIT).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_printers_history_before_the_gateway_seeds_its_totals_once() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let mk4 = sim.sim.add_printer(PrinterSpec::named("MK4"));
    // Two days ago (the seed covers whole days before the day the gateway starts counting).
    sim.sim.set_clock_offset(-2.0 * 86_400.0);
    for outcome in ["FIN_OK", "FIN_OK", "FIN_ERROR"] {
        sim.sim.start_job(&mk4, "old.bgcode", 600, &[]);
        sim.sim.set_progress(&mk4, 50.0);
        sim.sim.finish_job(&mk4, outcome);
    }
    sim.sim.set_state(&mk4, "IDLE");
    sim.sim.set_clock_offset(0.0);
    let dir = tempfile::tempdir().unwrap();
    let log = || std::fs::read_to_string(dir.path().join("gateway.log")).unwrap_or_default();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let mut gateway = spawn(&broker, &sim, dir.path(), &env());
    let stats = sub
        .wait_for(&topic("mk4/stats"), WAIT, |m| {
            m.json()["seeded"]["read"].as_array().map(Vec::len) == Some(3)
        })
        .await
        .json();
    // What Connect's statistics say of the three jobs, none of them announced (they ended
    // before the gateway knew the printer).
    assert_eq!(
        (stats["ok"].clone(), stats["failed"].clone()),
        (json!(2), json!(1))
    );
    // (Asked without a range, so it is not counted among the gateway's below.)
    let material = sim
        .get_json(&format!("/app/stats/printers/{mk4}/material_quantity"))
        .await;
    let grams: f64 = (material["data"].as_array().unwrap().iter())
        .filter_map(|d| d["value"].as_f64())
        .sum();
    assert!(grams > 0.0);
    assert_eq!(stats["filament_g"].as_f64(), Some(grams), "{}", log());
    assert!(stats["print_s"].as_u64() > Some(0), "{stats}");
    assert!(sub.on(&topic("mk4/job/finished")).is_empty());

    // A restart reads them no more.
    signal(&gateway, "-TERM");
    assert!(exit_within(&mut gateway, WAIT).await.success());
    let mut gateway = spawn(&broker, &sim, dir.path(), &env());
    wait_polls(&sim, 5).await;
    let stats_requests = (sim.sim.requests().iter())
        .filter(|r| r.path.starts_with("/app/stats/") && r.query.contains("from="))
        .count();
    assert_eq!(stats_requests, 3);
    let last = sub.on(&topic("mk4/stats")).pop().unwrap().json();
    assert_eq!(last["jobs"], 3);
    signal(&gateway, "-TERM");
    assert!(exit_within(&mut gateway, WAIT).await.success());
}
