//! End-to-end commands: MQTT in, Connect request out (or not), one reply on the broker.

mod common;

use std::time::Duration;

use common::broker::{Msg, Subscriber, TestBroker};
use common::gateway::{BASE, Gateway, Sim, config};
use prusa_connect_sim::{Fault, PrinterSpec};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

struct Setup {
    _broker: TestBroker,
    sim: Sim,
    sub: Subscriber,
    gateway: Option<Gateway>,
    uuid: String,
    _state: tempfile::TempDir,
    sent: usize,
}

impl Setup {
    /// One printer "Busy MK4", printing a job with two objects unless `idle`.
    async fn start(idle: bool, extra: &str) -> Setup {
        let broker = TestBroker::start();
        let sim = Sim::start().await;
        let uuid = sim.sim.add_printer(PrinterSpec::named("Busy MK4"));
        if !idle {
            sim.sim
                .start_job(&uuid, "cube.bgcode", 600, &["Cube A", "Cube B"]);
        }
        let state = tempfile::tempdir().unwrap();
        let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#"), "homeassistant/#"]).await;
        let gateway = Gateway::start(config(&broker, &sim, state.path(), extra));
        let want = if idle { "IDLE" } else { "PRINTING" };
        sub.wait_for(&format!("{BASE}/busy_mk4/state"), WAIT, |m| {
            m.json()["state"] == want
        })
        .await;
        Setup {
            _broker: broker,
            sim,
            sub,
            gateway: Some(gateway),
            uuid,
            _state: state,
            sent: 0,
        }
    }

    fn commands_sent(&self) -> Vec<Value> {
        self.sim.commands_sent()
    }

    /// Publishes a command and returns its reply (the next one on the response topic).
    async fn send(&mut self, printer: &str, payload: &[u8]) -> Value {
        let topic = format!("{BASE}/{printer}/command/response");
        let before = self.sub.on(&topic).len();
        self.sub
            .publish(
                &format!("{BASE}/{printer}/command"),
                payload.to_vec(),
                false,
            )
            .await;
        self.sent += 1;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let replies: Vec<Msg> = self.sub.on(&topic);
            if replies.len() > before {
                assert_eq!(replies.len(), before + 1, "exactly one reply: {replies:?}");
                return replies[before].json();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no reply to {payload:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn wait_state(&self, state: &str) -> Value {
        self.sub
            .wait_for(&format!("{BASE}/busy_mk4/state"), WAIT, |m| {
                m.json()["state"] == state
            })
            .await
            .json()
    }

    /// Waits for a message on `topic` after the first `seen` ones, listing one printer.
    async fn wait_new(&self, topic: &str, seen: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self.sub.on(topic)[seen..].iter().any(|m| {
            m.json()["printers"]
                .as_array()
                .is_some_and(|p| p.len() == 1)
        }) {
            assert!(tokio::time::Instant::now() < deadline, "no new {topic}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(mut self) {
        if let Some(g) = self.gateway.take() {
            g.stop().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_stop_with_replies_and_fast_state() {
    let mut s = Setup::start(false, "").await;
    let reply = s.send("busy_mk4", b"pause").await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(reply["command"], "PAUSE_PRINT");
    assert!(reply["connect_command_id"].as_i64().is_some(), "{reply}");
    assert_eq!(
        s.commands_sent(),
        vec![json!({"command": "PAUSE_PRINT", "kwargs": {}})]
    );
    s.wait_state("PAUSED").await;

    let reply = s
        .send(
            "busy_mk4",
            br#"{"command": "RESUME_PRINT", "transaction": "t-42"}"#,
        )
        .await;
    assert_eq!(reply["transaction"], "t-42");
    assert_eq!(reply["status"], "ok", "{reply}");
    s.wait_state("PRINTING").await;

    let reply = s
        .send("busy_mk4", br#"{"command": "stop", "transaction": 7}"#)
        .await;
    assert_eq!(reply["transaction"], 7);
    assert_eq!(reply["command"], "STOP_PRINT");
    assert_eq!(reply["status"], "ok", "{reply}");
    let finished = s
        .sub
        .wait_for(&format!("{BASE}/busy_mk4/job/finished"), WAIT, |_| true)
        .await
        .json();
    assert_eq!(finished["event_type"], "FIN_STOPPED");
    s.wait_state("STOPPED").await;

    let reply = s.send("busy_mk4", b"ready").await;
    assert_eq!(reply["status"], "ok", "{reply}");
    s.wait_state("READY").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_code_and_nothing_sent_when_refused_locally() {
    let mut s = Setup::start(true, "").await;

    let err = |v: &Value| {
        (
            v["status"].as_str().unwrap().to_string(),
            v["code"].as_str().unwrap_or("").to_string(),
        )
    };

    // MOVE out of the printer's limits: refused without a request to Connect.
    let r = s
        .send(
            "busy_mk4",
            br#"{"command":"MOVE","kwargs":{"x":999,"y":10,"feedrate":3000},"transaction":"m1"}"#,
        )
        .await;
    assert_eq!(err(&r), ("error".into(), "INVALID_ARGUMENT".into()), "{r}");
    assert_eq!(r["transaction"], "m1");
    assert!(r["error"].as_str().unwrap().contains("maximum"), "{r}");

    let r = s
        .send(
            "busy_mk4",
            br#"{"command":"MOVE","kwargs":{"x":"left","feedrate":3000}}"#,
        )
        .await;
    assert_eq!(err(&r).1, "INVALID_ARGUMENT", "{r}");

    let r = s
        .send(
            "busy_mk4",
            br#"{"command":"SEND_GCODE","kwargs":{"gcode":"M112"}}"#,
        )
        .await;
    assert_eq!(err(&r).1, "NOT_ALLOWED", "{r}");

    let r = s.send("busy_mk4", b"pause").await;
    assert_eq!(err(&r).1, "PRINTER_STATE", "{r}");
    assert!(r["error"].as_str().unwrap().contains("PRINTING"), "{r}");

    let r = s.send("busy_mk4", b"FLY_TO_THE_MOON").await;
    assert_eq!(err(&r).1, "UNKNOWN_COMMAND", "{r}");

    for garbage in [
        &b"\xff\xfe\x00"[..],
        b"{\"command\": ",
        b"[1,2,3]",
        b"{\"command\":\"MOVE\",\"kwargs\":5}",
    ] {
        let r = s.send("busy_mk4", garbage).await;
        assert_eq!(err(&r).1, "INVALID_PAYLOAD", "{garbage:?}: {r}");
    }

    let r = s.send("no_such_printer", b"pause").await;
    assert_eq!(err(&r).1, "UNKNOWN_PRINTER", "{r}");

    assert!(
        s.commands_sent().is_empty(),
        "nothing reached Connect: {:?}",
        s.commands_sent()
    );

    // A valid MOVE goes through with exactly the arguments given.
    let r = s
        .send(
            "busy_mk4",
            br#"{"command":"MOVE","kwargs":{"x":131,"y":134,"feedrate":3000},"transaction":"abc"}"#,
        )
        .await;
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(
        s.commands_sent(),
        vec![json!({"command": "MOVE", "kwargs": {"x": 131, "y": 134, "feedrate": 3000}})]
    );

    // Connect failing: CONNECT_ERROR, and MOVE is not retried.
    s.sim.sim.set_fault(Some(Fault::Status(503)));
    let r = s
        .send(
            "busy_mk4",
            br#"{"command":"MOVE","kwargs":{"x":10,"feedrate":1000}}"#,
        )
        .await;
    assert_eq!(err(&r).1, "CONNECT_ERROR", "{r}");
    s.sim.sim.set_fault(None);
    let moves = s
        .sim
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/commands/sync"))
        .count();
    assert_eq!(moves, 2, "the failed MOVE was sent once, not retried");

    // The other motion and readiness commands of the default allow list.
    for payload in [
        &br#"{"command":"MOVE_Z","kwargs":{"distance":5,"feedrate":600}}"#[..],
        b"HOME",
        b"home",
    ] {
        let r = s.send("busy_mk4", payload).await;
        assert_eq!(r["status"], "ok", "{r}");
    }
    let r = s
        .send(
            "busy_mk4",
            br#"{"command":"MOVE_Z","kwargs":{"distance":5,"feedrate":9000}}"#,
        )
        .await;
    assert_eq!(
        r["code"], "INVALID_ARGUMENT",
        "MOVE_Z feedrate over 720: {r}"
    );
    assert_eq!(s.send("busy_mk4", b"ready").await["status"], "ok");
    s.wait_state("READY").await;
    let r = s.send("busy_mk4", b"not_ready").await;
    assert_eq!(r["command"], "CANCEL_PRINTER_READY");
    assert_eq!(r["status"], "ok", "{r}");
    s.wait_state("IDLE").await;
    let names: Vec<String> = s
        .commands_sent()
        .iter()
        .map(|c| c["command"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "MOVE",
            "MOVE",
            "MOVE_Z",
            "HOME",
            "HOME",
            "SET_PRINTER_READY",
            "CANCEL_PRINTER_READY"
        ]
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_refusal_for_state_is_printer_state() {
    // Slow polls: the gateway still believes the printer prints when Connect knows better.
    let mut s = Setup::start(false, "").await;
    s.gateway.take().unwrap().stop().await;
    let state = tempfile::tempdir().unwrap();
    let cfg = config(&s._broker, &s.sim, state.path(), "");
    let mut cfg = cfg;
    cfg.connect.poll_interval = Duration::from_secs(3600);
    cfg.connect.active_poll_interval = Duration::from_secs(3600);
    let info_topic = format!("{BASE}/bridge/info");
    let seen = s.sub.on(&info_topic).len();
    s.gateway = Some(Gateway::start(cfg));
    s.wait_new(&info_topic, seen).await;
    s.sim.sim.pause(&s.uuid);
    let r = s.send("busy_mk4", b"pause").await;
    assert_eq!(r["code"], "PRINTER_STATE", "{r}");
    assert!(
        r["error"].as_str().unwrap().contains("Connect refused"),
        "{r}"
    );
    assert_eq!(s.commands_sent().len(), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_command_is_ignored_and_cleared() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let uuid = sim.sim.add_printer(PrinterSpec::named("Busy MK4"));
    sim.sim.start_job(&uuid, "cube.bgcode", 600, &[]);
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    // Left on the broker by some flow: it must not pause the print when the gateway starts.
    sub.publish(&format!("{BASE}/busy_mk4/command"), "pause", true)
        .await;
    let state = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(config(&broker, &sim, state.path(), ""));
    sub.wait_for(&format!("{BASE}/busy_mk4/command"), WAIT, |m| {
        m.payload.is_empty()
    })
    .await;
    // A later, live command is handled: the retained one came first and was dropped.
    sub.publish(&format!("{BASE}/busy_mk4/command"), "resume", false)
        .await;
    let reply = sub
        .wait_for(&format!("{BASE}/busy_mk4/command/response"), WAIT, |_| true)
        .await
        .json();
    assert_eq!(reply["command"], "RESUME_PRINT");
    assert_eq!(
        reply["code"], "PRINTER_STATE",
        "the printer is still printing: {reply}"
    );
    let paused = sim
        .sim
        .requests()
        .iter()
        .any(|r| r.body.contains("PAUSE_PRINT"));
    assert!(!paused, "the retained pause reached Connect");
    assert_eq!(
        sub.on(&format!("{BASE}/busy_mk4/command/response")).len(),
        1
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_object_by_name_and_job_reason() {
    let mut s = Setup::start(false, "").await;
    let job = s
        .sub
        .wait_for(&format!("{BASE}/busy_mk4/job"), WAIT, |m| {
            m.json()["cancelable_objects"]
                .as_array()
                .is_some_and(|a| a.len() == 2)
        })
        .await
        .json();
    let r = s
        .send(
            "busy_mk4",
            br#"{"command":"CANCEL_OBJECT","kwargs":{"object_name":"Cube B"}}"#,
        )
        .await;
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(
        s.commands_sent(),
        vec![
            json!({"command": "CANCEL_OBJECT", "kwargs": {"object_id": job["cancelable_objects"][1]["id"]}})
        ]
    );
    s.sub
        .wait_for(&format!("{BASE}/busy_mk4/job"), WAIT, |m| {
            m.json()["cancelable_objects"][1]["canceled"] == true
        })
        .await;
    // The select no longer offers the canceled object.
    let discovery = format!("homeassistant/device/prusa_connect_{}/config", s.uuid);
    let d = s
        .sub
        .wait_for(&discovery, WAIT, |m| {
            !m.payload.is_empty()
                && m.discovery()["components"]["cancel_object"]["options"] == json!(["Cube A"])
        })
        .await
        .discovery();
    assert_eq!(d["components"]["cancel_object"]["platform"], "select");
    let r = s
        .send(
            "busy_mk4",
            br#"{"command":"CANCEL_OBJECT","kwargs":{"object_name":"Nope"}}"#,
        )
        .await;
    assert_eq!(r["code"], "INVALID_ARGUMENT", "{r}");
    assert!(r["error"].as_str().unwrap().contains("Cube A"), "{r}");

    // The job fails; its reason is set through B/P/job/reason.
    s.sim.sim.finish_job(&s.uuid, "FIN_ERROR");
    s.sub
        .wait_for(&format!("{BASE}/busy_mk4/job/finished"), WAIT, |_| true)
        .await;
    let topic = format!("{BASE}/busy_mk4/command/response");
    s.sub
        .publish(
            &format!("{BASE}/busy_mk4/job/reason"),
            r#"{"tags":["WARPING"],"other":"corner lifted","transaction":"r1"}"#,
            false,
        )
        .await;
    let reply = s
        .sub
        .wait_for(&topic, WAIT, |m| m.json()["transaction"] == "r1")
        .await
        .json();
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(reply["command"], "SET_JOB_REASON");
    let patch = s
        .sim
        .sim
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .expect("a PATCH");
    assert_eq!(
        patch.path,
        format!("/app/printers/{}/jobs/{}", s.uuid, job["id"])
    );
    assert_eq!(
        serde_json::from_str::<Value>(&patch.body).unwrap(),
        json!({"reason": {"tag": ["WARPING"], "other": "corner lifted"}})
    );
    s.sub
        .publish(
            &format!("{BASE}/busy_mk4/job/reason"),
            r#"{"tags":["GREMLINS"],"transaction":"r2"}"#,
            false,
        )
        .await;
    let reply = s
        .sub
        .wait_for(&topic, WAIT, |m| m.json()["transaction"] == "r2")
        .await
        .json();
    assert_eq!(reply["code"], "INVALID_ARGUMENT", "{reply}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_command_the_printer_is_polled_fast() {
    // Idle polls are an hour apart: only the fast poll after the command can show READY.
    let mut s = Setup::start(true, "").await;
    s.gateway.take().unwrap().stop().await;
    let state = tempfile::tempdir().unwrap();
    let mut cfg = config(&s._broker, &s.sim, state.path(), "");
    cfg.connect.poll_interval = Duration::from_secs(3600);
    let info_topic = format!("{BASE}/bridge/info");
    let seen = s.sub.on(&info_topic).len();
    s.gateway = Some(Gateway::start(cfg));
    s.wait_new(&info_topic, seen).await;
    let r = s.send("busy_mk4", b"ready").await;
    assert_eq!(r["status"], "ok", "{r}");
    s.wait_state("READY").await;
    s.stop().await;
}
