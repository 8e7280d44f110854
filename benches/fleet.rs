//! Fleet benchmark (issue 7): a private broker, the simulated Connect (in this process, over
//! TCP) with 1, 50 and 500 printers, and the gateway as a separate process (the release
//! binary, default poll settings) so /proc measures only the gateway. Everything is measured
//! from a subscriber's point of view, next to the "anchors' strategy" baseline: one
//! `GET /app/printers/{uuid}` per printer every 30 s, run as a tiny poller in this process.
//!
//! `cargo bench --bench fleet` (about 12 minutes); `BENCH_QUICK=1` for a ~2 minute run with
//! fewer samples and only 500 printers; `BENCH_SIZES=1,50` picks the fleet sizes;
//! `BENCH_LIVE=both` runs each size without and with the live channel (`on`: only with it);
//! `GW_BIN=path` measures another build of the gateway (an older one, for a comparison).
//! Prints a markdown table. It stops by itself.

#[path = "../tests/common/broker.rs"]
mod broker;
#[path = "common/process.rs"]
mod process;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use broker::{Msg, Subscriber, TestBroker};
use process::Gateway;
use prusa_connect_sim::{PrinterSpec, RecordedRequest, Scenario, SimOptions, Simulator};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "t";
const BASE: &str = "prusa_connect";
const IDLE_POLL: Duration = Duration::from_secs(30);
const ACTIVE_POLL: Duration = Duration::from_secs(5);
/// How long after its poll interval a change may take to show before it counts as lost.
const DRAIN_MARGIN: Duration = Duration::from_secs(10);
/// The baseline's period: one detail request per printer this often.
const BASELINE_PERIOD: Duration = Duration::from_secs(30);

/// How long each phase lasts and how many samples it takes.
#[derive(Clone, Copy)]
struct Plan {
    idle_quiet: Duration,
    idle_samples: usize,
    idle_spacing: Duration,
    commands: usize,
    print_quiet: Duration,
    print_samples: usize,
    print_spacing: Duration,
    accept_samples: usize,
    /// The camera window of the 1-printer fleet.
    camera: Duration,
}

#[derive(Debug, Default, Clone, Copy)]
struct CameraWindow {
    fetched_per_hour: f64,
    not_modified_per_hour: f64,
    pictures_per_hour: f64,
    picture_bytes_per_hour: f64,
    all_messages_per_hour: f64,
    all_bytes_per_hour: f64,
    seconds: f64,
}

/// A printing printer with a camera, its progress moving every 5 s as a real print's does
/// (so its picture changes): what its camera costs in requests and MQTT traffic.
async fn camera_window(
    sub: &Subscriber,
    sim: &Simulator,
    uuid: &str,
    id: &str,
    length: Duration,
) -> CameraWindow {
    let opened = Instant::now();
    let mark = sub.mark();
    let first_request = sim.requests().last().map_or(0, |r| r.seq);
    let mut progress = 10.0;
    while opened.elapsed() < length {
        progress += 0.2;
        sim.set_progress(uuid, progress);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let hours = opened.elapsed().as_secs_f64() / 3600.0;
    let snapshots: Vec<RecordedRequest> = sim
        .requests()
        .into_iter()
        .filter(|r| r.seq > first_request && r.path.ends_with("/snapshots/last"))
        .collect();
    let answered = |status| {
        snapshots
            .iter()
            .filter(|r| r.status == Some(status))
            .count() as f64
    };
    let prefix = format!("{BASE}/{id}/");
    let mine: Vec<Msg> = sub
        .messages_since(mark)
        .into_iter()
        .filter(|m| m.topic.starts_with(&prefix))
        .collect();
    let size = |m: &Msg| (m.topic.len() + m.payload.len()) as f64;
    let pictures: Vec<&Msg> = mine
        .iter()
        .filter(|m| m.topic.contains("/camera/"))
        .collect();
    CameraWindow {
        fetched_per_hour: answered(200) / hours,
        not_modified_per_hour: answered(304) / hours,
        pictures_per_hour: pictures.len() as f64 / hours,
        picture_bytes_per_hour: pictures.iter().map(|m| size(m)).sum::<f64>() / hours,
        all_messages_per_hour: mine.len() as f64 / hours,
        all_bytes_per_hour: mine.iter().map(size).sum::<f64>() / hours,
        seconds: hours * 3600.0,
    }
}

impl Plan {
    fn full() -> Plan {
        Plan {
            idle_quiet: Duration::from_secs(60),
            idle_samples: 20,
            idle_spacing: Duration::from_secs(3),
            commands: 200,
            print_quiet: Duration::from_secs(30),
            print_samples: 20,
            print_spacing: Duration::from_secs(1),
            accept_samples: 20,
            camera: Duration::from_secs(120),
        }
    }

    fn quick() -> Plan {
        Plan {
            idle_quiet: Duration::from_secs(30),
            idle_samples: 10,
            idle_spacing: Duration::from_secs(1),
            commands: 50,
            print_quiet: Duration::from_secs(10),
            print_samples: 20,
            print_spacing: Duration::from_secs(1),
            accept_samples: 6,
            camera: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    Idle,
    Printing,
}

/// Latencies of the baseline poller: time from a change to the end of its first poll that
/// started after the change.
#[derive(Default)]
struct BaselineSeen {
    pending: HashMap<usize, Vec<(Instant, Kind)>>,
    latencies: HashMap<Kind, Vec<f64>>,
}

#[derive(Default)]
struct Row {
    n: usize,
    /// The gateway ran with `connect.live` (the simulator's live channel).
    live: bool,
    gw_idle_lat: Vec<f64>,
    gw_print_lat: Vec<f64>,
    bl_idle_lat: Vec<f64>,
    bl_print_lat: Vec<f64>,
    gw_req_idle: f64,
    gw_req_print: f64,
    gw_req_per_tick_idle: f64,
    gw_req_per_tick_print: f64,
    gw_req_max_tick_idle: usize,
    gw_req_max_tick_print: usize,
    bl_req_idle: f64,
    bl_req_print: f64,
    msgs_idle: f64,
    bytes_idle: f64,
    msgs_print: f64,
    bytes_print: f64,
    rtt: Vec<f64>,
    /// The round trip minus the simulator's own time for the command request.
    rtt_overhead: Vec<f64>,
    rtt_not_ok: usize,
    cam_req_idle: f64,
    cam_req_print: f64,
    /// The camera window (1 printer only): snapshot answers 200 / 304 per hour, pictures
    /// and their bytes per hour, and every message / byte per hour on the printer's topics.
    cam_window: Option<CameraWindow>,
    accept: Vec<f64>,
    rss_kb: u64,
    cpu_idle: f64,
    cpu_print: f64,
    max_tick_idle: f64,
    max_tick_print: f64,
    republish: Option<(f64, usize)>,
    /// From the gateway's start to every printer's start-up reads back (`bridge/info.known`)
    /// and its totals seeded (`P/stats.seeded`).
    settled: f64,
    /// Requests to Connect's statistics that seeded the totals (once, at the first start).
    seed_requests: usize,
    windows: String,
}

fn main() {
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let plan = if quick { Plan::quick() } else { Plan::full() };
    let sizes: Vec<usize> = match std::env::var("BENCH_SIZES") {
        Ok(s) if !s.is_empty() => s
            .split(',')
            .map(|n| n.trim().parse().expect("BENCH_SIZES: numbers"))
            .collect(),
        _ if quick => vec![500],
        _ => vec![1, 50, 500],
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // BENCH_LIVE=both runs each size without and with the live channel; `on` only with it.
    let live_modes: Vec<bool> = match std::env::var("BENCH_LIVE").as_deref() {
        Ok("both") => vec![false, true],
        Ok("on" | "1") => vec![true],
        _ => vec![false],
    };
    let started = Instant::now();
    let rows: Vec<Row> = sizes
        .iter()
        .flat_map(|&n| live_modes.iter().map(move |&live| (n, live)))
        .map(|(n, live)| {
            let row = rt.block_on(fleet(n, plan, live));
            eprintln!(
                "[{:>5.0} s] {n} printers{} done",
                started.elapsed().as_secs_f64(),
                if live { " (live)" } else { "" }
            );
            row
        })
        .collect();
    println!("{}", table(&rows, quick, started.elapsed()));
}

/// One fleet size: every phase, in order.
async fn fleet(n: usize, plan: Plan, live: bool) -> Row {
    let mut row = Row {
        n,
        live,
        ..Row::default()
    };
    let mut broker = TestBroker::start();
    let sim_epoch = Instant::now();
    let sim = Simulator::new(SimOptions {
        token: Some(TOKEN.into()),
        scenario: Scenario::Empty,
    });
    let uuids: Vec<String> = (0..n)
        .map(|i| sim.add_printer(PrinterSpec::named(&format!("Fleet {:03}", i + 1))))
        .collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(sim.clone().serve(listener, stop.clone().cancelled_owned()));
    let rel = |t: Instant| t.duration_since(sim_epoch);

    let sub = Subscriber::connect(&broker, &["#"]).await;
    let gateway = start_gateway(n, &format!("http://{addr}"), &broker.url(), live);
    let gateway_started = Instant::now();
    // Wait until every printer has a state on the broker; the ids come from bridge/info.
    let mut seen = Latest::default();
    let ids: Vec<String> = wait_until(Duration::from_secs(120), || {
        seen.update(&sub);
        let info = seen.last.get(&format!("{BASE}/bridge/info"))?.json();
        let printers = info["printers"].as_array()?.clone();
        (printers.len() == n).then_some(())?;
        let by_uuid: HashMap<&str, &str> = printers
            .iter()
            .map(|p| (p["uuid"].as_str().unwrap(), p["id"].as_str().unwrap()))
            .collect();
        let ids: Vec<String> = uuids
            .iter()
            .map(|u| by_uuid[u.as_str()].to_string())
            .collect();
        ids.iter()
            .all(|id| seen.last.contains_key(&format!("{BASE}/{id}/state")))
            .then_some(ids)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "{n} printers not all on the broker; gateway log:\n{}",
            gateway.log()
        )
    });

    // The first polls read every printer's start-up data (cameras, queues, supported commands,
    // free space: at most 64 such requests a poll): the measurements start once
    // `bridge/info.known` says all of it is back, and how long it took is reported. Then each
    // printer's totals are seeded from Connect's statistics, once (3 requests a printer, when
    // no other read waits; `P/stats.seeded` says when): the idle and printing windows measure
    // what follows, and the seeding's requests are reported apart.
    wait_until(Duration::from_secs(1200), || {
        seen.update(&sub);
        let listed = sim
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/cameras"))
            .count();
        let queues_known = ids.iter().all(|id| {
            seen.last
                .get(&format!("{BASE}/{id}/state"))
                .is_some_and(|m| !m.json()["queue_count"].is_null())
        });
        let known = seen
            .last
            .get(&format!("{BASE}/bridge/info"))
            .is_some_and(|m| m.json()["known"] == format!("{n}/{n}"));
        let seeded = ids.iter().all(|id| {
            seen.last
                .get(&format!("{BASE}/{id}/stats"))
                .is_some_and(|m| {
                    m.json()["seeded"]["read"]
                        .as_array()
                        .is_some_and(|r| r.len() == 3)
                })
        });
        (listed >= n && queues_known && known && seeded).then_some(())
    })
    .await
    .expect("every printer's start-up reads back within 20 minutes");
    row.settled = gateway_started.elapsed().as_secs_f64();
    row.seed_requests = sim
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/app/stats/"))
        .count();
    if live {
        wait_until(Duration::from_secs(120), || {
            seen.update(&sub);
            let info = seen.last.get(&format!("{BASE}/bridge/info"))?.json();
            (info["live"]["printers_subscribed"] == n).then_some(())
        })
        .await
        .expect("the live channel follows every printer within 2 minutes");
    }

    let baseline = Arc::new(Mutex::new(BaselineSeen::default()));
    let bl_stop = CancellationToken::new();
    spawn_baseline(
        &format!("http://{addr}"),
        &uuids,
        baseline.clone(),
        bl_stop.clone(),
    );
    // Let the startup burst (discovery, first states, first feed reads) pass.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // --- idle fleet, nobody touches anything. The 50-printer fleet is watched for one whole
    // feed interval (10 minutes): its scheduled feed reads are spread over it.
    let idle_quiet = if plan.idle_quiet >= Duration::from_secs(60) && n == 50 {
        Duration::from_secs(600)
    } else {
        plan.idle_quiet
    };
    let w = Window::open(&sub, &gateway, sim_epoch);
    tokio::time::sleep(idle_quiet).await;
    let idle = w.close(&sub, &gateway, &sim, n);
    row.gw_req_idle = idle.gw_requests_per_printer_hour;
    row.bl_req_idle = idle.bl_requests_per_printer_hour;
    row.gw_req_per_tick_idle = idle.gw_requests_per_tick;
    row.gw_req_max_tick_idle = idle.gw_requests_max_tick;
    row.msgs_idle = idle.msgs_per_printer_hour;
    row.cam_req_idle = idle.cam_requests_per_hour;
    row.bytes_idle = idle.bytes_per_printer_hour;
    row.cpu_idle = idle.cpu_per_hour;
    row.max_tick_idle = idle.max_tick(IDLE_POLL);
    let _ = write!(row.windows, "idle {:.0} s", idle_quiet.as_secs_f64());

    // --- idle printers change state (IDLE <-> READY): both strategies watch
    row.gw_idle_lat = sample_changes(
        &sub,
        &sim,
        &uuids,
        &ids,
        &baseline,
        Kind::Idle,
        plan.idle_samples,
        plan.idle_spacing,
        IDLE_POLL + DRAIN_MARGIN,
    )
    .await;
    // The baseline's view of these changes is collected at the end: it keeps polling.
    let idle_changes = row.gw_idle_lat.len();

    // --- command round trip on an idle printer
    let reply_topic = format!("{BASE}/{}/command/response", ids[0]);
    let cmd_topic = format!("{BASE}/{}/command", ids[0]);
    for i in 0..plan.commands {
        let payload = format!(
            r#"{{"command":"MOVE","kwargs":{{"x":{},"y":100,"feedrate":3000}},"transaction":"m{i}"}}"#,
            i % 200
        );
        let mark = sub.mark();
        let sent = Instant::now();
        sub.publish(&cmd_topic, payload, false).await;
        let reply = sub
            .wait_for_after(mark, &reply_topic, Duration::from_secs(10), |m| {
                m.json()["transaction"] == format!("m{i}").as_str()
            })
            .await;
        let rtt = reply.at.duration_since(sent).as_secs_f64();
        row.rtt.push(rtt);
        // The simulator's own time for this command's request.
        let sim_time = sim
            .requests()
            .iter()
            .rev()
            .find(|r| {
                r.path.ends_with("/commands/sync") && r.body.contains(&format!("\"x\":{}", i % 200))
            })
            .and_then(|r| r.took)
            .map(|d| d.as_secs_f64());
        if let Some(t) = sim_time {
            row.rtt_overhead.push((rtt - t).max(0.0));
        }
        if reply.json()["status"] != "ok" {
            row.rtt_not_ok += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // --- the whole fleet prints
    let last_command = Instant::now();
    for uuid in &uuids {
        sim.start_job(uuid, "bench.gcode", 3 * 3600, &[]);
    }
    wait_until(Duration::from_secs(60), || {
        seen.update(&sub);
        ids.iter()
            .all(|id| {
                seen.last
                    .get(&format!("{BASE}/{id}/state"))
                    .is_some_and(|m| m.json()["printer_state"] == "PRINTING")
            })
            .then_some(())
    })
    .await
    .expect("the printing fleet shows on the broker");
    // Past the job reads of the start and the 30 s of fast polls after the last command
    // (which would hide what the live channel saves).
    tokio::time::sleep(ACTIVE_POLL * 2).await;
    let fast_polls_over = last_command + Duration::from_secs(32);
    tokio::time::sleep(fast_polls_over.saturating_duration_since(Instant::now())).await;
    let w = Window::open(&sub, &gateway, sim_epoch);
    tokio::time::sleep(plan.print_quiet).await;
    let printing = w.close(&sub, &gateway, &sim, n);
    row.gw_req_print = printing.gw_requests_per_printer_hour;
    row.bl_req_print = printing.bl_requests_per_printer_hour;
    row.gw_req_per_tick_print = printing.gw_requests_per_tick;
    row.gw_req_max_tick_print = printing.gw_requests_max_tick;
    row.msgs_print = printing.msgs_per_printer_hour;
    row.cam_req_print = printing.cam_requests_per_hour;
    if n == 1 {
        row.cam_window = Some(camera_window(&sub, &sim, &uuids[0], &ids[0], plan.camera).await);
    }
    row.bytes_print = printing.bytes_per_printer_hour;
    row.cpu_print = printing.cpu_per_hour;
    row.max_tick_print = printing.max_tick(ACTIVE_POLL);
    let _ = write!(
        row.windows,
        ", printing {:.0} s",
        plan.print_quiet.as_secs_f64()
    );

    row.gw_print_lat = sample_changes(
        &sub,
        &sim,
        &uuids,
        &ids,
        &baseline,
        Kind::Printing,
        plan.print_samples,
        plan.print_spacing,
        ACTIVE_POLL + DRAIN_MARGIN,
    )
    .await;
    let print_changes = row.gw_print_lat.len();

    // --- a command accepted by Connect -> the new state on the broker (pause, resume, ...)
    let state_topic = format!("{BASE}/{}/state", ids[0]);
    for i in 0..plan.accept_samples {
        let (command, expect) = if i % 2 == 0 {
            ("PAUSE_PRINT", "PAUSED")
        } else {
            ("RESUME_PRINT", "PRINTING")
        };
        let mark = sub.mark();
        let sim_mark = rel(Instant::now());
        sub.publish(
            &cmd_topic,
            format!(r#"{{"command":"{command}","transaction":"a{i}"}}"#),
            false,
        )
        .await;
        let reply = sub
            .wait_for_after(mark, &reply_topic, Duration::from_secs(10), |m| {
                m.json()["transaction"] == format!("a{i}").as_str()
            })
            .await;
        assert_eq!(reply.json()["status"], "ok", "{command}: {}", reply.text());
        let state = sub
            .wait_for_after(mark, &state_topic, Duration::from_secs(30), |m| {
                m.json()["printer_state"] == expect
            })
            .await;
        let accepted = sim
            .requests()
            .into_iter()
            .rev()
            .find(|r| r.at >= sim_mark && r.path.ends_with("/commands/sync"))
            .expect("the command reached Connect");
        row.accept.push(
            state
                .at
                .duration_since(sim_epoch + accepted.at)
                .as_secs_f64(),
        );
        // Each sample starts from a settled gateway, not right behind the previous poll.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    row.rss_kb = gateway.peak_rss_kb();

    // --- broker restart: every retained topic back
    if broker.is_mosquitto() {
        let expected = retained_topics(&sub.messages_since(0));
        broker.stop();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mark = sub.mark();
        broker.restart();
        let up = Instant::now();
        let mut first: HashMap<String, Instant> = HashMap::new();
        let mut cursor = mark;
        let done = wait_until(Duration::from_secs(60), || {
            let new = sub.messages_since(cursor);
            cursor += new.len();
            for m in new {
                first.entry(m.topic).or_insert(m.at);
            }
            let all = expected
                .iter()
                .map(|t| first.get(t).copied())
                .collect::<Option<Vec<_>>>()?;
            all.into_iter().max()
        })
        .await;
        row.republish = done.map(|at| (at.duration_since(up).as_secs_f64(), expected.len()));
    }

    row.bl_idle_lat = wait_baseline(&baseline, Kind::Idle, idle_changes).await;
    row.bl_print_lat = wait_baseline(&baseline, Kind::Printing, print_changes).await;
    bl_stop.cancel();
    gateway.stop().await;
    stop.cancel();
    row
}

/// Changes `count` printers one after the other, `spacing` apart (a printer whose last
/// change is not on the broker yet is not changed again), and returns the gateway's
/// latencies: change -> the state on the broker. Registers each change with the baseline.
#[allow(clippy::too_many_arguments)]
async fn sample_changes(
    sub: &Subscriber,
    sim: &Simulator,
    uuids: &[String],
    ids: &[String],
    baseline: &Mutex<BaselineSeen>,
    kind: Kind,
    count: usize,
    spacing: Duration,
    drain: Duration,
) -> Vec<f64> {
    struct Pending {
        printer: usize,
        at: Instant,
        mark: usize,
        expect: serde_json::Value,
    }
    let mut pending: Vec<Pending> = Vec::new();
    let mut latencies = Vec::new();
    let mut cool: HashMap<usize, Instant> = HashMap::new();
    let mut made = 0;
    let mut progress: HashMap<usize, f64> = HashMap::new();
    let mut next_change = Instant::now();
    let mut deadline = Instant::now() + drain;
    let window_mark = sub.mark();
    // No new change after this; with one printer each change waits for the last one.
    let last_change = Instant::now() + spacing * count as u32;
    while (made < count && Instant::now() < last_change) || !pending.is_empty() {
        if !pending.is_empty() && Instant::now() > deadline {
            eprintln!(
                "{} {kind:?} changes never reached the broker",
                pending.len()
            );
            break;
        }
        if made < count && Instant::now() >= next_change && Instant::now() < last_change {
            let now = Instant::now();
            let busy: HashSet<usize> = pending
                .iter()
                .map(|p| p.printer)
                .chain(cool.iter().filter(|(_, t)| **t > now).map(|(p, _)| *p))
                .collect();
            // A random printer: the baseline polls printers at fixed phases of its period, so
            // neighbours changed one after the other would all be seen at about the same time.
            let start = rand::random_range(0..uuids.len());
            let free = (0..uuids.len())
                .map(|k| (start + k) % uuids.len())
                .find(|p| !busy.contains(p));
            if let Some(p) = free {
                let mark = sub.mark();
                let at = Instant::now();
                let expect = match kind {
                    Kind::Idle => {
                        let to = if sim.printer_state(&uuids[p]).as_deref() == Some("READY") {
                            "IDLE"
                        } else {
                            "READY"
                        };
                        sim.set_state(&uuids[p], to);
                        serde_json::json!({ "printer_state": to })
                    }
                    Kind::Printing => {
                        let v = progress.entry(p).or_insert(0.0);
                        *v += 0.5;
                        sim.set_progress(&uuids[p], *v);
                        serde_json::json!({ "progress": *v })
                    }
                };
                baseline
                    .lock()
                    .unwrap()
                    .pending
                    .entry(p)
                    .or_default()
                    .push((at, kind));
                pending.push(Pending {
                    printer: p,
                    at,
                    mark,
                    expect,
                });
                made += 1;
                // Jittered, so the changes do not keep one phase of the gateway's tick.
                next_change = at + spacing.mul_f64(rand::random_range(0.5..1.5));
                deadline = at + drain;
            }
        }
        let messages = sub.messages_since(window_mark);
        pending.retain(|s| {
            let topic = format!("{BASE}/{}/state", ids[s.printer]);
            let (key, value) = s.expect.as_object().unwrap().iter().next().unwrap();
            match messages[s.mark - window_mark..]
                .iter()
                .find(|m| m.topic == topic && &m.json()[key] == value)
            {
                Some(m) => {
                    latencies.push(m.at.duration_since(s.at).as_secs_f64());
                    // Changed again right away, a printer would always be changed just after
                    // a poll (with one printer every sample would be a whole interval).
                    let poll = drain - DRAIN_MARGIN;
                    cool.insert(s.printer, m.at + poll.mul_f64(rand::random_range(0.0..1.0)));
                    false
                }
                None => true,
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    latencies
}

/// Waits (at most one baseline period and a bit) until the baseline saw `count` changes.
async fn wait_baseline(baseline: &Mutex<BaselineSeen>, kind: Kind, count: usize) -> Vec<f64> {
    let seen = wait_until(BASELINE_PERIOD + Duration::from_secs(5), || {
        let b = baseline.lock().unwrap();
        let l = b.latencies.get(&kind).cloned().unwrap_or_default();
        (l.len() >= count).then_some(l)
    })
    .await;
    seen.unwrap_or_else(|| {
        baseline
            .lock()
            .unwrap()
            .latencies
            .get(&kind)
            .cloned()
            .unwrap_or_default()
    })
}

/// The anchors' strategy: each printer's detail every 30 s, the printers spread evenly over
/// the period.
fn spawn_baseline(
    url: &str,
    uuids: &[String],
    seen: Arc<Mutex<BaselineSeen>>,
    stop: CancellationToken,
) {
    let client = reqwest::Client::new();
    let n = uuids.len();
    let start = tokio::time::Instant::now();
    for (i, uuid) in uuids.iter().enumerate() {
        let url = format!("{url}/app/printers/{uuid}");
        let (client, seen, stop) = (client.clone(), seen.clone(), stop.clone());
        let first = start + BASELINE_PERIOD.mul_f64(i as f64 / n as f64);
        tokio::spawn(async move {
            let mut every = tokio::time::interval_at(first, BASELINE_PERIOD);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = every.tick() => {}
                }
                let asked = Instant::now();
                let ok = match client.get(&url).bearer_auth(TOKEN).send().await {
                    Ok(resp) => resp.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if !ok {
                    continue;
                }
                let now = Instant::now();
                let mut s = seen.lock().unwrap();
                let BaselineSeen { pending, latencies } = &mut *s;
                if let Some(changes) = pending.get_mut(&i) {
                    changes.retain(|(at, kind)| {
                        if *at <= asked {
                            latencies
                                .entry(*kind)
                                .or_default()
                                .push(now.duration_since(*at).as_secs_f64());
                            false
                        } else {
                            true
                        }
                    });
                }
            }
        });
    }
}

/// What a quiet window (nothing scripted) measured, per printer-hour.
struct Measured {
    gw_requests_per_printer_hour: f64,
    gw_requests_per_tick: f64,
    /// The most requests of one tick (from one list request to the next).
    gw_requests_max_tick: usize,
    bl_requests_per_printer_hour: f64,
    msgs_per_printer_hour: f64,
    bytes_per_printer_hour: f64,
    /// Snapshot requests per hour of the one camera (the simulator gives the first printer
    /// one); not in the request figures above.
    cam_requests_per_hour: f64,
    cpu_per_hour: f64,
    /// Gaps between the gateway's ticks (first list page to first list page), seconds.
    tick_gaps: Vec<f64>,
}

impl Measured {
    /// The longest tick: gap between tick starts minus the wait the gateway chose.
    fn max_tick(&self, interval: Duration) -> f64 {
        self.tick_gaps
            .iter()
            .map(|g| g - interval.as_secs_f64())
            .fold(f64::NAN, f64::max)
    }
}

struct Window {
    opened: Instant,
    sim_epoch: Instant,
    mark: usize,
    cpu: f64,
}

impl Window {
    fn open(sub: &Subscriber, gateway: &Gateway, sim_epoch: Instant) -> Window {
        Window {
            opened: Instant::now(),
            sim_epoch,
            mark: sub.mark(),
            cpu: gateway.cpu_seconds(),
        }
    }

    fn close(self, sub: &Subscriber, gateway: &Gateway, sim: &Simulator, n: usize) -> Measured {
        let closed = Instant::now();
        let hours = closed.duration_since(self.opened).as_secs_f64() / 3600.0;
        let (from, to) = (
            self.opened.duration_since(self.sim_epoch),
            closed.duration_since(self.sim_epoch),
        );
        let requests: Vec<RecordedRequest> = sim
            .requests()
            .into_iter()
            .filter(|r| r.at >= from && r.at < to && r.path.starts_with("/app/"))
            .collect();
        let (cam, requests): (Vec<_>, Vec<_>) = requests
            .into_iter()
            .partition(|r| r.path.starts_with("/app/cameras/"));
        let (bl, gw): (Vec<_>, Vec<_>) = requests.iter().partition(|r| is_baseline(&r.path));
        // What the gateway asked in the window, by kind (on stderr, to explain the counts).
        let mut kinds = std::collections::BTreeMap::<String, usize>::new();
        for r in &gw {
            let kind: Vec<&str> = r
                .path
                .split('/')
                .map(|s| {
                    if s.len() > 12 || s.parse::<u64>().is_ok() {
                        "*"
                    } else {
                        s
                    }
                })
                .collect();
            *kinds.entry(kind.join("/")).or_default() += 1;
        }
        eprintln!(
            "  window of {:.0} s, gateway requests by kind: {kinds:?}",
            hours * 3600.0
        );
        let tick_starts: Vec<f64> = sim
            .requests()
            .iter()
            .filter(|r| r.path == "/app/printers" && r.query.contains("offset=0"))
            .map(|r| r.at.as_secs_f64())
            .collect();
        let in_window: Vec<usize> = (0..tick_starts.len())
            .filter(|&i| tick_starts[i] >= from.as_secs_f64() && tick_starts[i] < to.as_secs_f64())
            .collect();
        // Gaps that end inside the window.
        let tick_gaps = in_window
            .iter()
            .filter(|&&i| i > 0)
            .map(|&i| tick_starts[i] - tick_starts[i - 1])
            .collect();
        // Camera pictures are measured in their own window (`camera_window`).
        let (_pictures, messages): (Vec<Msg>, Vec<Msg>) = sub
            .messages_since(self.mark)
            .iter()
            .filter(|m| !m.topic.ends_with("/command"))
            .cloned()
            .partition(|m| m.topic.contains("/camera/"));
        let bytes: usize = messages
            .iter()
            .map(|m| m.topic.len() + m.payload.len())
            .sum();
        let per = |x: f64| x / n as f64 / hours;
        let mut per_tick: HashMap<usize, usize> = HashMap::new();
        for r in &gw {
            let at = r.at.as_secs_f64();
            let tick = tick_starts.partition_point(|t| *t <= at);
            *per_tick.entry(tick).or_default() += 1;
        }
        Measured {
            gw_requests_max_tick: per_tick.values().copied().max().unwrap_or(0),
            gw_requests_per_printer_hour: per(gw.len() as f64),
            gw_requests_per_tick: gw.len() as f64 / in_window.len().max(1) as f64,
            bl_requests_per_printer_hour: per(bl.len() as f64),
            msgs_per_printer_hour: per(messages.len() as f64),
            bytes_per_printer_hour: per(bytes as f64),
            cam_requests_per_hour: cam.len() as f64 / hours,
            cpu_per_hour: (gateway.cpu_seconds() - self.cpu) / hours,
            tick_gaps,
        }
    }
}

/// The baseline's request: a printer's detail, `/app/printers/{uuid}` and nothing below it.
fn is_baseline(path: &str) -> bool {
    path.strip_prefix("/app/printers/")
        .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
}

/// The last message per topic, read incrementally.
#[derive(Default)]
struct Latest {
    cursor: usize,
    last: HashMap<String, Msg>,
}

impl Latest {
    fn update(&mut self, sub: &Subscriber) {
        let new = sub.messages_since(self.cursor);
        self.cursor += new.len();
        for m in new {
            self.last.insert(m.topic.clone(), m);
        }
    }
}

/// The topics the gateway keeps retained, as last seen (cleared ones excluded).
fn retained_topics(messages: &[Msg]) -> Vec<String> {
    let mut last: BTreeMap<&str, bool> = BTreeMap::new();
    for m in messages {
        last.insert(&m.topic, !m.payload.is_empty());
    }
    last.into_iter()
        .filter(|(t, present)| {
            *present
                && ![
                    "/event",
                    "/command",
                    "/command/response",
                    "/job/finished",
                    "/trigger",
                ]
                .iter()
                .any(|s| t.ends_with(s))
        })
        .map(|(t, _)| t.to_string())
        .collect()
}

async fn wait_until<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The gateway for a fleet of `n`: default settings but unthrottled commands.
fn start_gateway(n: usize, connect_url: &str, mqtt_url: &str, live: bool) -> Gateway {
    // The command round trip measures the gateway, not `commands.max_per_second` (an older
    // build given with GW_BIN has no such key, nor a limit).
    let unthrottled = if std::env::var_os("GW_BIN").is_some() {
        ""
    } else {
        "[commands]\nmax_per_second = 0\n"
    };
    let live = if live {
        let ws = connect_url.replacen("http://", "ws://", 1);
        format!("auth_url = \"{connect_url}\"\nlive = true\nlive_url = \"{ws}/mqtt\"\n")
    } else {
        String::new()
    };
    Gateway::start("pcm-fleet-bench-", |state| {
        format!(
            "[connect]\nurl = \"{connect_url}\"\naccess_token = \"{TOKEN}\"\n{live}[mqtt]\nurl = \"{mqtt_url}\"\nclient_id = \"bench-fleet-{n}\"\n[state]\ndir = {state:?}\n{unthrottled}"
        )
    })
}

// --- the table

fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied()
}

fn lat(values: &[f64], scale: f64, unit: &str) -> String {
    match (percentile(values, 0.5), percentile(values, 0.99)) {
        (Some(m), Some(p)) => format!(
            "{:.2} / {:.2} {unit} (n={})",
            m * scale,
            p * scale,
            values.len()
        ),
        _ => "no samples".into(),
    }
}

fn table(rows: &[Row], quick: bool, took: Duration) -> String {
    let mut t = String::new();
    let head: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} printer{}{}",
                r.n,
                if r.n == 1 { "" } else { "s" },
                if r.live { ", live" } else { "" }
            )
        })
        .collect();
    let _ = writeln!(t, "| metric | strategy | {} | target |", head.join(" | "));
    let _ = writeln!(t, "|---|---|{}---|", "---|".repeat(rows.len()));
    let mut line = |metric: &str, strategy: &str, cell: &dyn Fn(&Row) -> String, target: &str| {
        let cells: Vec<String> = rows.iter().map(cell).collect();
        let _ = writeln!(
            t,
            "| {metric} | {strategy} | {} | {target} |",
            cells.join(" | ")
        );
    };
    line(
        "printing printer: change -> seen, median / p99",
        "gateway",
        &|r: &Row| lat(&r.gw_print_lat, 1.0, "s"),
        "<= 3 s / <= 6 s (live: <= 1.2 s / <= 2.5 s)",
    );
    line(
        "printing printer: change -> seen, median / p99",
        "baseline",
        &|r: &Row| lat(&r.bl_print_lat, 1.0, "s"),
        "",
    );
    line(
        "idle printer: change -> seen, median / p99",
        "gateway",
        &|r: &Row| lat(&r.gw_idle_lat, 1.0, "s"),
        "",
    );
    line(
        "idle printer: change -> seen, median / p99",
        "baseline",
        &|r: &Row| lat(&r.bl_idle_lat, 1.0, "s"),
        "",
    );
    line(
        "Connect requests / printer-hour, idle fleet (camera snapshots apart)",
        "gateway",
        &|r: &Row| format!("{:.1}", r.gw_req_idle),
        "",
    );
    line(
        "Connect requests / printer-hour, idle fleet (camera snapshots apart)",
        "baseline",
        &|r: &Row| format!("{:.1}", r.bl_req_idle),
        "",
    );
    line(
        "Connect requests / printer-hour, printing fleet (camera snapshots apart)",
        "gateway",
        &|r: &Row| format!("{:.1}", r.gw_req_print),
        "",
    );
    line(
        "Connect requests / printer-hour, printing fleet (camera snapshots apart)",
        "baseline",
        &|r: &Row| format!("{:.1}", r.bl_req_print),
        "",
    );
    line(
        "Connect requests / hour, whole idle fleet (camera snapshots apart)",
        "gateway",
        &|r: &Row| format!("{:.0}", r.gw_req_idle * r.n as f64),
        "50: <= 420",
    );
    line(
        "Connect requests / hour, whole idle fleet (camera snapshots apart)",
        "baseline",
        &|r: &Row| format!("{:.0}", r.bl_req_idle * r.n as f64),
        "",
    );
    line(
        "Connect requests per tick, mean / max: idle; printing (camera snapshots apart)",
        "gateway",
        &|r: &Row| {
            format!(
                "{:.2} / {}; {:.2} / {}",
                r.gw_req_per_tick_idle,
                r.gw_req_max_tick_idle,
                r.gw_req_per_tick_print,
                r.gw_req_max_tick_print
            )
        },
        "",
    );
    line(
        "MQTT messages / printer-hour, idle / printing",
        "gateway",
        &|r: &Row| format!("{:.1} / {:.1}", r.msgs_idle, r.msgs_print),
        "idle <= 10",
    );
    line(
        "MQTT bytes / printer-hour, idle / printing",
        "gateway",
        &|r: &Row| format!("{:.0} / {:.0}", r.bytes_idle, r.bytes_print),
        "",
    );
    line(
        "command round trip (MOVE), median / p99",
        "gateway",
        &|r: &Row| {
            let mut s = lat(&r.rtt, 1e3, "ms");
            if r.rtt_not_ok > 0 {
                let _ = write!(s, ", {} not ok", r.rtt_not_ok);
            }
            s
        },
        "",
    );
    line(
        "command round trip minus the simulator's time, median / p99",
        "gateway",
        &|r: &Row| lat(&r.rtt_overhead, 1e3, "ms"),
        "p99 <= 5 ms",
    );
    line(
        "camera snapshot requests / hour (1 camera, on printer 1), idle / printing quiet",
        "gateway",
        &|r: &Row| format!("{:.0} / {:.0}", r.cam_req_idle, r.cam_req_print),
        "",
    );
    line(
        "printing printer with a camera, progress moving: snapshots fetched / 304 per hour",
        "gateway",
        &|r: &Row| {
            r.cam_window.map_or("-".into(), |c| {
                format!(
                    "{:.0} / {:.0} ({:.0} s window)",
                    c.fetched_per_hour, c.not_modified_per_hour, c.seconds
                )
            })
        },
        "",
    );
    line(
        "... pictures and their bytes / hour; all its messages and bytes / hour",
        "gateway",
        &|r: &Row| {
            r.cam_window.map_or("-".into(), |c| {
                format!(
                    "{:.0} / {:.0} B; {:.0} / {:.0} B",
                    c.pictures_per_hour,
                    c.picture_bytes_per_hour,
                    c.all_messages_per_hour,
                    c.all_bytes_per_hour
                )
            })
        },
        "",
    );
    line(
        "command accepted by Connect -> new state on broker, median / p99",
        "gateway",
        &|r: &Row| lat(&r.accept, 1.0, "s"),
        "",
    );
    line(
        "peak RSS (VmHWM)",
        "gateway",
        &|r: &Row| format!("{:.1} MB", r.rss_kb as f64 / 1024.0),
        "500: <= 40 MB",
    );
    line(
        "CPU s per hour of wall time, idle / printing (% of a core)",
        "gateway",
        &|r: &Row| {
            format!(
                "{:.1} / {:.1} ({:.3}% / {:.3}%)",
                r.cpu_idle,
                r.cpu_print,
                r.cpu_idle / 36.0,
                r.cpu_print / 36.0
            )
        },
        "500: <= 2%",
    );
    line(
        "longest tick, idle / printing (poll 30 s / 5 s)",
        "gateway",
        &|r: &Row| format!("{:.2} s / {:.2} s", r.max_tick_idle, r.max_tick_print),
        "no overrun",
    );
    line(
        "start -> every printer's start-up reads back (bridge/info.known) and totals seeded; seeding requests (once)",
        "gateway",
        &|r: &Row| format!("{:.1} s; {}", r.settled, r.seed_requests),
        "",
    );
    line(
        "broker restart -> every retained topic back",
        "gateway",
        &|r: &Row| match r.republish {
            Some((s, topics)) => format!("{:.2} s ({topics} topics)", s),
            None => "not measured / timed out".into(),
        },
        "",
    );
    line(
        "quiet windows (per-hour figures extrapolated from)",
        "",
        &|r: &Row| r.windows.clone(),
        "",
    );
    let _ = writeln!(
        t,
        "\n{} run, {:.0} s in all. Default poll settings (30 s idle, 5 s active); gateway = the release binary as its own process; baseline = `GET /app/printers/{{uuid}}` per printer every 30 s.",
        if quick { "BENCH_QUICK" } else { "Full" },
        took.as_secs_f64()
    );
    t
}
