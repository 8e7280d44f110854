//! The scripted printers: the demo's day, the farm, the ticker.

use super::*;

/// Events seen in a printer's whole feed, oldest first.
fn feed(sim: &Simulator, uuid: &str) -> Vec<Value> {
    let world = sim.world();
    world
        .printer(uuid)
        .map(|p| {
            p.events
                .iter()
                .map(|e| Value::Object(e.json.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn job_ends(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "JOB_INFO")
        .filter_map(|e| e["data"]["state"].as_str().map(str::to_string))
        .collect()
}

fn states(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "STATE_CHANGED")
        .filter_map(|e| e["state"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn demo_shows_a_full_cycle_within_two_minutes() {
    let sim = Simulator::new(SimOptions {
        token: None,
        scenario: Scenario::Demo,
    });
    let uuid = |name: &str| sim.printer_uuid(name).expect(name);
    let (busy, core, mini) = (uuid("Busy MK4"), uuid("Core One"), uuid("MINI"));
    assert_eq!(sim.printer_state(&busy).as_deref(), Some("PRINTING"));
    let manual = sim.add_printer(PrinterSpec::named("Manual"));
    let mut max_nozzle: f64 = 0.0;
    for _ in 0..120 {
        sim.step(Duration::from_secs(1));
        let world = sim.world();
        if let Some(p) = world.printer(&core) {
            max_nozzle = max_nozzle.max(p.temps.nozzle);
        }
    }
    let busy_events = feed(&sim, &busy);
    assert!(
        job_ends(&busy_events).contains(&"FIN_OK".to_string()),
        "{busy_events:?}"
    );
    let busy_states = states(&busy_events);
    let finished = busy_states
        .iter()
        .position(|s| s == "FINISHED")
        .expect("busy finished");
    assert!(busy_states[finished..].contains(&"READY".to_string()));
    assert!(
        busy_states[finished..].contains(&"PRINTING".to_string()),
        "next job: {busy_states:?}"
    );

    let core_events = feed(&sim, &core);
    assert!(
        job_ends(&core_events).contains(&"FIN_ERROR".to_string()),
        "{core_events:?}"
    );
    let core_states = states(&core_events);
    let attention = core_states
        .iter()
        .position(|s| s == "ATTENTION")
        .expect("attention");
    let error = core_states
        .iter()
        .position(|s| s == "ERROR")
        .expect("error");
    assert!(
        attention < error && core_states[error..].contains(&"IDLE".to_string()),
        "{core_states:?}"
    );
    assert!(
        max_nozzle > 230.0,
        "Core One heated up for PETG: {max_nozzle}"
    );

    let mini_events = feed(&sim, &mini);
    let mini_states = states(&mini_events);
    let paused = mini_states
        .iter()
        .position(|s| s == "PAUSED")
        .expect("paused");
    assert_eq!(mini_states[paused + 1], "PRINTING", "{mini_states:?}");
    assert!(
        job_ends(&mini_events).contains(&"FIN_OK".to_string()),
        "{mini_states:?}"
    );

    // Manual printers are never moved by step().
    assert!(feed(&sim, &manual).is_empty());
    assert_eq!(sim.printer_state(&manual).as_deref(), Some("IDLE"));
    let world = sim.world();
    let m = world.printer(&manual).expect("manual printer");
    assert_eq!((m.temps.nozzle, m.axes.z), (24.0, 10.0));
}

#[test]
fn demo_survives_user_interference() {
    let sim = Simulator::new(SimOptions {
        token: None,
        scenario: Scenario::Demo,
    });
    let busy = sim.printer_uuid("Busy MK4").expect("busy");
    sim.pause(&busy);
    for _ in 0..30 {
        sim.step(Duration::from_secs(1));
    }
    assert_eq!(
        sim.printer_state(&busy).as_deref(),
        Some("PAUSED"),
        "a user pause is kept"
    );
    sim.finish_job(&busy, "FIN_STOPPED");
    for _ in 0..200 {
        sim.step(Duration::from_secs(1));
    }
    let ends = job_ends(&feed(&sim, &busy));
    assert!(
        ends.iter().filter(|s| *s == "FIN_OK").count() >= 1,
        "{ends:?}"
    );
}

#[test]
fn farm_cycles_deterministically() {
    let farm = |n| {
        Simulator::new(SimOptions {
            token: None,
            scenario: Scenario::Farm { printers: n },
        })
    };
    let sim = farm(24);
    let names: Vec<String> = sim
        .world()
        .printers
        .iter()
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(names.first().map(String::as_str), Some("Farm 001"));
    assert_eq!(names.last().map(String::as_str), Some("Farm 024"));
    let count = |sim: &Simulator, state: &str| {
        sim.world()
            .printers
            .iter()
            .filter(|p| p.effective_state() == state)
            .count()
    };
    assert!(count(&sim, "PRINTING") > 0 && count(&sim, "IDLE") > 0);
    let twin = farm(24);
    for _ in 0..900 {
        sim.step(Duration::from_secs(1));
        twin.step(Duration::from_secs(1));
    }
    let summary = |sim: &Simulator| -> Vec<(String, usize)> {
        sim.world()
            .printers
            .iter()
            .map(|p| (p.effective_state().to_string(), p.jobs.len()))
            .collect()
    };
    assert_eq!(summary(&sim), summary(&twin));
    let finished: usize = sim
        .world()
        .printers
        .iter()
        .map(|p| p.jobs.iter().filter(|j| j.ended_us.is_some()).count())
        .sum();
    assert!(
        finished >= 24,
        "jobs ended in 15 simulated minutes: {finished}"
    );
}

#[test]
fn a_farm_of_long_jobs_prints_for_hours_where_the_farm_prints_for_minutes() {
    let durations = |scenario| -> Vec<f64> {
        let sim = Simulator::new(SimOptions {
            token: None,
            scenario,
        });
        for _ in 0..600 {
            sim.step(Duration::from_secs(1));
        }
        sim.world()
            .printers
            .iter()
            .flat_map(|p| p.jobs.iter().map(|j| j.duration_s))
            .collect()
    };
    let short = durations(Scenario::Farm { printers: 24 });
    let long = durations(Scenario::FarmLongJobs { printers: 24 });
    assert!(!short.is_empty() && !long.is_empty());
    assert!(short.iter().all(|d| (60.0..300.0).contains(d)), "{short:?}");
    assert!(
        long.iter().all(|d| (3600.0..10_800.0).contains(d)),
        "{long:?}"
    );
    assert!(
        short.len() > long.len(),
        "{} jobs against {}",
        short.len(),
        long.len()
    );
}

#[tokio::test]
async fn ticker_steps_until_shutdown() {
    let sim = Simulator::new(SimOptions::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let ticker = tokio::spawn(run_ticker(
        sim.clone(),
        Duration::from_millis(5),
        async move {
            let _ = stopped.await;
        },
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    while sim.world().sim_time < 0.02 {
        assert!(Instant::now() < deadline, "ticker did not step");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), ticker)
        .await
        .expect("ticker stops")
        .expect("ticker did not panic");
}
