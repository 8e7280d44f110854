//! A soak run, not part of CI: the gateway binary against a 50-printer simulated farm living
//! an hour in `SOAK_MINUTES` real minutes (default 10), with Connect failing now and then
//! (503, 429, slow answers, broken JSON), and the MQTT broker killed now and then (about every
//! 5 minutes, at least once) with the gateway restarted while it is away: the events owed then
//! are kept in the gateway's state directory across the restart. At the end every feed event
//! must have been published exactly once, every job that ended while the gateway watched it
//! announced exactly once, and the gateway's memory (since its last restart) must not have
//! grown.
//!
//! `SOAK_MINUTES=10 cargo test --release --test soak -- --ignored --nocapture`

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prusa_connect_sim::{Fault, Scenario};
use rand::Rng;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use common::broker::{Subscriber, TestBroker, UNLIMITED};
use common::gateway::{BASE, Sim, TOKEN};

const PRINTERS: usize = 50;
/// Simulated time covered by the run, whatever its real length.
const SIMULATED: Duration = Duration::from_secs(3600);
/// How often the simulated world moves.
const TICK: Duration = Duration::from_millis(200);
/// Real minutes of the run per broker kill and gateway restart (at least one each run).
const MINUTES_PER_RESTART: f64 = 5.0;

/// RSS growth over the run that still counts as flat.
const RSS_SLACK_KB: u64 = 5 * 1024;

#[derive(Debug, Clone, Copy)]
struct Memory {
    rss_kb: u64,
    hwm_kb: u64,
}

fn memory_of(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    Memory {
        rss_kb: field("VmRSS:"),
        hwm_kb: field("VmHWM:"),
    }
}

fn write_config(dir: &Path, sim: &Sim, broker: &TestBroker) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    let text = format!(
        r#"
[connect]
url = "{url}"
auth_url = "{url}"
access_token = "{TOKEN}"
poll_interval = "3s"
active_poll_interval = "1s"
request_timeout = "5s"
[mqtt]
url = "{mqtt}"
client_id = "soak-gateway"
base_topic = "{BASE}"
[state]
dir = {state:?}
[log]
level = "info"
format = "json"
"#,
        url = sim.url(),
        mqtt = broker.url(),
        state = dir.join("state"),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The faults injected: each for a few seconds, then cleared.
fn random_fault(rng: &mut impl Rng) -> (&'static str, Fault) {
    match rng.random_range(0..6) {
        0 => ("503", Fault::Status(503)),
        1 => ("500", Fault::Status(500)),
        2 => (
            "429",
            Fault::TooManyRequests {
                retry_after_s: rng.random_range(1..5),
            },
        ),
        3 => (
            "delay",
            Fault::Delay(Duration::from_millis(rng.random_range(1000..7000))),
        ),
        4 => ("malformed", Fault::MalformedJson),
        _ => ("truncated", Fault::TruncatedJson),
    }
}

/// Identity of a feed event: `created` is unique within one simulator.
fn event_key(v: &Value) -> String {
    format!("{}|{}", v["created"], v["event"])
}

/// Requests the simulator received since the last call, by kind.
fn count_requests(sim: &Sim, counts: &mut BTreeMap<String, u64>) {
    let requests = sim.sim.requests();
    sim.sim.clear_requests();
    for r in requests {
        *counts.entry(shape(&r.path)).or_default() += 1;
    }
}

/// A path or log line with its ids and numbers blanked, so alike ones count together.
fn shape(text: &str) -> String {
    let mut out = String::new();
    for part in text.split_inclusive(['/', ' ', ':', '(', ')']) {
        let (word, sep) = match part.char_indices().last() {
            Some((i, c)) if "/ :()".contains(c) => (&part[..i], &part[i..]),
            _ => (part, ""),
        };
        let id_like = word.len() >= 8 && word.contains('-')
            || !word.is_empty() && word.chars().any(|c| c.is_ascii_digit());
        out.push_str(if id_like { "#" } else { word });
        out.push_str(sep);
    }
    out
}

/// Waits until the gateway has asked for the printer list `n` more times.
async fn wait_for_polls(sim: &Sim, n: usize) {
    let polls = || {
        sim.sim
            .requests()
            .iter()
            .filter(|r| r.path == "/app/printers")
            .count()
    };
    let before = polls();
    let deadline = Instant::now() + Duration::from_secs(30);
    while polls() < before + n {
        assert!(Instant::now() < deadline, "the gateway stopped polling");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGTERM, as systemd stops the service; returns how it exited.
async fn stop_child(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM failed");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the gateway did not stop within 15 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a soak run of SOAK_MINUTES (default 10) minutes; run by hand"]
async fn farm_soak() {
    let minutes: f64 = std::env::var("SOAK_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10.0);
    let run = Duration::from_secs_f64(minutes * 60.0);
    let speed = SIMULATED.as_secs_f64() / run.as_secs_f64();

    // Unlimited queues: a message mosquitto acknowledged to the gateway has reached the
    // subscriber's socket, so a kill loses nothing the gateway counts as delivered.
    let mut broker = TestBroker::start_stoppable(UNLIMITED).unwrap_or_else(TestBroker::start);
    let sim = Arc::new(Sim::start_scenario(Scenario::Farm { printers: PRINTERS }).await);
    let uuids = sim.sim.printers();
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim, &broker);
    let log_path = dir.path().join("gateway.log");
    let start_gateway = || {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        Command::new(env!("CARGO_BIN_EXE_prusa-connect-mqtt"))
            .arg("run")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the gateway")
    };
    let mut child = start_gateway();
    let mut pid = child.id();

    // The first full poll: every printer bridged, its feed cursor set.
    let info = sub
        .wait_for(
            &format!("{BASE}/bridge/info"),
            Duration::from_secs(60),
            |m| m.json()["printers"].as_array().map(Vec::len) == Some(PRINTERS),
        )
        .await
        .json();
    let id_of: HashMap<String, String> = info["printers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["uuid"].as_str().unwrap().to_string(),
                p["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // Two more polls (bridge/info is not sent again while nothing changes): nothing of the
    // first look is still on its way.
    wait_for_polls(&sim, 2).await;
    let mut baseline: HashMap<String, BTreeSet<String>> = HashMap::new();
    for uuid in &uuids {
        baseline.insert(
            uuid.clone(),
            sim.feed(uuid).await.iter().map(event_key).collect(),
        );
    }
    let started_unix = prusa_connect_mqtt::payloads::now_unix();
    let mut rss_start = memory_of(pid);
    let mut samples = vec![(0u64, rss_start)];
    let mut requests = BTreeMap::new();
    count_requests(&sim, &mut requests);
    requests.clear();
    println!(
        "soak: {PRINTERS} printers, {minutes} min real = {} min simulated (x{speed:.1}); gateway pid {pid}, RSS {} kB",
        SIMULATED.as_secs() / 60,
        rss_start.rss_kb
    );

    // The world moves...
    let stop = CancellationToken::new();
    let ticker = {
        let (sim, stop) = (sim.clone(), stop.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(TICK);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            let dt = TICK.mul_f64(speed);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = every.tick() => sim.sim.step(dt),
                }
            }
        })
    };
    // ...and Connect fails now and then.
    let faults: Arc<Mutex<BTreeMap<&'static str, u32>>> = Arc::default();
    let injector = {
        let (sim, stop, faults) = (sim.clone(), stop.clone(), faults.clone());
        tokio::spawn(async move {
            loop {
                let (pause, hold, (name, fault)) = {
                    let mut rng = rand::rng();
                    (
                        Duration::from_secs(rng.random_range(15..45)),
                        Duration::from_secs(rng.random_range(2..8)),
                        random_fault(&mut rng),
                    )
                };
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                sim.sim.set_fault(Some(fault));
                *faults.lock().unwrap().entry(name).or_default() += 1;
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(hold) => {}
                }
                sim.sim.set_fault(None);
                if stop.is_cancelled() {
                    return;
                }
            }
        })
    };

    // When the broker is killed and the gateway restarted meanwhile (mosquitto only).
    let kills = (minutes / MINUTES_PER_RESTART).floor().max(1.0) as u32;
    let mut kills_due: Vec<Duration> = if broker.is_mosquitto() {
        (1..=kills)
            .rev()
            .map(|k| run.mul_f64(f64::from(k) / f64::from(kills + 1)))
            .collect()
    } else {
        println!("soak: no broker kills (the embedded broker cannot be killed)");
        Vec::new()
    };
    let mut restarts = 0;
    let began = Instant::now();
    let mut next_sample = Duration::from_secs(60);
    while began.elapsed() < run {
        let until = next_sample.min(run).min(*kills_due.last().unwrap_or(&run));
        tokio::time::sleep(until.saturating_sub(began.elapsed())).await;
        if kills_due.last().is_some_and(|at| began.elapsed() >= *at) {
            kills_due.pop();
            // The broker goes; the world moves on (events owed pile up in the gateway); the
            // gateway is restarted while the broker is away; then the broker comes back.
            let sessions = sub.sessions();
            broker.stop();
            let away = Duration::from_secs(rand::rng().random_range(3..8));
            tokio::time::sleep(away).await;
            let status = stop_child(&mut child).await;
            assert!(status.success(), "the gateway exited with {status}");
            broker.restart();
            sub.wait_sessions(sessions + 1, Duration::from_secs(30))
                .await;
            child = start_gateway();
            pid = child.id();
            restarts += 1;
            wait_for_polls(&sim, 3).await;
            rss_start = memory_of(pid);
            println!(
                "soak: {:>4}s broker killed for {away:?}, gateway restarted (pid {pid})",
                began.elapsed().as_secs()
            );
            continue;
        }
        next_sample += Duration::from_secs(60);
        count_requests(&sim, &mut requests);
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the gateway exited with {status} during the run; its log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        let m = memory_of(pid);
        let at = began.elapsed().as_secs();
        println!(
            "soak: {:>4}s RSS {} kB (peak {} kB), {} messages so far",
            at,
            m.rss_kb,
            m.hwm_kb,
            sub.mark()
        );
        samples.push((at, m));
    }
    stop.cancel();
    ticker.await.unwrap();
    injector.await.unwrap();
    sim.sim.set_fault(None);

    // The world is frozen. Events that came without a change the gateway watches for wait
    // for the next change: give every printer one, then let the gateway catch up.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let event_topic = |uuid: &str| format!("{BASE}/{}/event", id_of[uuid]);
    let expected_of = |feed: &[Value], uuid: &str| -> BTreeSet<String> {
        feed.iter()
            .map(event_key)
            .filter(|k| !baseline[uuid].contains(k))
            .collect()
    };
    let mut delayed = 0usize;
    for uuid in &uuids {
        let feed = sim.feed(uuid).await;
        let published: BTreeSet<String> = sub
            .on(&event_topic(uuid))
            .iter()
            .map(|m| event_key(&m.json()))
            .collect();
        delayed += expected_of(&feed, uuid).difference(&published).count();
    }
    let list = sim.get_json("/app/printers?limit=100").await;
    for p in list["printers"].as_array().unwrap() {
        let online = p["connect_state"] != "OFFLINE";
        sim.sim.set_online(p["uuid"].as_str().unwrap(), !online);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut expected_total, mut lost, mut published_total, mut duplicates);
    loop {
        (expected_total, lost, published_total, duplicates) = (0, 0, 0, 0);
        for uuid in &uuids {
            let expected = expected_of(&sim.feed(uuid).await, uuid);
            let published: Vec<String> = sub
                .on(&event_topic(uuid))
                .iter()
                .map(|m| event_key(&m.json()))
                .collect();
            let unique: BTreeSet<String> = published.iter().cloned().collect();
            expected_total += expected.len();
            lost += expected.difference(&unique).count();
            published_total += published.len();
            duplicates += published.len() - unique.len();
        }
        if lost == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    count_requests(&sim, &mut requests);

    // Jobs that ended during the run, against `job/finished`.
    let (mut ended, mut announced, mut missed_seen, mut missed_unseen, mut dup_finished) =
        (0, 0, 0, 0, 0);
    let mut missed = Vec::new();
    for uuid in &uuids {
        let id = &id_of[uuid];
        let jobs = sim
            .get_json(&format!("/app/printers/{uuid}/jobs?limit=1000"))
            .await;
        let finals: BTreeSet<i64> = jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| {
                matches!(
                    j["state"].as_str(),
                    Some("FIN_OK" | "FIN_ERROR" | "FIN_STOPPED")
                ) && j["ts_ended"]
                    .as_f64()
                    .is_some_and(|t| t >= started_unix.floor())
            })
            .map(|j| j["id"].as_i64().unwrap())
            .collect();
        let finished: Vec<i64> = sub
            .on(&format!("{BASE}/{id}/job/finished"))
            .iter()
            .map(|m| m.json()["job_id"].as_i64().unwrap())
            .collect();
        let finished_set: BTreeSet<i64> = finished.iter().copied().collect();
        dup_finished += finished.len() - finished_set.len();
        // Jobs the gateway saw running (printing or paused) in some `P/job`.
        let seen_running: BTreeSet<i64> = sub
            .on(&format!("{BASE}/{id}/job"))
            .iter()
            .filter_map(|m| {
                let j = m.json();
                matches!(j["state"].as_str(), Some("PRINTING" | "PAUSED"))
                    .then(|| j["id"].as_i64())
                    .flatten()
            })
            .collect();
        ended += finals.len();
        announced += finished_set.intersection(&finals).count();
        for job in finals.difference(&finished_set) {
            if seen_running.contains(job) {
                missed_seen += 1;
                missed.push(format!("{id} job {job}"));
            } else {
                missed_unseen += 1;
            }
        }
    }

    let rss_end = memory_of(pid);
    samples.push((began.elapsed().as_secs(), rss_end));
    let mark = sub.mark();
    let status = stop_child(&mut child).await;
    // A clean stop says so (the last will covers only crashes).
    sub.wait_for_after(
        mark,
        &format!("{BASE}/bridge/state"),
        Duration::from_secs(5),
        |m| m.text() == "offline",
    )
    .await;
    let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let (mut warnings, mut errors) = (0, 0);
    let mut log_kinds: BTreeMap<String, usize> = BTreeMap::new();
    for line in log_text.lines() {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let level = entry["level"].as_str().unwrap_or_default();
        match level {
            "WARN" => warnings += 1,
            "ERROR" => errors += 1,
            _ => continue,
        }
        let message = entry["fields"]["message"].as_str().unwrap_or_default();
        *log_kinds
            .entry(format!("{level} {}", shape(message)))
            .or_default() += 1;
    }
    let panics = log_text.lines().filter(|l| l.contains("panicked")).count();
    let faults = faults.lock().unwrap().clone();
    let peak = samples.iter().map(|(_, m)| m.hwm_kb).max().unwrap_or(0);

    println!("\n=== soak summary ===");
    println!(
        "duration            {minutes} min real, {} min simulated",
        SIMULATED.as_secs() / 60
    );
    println!("printers            {PRINTERS}");
    println!("broker kills        {restarts}, each with a gateway restart while it was away");
    println!(
        "RSS                 start {} kB (after the last restart), end {} kB, peak (VmHWM) {} kB",
        rss_start.rss_kb, rss_end.rss_kb, peak
    );
    for (at, m) in &samples {
        println!("  at {at:>5}s         RSS {} kB", m.rss_kb);
    }
    println!(
        "events              expected {expected_total}, published {published_total}, lost {lost}, duplicated {duplicates}"
    );
    println!("  published only after a nudge at the end: {delayed}");
    println!(
        "jobs ended          {ended}, announced {announced}, missed (seen running) {missed_seen}, missed (never seen running) {missed_unseen}, announced twice {dup_finished}"
    );
    println!(
        "faults injected     {} ({faults:?})",
        faults.values().sum::<u32>()
    );
    println!(
        "requests            {} ({} printer list polls)",
        requests.values().sum::<u64>(),
        requests.get("/app/printers").copied().unwrap_or(0)
    );
    for (path, n) in &requests {
        println!("  {n:>7} {path}");
    }
    println!("gateway log         {warnings} WARN, {errors} ERROR, {panics} panics");
    for (line, n) in &log_kinds {
        println!("  {n:>5} x {line}");
    }
    println!("gateway exit        {status}");
    if !missed.is_empty() {
        println!("missed job/finished: {missed:?}");
    }

    assert_eq!(panics, 0, "the gateway panicked:\n{log_text}");
    assert!(status.success(), "the gateway exited with {status}");
    assert_eq!(lost, 0, "events lost");
    assert_eq!(duplicates, 0, "events published twice");
    assert_eq!(dup_finished, 0, "jobs announced twice");
    assert_eq!(missed_seen, 0, "ended jobs not announced: {missed:?}");
    assert!(
        rss_end.rss_kb <= rss_start.rss_kb + RSS_SLACK_KB,
        "RSS grew from {} kB to {} kB",
        rss_start.rss_kb,
        rss_end.rss_kb
    );
}
