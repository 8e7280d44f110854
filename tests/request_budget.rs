//! End-to-end: one request budget for the whole gateway (`connect.max_requests_per_second`,
//! `connect.request_burst`): a farm's start-up reads are spread out, and a 429 from Connect
//! pauses every read, not only the one that got it.

mod common;

use std::time::Duration;

use common::broker::{Subscriber, TestBroker};
use common::gateway::{BASE, Gateway, Sim, config, wait_until_or};
use prusa_connect_sim::{Fault, FaultRule, PrinterSpec, RecordedRequest};

const WAIT: Duration = Duration::from_secs(60);
const PRINTERS: usize = 16;

/// The most requests that arrived within any `window` (by the simulator's clock).
fn most_within(requests: &[RecordedRequest], window: Duration) -> usize {
    let at: Vec<Duration> = requests.iter().map(|r| r.at).collect();
    (0..at.len())
        .map(|i| at[i..].iter().take_while(|&&t| t < at[i] + window).count())
        .max()
        .unwrap_or(0)
}

/// The farm; returns how many distinct printer types and firmwares it has.
async fn fleet(sim: &Sim) -> usize {
    let mut kinds = std::collections::HashSet::new();
    for i in 0..PRINTERS {
        let spec = PrinterSpec::named(&format!("Farm {i:02}"));
        kinds.insert((spec.printer_type.clone(), spec.firmware.clone()));
        sim.sim.add_printer(spec);
    }
    kinds.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_farms_start_up_reads_keep_to_the_budget() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let kinds = fleet(&sim).await;
    let state = tempfile::tempdir().unwrap();
    let info = format!("{BASE}/bridge/info");
    let sub = Subscriber::connect(&broker, &[&info]).await;
    let mut c = config(&broker, &sim, state.path(), "");
    // Polls as a real setup makes them: the start-up reads are what the budget spreads.
    c.connect.poll_interval = Duration::from_secs(30);
    c.connect.active_poll_interval = Duration::from_secs(5);
    c.connect.max_requests_per_second = 10.0;
    c.connect.request_burst = 4;
    let gateway = Gateway::start(c);

    let known = format!("{PRINTERS}/{PRINTERS}");
    sub.wait_for(&info, WAIT, |m| m.json()["known"] == known.as_str())
        .await;
    let requests = sim.sim.requests();
    // Enough reads that the budget had to hold some back...
    assert!(
        requests.len() >= 40,
        "{} requests: too few to show the budget",
        requests.len()
    );
    // ...and over any second no more than the burst plus a second's rate (one more for
    // requests sent at the edge of a window that arrive a moment apart).
    let most = most_within(&requests, Duration::from_secs(1));
    assert!(most <= 4 + 10 + 1, "{most} requests within one second");
    let most = most_within(&requests, Duration::from_secs(3));
    assert!(most <= 4 + 30 + 1, "{most} requests within three seconds");
    // One supported-commands read per printer type and firmware, not one per printer.
    let supported = requests
        .iter()
        .filter(|r| r.path.ends_with("/supported-commands"))
        .count();
    assert_eq!(supported, kinds, "supported-commands reads");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_pauses_every_read_for_its_retry_after() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    fleet(&sim).await;
    // The first camera list gets a 429 asking for 3 s of quiet.
    sim.sim.add_fault(
        FaultRule::new(Fault::TooManyRequests { retry_after_s: 3 })
            .on_paths_containing("/cameras")
            .times(1),
    );
    let state = tempfile::tempdir().unwrap();
    let info = format!("{BASE}/bridge/info");
    let sub = Subscriber::connect(&broker, &[&info]).await;
    let mut c = config(&broker, &sim, state.path(), "");
    c.connect.max_requests_per_second = 50.0;
    c.connect.request_burst = 50;
    let gateway = Gateway::start(c);

    let refused = || {
        sim.sim
            .requests()
            .into_iter()
            .find(|r| r.status == Some(429))
    };
    wait_until_or(|| refused().is_some(), || "no request got the 429".into()).await;
    let refused = refused().unwrap();
    // Every printer still becomes known: the read that got the 429 is made again later.
    let known = format!("{PRINTERS}/{PRINTERS}");
    sub.wait_for(&info, WAIT, |m| m.json()["known"] == known.as_str())
        .await;
    // The polls go on after the pause.
    let resumed = refused.at + Duration::from_millis(3200);
    wait_until_or(
        || sim.sim.requests().iter().any(|r| r.at > resumed),
        || "no request after the pause".into(),
    )
    .await;
    let requests = sim.sim.requests();
    // Requests already on their way when the 429 came back arrive a moment after it; then
    // nothing (the fast list polls included) until the 3 s are over.
    let quiet: Vec<String> = requests
        .iter()
        .filter(|r| {
            r.at > refused.at + Duration::from_millis(300)
                && r.at < refused.at + Duration::from_millis(2900)
        })
        .map(|r| {
            format!(
                "{:.2} s after: {} {}",
                (r.at - refused.at).as_secs_f64(),
                r.method,
                r.path
            )
        })
        .collect();
    assert!(quiet.is_empty(), "requests during the pause: {quiet:#?}");
    gateway.stop().await;
}
