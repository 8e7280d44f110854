//! Farm benchmark (issue 25): the simulator's farm (`Scenario::Farm`: printers named
//! "Farm 0001".. idling and printing in turn, most of them printing), a private broker, and
//! the release gateway as a process of its own with the default settings (the request budget
//! included). It measures what a farm's host cares about: memory over time, CPU, messages a
//! second, how fast every printer is on the broker after a start, and what the broker holds.
//!
//! `cargo bench --bench farm`: 500 and 2,000 printers, 10 minutes each.
//! `BENCH_FARM_SIZES=2000` picks the sizes, `BENCH_FARM_MINUTES=25` the length of each run,
//! `BENCH_LIVE=on` turns the live channel on, `BENCH_FARM_JOBS=long` gives the printers jobs of
//! 1 to 3 hours instead of 1 to 5 minutes, `BENCH_BUDGET=0` sets
//! `connect.max_requests_per_second` (0: no limit), `GW_BIN=path` measures another build.
//! Prints a markdown table. It stops by itself.

#[path = "../tests/common/broker.rs"]
mod broker;
#[path = "common/process.rs"]
mod process;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use broker::{Subscriber, TestBroker};
use process::Gateway;
use prusa_connect_sim::{Scenario, SimOptions, Simulator};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "t";
const BASE: &str = "prusa_connect";
const RETAINED_COUNT: &str = "$SYS/broker/retained messages/count";
const HEAP: &str = "$SYS/broker/heap/current";
const SAMPLE: Duration = Duration::from_secs(10);
/// CPU, messages and requests are measured over the last this long of a run.
const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct Row {
    n: usize,
    live: bool,
    minutes: u64,
    all_states: Option<f64>,
    known_at_end: String,
    rss_30s: f64,
    rss_5min: Option<f64>,
    rss_end: f64,
    peak: f64,
    cpu_percent: f64,
    messages_per_s: f64,
    requests_per_s: f64,
    /// mosquitto's count of retained messages, and its heap, at the end.
    retained_topics: String,
    broker_heap: String,
}

fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_FARM_SIZES")
        .ok()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.split(',')
                .map(|n| n.trim().parse().expect("BENCH_FARM_SIZES: numbers"))
                .collect()
        })
        .unwrap_or_else(|| vec![500, 2000]);
    let minutes: u64 = std::env::var("BENCH_FARM_MINUTES")
        .ok()
        .map(|m| m.parse().expect("BENCH_FARM_MINUTES: a number"))
        .unwrap_or(10)
        .max(2);
    let live = matches!(std::env::var("BENCH_LIVE").as_deref(), Ok("on" | "1"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rows: Vec<Row> = sizes
        .iter()
        .map(|&n| {
            let row = rt.block_on(farm(n, minutes, live));
            eprintln!("{n} printers done");
            row
        })
        .collect();
    println!("{}", table(&rows));
}

async fn farm(n: usize, minutes: u64, live: bool) -> Row {
    let broker = TestBroker::start_mosquitto_with("sys_interval 5")
        .expect("the farm bench needs mosquitto (what the broker holds is read from its $SYS)");
    let sim_epoch = Instant::now();
    let sim = Simulator::new(SimOptions {
        token: Some(TOKEN.into()),
        scenario: if matches!(std::env::var("BENCH_FARM_JOBS").as_deref(), Ok("long")) {
            Scenario::FarmLongJobs { printers: n }
        } else {
            Scenario::Farm { printers: n }
        },
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(sim.clone().serve(listener, stop.clone().cancelled_owned()));
    tokio::spawn(prusa_connect_sim::run_ticker(
        sim.clone(),
        Duration::from_secs(1),
        stop.clone().cancelled_owned(),
    ));
    let states = Subscriber::connect(&broker, &[&format!("{BASE}/+/state")]).await;
    let all = Subscriber::connect(&broker, &["#"]).await;
    let sys = Subscriber::connect(&broker, &[RETAINED_COUNT, HEAP]).await;
    // `bridge/info` on a subscriber of its own: behind `#` it can be lost in mosquitto's
    // queue during the start-up flood.
    let info = Subscriber::connect(&broker, &[&format!("{BASE}/bridge/info")]).await;
    let live_keys = if live {
        let ws = url.replacen("http://", "ws://", 1);
        format!("auth_url = \"{url}\"\nlive = true\nlive_url = \"{ws}/mqtt\"\n")
    } else {
        String::new()
    };
    let mqtt = broker.url();
    let budget = std::env::var("BENCH_BUDGET")
        .map(|b| format!("max_requests_per_second = {b}\n"))
        .unwrap_or_default();
    let gateway = Gateway::start("pcm-farm-bench-", |state| {
        format!(
            "[connect]\nurl = \"{url}\"\naccess_token = \"{TOKEN}\"\n{budget}{live_keys}[mqtt]\nurl = \"{mqtt}\"\nclient_id = \"bench-farm-{n}\"\n[state]\ndir = {state:?}\n"
        )
    });
    let started = Instant::now();
    let mut row = Row {
        n,
        live,
        minutes,
        ..Row::default()
    };
    let run = Duration::from_secs(minutes * 60);
    let mut window_start = None;
    while started.elapsed() < run {
        if row.all_states.is_none() {
            let printers: HashSet<String> = states
                .messages()
                .into_iter()
                .filter(|m| !m.topic.starts_with(&format!("{BASE}/bridge")))
                .map(|m| m.topic)
                .collect();
            if printers.len() >= n {
                row.all_states = Some(started.elapsed().as_secs_f64());
            }
        }
        let at = started.elapsed();
        if row.rss_30s == 0.0 && at >= Duration::from_secs(30) {
            row.rss_30s = mb(gateway.rss_kb());
        }
        if row.rss_5min.is_none() && at >= Duration::from_secs(300) {
            row.rss_5min = Some(mb(gateway.rss_kb()));
        }
        if row.all_states.is_some() && at.as_secs() % 60 < SAMPLE.as_secs() {
            let infos = info.messages();
            let known = infos.last().map(|m| m.json()["known"].clone());
            eprintln!(
                "  {:>4} s: RSS {:.1} MB, known {} ({} bridge/info)",
                at.as_secs(),
                mb(gateway.rss_kb()),
                known.unwrap_or_default(),
                infos.len()
            );
        }
        if window_start.is_none() && at + WINDOW >= run {
            window_start = Some((Instant::now(), gateway.cpu_seconds(), all.mark()));
        }
        tokio::time::sleep(if row.all_states.is_none() {
            Duration::from_millis(100)
        } else {
            SAMPLE.min(run.saturating_sub(at))
        })
        .await;
    }
    let (from, cpu, mark) = window_start.expect("the run has a last minute");
    let seconds = from.elapsed().as_secs_f64();
    row.cpu_percent = (gateway.cpu_seconds() - cpu) / seconds * 100.0;
    row.messages_per_s = (all.mark() - mark) as f64 / seconds;
    let since = from.duration_since(sim_epoch);
    row.requests_per_s = sim.requests().iter().filter(|r| r.at >= since).count() as f64 / seconds;
    row.rss_end = mb(gateway.rss_kb());
    row.peak = mb(gateway.peak_rss_kb());
    row.known_at_end = info
        .messages()
        .pop()
        .map(|m| m.json()["known"].as_str().unwrap_or("?").to_string())
        .unwrap_or_default();
    eprintln!("{n} printers: Connect requests by kind over the run");
    for (kind, count) in requests_by_kind(&sim.requests()) {
        eprintln!("  {count:>7}  {kind}");
    }
    drop(all);
    drop(states);
    let last = |topic: &str| sys.on(topic).pop().map(|m| m.text().trim().to_string());
    row.retained_topics = last(RETAINED_COUNT).unwrap_or_default();
    row.broker_heap = last(HEAP).unwrap_or_default();
    gateway.stop().await;
    stop.cancel();
    row
}

/// Counts requests by method and path, with every uuid-like or numeric segment as `*`.
fn requests_by_kind(requests: &[prusa_connect_sim::RecordedRequest]) -> Vec<(String, usize)> {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for r in requests {
        let path: Vec<&str> = r
            .path
            .split('/')
            .map(|seg| {
                if seg.len() > 12 || (!seg.is_empty() && seg.chars().all(|c| c.is_ascii_digit())) {
                    "*"
                } else {
                    seg
                }
            })
            .collect();
        *counts
            .entry(format!("{} {}", r.method, path.join("/")))
            .or_default() += 1;
    }
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counts
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| printers | live | start -> every P/state | known at the end | RSS 30 s / 5 min / end (peak) | CPU last 60 s | messages/s | Connect requests/s | broker: retained messages, heap |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let five = r
            .rss_5min
            .map_or_else(|| "-".to_string(), |m| format!("{m:.1}"));
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} / {five} / {:.1} MB ({:.1}), {} min | {:.2} % of a core | {:.0} | {:.2} | {}, {} B |\n",
            r.n,
            if r.live { "on" } else { "off" },
            r.all_states
                .map_or_else(|| "never".to_string(), |s| format!("{s:.2} s")),
            r.known_at_end,
            r.rss_30s,
            r.rss_end,
            r.peak,
            r.minutes,
            r.cpu_percent,
            r.messages_per_s,
            r.requests_per_s,
            r.retained_topics,
            r.broker_heap,
        ));
    }
    out
}
