//! Starts the simulated Connect and the gateway for end-to-end tests.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use prusa_connect_mqtt::config::Config;
use prusa_connect_sim::{RecordedRequest, Scenario, SimOptions, Simulator};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::broker::TestBroker;

pub const TOKEN: &str = "test-token";
pub const BASE: &str = "pc";
/// The deadline of [`wait_until`].
const WAIT_UNTIL: Duration = Duration::from_secs(15);

pub struct Sim {
    pub sim: Simulator,
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl Sim {
    pub async fn start() -> Sim {
        let sim = Simulator::new(SimOptions {
            token: Some(TOKEN.to_string()),
            scenario: Scenario::Empty,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(sim.clone().serve(listener, stop.clone().cancelled_owned()));
        Sim { sim, addr, stop }
    }

    /// [`Sim::start`] with the printers of `scenario`; they move only when the simulator is
    /// stepped ([`Simulator::step`]).
    pub async fn start_scenario(scenario: Scenario) -> Sim {
        let sim = Simulator::new(SimOptions {
            token: Some(TOKEN.to_string()),
            scenario,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(sim.clone().serve(listener, stop.clone().cancelled_owned()));
        Sim { sim, addr, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `path` of the simulated Connect, read over HTTP as a client would (with the token).
    pub async fn get_json(&self, path: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}{path}", self.url()))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The simulator's whole event feed of a printer, oldest first, read over HTTP as a
    /// client would.
    pub async fn feed(&self, uuid: &str) -> Vec<Value> {
        let mut all = Vec::new();
        for page in 0..50 {
            let offset = page * 100;
            let v = self
                .get_json(&format!(
                    "/app/printers/{uuid}/events?limit=100&offset={offset}&from=0"
                ))
                .await;
            let events = v["events"].as_array().cloned().unwrap_or_default();
            let n = events.len();
            all.extend(events);
            if n < 100 {
                break;
            }
        }
        all.sort_by(|a, b| {
            a["created"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["created"].as_f64().unwrap())
        });
        all
    }
}

impl Sim {
    /// The fleet list requests (`GET /app/printers`) received so far, oldest first.
    pub fn list_requests(&self) -> Vec<RecordedRequest> {
        self.sim
            .requests()
            .into_iter()
            .filter(|r| r.path == "/app/printers")
            .collect()
    }

    /// The bodies of the commands Connect was asked to run, oldest first.
    pub fn commands_sent(&self) -> Vec<Value> {
        self.sim
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/commands/sync"))
            .map(|r| serde_json::from_str(&r.body).unwrap_or(Value::Null))
            .collect()
    }
}

/// The number of the last request the simulator received.
pub fn last_request(sim: &Sim) -> u64 {
    sim.sim.requests().last().map_or(0, |r| r.seq)
}

/// Whether the gateway read the events feed of each of `uuids` after request `after` and
/// finished the poll that read the last of them (it made its next list request, which it does
/// only once a poll's printers are done).
pub fn feeds_read_after(sim: &Sim, after: u64, uuids: &[&str]) -> bool {
    let requests = sim.sim.requests();
    let mut last_read = after;
    for uuid in uuids {
        let path = format!("/app/printers/{uuid}/events");
        match requests.iter().find(|r| r.seq > after && r.path == path) {
            Some(read) => last_read = last_read.max(read.seq),
            None => return false,
        }
    }
    requests
        .iter()
        .any(|r| r.seq > last_read && r.path == "/app/printers")
}

/// Appends events `{"marker": "burst", "seq": n}` to the feed, then changes the printer's
/// state so that the gateway reads the feed.
pub fn push_burst(sim: &Sim, uuid: &str, seqs: Range<usize>, then: &str) {
    for seq in seqs {
        sim.sim
            .push_event(uuid, "TEST_EVENT", json!({"marker": "burst", "seq": seq}));
    }
    sim.sim.set_state(uuid, then);
}

/// How many times the gateway has listed the printers so far.
pub fn list_polls(sim: &Sim) -> usize {
    sim.list_requests().len()
}

/// Waits until the gateway has listed the printers `n` more times.
pub async fn wait_polls(sim: &Sim, n: usize) {
    let target = list_polls(sim) + n;
    wait_until(|| list_polls(sim) >= target).await;
}

/// Polls a condition on collected messages or requests (they arrive on other tasks), with a
/// deadline.
pub async fn wait_until(cond: impl Fn() -> bool) {
    wait_until_or(cond, String::new).await
}

/// [`wait_until`], saying what `explain` returns when the deadline passes.
pub async fn wait_until_or(cond: impl Fn() -> bool, explain: impl Fn() -> String) {
    let deadline = tokio::time::Instant::now() + WAIT_UNTIL;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {WAIT_UNTIL:?}: {}",
            explain()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A Spoolman stand-in serving on a free loopback port until the test ends; its URL.
#[allow(dead_code)]
pub async fn spoolman() -> (prusa_connect_sim::SpoolmanStandIn, String) {
    let stand_in = prusa_connect_sim::SpoolmanStandIn::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let url = format!("http://{}", listener.local_addr().expect("bound"));
    tokio::spawn(stand_in.clone().serve(listener, std::future::pending()));
    (stand_in, url)
}

/// A config for tests: fast polls, the given broker and simulator, a private state dir.
pub fn config(broker: &TestBroker, sim: &Sim, state_dir: &Path, extra: &str) -> Config {
    config_with_credentials(
        broker,
        sim,
        state_dir,
        &format!("access_token = \"{TOKEN}\""),
        extra,
    )
}

/// [`config`] with other `[connect]` credential lines (`auth_url` points at the simulator).
pub fn config_with_credentials(
    broker: &TestBroker,
    sim: &Sim,
    state_dir: &Path,
    credentials: &str,
    extra: &str,
) -> Config {
    // Tests send commands faster than `commands.max_per_second` lets through; the throttle's
    // own tests set it (with a `[commands]` table of their own). Their polls, five a second,
    // would take the whole request budget: its own tests set `connect.max_requests_per_second`.
    let commands = if extra.contains("[commands]") {
        ""
    } else {
        "[commands]\n        max_per_second = 0"
    };
    Config::from_toml(&format!(
        r#"
        [connect]
        url = "{}"
        auth_url = "{}"
        {credentials}
        poll_interval = "200ms"
        active_poll_interval = "150ms"
        request_timeout = "2s"
        max_requests_per_second = 0
        [mqtt]
        url = "{}"
        client_id = "gateway-{}"
        base_topic = "{BASE}"
        [state]
        dir = {state_dir:?}
        {commands}
        {extra}
        "#,
        sim.url(),
        sim.url(),
        broker.url(),
        rand_suffix(),
    ))
    .expect("test config parses")
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A running gateway; stopping it waits for a clean exit.
pub struct Gateway {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Gateway {
    pub fn start(config: Config) -> Gateway {
        let stop = CancellationToken::new();
        let task = tokio::spawn(prusa_connect_mqtt::run(
            config,
            stop.clone().cancelled_owned(),
        ));
        Gateway { stop, task }
    }

    /// Ends the gateway as a crash would: no `offline`, no state saved.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the gateway stops within 10 s")
            .expect("the gateway task does not panic")
            .expect("the gateway exits cleanly");
    }
}
