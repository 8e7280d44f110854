//! End-to-end: Connect failing in every way the simulator can fail, and what a subscriber sees
//! of it. SPEC "Behaviour under faults": back off, mark affected printers unavailable, record
//! it in `bridge/info`, recover by itself; the feed loses and repeats nothing (SPEC Topics:
//! `B/P/event`, "each Connect feed event, once, in order").

mod common;

use std::time::Duration;

use common::broker::{Msg, Subscriber, TestBroker};
use common::gateway::{BASE, Gateway, Sim, config, list_polls, wait_until, wait_until_or};
use prusa_connect_mqtt::config::Config;
use prusa_connect_mqtt::payloads::{iso, now_unix};
use prusa_connect_sim::{Fault, FaultRule, PrinterSpec, RecordedRequest};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);
/// The tests' `active_poll_interval`, the base of the gateway's backoff.
const BASE_WAIT: Duration = Duration::from_millis(150);
/// What the machine may add to a wait the gateway chose (request, publishing, scheduling on a
/// busy two-core machine).
const SLACK: Duration = Duration::from_millis(350);

/// One printer, "Busy MK4", bridged as `busy_mk4`, with a subscriber on everything.
struct Rig {
    sim: Sim,
    sub: Subscriber,
    gateway: Gateway,
    uuid: String,
    _broker: TestBroker,
    _state: tempfile::TempDir,
}

fn topic(rest: &str) -> String {
    format!("{BASE}/{rest}")
}

const AVAIL: &str = "busy_mk4/availability";
const EVENT: &str = "busy_mk4/event";
const INFO: &str = "bridge/info";

impl Rig {
    /// Starts everything and waits until the gateway has looked at the printer once (its
    /// feed cursor is set: every event from here on is new).
    async fn start(tune: impl FnOnce(&mut Config)) -> Rig {
        let broker = TestBroker::start();
        let sim = Sim::start().await;
        let uuid = sim.sim.add_printer(PrinterSpec::named("Busy MK4"));
        let state = tempfile::tempdir().unwrap();
        let sub = Subscriber::connect(&broker, &[&topic("#"), "homeassistant/#"]).await;
        let mut cfg = config(&broker, &sim, state.path(), "");
        tune(&mut cfg);
        let gateway = Gateway::start(cfg);
        // bridge/info comes after the printers of a poll are done, feed included.
        sub.wait_for(&topic(INFO), WAIT, |m| {
            m.json()["connect"]["reachable"] == true
                && m.json()["printers"]
                    .as_array()
                    .is_some_and(|p| p.len() == 1)
        })
        .await;
        sub.wait_for(&topic(AVAIL), WAIT, |m| m.text() == "online")
            .await;
        Rig {
            sim,
            sub,
            gateway,
            uuid,
            _broker: broker,
            _state: state,
        }
    }

    async fn wait_after(&self, mark: usize, rest: &str, pred: impl Fn(&Msg) -> bool) -> Msg {
        self.sub
            .wait_for_after(mark, &topic(rest), WAIT, pred)
            .await
    }

    /// The printer's whole feed as the simulator serves it, oldest `created` first.
    async fn feed(&self) -> Vec<Value> {
        self.sim.feed(&self.uuid).await
    }

    /// Makes feed events while the gateway watches: two raw ones around a state change
    /// (only a change of state makes the gateway read the feed).
    fn make_events(&self, label: &str, state: &str) {
        let uuid = &self.uuid;
        self.sim.sim.push_event(
            uuid,
            "TEST_EVENT",
            json!({ "marker": format!("{label}-1") }),
        );
        self.sim.sim.set_state(uuid, state);
        self.sim.sim.push_event(
            uuid,
            "TEST_EVENT",
            json!({ "marker": format!("{label}-2") }),
        );
    }

    /// Changes the state once more and waits until its event is published: every event made
    /// before it has been read by then, and a repeat would have come with it.
    async fn sentinel(&self, state: &str) {
        let mark = self.sub.mark();
        self.sim.sim.set_state(&self.uuid, state);
        self.wait_after(mark, EVENT, |m| {
            m.json()["event"] == "STATE_CHANGED" && m.json()["state"] == state
        })
        .await;
    }

    /// The events published on `busy_mk4/event` so far.
    fn published(&self) -> Vec<Value> {
        self.sub.on(&topic(EVENT)).iter().map(Msg::json).collect()
    }
}

/// The feed events that are in `now` and not in `before`.
fn new_events(before: &[Value], now: &[Value]) -> Vec<Value> {
    now.iter()
        .filter(|e| !before.contains(e))
        .cloned()
        .collect()
}

/// Every expected event published exactly once and nothing else, in the feed's order.
fn assert_published_once_in_order(published: &[Value], expected: &[Value]) {
    assert!(
        expected.len() >= 4,
        "the test made events to compare: {expected:#?}"
    );
    assert_eq!(
        published, expected,
        "each feed event once, in order, none lost or repeated"
    );
}

/// [`assert_published_once_in_order`] without the order (after a clock jump `created` no
/// longer says in which order events happened).
fn assert_published_once(published: &[Value], expected: &[Value]) {
    let sorted = |v: &[Value]| {
        let mut texts: Vec<String> = v.iter().map(Value::to_string).collect();
        texts.sort();
        texts
    };
    assert!(expected.len() >= 3, "the test made events: {expected:#?}");
    assert_eq!(
        sorted(published),
        sorted(expected),
        "each feed event once, none lost or repeated"
    );
}

fn faulted(requests: &[RecordedRequest]) -> usize {
    requests.iter().filter(|r| r.fault.is_some()).count()
}

/// The gaps between consecutive list requests from the first faulted one up to the first
/// good one after the faulted run.
fn gaps_through_outage(requests: &[RecordedRequest]) -> Vec<Duration> {
    let first = requests
        .iter()
        .position(|r| r.fault.is_some())
        .expect("a faulted list request");
    let recovered = requests[first..]
        .iter()
        .position(|r| r.fault.is_none())
        .map(|i| first + i)
        .expect("a good list request after the faulted ones");
    requests[first..=recovered]
        .windows(2)
        .map(|w| w[1].at - w[0].at)
        .collect()
}

/// Connect fails with `fault` on every request until the test clears it. Asserts what a
/// subscriber must see: the printer offline, `bridge/info` unreachable with an error naming
/// the cause (every one of `needles`) and since when, both back after the fault is cleared,
/// and every feed event made during the outage published once, in order. Returns the rig for
/// more checks.
async fn outage(fault: Fault, needles: &[&str], tune: impl FnOnce(&mut Config)) -> Rig {
    let rig = Rig::start(tune).await;
    let before = rig.feed().await;

    let mark = rig.sub.mark();
    let fault_at = now_unix();
    rig.sim.sim.set_fault(Some(fault.clone()));
    rig.wait_after(mark, AVAIL, |m| m.text() == "offline").await;
    let down = rig
        .wait_after(mark, INFO, |m| m.json()["connect"]["reachable"] == false)
        .await
        .json();
    let connect = &down["connect"];
    let error = connect["last_error"].as_str().unwrap_or_default();
    for needle in needles {
        assert!(
            error.contains(needle),
            "bridge/info names the cause ({needle:?}): {down}"
        );
    }
    let since = connect["since"].as_str().expect("connect.since");
    assert!(
        since >= iso(fault_at).unwrap().as_str(),
        "since is when it started failing: {since}, fault set at {fault_at}"
    );
    assert!(connect["last_error_at"].as_str().is_some(), "{down}");

    // Events happen while the gateway cannot read them; it fails at least once more.
    rig.make_events("outage", "READY");
    let failed = faulted(&rig.sim.list_requests());
    wait_until(|| faulted(&rig.sim.list_requests()) > failed).await;

    let mark = rig.sub.mark();
    let recovered_at = now_unix();
    rig.sim.sim.set_fault(None);
    rig.wait_after(mark, AVAIL, |m| m.text() == "online").await;
    let up = rig
        .wait_after(mark, INFO, |m| m.json()["connect"]["reachable"] == true)
        .await
        .json();
    assert!(
        up["connect"]["since"].as_str() >= iso(recovered_at).as_deref(),
        "since is when it came back: {up}"
    );

    rig.sentinel("IDLE").await;
    let expected = new_events(&before, &rig.feed().await);
    assert_published_once_in_order(&rig.published(), &expected);
    rig
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_500_marks_the_printer_offline_and_recovery_loses_no_event() {
    let rig = outage(Fault::Status(500), &["500"], |_| {}).await;
    rig.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_502_marks_the_printer_offline_and_recovery_loses_no_event() {
    let rig = outage(Fault::Status(502), &["502"], |_| {}).await;
    rig.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_503_marks_the_printer_offline_and_recovery_loses_no_event() {
    let rig = outage(Fault::Status(503), &["503"], |_| {}).await;
    rig.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_429_waits_as_long_as_retry_after_says() {
    let fault = Fault::TooManyRequests { retry_after_s: 2 };
    let rig = outage(fault, &["429"], |_| {}).await;
    let gaps = gaps_through_outage(&rig.sim.list_requests());
    println!("429 with Retry-After: 2, gaps between list requests: {gaps:?}");
    assert!(gaps.len() >= 2, "{gaps:?}");
    for gap in &gaps {
        // The backoff of the first failures (0.3 s, 0.6 s) is shorter: Retry-After wins.
        assert!(
            *gap >= Duration::from_secs(2) && *gap <= Duration::from_secs(2) + SLACK,
            "Retry-After: 2 obeyed, not exceeded much: {gaps:?}"
        );
    }
    rig.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_slower_than_request_timeout_is_an_outage() {
    let timeout = Duration::from_millis(500);
    let started = tokio::time::Instant::now();
    let rig = outage(Fault::Delay(Duration::from_secs(3)), &["timed out"], |c| {
        c.connect.request_timeout = timeout
    })
    .await;
    // Each failed poll took the timeout, not the server's 3 s.
    let gaps = gaps_through_outage(&rig.sim.list_requests());
    println!("delay 3 s, timeout 0.5 s, gaps between list requests: {gaps:?}");
    for (n, gap) in gaps.iter().enumerate() {
        let backoff_max = BASE_WAIT.mul_f64(1.2 * 2f64.powi(n as i32 + 1));
        assert!(
            *gap >= timeout && *gap <= timeout + backoff_max + SLACK,
            "gap {n}: {gaps:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    rig.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reset_is_an_outage() {
    let rig = outage(
        Fault::ConnectionReset,
        &["cannot reach Connect", "connection closed"],
        |_| {},
    )
    .await;
    rig.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_json_is_an_outage() {
    let rig = outage(
        Fault::TruncatedJson,
        &["could not be read", "/app/printers"],
        |_| {},
    )
    .await;
    rig.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_an_outage() {
    let rig = outage(
        Fault::MalformedJson,
        &["could not be read", "/app/printers"],
        |_| {},
    )
    .await;
    rig.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_503s_back_off_exponentially_with_jitter() {
    let rig = Rig::start(|_| {}).await;
    let mark = rig.sub.mark();
    const FAILURES: usize = 4;
    rig.sim.sim.add_fault(
        FaultRule::new(Fault::Status(503))
            .on_path("/app/printers")
            .times(FAILURES as u32),
    );
    wait_until_or(
        || {
            let list = rig.sim.list_requests();
            faulted(&list) == FAILURES && list.last().is_some_and(|r| r.fault.is_none())
        },
        || format!("{:#?}", rig.sim.list_requests()),
    )
    .await;
    let gaps = gaps_through_outage(&rig.sim.list_requests());
    println!("{FAILURES} x 503, gaps between list requests: {gaps:?}");
    assert_eq!(gaps.len(), FAILURES, "{gaps:?}");
    for (i, gap) in gaps.iter().enumerate() {
        // After the n-th failure in a row: base x 2^n, times a jitter of 0.8..1.2.
        let nominal = BASE_WAIT * 2u32.pow(i as u32 + 1);
        let (low, high) = (nominal.mul_f64(0.8), nominal.mul_f64(1.2) + SLACK);
        assert!(
            *gap >= low && *gap <= high,
            "gap after failure {}: {gap:?} not within {low:?}..{high:?} (all: {gaps:?})",
            i + 1
        );
    }
    assert!(
        gaps.windows(2).all(|w| w[1] > w[0]),
        "the waits grow: {gaps:?}"
    );
    // The outage showed, and ended by itself.
    rig.wait_after(mark, AVAIL, |m| m.text() == "offline").await;
    wait_until_or(
        || rig.sub.on(&topic(AVAIL)).last().map(Msg::text).as_deref() == Some("online"),
        || format!("{:?}", rig.sub.on(&topic(AVAIL))),
    )
    .await;
    rig.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_feed_is_read_again_and_loses_no_event() {
    let rig = Rig::start(|_| {}).await;
    let before = rig.feed().await;
    rig.sim.sim.add_fault(
        FaultRule::new(Fault::Status(503))
            .on_paths_containing("/events")
            .times(3),
    );
    rig.make_events("feed-down", "READY");
    wait_until_or(
        || rig.sim.sim.faults().is_empty(),
        || "the gateway reads the feed again after a failure".into(),
    )
    .await;
    rig.sentinel("IDLE").await;
    let expected = new_events(&before, &rig.feed().await);
    assert_published_once_in_order(&rig.published(), &expected);
    rig.gateway.stop().await;
}

/// Retained topics of the printer that must not be cleared while it is only glitching.
fn assert_never_cleared(rig: &Rig) {
    let discovery = format!("homeassistant/device/prusa_connect_{}/config", rig.uuid);
    for t in [discovery, topic("busy_mk4/state"), topic(AVAIL)] {
        let seen = rig.sub.on(&t);
        assert!(!seen.is_empty(), "{t} was published");
        assert!(
            seen.iter().all(|m| !m.payload.is_empty()),
            "{t} was cleared: the printer was removed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_printer_missing_from_one_or_two_list_polls_keeps_its_entities() {
    // Slower idle polls leave the test a wide window to show the printer again in time.
    let rig = Rig::start(|c| c.connect.poll_interval = Duration::from_millis(600)).await;
    // A list request is counted when it comes in and answered after: the printer is shown
    // or hidden by what the answer was built with, so the waits below count answers.
    let answered = |rig: &Rig| {
        rig.sim
            .list_requests()
            .iter()
            .filter(|r| r.status.is_some())
            .count()
    };
    for missing in [2, 1, 2] {
        // No answer in the making that could still be built hidden.
        wait_until(|| answered(&rig) == list_polls(&rig.sim)).await;
        let before = list_polls(&rig.sim);
        rig.sim.sim.hide_printer(&rig.uuid, true);
        wait_until(|| answered(&rig) >= before + missing).await;
        rig.sim.sim.hide_printer(&rig.uuid, false);
        let hidden_for = list_polls(&rig.sim) - before;
        assert_eq!(hidden_for, missing, "the test showed it again in time");
        // Listed again: the count of missing polls starts over.
        let back = list_polls(&rig.sim);
        wait_until(|| answered(&rig) > back).await;
    }
    let back = list_polls(&rig.sim);
    wait_until(|| list_polls(&rig.sim) >= back + 3).await;
    assert_never_cleared(&rig);
    let info = rig.sub.on(&topic(INFO));
    let last = info.last().expect("bridge/info").json();
    assert_eq!(last["printers"][0]["uuid"], rig.uuid.as_str(), "{last}");
    rig.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_printer_missing_from_three_list_polls_is_removed_and_comes_back() {
    let rig = Rig::start(|_| {}).await;
    let discovery = format!("homeassistant/device/prusa_connect_{}/config", rig.uuid);
    let mark = rig.sub.mark();
    let before = list_polls(&rig.sim);
    rig.sim.sim.hide_printer(&rig.uuid, true);
    rig.sub
        .wait_for_after(mark, &discovery, WAIT, |m| m.payload.is_empty())
        .await;
    let polls = list_polls(&rig.sim) - before;
    assert!(polls >= 3, "removed after {polls} polls without it");
    for t in ["busy_mk4/state", AVAIL] {
        rig.wait_after(mark, t, |m| m.payload.is_empty()).await;
    }
    rig.wait_after(mark, INFO, |m| {
        m.json()["printers"].as_array().is_some_and(Vec::is_empty)
    })
    .await;

    let mark = rig.sub.mark();
    rig.sim.sim.hide_printer(&rig.uuid, false);
    rig.sub
        .wait_for_after(mark, &discovery, WAIT, |m| !m.payload.is_empty())
        .await;
    rig.wait_after(mark, AVAIL, |m| m.text() == "online").await;
    rig.wait_after(mark, "busy_mk4/state", |m| m.json()["state"] == "IDLE")
        .await;
    rig.gateway.stop().await;
}

/// Connect's clock jumps by `offset_s` while the gateway runs; events made before and after
/// the jump must each be published once.
async fn clock_jump(offset_s: f64) {
    let rig = Rig::start(|_| {}).await;
    let before = rig.feed().await;
    // Each state is waited for: the gateway reads the feed only when a poll sees the state
    // changed, so READY and back to IDLE between two polls would show it nothing.
    let mark = rig.sub.mark();
    rig.make_events("before-jump", "READY");
    rig.wait_after(mark, EVENT, |m| m.json()["state"] == "READY")
        .await;
    rig.sentinel("IDLE").await;

    rig.sim.sim.set_clock_offset(offset_s);
    // Events after the jump may be the ones lost: wait a while for each, and let the
    // comparison below say what is missing rather than a timeout.
    let settle = |state: &'static str| {
        let mark = rig.sub.mark();
        let rig = &rig;
        async move {
            let published = rig.wait_after(mark, EVENT, move |m| m.json()["state"] == state);
            let _ = tokio::time::timeout(Duration::from_secs(3), published).await;
        }
    };
    let after_ready = settle("READY");
    rig.make_events("after-jump", "READY");
    after_ready.await;
    let after_idle = settle("IDLE");
    rig.sim.sim.set_state(&rig.uuid, "IDLE");
    after_idle.await;
    let expected = new_events(&before, &rig.feed().await);
    assert_published_once(&rig.published(), &expected);
    rig.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_clock_jump_in_the_feed_loses_and_repeats_no_event() {
    clock_jump(600.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backward_clock_jump_in_the_feed_loses_and_repeats_no_event() {
    clock_jump(-600.0).await;
}
