//! The live channel's values in the core: laid over the list's printer, `P/state` at most
//! once a second, reads at once on a state or job change, and the poll's pace.

use super::*;
use crate::connect::live::{LiveEvent, LiveTopic};

fn value(uuid: &str, topic: &str, payload: &str) -> LiveEvent {
    LiveEvent::Value {
        topic: LiveTopic::new(uuid, topic),
        payload: payload.as_bytes().to_vec().into(),
        retained: false,
    }
}

/// A value the broker replays from what it kept, on a new subscription.
fn retained(uuid: &str, topic: &str, payload: &str) -> LiveEvent {
    LiveEvent::Value {
        topic: LiveTopic::new(uuid, topic),
        payload: payload.as_bytes().to_vec().into(),
        retained: true,
    }
}

impl Bridge {
    fn live(&mut self, event: LiveEvent) -> Option<Duration> {
        self.core.live_event(self.now, self.wall, event)
    }

    /// Advances the clock by `ms` and lets the core look at what is due.
    fn flush_after(&mut self, ms: u64) -> Out {
        self.now += Duration::from_millis(ms);
        self.wall += ms as f64 / 1000.0;
        self.core.live_flush(self.now, self.wall);
        self.take()
    }

    /// A poll whose list was asked for at `requested` (and comes now).
    fn poll_asked_at(&mut self, requested: Instant, printers: &[Value]) -> Out {
        let printers: Vec<Printer> = printers
            .iter()
            .map(|p| serde_json::from_value(p.clone()).unwrap())
            .collect();
        self.core.on_list(
            self.now,
            self.wall,
            requested,
            Ok((printers, Vec::new())),
            auth(),
        );
        self.take()
    }

    /// A bridge with `connect.live` on.
    fn with_live() -> Bridge {
        let settings = Settings {
            live: true,
            ..settings("")
        };
        Bridge {
            core: Core::new(settings, StateFile::default()),
            now: Instant::now(),
            wall: WALL,
        }
    }

    /// A live bridge with printer A printing job 7, introduced, on a channel that is up and
    /// subscribed to it.
    fn live_printing() -> Bridge {
        let mut b = Bridge::with_live();
        b.poll_settled(&[printing(A, "Alpha", 7)]);
        b.live(LiveEvent::Up);
        b.live(LiveEvent::Subscribed { uuid: A.into() });
        b.flush_after(200);
        b
    }
}

const STATE: &str = "pc/alpha/state";

/// The device triggers fired.
fn triggers(out: &Out) -> Vec<String> {
    out.messages
        .iter()
        .filter_map(|m| match m {
            Message::Event { topic, payload } if topic == "pc/alpha/trigger" => {
                Some(String::from_utf8_lossy(payload).into_owned())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn pushed_values_reach_the_state_at_most_once_a_second_and_are_gathered() {
    let mut b = Bridge::live_printing();
    b.live(value(A, "data/job-progress", "11"));
    b.live(value(A, "data/temp/nozzle/current", "214.6"));
    assert_eq!(
        b.core.live_due(),
        Some(b.now + super::super::live::LIVE_GATHER)
    );
    let out = b.flush_after(100);
    let state = out.payload(STATE).expect("the state goes at once");
    assert_eq!(
        (state["progress"].as_f64(), state["temp_nozzle"].as_f64()),
        (Some(11.0), Some(214.6))
    );

    // The next change within the second waits for it, and the last value wins.
    b.live(value(A, "data/job-progress", "12"));
    b.live(value(A, "data/job-progress", "13"));
    assert!(
        b.flush_after(300).payload(STATE).is_none(),
        "within the second"
    );
    let out = b.flush_after(700);
    assert_eq!(out.payload(STATE).unwrap()["progress"], 13.0);
    assert_eq!(b.core.live_due(), None);
}

#[test]
fn a_pushed_value_wins_over_a_list_requested_before_it_came_however_slow_the_list() {
    let mut b = Bridge::live_printing();
    // The list is asked for; while it is on its way the printer pauses and the channel says so.
    let requested = b.now;
    b.live(value(A, "data/state", "PAUSED"));
    let out = b.flush_after(500);
    assert_eq!(out.payload(STATE).unwrap()["printer_state"], "PAUSED");
    // The list comes 4 s after it was asked for, showing the printer as it was then.
    b.advance(4);
    let out = b.poll_asked_at(requested, &[printing(A, "Alpha", 7)]);
    assert!(out.payload(STATE).is_none(), "{:?}", out.topics());
    // A list asked for after the value came counts: a value the channel stopped updating
    // hides nothing from the poll.
    let out = b.poll(&[printing(A, "Alpha", 7)]);
    assert_eq!(out.payload(STATE).unwrap()["printer_state"], "PRINTING");
}

#[test]
fn a_slow_list_from_before_a_pushed_change_fires_no_trigger() {
    let mut b = Bridge::live_printing();
    let mut asking = printing(A, "Alpha", 7);
    asking["printer_state"] = json!("ATTENTION");
    asking["connect_state"] = json!("ATTENTION");
    asking["dialog_info"] = json!({"id": 42, "title": "Filament runout", "buttons": ["Continue"]});
    let out = b.poll_settled(&[asking.clone()]);
    assert_eq!(triggers(&out), ["attention_needed"]);
    // The list is asked for; meanwhile the dialog is answered and the channel says so.
    let requested = b.now;
    b.live(value(A, "data/state", "PRINTING"));
    b.live(value(A, "dialog", ""));
    let out = b.flush_after(1000);
    assert_eq!(out.payload(STATE).unwrap()["printer_state"], "PRINTING");
    assert_eq!(out.events("pc/alpha/event")[0]["event"], "DIALOG_CLOSED");
    // The list, 3.5 s on its way, still shows the dialog: nothing is shown or fired again.
    b.advance(3);
    let out = b.poll_asked_at(requested, &[asking]);
    assert!(out.payload(STATE).is_none(), "{:?}", out.topics());
    assert!(triggers(&out).is_empty(), "{:?}", triggers(&out));
    assert!(out.events("pc/alpha/event").is_empty());
}

#[test]
fn retained_values_replayed_on_a_new_subscription_change_nothing_and_fire_nothing() {
    let mut b = Bridge::live_printing();
    // The channel comes back; the broker replays what it kept of the printer, among it a
    // dialog from long ago.
    b.live(LiveEvent::Down {
        error: "gone".into(),
    });
    b.live(LiveEvent::Up);
    b.live(LiveEvent::Subscribed { uuid: A.into() });
    for (topic, payload) in [
        ("data/state", "ATTENTION"),
        (
            "dialog",
            r#"{"id": 5, "title": "Old dialog", "buttons": ["Continue"]}"#,
        ),
        ("data/job-progress", "3"),
        ("jobs/7/data/progress", "3"),
    ] {
        b.live(retained(A, topic, payload));
    }
    let out = b.flush_after(1000);
    assert!(out.payload(STATE).is_none(), "{:?}", out.topics());
    assert!(triggers(&out).is_empty(), "{:?}", triggers(&out));
    assert!(out.events("pc/alpha/event").is_empty());
    // Nor does the next list see it.
    let out = b.poll(&[printing(A, "Alpha", 7)]);
    assert!(out.payload(STATE).is_none(), "{:?}", out.topics());
    assert!(triggers(&out).is_empty(), "{:?}", triggers(&out));
    // What the printer says from now on counts as always.
    b.live(value(A, "data/job-progress", "12"));
    let out = b.flush_after(1000);
    assert_eq!(out.payload(STATE).unwrap()["progress"], 12.0);
}

#[test]
fn when_the_channel_drops_the_list_counts_and_the_poll_speeds_up() {
    let mut b = Bridge::live_printing();
    b.live(value(A, "data/job-progress", "40"));
    b.flush_after(200);
    let soon = b.live(LiveEvent::Down {
        error: "gone".into(),
    });
    assert_eq!(soon, Some(Duration::from_secs(5)));
    let out = b.poll(&[printing(A, "Alpha", 7)]);
    assert_eq!(out.payload(STATE).unwrap()["progress"], 10.0);
    let info = out.payload("pc/bridge/info").unwrap();
    assert_eq!(info["live"]["connected"], false);
    assert_eq!(info["live"]["last_error"], "gone");
    assert_eq!(info["live"]["printers_subscribed"], 0);
}

#[test]
fn busy_printers_the_channel_covers_are_polled_at_the_idle_pace() {
    let mut b = Bridge::with_live();
    let wait = |b: &mut Bridge| {
        let printers: Vec<Printer> = [printing(A, "Alpha", 7), printer(B, "Beta", "IDLE")]
            .iter()
            .map(|p| serde_json::from_value(p.clone()).unwrap())
            .collect();
        let wait = b
            .core
            .on_list(b.now, b.wall, b.now, Ok((printers, Vec::new())), auth());
        b.take();
        wait
    };
    assert_eq!(wait(&mut b), Duration::from_secs(5), "no channel yet");
    b.live(LiveEvent::Up);
    b.live(LiveEvent::Subscribed { uuid: B.into() });
    assert_eq!(
        wait(&mut b),
        Duration::from_secs(5),
        "the busy printer is not covered"
    );
    b.live(LiveEvent::Subscribed { uuid: A.into() });
    assert_eq!(wait(&mut b), Duration::from_secs(30));
    b.live(LiveEvent::Refused { uuid: A.into() });
    assert_eq!(wait(&mut b), Duration::from_secs(5));
    assert_eq!(
        b.core.live_printers().into_iter().collect::<Vec<_>>(),
        vec![A.to_string(), B.to_string()]
    );
}

#[test]
fn a_pushed_state_or_job_change_reads_the_feed_and_the_job_at_once() {
    let mut b = Bridge::live_printing();
    b.live(value(A, "data/state", "FINISHED"));
    b.live(value(A, "jobs/7/data/state", "FIN_OK"));
    let out = b.flush_after(100);
    assert_eq!(out.payload(STATE).unwrap()["printer_state"], "FINISHED");
    assert!(
        out.reads
            .iter()
            .any(|r| matches!(r, Read::Feed { uuid, .. } if uuid == A)),
        "{:?}",
        out.reads
    );
    assert!(
        out.reads
            .iter()
            .any(|r| matches!(r, Read::Jobs { uuid, .. } | Read::Job { uuid, .. } if uuid == A)),
        "the job's record: {:?}",
        out.reads
    );

    // A new job the list has not shown yet.
    b.settle(out.reads);
    b.live(value(A, "data/state", "PRINTING"));
    b.live(value(A, "data/current-job", "8"));
    b.live(value(A, "jobs/8/data/progress", "1"));
    let out = b.flush_after(1000);
    let state = out.payload(STATE).unwrap();
    assert_eq!(
        (state["job_id"].as_i64(), state["progress"].as_f64()),
        (Some(8), Some(1.0))
    );
    assert!(out.reads.contains(&job_read(8)), "{:?}", out.reads);
}

#[test]
fn old_jobs_and_bad_values_change_nothing_and_never_panic() {
    let mut b = Bridge::live_printing();
    // Retained topics of a job long gone, and values that are not what they should be.
    for (topic, payload) in [
        ("jobs/3/data/progress", "100"),
        ("jobs/3/data/state", "FIN_OK"),
        ("data/job-progress", "lots"),
        ("data/temp/nozzle/current", "NaN"),
        ("data/online", "maybe"),
        ("dialog", "{not json"),
        ("data/state", ""),
        ("data/current-job", "-x"),
        ("data/tools/2/temp/nozzle/current", "200"),
        ("something/new", "1"),
    ] {
        b.live(value(A, topic, payload));
    }
    b.live(LiveEvent::Value {
        topic: LiveTopic::new(A, "data/material"),
        payload: vec![0xff, 0xfe].into(),
        retained: false,
    });
    // A printer the gateway does not bridge.
    b.live(value(B, "data/state", "PRINTING"));
    let out = b.flush_after(1000);
    assert!(out.payload(STATE).is_none(), "{:?}", out.topics());
}

#[test]
fn a_dialog_shows_and_goes_with_the_channel() {
    let mut b = Bridge::live_printing();
    b.live(value(A, "data/state", "ATTENTION"));
    b.live(value(
        A,
        "dialog",
        r#"{"id": 3, "title": "Filament runout", "buttons": ["Continue"], "new_field": 1}"#,
    ));
    let out = b.flush_after(100);
    assert_eq!(
        out.payload(STATE).unwrap()["dialog"]["title"],
        "Filament runout"
    );
    assert_eq!(out.events("pc/alpha/event").len(), 1, "announced once");
    b.live(value(A, "data/state", "PRINTING"));
    b.live(value(A, "dialog", ""));
    let out = b.flush_after(1000);
    assert!(out.payload(STATE).unwrap()["dialog"].is_null());
}

#[test]
fn after_an_accepted_command_the_poll_shows_its_effect_over_older_pushed_values() {
    let mut b = Bridge::live_printing();
    b.live(value(A, "data/state", "PRINTING"));
    b.flush_after(200);
    let Prepared::Run(job) = b.command("pc/alpha/command", r#"{"command":"PAUSE_PRINT"}"#) else {
        panic!("PAUSE_PRINT runs");
    };
    let CommandTask::Command { req, .. } = &job.task else {
        panic!("a command")
    };
    b.core.command_done(
        CommandDone::of(
            &job,
            CommandReply::ok(req, Some(1)),
            None,
            Outcome::Accepted,
        ),
        b.now,
    );
    b.take();
    let mut paused = printing(A, "Alpha", 7);
    paused["printer_state"] = json!("PAUSED");
    paused["connect_state"] = json!("PAUSED");
    let out = b.poll(&[paused]);
    assert_eq!(out.payload(STATE).unwrap()["printer_state"], "PAUSED");
}

/// Laying the channel's values over a printer says whether that changed it (a look that
/// changes nothing is not taken), whatever the values: the same as the printer shows, new
/// ones, a job the list does not show yet, and values older than the list.
#[test]
fn laying_pushed_values_over_a_printer_says_whether_it_changed_it() {
    use crate::bridge::printer::Pushed;
    let mut listed = printing(A, "Alpha", 7);
    listed["temp"] = json!({"temp_nozzle": 215.0, "target_nozzle": 215.0, "temp_bed": 60.0});
    listed["axis_z"] = json!(1.2);
    listed["filament"] = json!({"material": "PLA"});
    let listed: Printer = serde_json::from_value(listed).unwrap();
    let values = [
        ("data/state", "PRINTING"),
        ("data/state", "PAUSED"),
        ("data/online", "1"),
        ("data/online", "0"),
        ("data/current-job", "7"),
        ("data/current-job", "8"),
        ("data/job-progress", "10"),
        ("data/job-progress", "11"),
        ("data/material", "PLA"),
        ("data/material", "PETG"),
        ("data/axis-z", "1.2"),
        ("data/axis-z", "1.4"),
        ("data/temp/nozzle/current", "215"),
        ("data/temp/nozzle/current", "214.6"),
        ("data/temp/heatbed/target", "60"),
        ("data/temp/chamber/current", "30"),
        ("dialog", ""),
        ("jobs/7/data/progress", "10"),
        ("jobs/7/data/progress", "12"),
        ("jobs/7/data/state", "PRINTING"),
        ("jobs/8/data/time-remaining", "600"),
    ];
    let now = Instant::now();
    let (mut changed_cases, mut unchanged_cases) = (0, 0);
    for (i, first) in values.iter().enumerate() {
        for second in &values[i..] {
            let mut pushed = Pushed::default();
            for (topic, payload) in [first, second] {
                pushed.apply(topic, payload.as_bytes(), now).unwrap();
            }
            let mut p = listed.clone();
            let changed = pushed.lay_over(&mut p);
            assert_eq!(changed, p != listed, "{first:?} then {second:?}: {p:?}");
            if changed {
                changed_cases += 1;
            } else {
                unchanged_cases += 1;
            }
            // A list asked for after the values came shows newer ones: nothing is laid over.
            pushed.list_requested = Some(now + Duration::from_millis(1));
            let mut p = listed.clone();
            assert!(!pushed.lay_over(&mut p), "{first:?} then {second:?}");
            assert_eq!(p, listed);
            // Nor after a command Connect accepted.
            pushed.list_requested = None;
            pushed.forget_received();
            assert!(!pushed.lay_over(&mut p), "{first:?} then {second:?}");
            assert_eq!(p, listed);
        }
    }
    assert!(
        changed_cases > 100 && unchanged_cases > 10,
        "{changed_cases} changed, {unchanged_cases} not"
    );
}

/// Printers whose values come a few milliseconds apart are looked at in one wake of the
/// loop: turns are due on a grid of [`LIVE_STEP`] from the channel's first event.
#[test]
fn printers_whose_values_come_close_together_are_looked_at_together() {
    use super::super::live::{LIVE_GATHER, LIVE_STEP};
    let mut b = Bridge::with_live();
    b.poll_settled(&[printing(A, "Alpha", 7), printing(B, "Beta", 8)]);
    let origin = b.now;
    b.live(LiveEvent::Up);
    b.live(LiveEvent::Subscribed { uuid: A.into() });
    b.live(LiveEvent::Subscribed { uuid: B.into() });
    b.flush_after(205);
    b.live(value(A, "data/job-progress", "11"));
    assert!(b.flush_after(10).messages.is_empty());
    b.live(value(B, "data/job-progress", "12"));
    // A's turn is 305 ms after the origin, B's 315 ms: both are due on the grid's next step.
    let step = origin + LIVE_STEP * 7;
    assert!(origin + Duration::from_millis(215) + LIVE_GATHER <= step);
    assert_eq!(b.core.live_due(), Some(step));
    assert!(b.flush_after(84).messages.is_empty(), "before A's turn");
    let out = b.flush_after(51);
    assert_eq!(out.payload(STATE).unwrap()["progress"], 11.0);
    assert_eq!(out.payload("pc/beta/state").unwrap()["progress"], 12.0);
    assert_eq!(b.core.live_due(), None);
}

/// The turn of values the channel dropped (it stopped speaking for the printer) does not
/// come back: values that came after are gathered for their own turn, not looked at early.
#[test]
fn the_turn_of_dropped_values_does_not_look_at_later_ones_early() {
    let mut b = Bridge::live_printing();
    b.live(value(A, "data/job-progress", "11"));
    // Due in 100 ms; the channel stops following A and takes it up again meanwhile.
    b.live(LiveEvent::Unsubscribed { uuid: A.into() });
    b.live(LiveEvent::Subscribed { uuid: A.into() });
    assert!(b.flush_after(60).payload(STATE).is_none());
    b.live(value(A, "data/job-progress", "12"));
    let out = b.flush_after(40);
    assert!(
        out.payload(STATE).is_none(),
        "at the dropped value's turn, 40 ms after 12 came: {:?}",
        out.topics()
    );
    let out = b.flush_after(100);
    assert_eq!(out.payload(STATE).unwrap()["progress"], 12.0);
    assert_eq!(b.core.live_due(), None);
}
