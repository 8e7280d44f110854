//! End-to-end: Spoolman (`spoolman.url`). A printer's spool is chosen on its retained
//! `P/spool`; each ended job's filament reaches that spool exactly once: with the answer of a
//! report lost, with Spoolman down for a while, across a SIGKILL while a report waits, and not
//! at all once the printer has no spool. The gateway runs as a process of its own (for the
//! signal), against the Spoolman stand-in and the simulator.

mod common;

use std::time::Duration;

use common::broker::{Subscriber, TestBroker};
use common::gateway::{BASE, Sim, spoolman, wait_polls, wait_until_or};
use common::process::{exit_within, signal, spawn};
use prusa_connect_sim::{PrinterSpec, SpoolmanStandIn};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn topic(rest: &str) -> String {
    format!("{BASE}/{rest}")
}

fn env(url: &str) -> [(&'static str, String); 2] {
    [
        ("PRUSA_CONNECT_MQTT__SPOOLMAN__URL", url.to_string()),
        ("PRUSA_CONNECT_MQTT__SPOOLMAN__INTERVAL", "1s".to_string()),
    ]
}

/// The last `bridge/info`'s `spoolman`.
fn spoolman_info(sub: &Subscriber) -> Value {
    sub.on(&topic("bridge/info"))
        .last()
        .map(|m| m.json()["spoolman"].clone())
        .unwrap_or_default()
}

/// Runs a job on `uuid` to `outcome`; what `P/job/finished` said of it.
async fn job(sim: &Sim, sub: &Subscriber, uuid: &str, outcome: &str) -> Value {
    let id = sim.sim.start_job(uuid, "part.bgcode", 600, &[]);
    sub.wait_for(&topic("mk4/state"), WAIT, |m| m.json()["job_id"] == id)
        .await;
    sim.sim.finish_job(uuid, outcome);
    sub.wait_for(&topic("mk4/job/finished"), WAIT, |m| {
        m.json()["job_id"] == id
    })
    .await
    .json()
}

/// Waits until the stand-in counted `n` uses, and the gateway has none waiting.
async fn wait_uses(
    stand_in: &SpoolmanStandIn,
    sub: &Subscriber,
    n: usize,
    log: impl Fn() -> String,
) {
    wait_until_or(
        || stand_in.uses().len() >= n && spoolman_info(sub)["pending"] == 0,
        || {
            format!(
                "uses {:?}, waiting for {n}; bridge/info spoolman {}; requests {:?}; log:\n{}",
                stand_in.uses(),
                spoolman_info(sub),
                stand_in.requests(),
                log()
            )
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_jobs_filament_reaches_the_printers_spool_exactly_once() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let mk4 = sim.sim.add_printer(PrinterSpec::named("MK4"));
    let (stand_in, url) = spoolman().await;
    let spool = stand_in.add_spool("Polymaker", "PolyTerra Charcoal Black", "PLA", 1000.0);
    stand_in.add_spool("Prusament", "PETG Jet Black", "PETG", 1000.0);
    let dir = tempfile::tempdir().unwrap();
    let log = || std::fs::read_to_string(dir.path().join("gateway.log")).unwrap_or_default();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#"), "homeassistant/#"]).await;
    let mut gateway = spawn(&broker, &sim, dir.path(), &env(&url));

    // The select offers Spoolman's spools; the printer takes the one its topic names.
    let discovery = sub
        .wait_for(
            &format!("homeassistant/device/prusa_connect_{mk4}/config"),
            WAIT,
            |m| String::from_utf8_lossy(&m.payload).contains("#2 Prusament PETG Jet Black"),
        )
        .await;
    let select = &discovery.json()["cmps"]["spool"];
    assert_eq!(
        select["ops"],
        serde_json::json!([
            "No spool",
            "#1 Polymaker PolyTerra Charcoal Black (PLA)",
            "#2 Prusament PETG Jet Black"
        ])
    );
    assert_eq!(
        (&select["cmd_t"], &select["ret"]),
        (&"~/spool".into(), &true.into())
    );
    sub.publish(&topic("mk4/spool"), spool.to_string(), true)
        .await;
    let state = sub
        .wait_for(&topic("mk4/state"), WAIT, |m| m.json()["spool_id"] == spool)
        .await
        .json();
    assert_eq!(
        state["spool"],
        "#1 Polymaker PolyTerra Charcoal Black (PLA)"
    );
    assert_eq!(state["spool_remaining_g"], 1000.0);

    // A job ends: its grams are reported, and the spool's weight shows.
    let mut finished = vec![job(&sim, &sub, &mk4, "FIN_OK").await];
    wait_uses(&stand_in, &sub, 1, log).await;
    let grams = finished[0]["filament_g"].as_f64().unwrap();
    assert_eq!(stand_in.uses(), [(spool, grams)]);
    sub.wait_for(&topic("mk4/state"), WAIT, |m| {
        m.json()["spool_remaining_g"].as_f64() == Some(((1000.0 - grams) * 10.0).round() / 10.0)
    })
    .await;

    // Spoolman counts the next one but its answer is lost: checked, not sent again.
    stand_in.lose_next_answers(1);
    finished.push(job(&sim, &sub, &mk4, "FIN_OK").await);
    wait_uses(&stand_in, &sub, 2, log).await;
    // Spoolman down for two tries: the report waits, then goes.
    stand_in.fail_next(2);
    finished.push(job(&sim, &sub, &mk4, "FIN_OK").await);
    wait_uses(&stand_in, &sub, 3, log).await;

    // Spoolman down, a job ends, and the gateway is killed while its report waits.
    stand_in.fail_next(1_000);
    finished.push(job(&sim, &sub, &mk4, "FIN_OK").await);
    wait_until_or(
        || spoolman_info(&sub)["pending"] == 1,
        || format!("bridge/info spoolman {}", spoolman_info(&sub)),
    )
    .await;
    wait_polls(&sim, 3).await;
    signal(&gateway, "-KILL");
    exit_within(&mut gateway, WAIT).await;
    stand_in.fail_next(0);
    let mut gateway = spawn(&broker, &sim, dir.path(), &env(&url));
    wait_uses(&stand_in, &sub, 4, log).await;

    // No spool: a job's filament goes nowhere.
    sub.publish(&topic("mk4/spool"), "", true).await;
    sub.wait_for(&topic("mk4/state"), WAIT, |m| {
        m.json()["spool_id"].is_null()
    })
    .await;
    job(&sim, &sub, &mk4, "FIN_OK").await;
    wait_polls(&sim, 5).await;
    signal(&gateway, "-TERM");
    assert!(exit_within(&mut gateway, WAIT).await.success());

    // Four uses, one per job with a spool, of the grams each job used.
    let expected: Vec<(u64, f64)> = finished
        .iter()
        .map(|f| {
            let g = f["filament_g"].as_f64().unwrap();
            let share = match f["event_type"].as_str() {
                Some("FIN_OK") => 1.0,
                _ => f["progress"].as_f64().unwrap() / 100.0,
            };
            (spool, (g * share * 100.0).round() / 100.0)
        })
        .collect();
    assert_eq!(stand_in.uses(), expected, "log:\n{}", log());
    let total: f64 = expected.iter().map(|(_, g)| g).sum();
    assert!((stand_in.used_g(spool).unwrap() - total).abs() < 1e-9);
    let puts = stand_in
        .requests()
        .iter()
        .filter(|r| r.starts_with("PUT"))
        .count();
    // The lost answer's use was not sent again; the stopped job's went after its 503s.
    assert_eq!(puts, 4, "{:?}", stand_in.requests());
}
