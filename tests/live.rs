//! End-to-end: the live channel (issue 16). The simulator's `/mqtt` speaks MQTT over a
//! websocket like Connect's broker; the gateway listens to it beside the REST poll. Polls
//! are made so slow where it matters that only the channel can deliver in time.

mod common;

use std::time::{Duration, Instant};

use common::broker::{Subscriber, TestBroker};
use common::gateway::{
    BASE, Gateway, Sim, config, config_with_credentials, list_polls, wait_polls, wait_until_or,
};
use prusa_connect_mqtt::config::Config;
use prusa_connect_sim::{PrinterSpec, Simulator};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);
const HOUR: Duration = Duration::from_secs(3600);
const STATE: &str = "pc/p/state";
const EVENT: &str = "pc/p/event";
const TRIGGER: &str = "pc/p/trigger";
const AVAILABILITY: &str = "pc/p/availability";
const INFO: &str = "pc/bridge/info";

fn live(mut c: Config, sim: &Sim, poll: Duration, active: Duration) -> Config {
    c.connect.live = true;
    c.connect.live_url = format!("ws://{}/mqtt", sim.addr);
    c.connect.poll_interval = poll;
    c.connect.active_poll_interval = active;
    // No seeding of the totals: its reads come once the printer is known, at a moment of
    // their own, and one made with an expired token would renew it before the channel is
    // refused (what the token tests here count).
    c.stats.backfill = Duration::ZERO;
    c
}

struct Setup {
    _broker: TestBroker,
    sim: Sim,
    sub: Subscriber,
    gateway: Option<Gateway>,
    uuid: String,
    _state: tempfile::TempDir,
}

impl Setup {
    /// A printer "P" (printing when `job` is set) and a live gateway with these polls.
    async fn start(poll: Duration, active: Duration, job: bool) -> Setup {
        Setup::start_with(poll, active, job, |_| None).await
    }

    /// [`Setup::start`], with `prepare` run on the simulator before the gateway starts; it
    /// may return a refresh token for the gateway to log in with.
    async fn start_with(
        poll: Duration,
        active: Duration,
        job: bool,
        prepare: impl FnOnce(&Simulator) -> Option<String>,
    ) -> Setup {
        let broker = TestBroker::start();
        let sim = Sim::start().await;
        let uuid = sim.sim.add_printer(PrinterSpec::named("P"));
        if job {
            sim.sim.start_job(&uuid, "part.gcode", 3600, &[]);
        }
        let refresh_token = prepare(&sim.sim);
        let state = tempfile::tempdir().unwrap();
        let base = match refresh_token {
            Some(t) => config_with_credentials(
                &broker,
                &sim,
                state.path(),
                &format!("refresh_token = \"{t}\""),
                "",
            ),
            None => config(&broker, &sim, state.path(), ""),
        };
        let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
        let gateway = Gateway::start(live(base, &sim, poll, active));
        Setup {
            _broker: broker,
            sim,
            sub,
            gateway: Some(gateway),
            uuid,
            _state: state,
        }
    }

    /// The first `bridge/info` whose `live` satisfies `cond`.
    async fn live_info(&self, mark: usize, cond: impl Fn(&Value) -> bool) -> Value {
        self.sub
            .wait_for_after(mark, INFO, WAIT, |m| cond(&m.json()["live"]))
            .await
            .json()["live"]
            .clone()
    }

    /// Waits for the channel to go down and come back, subscribed to `n` printers, after
    /// `mark` (an earlier `connected` status does not count).
    async fn reconnected(&self, mark: usize, n: u64) {
        wait_until_or(
            || {
                let infos = self.sub.messages_since(mark);
                let mut live = infos
                    .iter()
                    .filter(|m| m.topic == INFO)
                    .map(|m| m.json()["live"].clone());
                live.any(|l| l["connected"] == false)
                    && live.any(|l| l["connected"] == true && l["printers_subscribed"] == n)
            },
            || format!("{:?}", self.sim.sim.live_stats()),
        )
        .await;
    }

    async fn subscribed(&self, n: u64) {
        self.live_info(0, |l| {
            l["connected"] == true && l["printers_subscribed"] == n
        })
        .await;
    }

    /// Requests to `path` so far, with when they came (seconds since the simulator started).
    fn requests_to(&self, path: &str) -> Vec<f64> {
        self.sim
            .sim
            .requests()
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.at.as_secs_f64())
            .collect()
    }

    async fn stop(mut self) {
        self.gateway.take().unwrap().stop().await;
    }
}

#[tokio::test]
async fn each_progress_change_reaches_the_state_within_1_5_s_through_the_channel() {
    // Polls an hour apart: only the channel can bring a change in time.
    let s = Setup::start(HOUR, HOUR, true).await;
    s.subscribed(1).await;
    s.sub
        .wait_for(STATE, WAIT, |m| m.json()["printer_state"] == "PRINTING")
        .await;
    let polls = list_polls(&s.sim);
    let mut latencies = Vec::new();
    for i in 1..=20u32 {
        // Changes fall anywhere in the simulator's one-second push cycle.
        tokio::time::sleep(Duration::from_millis(u64::from(i * 389 % 1000))).await;
        let progress = f64::from(i * 4);
        let mark = s.sub.mark();
        s.sim.sim.set_progress(&s.uuid, progress);
        let changed = Instant::now();
        let seen = s
            .sub
            .wait_for_after(mark, STATE, WAIT, |m| m.json()["progress"] == progress)
            .await;
        latencies.push(seen.at.duration_since(changed).as_secs_f64());
    }
    eprintln!("change -> P/state, s: {latencies:?}");
    assert_eq!(list_polls(&s.sim), polls, "no list poll helped");
    assert!(
        latencies.iter().all(|l| *l <= 1.5),
        "change -> P/state, s: {latencies:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_dialog_reaches_the_state_and_goes_with_it() {
    let s = Setup::start(HOUR, HOUR, true).await;
    s.subscribed(1).await;
    let mark = s.sub.mark();
    s.sim.sim.set_dialog(
        &s.uuid,
        Some(serde_json::json!({"title": "Filament runout", "buttons": ["Continue"]})),
    );
    let state = s
        .sub
        .wait_for_after(mark, STATE, WAIT, |m| !m.json()["dialog"].is_null())
        .await
        .json();
    assert_eq!(state["dialog"]["title"], "Filament runout");
    assert_eq!(state["printer_state"], "ATTENTION");
    let mark = s.sub.mark();
    s.sim.sim.set_dialog(&s.uuid, None);
    let state = s
        .sub
        .wait_for_after(mark, STATE, WAIT, |m| m.json()["dialog"].is_null())
        .await
        .json();
    assert_eq!(state["printer_state"], "PRINTING");
    s.stop().await;
}

/// Sets the printer's progress to each of `values` in turn, each waited for on `P/state`.
async fn progress_seen(s: &Setup, values: &[f64]) {
    for &progress in values {
        let mark = s.sub.mark();
        s.sim.sim.set_progress(&s.uuid, progress);
        s.sub
            .wait_for_after(mark, STATE, WAIT, |m| m.json()["progress"] == progress)
            .await;
    }
}

#[tokio::test]
async fn a_dropped_channel_falls_back_to_polling_and_comes_back_without_a_restart() {
    // The busy pace 200 ms, the idle one an hour: what the poll's pace is shows in how many
    // lists are asked for while the printer changes, whatever the machine's speed.
    let s = Setup::start(HOUR, Duration::from_millis(200), true).await;
    s.subscribed(1).await;
    // Covered by the channel, the printing printer is polled at the idle pace: at most the
    // poll due when the channel took over comes while three values are pushed.
    let before = list_polls(&s.sim);
    progress_seen(&s, &[20.0, 21.0, 22.0]).await;
    let polls = list_polls(&s.sim) - before;
    assert!(polls <= 1, "{polls} list polls for 3 pushed values");

    let mark = s.sub.mark();
    s.sim.sim.set_live_enabled(false);
    let info = s.live_info(mark, |l| l["connected"] == false).await;
    assert!(info["last_error"].as_str().is_some(), "{info}");
    assert_eq!(info["printers_subscribed"], 0);
    // The REST poll carries on at the busy pace: it brings the change, and lists again and
    // again (at the idle pace the next list would be an hour away).
    progress_seen(&s, &[55.0]).await;
    wait_polls(&s.sim, 5).await;

    let mark = s.sub.mark();
    s.sim.sim.set_live_enabled(true);
    s.live_info(mark, |l| {
        l["connected"] == true && l["printers_subscribed"] == 1
    })
    .await;
    let before = list_polls(&s.sim);
    progress_seen(&s, &[77.0, 78.0, 79.0]).await;
    let polls = list_polls(&s.sim) - before;
    assert!(
        polls <= 1,
        "{polls} list polls for 3 pushed values, the channel back"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_stale_dialog_the_broker_replays_is_never_announced() {
    // The printer went away with a dialog up; the dialog is gone from Connect's list, but
    // the broker keeps it retained. Polls an hour apart: after the first list, only the
    // channel can tell the gateway anything.
    let s = Setup::start_with(HOUR, HOUR, true, |sim| {
        let uuid = sim.printers()[0].clone();
        sim.set_dialog(
            &uuid,
            Some(serde_json::json!({"title": "Old dialog", "buttons": ["Continue"]})),
        );
        sim.set_online(&uuid, false);
        sim.set_dialog(&uuid, None);
        None
    })
    .await;
    s.subscribed(1).await;
    // The broker replays the dialog on every subscription: on a reconnect too.
    let mark = s.sub.mark();
    s.sim.sim.drop_live_connections();
    s.reconnected(mark, 1).await;
    // Back online without it: what the channel says of it comes after the replays.
    s.sim.sim.set_online(&s.uuid, true);
    s.sub
        .wait_for(AVAILABILITY, WAIT, |m| m.text() == "online")
        .await;
    let all = s.sub.messages();
    let shown: Vec<String> = all
        .iter()
        .filter(|m| m.topic == EVENT && m.json()["event"] == "DIALOG_SHOWN")
        .map(|m| m.text())
        .collect();
    assert!(shown.is_empty(), "{shown:?}");
    let dialogs: Vec<Value> = all
        .iter()
        .filter(|m| m.topic == STATE)
        .map(|m| m.json()["dialog"].clone())
        .filter(|d| !d.is_null())
        .collect();
    assert!(dialogs.is_empty(), "{dialogs:?}");
    let triggers: Vec<String> = all
        .iter()
        .filter(|m| m.topic == TRIGGER)
        .map(|m| m.text())
        .collect();
    assert!(
        !triggers.iter().any(|t| t == "attention_needed"),
        "{triggers:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_token_the_channel_refuses_is_renewed_before_the_next_login() {
    let s = Setup::start_with(HOUR, HOUR, false, |sim| {
        sim.add_user("live@example.com", "pw", None);
        Some(sim.issue_refresh_token("live@example.com"))
    })
    .await;
    s.subscribed(1).await;
    let first = s.sim.sim.live_stats().tokens_accepted;
    assert_eq!(first.len(), 1);
    let refreshes = s.sim.sim.account_stats().refreshes_ok;

    // The token expires and the connection drops: the next login offers it and is refused.
    s.sim.sim.expire_access_tokens();
    let mark = s.sub.mark();
    s.sim.sim.drop_live_connections();
    s.reconnected(mark, 1).await;
    let stats = s.sim.sim.live_stats();
    assert!(stats.connects_refused >= 1, "{stats:?}");
    assert_eq!(stats.tokens_accepted.len(), 2, "{stats:?}");
    assert_ne!(stats.tokens_accepted[1], first[0], "a renewed token");
    assert!(s.sim.sim.account_stats().refreshes_ok > refreshes);
    s.stop().await;
}

#[tokio::test]
async fn printers_added_to_the_account_are_followed_and_removed_ones_dropped() {
    let fast = Duration::from_millis(200);
    let s = Setup::start(fast, fast, false).await;
    s.subscribed(1).await;
    let second = s.sim.sim.add_printer(PrinterSpec::named("Second"));
    s.subscribed(2).await;
    assert_eq!(s.sim.sim.live_subscriptions().get(&second), Some(&1));

    let mark = s.sub.mark();
    s.sim.sim.remove_printer(&second);
    s.live_info(mark, |l| l["printers_subscribed"] == 1).await;
    wait_until_or(
        || !s.sim.sim.live_subscriptions().contains_key(&second),
        || format!("{:?}", s.sim.sim.live_subscriptions()),
    )
    .await;
    assert_eq!(s.sim.sim.live_subscriptions().get(&s.uuid), Some(&1));
    assert_eq!(s.sim.sim.live_stats().filters_refused, 0);
    s.stop().await;
}

#[tokio::test]
async fn a_refused_login_is_retried_with_growing_waits_while_rest_carries_on() {
    let fast = Duration::from_millis(200);
    let s = Setup::start_with(fast, fast, false, |sim| {
        sim.set_live_refuse_all(true);
        None
    })
    .await;
    // Four logins: the waits between them are about 1, 2 and 4 s (±20 %).
    wait_until_or(
        || s.requests_to("/mqtt").len() >= 4,
        || format!("{:?}", s.sim.sim.live_stats()),
    )
    .await;
    let attempts = s.requests_to("/mqtt");
    let gaps: Vec<f64> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| *g >= 0.7) && gaps.windows(2).all(|w| w[1] >= w[0] * 1.2),
        "gaps between logins, s: {gaps:?}"
    );
    let info = s
        .live_info(0, |l| {
            l["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("refused"))
        })
        .await;
    assert_eq!(info["connected"], false);
    // The printer is on the broker all the same.
    s.sub
        .wait_for(&format!("{BASE}/p/availability"), WAIT, |m| {
            m.text() == "online"
        })
        .await;
    s.stop().await;
}

#[tokio::test]
async fn more_printers_than_rumqttc_has_packet_ids_are_all_followed() {
    // rumqttc numbers subscriptions 1..=100 over and over: 150 printers reuse ids in flight.
    let fast = Duration::from_millis(200);
    let s = Setup::start_with(fast, fast, false, |sim| {
        for i in 0..149 {
            sim.add_printer(PrinterSpec::named(&format!("Farm {i:03}")));
        }
        None
    })
    .await;
    s.subscribed(150).await;
    assert_eq!(s.sim.sim.live_subscriptions().len(), 150);
    s.stop().await;
}
