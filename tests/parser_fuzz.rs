//! Property tests for every parser of input from outside the process: Connect's JSON (the
//! model types and the helpers the bridge calls on them), whole response bodies through the
//! client, the config file, job-reason messages from MQTT, the token endpoint's answer, JWTs
//! and the stored `auth.json`.
//!
//! Connect documents start from realistic samples (read once from the simulator over HTTP,
//! plus the captures quoted in the API notes) and are mutated at random: keys deleted, values
//! replaced by values of another JSON type or at the edge of their type, unknown keys added,
//! enum strings changed to unknown ones. Case counts keep the file well under 20 s in a debug
//! build; `PROPTEST_CASES=20000` runs every property that many times.

mod common;

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use proptest::sample::Index;
use prusa_connect_mqtt::auth::{self, TokenResponse, TokenStore};
use prusa_connect_mqtt::bridge::registry::Registry;
use prusa_connect_mqtt::command::{self, CommandReply};
use prusa_connect_mqtt::config::{Config, DEFAULT_ALLOWED_COMMANDS, DiscoveryMode};
use prusa_connect_mqtt::connect::model::*;
use prusa_connect_mqtt::connect::{ConnectClient, ConnectError, TokenSource};
use prusa_connect_mqtt::discovery::{self, Controls, Discovery, Features, PrinterDevice};
use prusa_connect_mqtt::payloads;
use prusa_connect_mqtt::topics::Topics;
use prusa_connect_sim::{PrinterSpec, Scenario, SimOptions, Simulator};
use secrecy::SecretString;
use serde_json::{Map, Value, json};

use common::fake_http::{FakeHttp, Reply};
use common::gateway::{Sim, TOKEN};

/// `cases` unless `PROPTEST_CASES` says otherwise.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// One runtime for the whole binary, so servers started by one case serve the next.
fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

// ---------------------------------------------------------------------------------------------
// Samples

/// Which Connect endpoint a sample document came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    PrinterList,
    Printer,
    JobList,
    Job,
    EventPage,
    Event,
    Queue,
    SupportedCommands,
    PrinterTypes,
    Version,
    Cameras,
    Unseen,
    Notifications,
    CommandResult,
    ApiError,
    Opaque,
}

struct Samples {
    docs: Vec<(Kind, Value)>,
}

impl Samples {
    fn of(&self, kind: Kind) -> Vec<Value> {
        self.docs
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

fn samples() -> &'static Samples {
    static SAMPLES: OnceLock<Samples> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let mut docs = rt().block_on(from_simulator());
        docs.extend(from_notes());
        for kind in [
            Kind::PrinterList,
            Kind::Printer,
            Kind::JobList,
            Kind::Job,
            Kind::EventPage,
            Kind::Event,
            Kind::Queue,
            Kind::SupportedCommands,
            Kind::PrinterTypes,
            Kind::Version,
            Kind::Cameras,
            Kind::Unseen,
            Kind::Notifications,
            Kind::CommandResult,
        ] {
            assert!(
                docs.iter().any(|(k, _)| *k == kind),
                "no sample of {kind:?}"
            );
        }
        Samples { docs }
    })
}

/// What the simulated Connect answers after its demo printers have run for a while.
async fn from_simulator() -> Vec<(Kind, Value)> {
    let sim = Simulator::new(SimOptions {
        token: None,
        scenario: Scenario::Demo,
    });
    let extra = sim.add_printer(PrinterSpec::xl("Spare XL"));
    sim.queue_job(&extra, "/usb/queued.bgcode");
    sim.start_job(&extra, "dialog.bgcode", 600, &["a", "a", "b"]);
    sim.set_dialog(
        &extra,
        Some(json!({"title": "Filament runout", "buttons": ["Ok"]})),
    );
    // Five simulated minutes: jobs finish, fail and start again; the feed fills.
    for _ in 0..300 {
        sim.step(Duration::from_secs(1));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(sim.clone().serve(listener, stop.clone().cancelled_owned()));
    let http = reqwest::Client::new();
    let get = |path: String| {
        let req = http.get(format!("{base}{path}")).bearer_auth("any");
        async move {
            let resp = req.send().await.unwrap();
            assert!(resp.status().is_success(), "{path}: {}", resp.status());
            resp.json::<Value>().await.unwrap()
        }
    };
    let mut docs = Vec::new();
    let list = get("/app/printers?limit=100".into()).await;
    for p in list["printers"].as_array().unwrap() {
        docs.push((Kind::Printer, p.clone()));
    }
    docs.push((Kind::PrinterList, list.clone()));
    for uuid in sim.printers() {
        let p = format!("/app/printers/{uuid}");
        docs.push((Kind::Printer, get(p.clone()).await));
        let jobs = get(format!("{p}/jobs?limit=20")).await;
        for job in jobs["jobs"].as_array().unwrap().iter().take(4) {
            docs.push((Kind::Job, job.clone()));
            let id = job["id"].as_i64().unwrap();
            docs.push((Kind::Job, get(format!("{p}/jobs/{id}")).await));
        }
        docs.push((Kind::JobList, jobs));
        let events = get(format!("{p}/events?limit=100&from=0")).await;
        for e in events["events"].as_array().unwrap().iter().take(10) {
            docs.push((Kind::Event, e.clone()));
        }
        docs.push((Kind::EventPage, events));
        docs.push((Kind::Queue, get(format!("{p}/queue")).await));
        docs.push((Kind::Queue, get(format!("{p}/download-queue")).await));
        docs.push((Kind::Cameras, get(format!("{p}/cameras")).await));
        docs.push((Kind::Opaque, get(format!("{p}/files")).await));
        docs.push((Kind::Opaque, get(format!("{p}/storages")).await));
        docs.push((
            Kind::SupportedCommands,
            get(format!("{p}/supported-commands")).await,
        ));
    }
    docs.push((Kind::PrinterTypes, get("/app/printer-types".into()).await));
    docs.push((Kind::Unseen, get("/app/notifications/unseen".into()).await));
    docs.push((Kind::Notifications, get("/app/notifications".into()).await));
    docs.push((Kind::Version, get("/version.json".into()).await));
    let result = http
        .post(format!("{base}/app/printers/{extra}/commands/sync"))
        .bearer_auth("any")
        .json(&json!({"command": "STOP_PRINT", "kwargs": {}}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    docs.push((Kind::CommandResult, result));
    let error = http
        .get(format!("{base}/app/printers/no-such-printer"))
        .bearer_auth("any")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    docs.push((Kind::ApiError, error));
    stop.cancel();
    docs
}

/// Documents quoted from real captures in the API notes and the facts file.
fn from_notes() -> Vec<(Kind, Value)> {
    vec![
        (
            Kind::Printer,
            // The printer of the facts file, shared with the model's unit test.
            serde_json::from_str(include_str!("fixtures/printer_from_facts.json")).unwrap(),
        ),
        (
            Kind::Job,
            json!({
              "id": 319, "state": "FIN_OK",
              "cancelable": {"objects": [
                  {"id": 0, "name": "Object Name", "polygon": [[126.7, 87.5]], "canceled": false}]},
              "file": {"name": "filename.bgcode",
                       "meta": {"objects_info": {"objects": [{"name": "Object Name", "polygon": []}]}}}
            }),
        ),
        (
            Kind::JobList,
            json!({
              "jobs": [{
                  "id": 1690023, "state": "FIN_OK", "progress": 100, "time_printing": 7562,
                  "time_remaining": null, "mode": "MK4S", "source": "connect",
                  "ts_started": 1769805961, "ts_ended": 1769813523,
                  "files": [{"name": "corner-bracket_x2.bgcode", "path": "/usb/corner-bracket_x2.bgcode",
                             "display_name": "corner-bracket_x2", "size": 42589, "m_time": 1769792040,
                             "preview_url": "..."}],
                  "data": {"material": "PETG", "weight": 12.34, "cost": 0.5, "tool": 0, "layer_height": 0.2}
              }],
              "pager": {"limit": 3, "offset": 0, "total": 5, "from": 1769805961, "to": 1770090594}
            }),
        ),
        (
            Kind::EventPage,
            json!({
              "events": [{"server_time": 1770092716.366299, "event": "STATE_CHANGED", "source": "UNKNOWN",
                          "transfer_id": 1036477693, "command": "SET_PRINTER_READY", "command_id": 1075307,
                          "state": "READY", "created": 1770092716.34737}],
              "pager": {"limit": 5, "offset": 0, "from": 1770006393, "to": 1770092794}
            }),
        ),
        (
            Kind::SupportedCommands,
            json!({"commands": [
                {"command": "SEND_GCODE", "args": ["gcode"], "template": "M997 {path}"},
                {"command": "PAUSE_PRINT", "template": "M25"},
                {"command": "MOVE", "args": [
                    {"name": "feedrate", "type": "integer", "required": false, "max_limit": 3000, "unit": "mm/min"},
                    {"name": "x", "type": "number", "required": false, "min_limit": 0, "max_limit": 250}],
                 "executable_from_state": ["IDLE", "READY"]}
            ]}),
        ),
        (
            Kind::CommandResult,
            json!({
              "command": {"id": 1075350, "state": "CREATED", "command": "STOP_PRINT",
                          "received": 1770096073, "source": "CONNECT_USER", "kwargs": {}},
              "event": {"event": "FINISHED", "command": "STOP_PRINT", "state": "PRINTING",
                        "created": 1770096074.410354}
            }),
        ),
        (
            Kind::Queue,
            json!({"planned_jobs": [], "pager": {"limit": 1, "offset": 0, "total": 0, "from": 1770090594}}),
        ),
        (
            Kind::Cameras,
            json!({"cameras": [{
                "id": 414362, "name": "Buddy3D Camera",
                "config": {"name": "Buddy3D Camera", "path": "private", "model": "Buddy3D",
                           "resolution": {"width": 1920, "height": 1080}, "trigger_scheme": "THIRTY_SEC"},
                "capabilities": ["trigger_scheme"], "features": ["SocketCom", "GetSnapshot"],
                "token": "...", "registered": true}],
                "pager": {"limit": 20, "offset": 0, "total": 1}}),
        ),
        (
            Kind::Version,
            json!({"commit": "baef7db3", "version": "baef7db3", "date": "2026-02-02T11:49:56.846Z"}),
        ),
        (Kind::Unseen, json!({"unseen": 1})),
        (
            Kind::ApiError,
            json!({"code": "UNAUTHORIZED", "message": "Missing or invalid security token"}),
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Mutations

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    At(usize),
}

/// Every path in `v`, the root (empty path) first.
fn paths(v: &Value) -> Vec<Vec<Seg>> {
    fn walk(v: &Value, here: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
        out.push(here.clone());
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    here.push(Seg::Key(k.clone()));
                    walk(child, here, out);
                    here.pop();
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    here.push(Seg::At(i));
                    walk(child, here, out);
                    here.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

fn at<'a>(v: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, seg| match (seg, cur) {
        (Seg::Key(k), Value::Object(m)) => m.get(k),
        (Seg::At(i), Value::Array(a)) => a.get(*i),
        _ => None,
    })
}

fn at_mut<'a>(v: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |cur, seg| match (seg, cur) {
        (Seg::Key(k), Value::Object(m)) => m.get_mut(k),
        (Seg::At(i), Value::Array(a)) => a.get_mut(*i),
        _ => None,
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Removes the key or array element (the root is left alone).
    Delete(Index),
    Replace(Index, Value),
    /// Adds a key to the object at the index (or its nearest object ancestor).
    AddKey(Index, String, Value),
    /// Replaces the string at the index (or the first string below it) by another string.
    Restring(Index, String),
}

fn apply(doc: &mut Value, m: &Mutation) {
    let all = paths(doc);
    match m {
        Mutation::Delete(i) => {
            let path = &all[i.index(all.len())];
            let Some((last, parent)) = path.split_last() else {
                return;
            };
            match (last, at_mut(doc, parent)) {
                (Seg::Key(k), Some(Value::Object(m))) => {
                    m.remove(k);
                }
                (Seg::At(n), Some(Value::Array(a))) => {
                    a.remove(*n);
                }
                _ => {}
            }
        }
        Mutation::Replace(i, value) => {
            if let Some(slot) = at_mut(doc, &all[i.index(all.len())]) {
                *slot = value.clone();
            }
        }
        Mutation::AddKey(i, key, value) => {
            let mut path = all[i.index(all.len())].clone();
            loop {
                if let Some(Value::Object(m)) = at_mut(doc, &path) {
                    m.insert(key.clone(), value.clone());
                    return;
                }
                if path.pop().is_none() {
                    return;
                }
            }
        }
        Mutation::Restring(i, s) => {
            let strings: Vec<&Vec<Seg>> = all
                .iter()
                .filter(|p| at(doc, p).is_some_and(Value::is_string))
                .collect();
            if strings.is_empty() {
                return;
            }
            let path = strings[i.index(strings.len())].clone();
            if let Some(slot) = at_mut(doc, &path) {
                *slot = Value::String(s.clone());
            }
        }
    }
}

/// Strings a careless or future Connect might send where an enum, a number or a name goes.
fn odd_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("NaN".to_string()),
        Just("Infinity".to_string()),
        Just("-1".to_string()),
        Just("1e999".to_string()),
        Just("null".to_string()),
        Just("LEVITATING".to_string()),
        Just("printing".to_string()),
        Just("FIN_HARVESTED".to_string()),
        Just("\u{0}\u{202e}\u{1F4A5}\u{fffd}\u{1c5}".to_string()),
        Just("a/b/#/+".to_string()),
        Just("x".repeat(70_000)),
        "[A-Z_]{1,16}",
        "\\PC{0,40}",
        any::<String>(),
    ]
}

/// Numbers at the edges of what JSON can carry and Rust types can hold.
fn odd_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(i64::MIN)),
        Just(json!(i64::MAX)),
        Just(json!(u64::MAX)),
        Just(json!(1e308)),
        Just(json!(-1e308)),
        Just(json!(5e-324)),
        Just(json!(0.5)),
        Just(json!(-0.0)),
        Just(json!(1e19)),
        Just(json!(-9.3e18)),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        odd_number(),
        odd_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A value of a type the field may not expect, or of the right type at an edge.
fn odd_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => json_value(),
        1 => (1usize..100).prop_map(|depth| {
            let mut v = json!(1);
            for _ in 0..depth {
                v = json!([v]);
            }
            v
        }),
        1 => Just(json!({})),
        1 => Just(json!([])),
    ]
}

/// A key no Connect type knows, sometimes one that looks like a real one.
fn unknown_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "x_[a-z_]{1,12}",
        Just("UUID".to_string()),
        Just("Printer_State".to_string()),
        Just("".to_string()),
        "\\PC{1,12}".prop_map(|s| format!("x_{s}")),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        2 => any::<Index>().prop_map(Mutation::Delete),
        4 => (any::<Index>(), odd_value()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        2 => (any::<Index>(), unknown_key(), odd_value()).prop_map(|(i, k, v)| Mutation::AddKey(i, k, v)),
        3 => (any::<Index>(), odd_string()).prop_map(|(i, s)| Mutation::Restring(i, s)),
    ]
}

fn sample() -> impl Strategy<Value = (Kind, Value)> {
    let docs = &samples().docs;
    (0..docs.len()).prop_map(move |i| docs[i].clone())
}

fn mutated_sample() -> impl Strategy<Value = (Kind, Value)> {
    (sample(), prop::collection::vec(mutation(), 1..5)).prop_map(|((kind, mut doc), ms)| {
        for m in &ms {
            apply(&mut doc, m);
        }
        (kind, doc)
    })
}

// ---------------------------------------------------------------------------------------------
// What the bridge does with parsed documents, and what must hold for every input

const NOW: f64 = 1_770_000_000.0;

fn allow() -> Vec<String> {
    DEFAULT_ALLOWED_COMMANDS
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn discovery(mode: DiscoveryMode) -> Discovery {
    Discovery {
        prefix: "homeassistant".into(),
        mode,
        topics: Topics::new("pc"),
    }
}

/// `P/state` as a user sees it: a state string, progress within 0..100, no negative times.
fn check_state_payload(p: &Printer, s: &Value) -> Result<(), TestCaseError> {
    let effective = p.effective_state();
    prop_assert_eq!(s["state"].as_str(), Some(effective.as_str()));
    if let Some(progress) = s["progress"].as_f64() {
        prop_assert!((0.0..=100.0).contains(&progress), "progress {progress}");
    }
    for key in ["time_remaining", "time_printing"] {
        prop_assert!(
            s[key].is_null() || s[key].as_i64().is_some_and(|t| t >= 0),
            "{key} = {}",
            s[key]
        );
    }
    prop_assert!(s["eta"].is_null() || s["eta"].is_string());
    prop_assert!(s["job_started"].is_null() || s["job_started"].is_string());
    Ok(())
}

/// Everything the bridge derives from a printer: state, job, topic id and discovery.
fn exercise_printer(p: &Printer) -> Result<(), TestCaseError> {
    let _ = p.display_name();
    let state = payloads::state(p, NOW, &Default::default()).to_value();
    check_state_payload(p, &state)?;
    let _ = payloads::job_running(p);
    let _ = payloads::job(p.job_info.as_ref(), None);
    let mut registry = Registry::default();
    registry.assign_ids(&[p], &BTreeMap::new());
    let id = &registry
        .get(&p.uuid)
        .and_then(|e| e.id())
        .unwrap()
        .to_string();
    prop_assert!(
        !id.is_empty()
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "topic id {id:?}"
    );
    let device = PrinterDevice {
        uuid: p.uuid.clone(),
        id: id.clone(),
        name: p.display_name().to_string(),
        model: p
            .printer_type_name
            .clone()
            .or_else(|| p.printer_model.clone()),
        serial: p.sn.clone(),
        firmware: p.firmware.clone(),
        configuration_url: None,
        objects: Vec::new(),
        cameras: vec![(format!("{}", p.uuid.len()), p.display_name().to_string())],
        // Whatever the dialog's buttons are, they become the select's options.
        controls: Controls::new(
            &serde_json::from_str::<SupportedCommands>(include_str!(
                "fixtures/supported_commands_mk4.json"
            ))
            .unwrap()
            .commands,
            &["DIALOG_ACTION".to_string(), "SET_SPEED".to_string()],
            &p.dialog_buttons(),
        ),
        features: Features::of(p),
        // Spoolman's labels are as free as the printer's name.
        spools: Some(vec![format!("#1 {}", p.display_name())]),
    };
    for mode in [DiscoveryMode::Device, DiscoveryMode::Entity] {
        let d = discovery(mode);
        prop_assert!(!d.printer(&device).is_empty());
        let _ = d.printer_topics(&p.uuid, &device.cameras);
    }
    Ok(())
}

fn exercise_job(j: &Job, printer: &Printer) -> Result<(), TestCaseError> {
    let _ = j.file();
    let _ = j.file_name();
    let job = payloads::job(None, Some(j)).expect("a job detail alone gives a payload");
    prop_assert_eq!(job.id, j.id);
    let json: serde_json::Value = serde_json::from_slice(&job.to_json()).expect("P/job is JSON");
    prop_assert_eq!(json["id"].as_i64(), Some(j.id));
    let _ = payloads::job(printer.job_info.as_ref(), Some(j));
    match payloads::job_finished(printer, "p", j) {
        Some(f) => {
            prop_assert!(j.state.as_ref().is_some_and(JobState::is_final));
            prop_assert!(
                f["duration"].is_null() || f["duration"].as_i64().is_some_and(|d| d >= 0),
                "duration {}",
                f["duration"]
            );
        }
        None => prop_assert!(!j.state.as_ref().is_some_and(JobState::is_final)),
    }
    if let Some(c) = &j.cancelable {
        let labels = discovery::object_labels(&c.objects);
        prop_assert_eq!(labels.len(), c.objects.len());
    }
    Ok(())
}

fn exercise_event(v: Value) -> Result<(), TestCaseError> {
    let name = v.get("event").cloned();
    if let Some(e) = FeedEvent::from_value(v) {
        prop_assert!(e.created.is_finite());
        prop_assert_eq!(
            name.as_ref().and_then(Value::as_str),
            Some(e.event.as_str())
        );
        prop_assert!(e.key().contains(&e.event));
    }
    Ok(())
}

fn exercise_supported(commands: &[SupportedCommand]) -> Result<(), TestCaseError> {
    for payload in [
        &b"pause"[..],
        br#"{"command":"MOVE","kwargs":{"x":10,"feedrate":3000}}"#,
        br#"{"command":"SEND_GCODE","kwargs":{"gcode":"M112"}}"#,
        br#"{"command":"MOVE","kwargs":{"x":1e308}}"#,
    ] {
        let req = command::parse(payload).unwrap();
        for state in [
            PrinterState::Idle,
            PrinterState::Printing,
            PrinterState::Other("X".into()),
        ] {
            let reply = match command::validate(&req, &allow(), commands, &state) {
                Ok(()) => CommandReply::ok(&req, Some(1)),
                Err(e) => CommandReply::error(&req, e),
            };
            let json = reply.to_json();
            prop_assert!(json["status"] == "ok" || json["code"].is_string());
        }
    }
    Ok(())
}

fn base_printer() -> Printer {
    serde_json::from_value(samples().of(Kind::Printer)[0].clone()).unwrap()
}

/// Parses `doc` as every Connect type (from the value, and from its bytes as the client
/// does) and runs what the bridge runs on whatever parses.
fn parse_everything(doc: &Value) -> Result<(), TestCaseError> {
    let bytes = serde_json::to_vec(doc).unwrap();
    // serde_json refuses text nested deeper than 128 levels (unless a type skips that part).
    let readable = serde_json::from_slice::<Value>(&bytes).is_ok();
    macro_rules! both {
        ($t:ty) => {{
            let from_value = serde_json::from_value::<$t>(doc.clone());
            let from_bytes = serde_json::from_slice::<$t>(&bytes);
            if readable {
                prop_assert_eq!(from_value.is_ok(), from_bytes.is_ok());
            }
            from_value.ok()
        }};
    }
    let printer = base_printer();
    if let Some(p) = both!(Printer) {
        exercise_printer(&p)?;
    }
    if let Some(j) = both!(Job) {
        exercise_job(&j, &printer)?;
    }
    if let Some(l) = both!(JobList) {
        for j in &l.jobs {
            exercise_job(j, &printer)?;
        }
    }
    if let Some(page) = both!(EventPage) {
        for e in page.events {
            exercise_event(e)?;
        }
    }
    exercise_event(doc.clone())?;
    if let Some(page) = both!(NotificationPage) {
        for n in page.notifications {
            let _ = Notification::from_value(n);
        }
    }
    let _ = Notification::from_value(doc.clone());
    if let Some(s) = both!(SupportedCommands) {
        exercise_supported(&s.commands)?;
    }
    if let Some(c) = both!(CameraList) {
        for camera in &c.cameras {
            let _ = camera.id_string();
        }
    }
    let _ = both!(Queue);
    let _ = both!(PrinterTypes);
    let _ = both!(ServerVersion);
    let _ = both!(Unseen);
    let _ = both!(CommandResult);
    let _ = both!(ApiError);
    let _ = both!(Opaque);
    // The printer list, as `ConnectClient::printers` reads it: one bad printer is rejected,
    // the others are kept.
    if let Some(list) = doc.get("printers").and_then(Value::as_array) {
        for item in list {
            if let Ok(p) = serde_json::from_value::<Printer>(item.clone()) {
                exercise_printer(&p)?;
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(800))]

    /// Whatever Connect sends, no parser and no payload builder panics, and `P/state` stays
    /// well-formed.
    #[test]
    fn mutated_connect_documents_never_panic((_kind, doc) in mutated_sample()) {
        parse_everything(&doc)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Unknown enum values and unknown keys

/// Sets `key` to `value` in every object of `doc` that has `key`, at any depth.
fn set_everywhere(doc: &mut Value, key: &str, value: &Value) {
    match doc {
        Value::Object(m) => {
            if let Some(slot) = m.get_mut(key) {
                *slot = value.clone();
            }
            for child in m.values_mut() {
                set_everywhere(child, key, value);
            }
        }
        Value::Array(a) => {
            for child in a {
                set_everywhere(child, key, value);
            }
        }
        _ => {}
    }
}

fn unknown_state() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Z_]{1,16}",
        "\\PC{0,20}",
        Just(String::new()),
        Just("printing".to_string()),
    ]
}

proptest! {
    #![proptest_config(config(300))]

    /// An enum string this version does not know is kept as `Other`, never a parse error.
    #[test]
    fn unknown_enum_values_are_kept(s in unknown_state(), offline in any::<bool>()) {
        let state = PrinterState::parse(&s);
        prop_assert_eq!(state.as_str(), s.as_str());
        let known = PrinterState::KNOWN.contains(&s.as_str());
        prop_assert_eq!(matches!(state, PrinterState::Other(_)), !known);
        for mut doc in samples().of(Kind::Printer) {
            doc["printer_state"] = json!(s);
            doc["connect_state"] = if offline { json!("OFFLINE") } else { json!(s) };
            if doc.get("job_info").is_some() {
                doc["job_info"]["state"] = json!(s);
            }
            let p: Printer = serde_json::from_value(doc).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(p.printer_state.as_ref(), Some(&state));
            let expected = if offline { PrinterState::Offline } else { state.clone() };
            prop_assert_eq!(p.effective_state(), expected.clone());
            let queue = payloads::QueueFields::default();
            let shown = payloads::state(&p, NOW, &queue);
            prop_assert_eq!(shown.state.as_str(), expected.as_str());
            if let Some(job) = &p.job_info {
                prop_assert_eq!(job.state.as_ref(), Some(&JobState::parse(&s)));
            }
        }
        for kind in [Kind::Job, Kind::JobList, Kind::SupportedCommands] {
            for mut doc in samples().of(kind) {
                set_everywhere(&mut doc, "state", &json!(s));
                set_everywhere(&mut doc, "executable_from_state", &json!([s, "IDLE"]));
                match kind {
                    Kind::Job => {
                        let j: Job = serde_json::from_value(doc).map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert_eq!(j.state, Some(JobState::parse(&s)));
                    }
                    Kind::JobList => {
                        let l: JobList = serde_json::from_value(doc).map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert!(l.jobs.iter().all(|j| j.state == Some(JobState::parse(&s))));
                    }
                    _ => {
                        let c: SupportedCommands = serde_json::from_value(doc).map_err(|e| TestCaseError::fail(e.to_string()))?;
                        for cmd in c.commands.iter().filter_map(|c| c.executable_from_state.as_ref()) {
                            prop_assert_eq!(&cmd[0], &state);
                        }
                    }
                }
            }
        }
    }
}

/// Fields whose value is kept as raw JSON: unknown keys inside them are data, not noise.
const OPAQUE_FIELDS: &[&str] = &[
    "meta",
    "state_reason",
    "reason",
    "buttons",
    "kwargs",
    "parameters",
    "config",
    "id",
    "code",
    "key",
    "polygon",
    "event",
];

/// Adds `extra` keys to every object of `doc` that is not inside an opaque field.
fn add_unknown_keys(doc: &mut Value, extra: &[(String, Value)]) {
    match doc {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if !OPAQUE_FIELDS.contains(&k.as_str()) {
                    add_unknown_keys(child, extra);
                }
            }
            for (k, v) in extra {
                m.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        Value::Array(a) => {
            for child in a {
                add_unknown_keys(child, extra);
            }
        }
        _ => {}
    }
}

/// Parses as the kind's type and prints the result, so two parses can be compared.
fn parsed(kind: Kind, doc: &Value) -> Result<String, String> {
    fn go<T: serde::de::DeserializeOwned + std::fmt::Debug>(doc: &Value) -> Result<String, String> {
        serde_json::from_value::<T>(doc.clone())
            .map(|t| format!("{t:?}"))
            .map_err(|e| e.to_string())
    }
    match kind {
        Kind::PrinterList => {
            let list = doc["printers"].as_array().ok_or("no printers")?;
            let printers: Result<Vec<String>, String> = list.iter().map(go::<Printer>).collect();
            Ok(printers?.join("\n"))
        }
        Kind::Printer => go::<Printer>(doc),
        Kind::JobList => go::<JobList>(doc),
        Kind::Job => go::<Job>(doc),
        // Events are kept whole: only what the bridge reads from them must not change.
        Kind::EventPage => {
            let page: EventPage = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
            Ok(page
                .events
                .into_iter()
                .map(|e| {
                    format!(
                        "{:?}",
                        FeedEvent::from_value(e).map(|e| (e.event, e.created))
                    )
                })
                .collect())
        }
        Kind::Event => Ok(format!(
            "{:?}",
            FeedEvent::from_value(doc.clone()).map(|e| (e.event, e.created))
        )),
        Kind::Queue => go::<Queue>(doc),
        Kind::SupportedCommands => go::<SupportedCommands>(doc),
        Kind::PrinterTypes => go::<PrinterTypes>(doc),
        Kind::Version => go::<ServerVersion>(doc),
        Kind::Cameras => go::<CameraList>(doc),
        Kind::Unseen => go::<Unseen>(doc),
        Kind::Notifications => {
            let page: NotificationPage =
                serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
            Ok(page
                .notifications
                .into_iter()
                .map(|n| format!("{:?}", Notification::from_value(n)))
                .collect())
        }
        Kind::CommandResult => go::<CommandResult>(doc).map(|s| {
            // `event` is raw JSON.
            s.split("event:").next().unwrap_or_default().to_string()
        }),
        Kind::ApiError => go::<ApiError>(doc),
        Kind::Opaque => Ok(String::new()),
    }
}

proptest! {
    #![proptest_config(config(500))]

    /// Keys Connect adds later change nothing: the document parses to the same values.
    #[test]
    fn unknown_keys_change_nothing(
        (kind, doc) in sample(),
        extra in prop::collection::vec(("x_[a-z_]{1,10}", odd_value()), 1..4),
    ) {
        let mut extended = doc.clone();
        add_unknown_keys(&mut extended, &extra);
        let before = parsed(kind, &doc);
        prop_assert!(before.is_ok(), "{kind:?} sample does not parse: {before:?}");
        prop_assert_eq!(parsed(kind, &extended), before);
    }
}

/// Was a known issue (fixed): object labels are unique only while no object's own name looks like a
/// disambiguated one: "a (#1)" next to two objects "a" (ids 1 and 2) gives "a (#1)" twice, and
/// "Cancel object" by name then cancels the first of them.
#[test]
fn object_labels_never_repeat() {
    let objects: Vec<CancelableObject> = serde_json::from_value(json!([
        {"id": 5, "name": "a (#1)"}, {"id": 1, "name": "a"}, {"id": 2, "name": "a"}
    ]))
    .unwrap();
    let labels = discovery::object_labels(&objects);
    let unique: std::collections::BTreeSet<&String> = labels.iter().map(|(_, l)| l).collect();
    assert_eq!(unique.len(), labels.len(), "{labels:?}");
}

// ---------------------------------------------------------------------------------------------
// One unreadable printer in Connect's list, over HTTP

/// Keys of a printer as Connect sends it, plus a few it does not.
const PRINTER_KEYS: &[&str] = &[
    "uuid",
    "name",
    "location",
    "sn",
    "printer_model",
    "printer_type",
    "printer_type_name",
    "team_id",
    "team_name",
    "firmware",
    "printer_state",
    "connect_state",
    "state_reason",
    "last_online",
    "temp",
    "axis_x",
    "axis_y",
    "axis_z",
    "speed",
    "flow",
    "nozzle_diameter",
    "filament",
    "tools",
    "job_info",
    "dialog_info",
    "rights_r",
    "x_brand_new",
];

struct ListFixture {
    sim: Sim,
    uuids: Vec<String>,
    /// The middle printer's JSON as the list serves it, before any override.
    victim: Value,
    client: ConnectClient,
}

fn list_fixture() -> &'static ListFixture {
    static FIXTURE: OnceLock<ListFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        rt().block_on(async {
            let sim = Sim::start().await;
            let uuids: Vec<String> = ["Left", "Victim", "Right"]
                .iter()
                .map(|n| sim.sim.add_printer(PrinterSpec::named(n)))
                .collect();
            sim.sim.start_job(&uuids[1], "cube.bgcode", 600, &["cube"]);
            let client = ConnectClient::new(
                &sim.url(),
                TokenSource::Static(SecretString::from(TOKEN)),
                Duration::from_secs(5),
            )
            .unwrap();
            let list = sim.get_json("/app/printers").await;
            let victim = list["printers"][1].clone();
            assert_eq!(victim["uuid"], json!(uuids[1]));
            ListFixture {
                sim,
                uuids,
                victim,
                client,
            }
        })
    })
}

proptest! {
    #![proptest_config(config(200))]

    /// A printer with a field Connect got wrong is returned as rejected (or read, if the
    /// field is tolerated); the printers around it are always read.
    #[test]
    fn a_bad_printer_never_costs_the_others(
        key in prop::sample::select(PRINTER_KEYS),
        value in odd_value().prop_filter("null removes the override", |v| !v.is_null()),
    ) {
        let _rt = rt().enter();
        let f = list_fixture();
        let victim = &f.uuids[1];
        f.sim.sim.override_field(victim, key, value.clone());
        let result = rt().block_on(tokio::time::timeout(Duration::from_secs(10), f.client.printers()));
        f.sim.sim.override_field(victim, key, Value::Null);
        let (printers, rejected) = result
            .expect("printers() answers within 10 s")
            .map_err(|e| TestCaseError::fail(format!("the whole list failed: {e}")))?;
        for other in [&f.uuids[0], &f.uuids[2]] {
            prop_assert!(printers.iter().any(|p| &p.uuid == other), "{other} missing");
        }
        prop_assert_eq!(printers.len() + rejected.len(), 3);
        let mut expected = f.victim.clone();
        expected[key] = value.clone();
        let readable = serde_json::from_value::<Printer>(expected).is_ok();
        prop_assert_eq!(rejected.is_empty(), readable, "rejected: {:?}", rejected);
        if let Some(r) = rejected.first() {
            if key != "uuid" {
                prop_assert_eq!(r.uuid.as_deref(), Some(victim.as_str()));
            }
            prop_assert!(!r.error.is_empty());
        }
        for p in &printers {
            exercise_printer(p)?;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Any response body through the client

/// A server of the test's own: tests run in parallel, and each sets its own replies.
macro_rules! own_server {
    () => {{
        static SERVER: OnceLock<FakeHttp> = OnceLock::new();
        SERVER.get_or_init(|| rt().block_on(FakeHttp::start()))
    }};
}

/// Bodies: random bytes and text, JSON of any shape, mutated and truncated samples.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..1024),
        "\\PC{0,200}".prop_map(String::into_bytes),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        mutated_sample().prop_map(|(_, v)| serde_json::to_vec(&v).unwrap()),
        (sample(), any::<Index>()).prop_map(|((_, v), cut)| {
            let bytes = serde_json::to_vec(&v).unwrap();
            bytes[..cut.index(bytes.len())].to_vec()
        }),
        (1usize..300).prop_map(|n| "[".repeat(n).into_bytes()),
        Just(b"1e999".to_vec()),
        Just(b"{\"printers\": null}".to_vec()),
        Just(b"\xef\xbb\xbf{}".to_vec()),
    ]
}

/// Was a known issue (fixed): a Connect that ignores `offset` and reports a `pager.total` larger than what
/// it sends makes one `printers()` call page on to offset 100,000: 25,000 requests (about a
/// minute here) returning the same printers 25,000 times over. Stopping at a page that repeats
/// uuids (or at a short page) would bound it.
#[test]
fn a_lying_pager_costs_few_requests_and_no_duplicates() {
    let _rt = rt().enter();
    let server = own_server!();
    let mut list = samples().of(Kind::PrinterList)[0].clone();
    let sent = list["printers"].as_array().unwrap().len();
    list["pager"]["total"] = json!(1_000_000);
    server.set(Reply::ok(serde_json::to_vec(&list).unwrap()));
    let client = ConnectClient::new(
        &server.url(),
        TokenSource::Static(SecretString::from("t")),
        Duration::from_secs(5),
    )
    .unwrap();
    let before = server.requests();
    let (printers, _) = rt()
        .block_on(tokio::time::timeout(
            Duration::from_secs(300),
            client.printers(),
        ))
        .expect("printers() answers")
        .expect("the list is read");
    let made = server.requests() - before;
    assert!(made <= 2, "{made} requests for one list");
    assert_eq!(
        printers.len(),
        sent,
        "the same printers returned again and again"
    );
}

fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        Just("5".to_string()),
        Just("-1".to_string()),
        Just("1.5".to_string()),
        Just("18446744073709551615".to_string()),
        Just("99999999999999999999".to_string()),
        Just("Wed, 21 Oct 2015 07:28:00 GMT".to_string()),
        "[ -~]{0,20}",
    ]
}

proptest! {
    #![proptest_config(config(300))]

    /// A 200 with any body is read or refused as undecodable: never a panic, never a hang.
    #[test]
    fn any_body_is_read_or_refused(body in body()) {
        let _rt = rt().enter();
        let server = own_server!();
        server.set(Reply { status: 200, headers: Vec::new(), body: body.clone() });
        let client = ConnectClient::new(
            &server.url(),
            TokenSource::Static(SecretString::from("t")),
            Duration::from_secs(5),
        )
        .unwrap();
        let before = server.requests();
        let deadline = Duration::from_secs(10);
        let outcomes = rt().block_on(async {
            let printers = tokio::time::timeout(deadline, client.printers()).await.map(|r| r.map(|_| ()));
            let job = tokio::time::timeout(deadline, client.job("u", 1)).await.map(|r| r.map(|_| ()));
            let events = tokio::time::timeout(deadline, client.events_since("u", Some(NOW))).await.map(|r| r.map(|_| ()));
            let queue = tokio::time::timeout(deadline, client.queue("u")).await.map(|r| r.map(|_| ()));
            let supported = tokio::time::timeout(deadline, client.supported_commands("u")).await.map(|r| r.map(|_| ()));
            let version = tokio::time::timeout(deadline, client.version()).await.map(|r| r.map(|_| ()));
            [("printers", printers), ("job", job), ("events", events), ("queue", queue),
             ("supported", supported), ("version", version)]
        });
        for (what, outcome) in outcomes {
            match outcome {
                Err(_) => prop_assert!(false, "{what} hung on {:?}", String::from_utf8_lossy(&body)),
                Ok(Ok(())) | Ok(Err(ConnectError::Decode { .. })) => {}
                Ok(Err(e)) => prop_assert!(false, "{what}: unexpected error {e:?}"),
            }
        }
        // One page each, except where a page said there is more.
        let made = server.requests() - before;
        prop_assert!(made <= 6 + 1000 + 20, "{made} requests");
    }

    /// Error statuses with any body and any Retry-After become the right error kind.
    #[test]
    fn error_statuses_are_classified(
        status in prop::sample::select(vec![400u16, 401, 403, 404, 409, 422, 429, 500, 502, 503]),
        retry_after in proptest::option::of(header_value()),
        body in body(),
    ) {
        let _rt = rt().enter();
        let server = own_server!();
        let headers = retry_after.iter().map(|v| ("Retry-After".to_string(), v.clone())).collect();
        server.set(Reply { status, headers, body });
        let client = ConnectClient::new(
            &server.url(),
            TokenSource::Static(SecretString::from("t")),
            Duration::from_secs(5),
        )
        .unwrap();
        let result = rt()
            .block_on(tokio::time::timeout(Duration::from_secs(10), client.job("u", 1)))
            .expect("job() answers within 10 s");
        match result {
            Err(ConnectError::Unauthorized { .. }) => prop_assert_eq!(status, 401),
            // The message may be blank: see `a_blank_error_message_falls_back_to_the_status`.
            Err(ConnectError::Api { status: got, .. }) => prop_assert_eq!(got, status),
            other => prop_assert!(false, "{status}: {other:?}"),
        }
    }
}

/// Was a known issue (fixed): an error body with a blank `message` (or any JSON array, which serde reads
/// as the struct's fields in order: `["", ""]`) gives the user "Connect answered 403 : "
/// instead of falling back to the status's reason.
#[test]
fn a_blank_error_message_falls_back_to_the_status() {
    let _rt = rt().enter();
    let server = own_server!();
    let client = ConnectClient::new(
        &server.url(),
        TokenSource::Static(SecretString::from("t")),
        Duration::from_secs(5),
    )
    .unwrap();
    for body in [
        r#"{"code": "FORBIDDEN", "message": ""}"#,
        r#"["", "", null]"#,
    ] {
        server.set(Reply {
            status: 403,
            headers: Vec::new(),
            body: body.into(),
        });
        let err = rt().block_on(client.job("u", 1)).unwrap_err();
        let ConnectError::Api { message, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(!message.trim().is_empty(), "{body}: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// The config file

const SECTIONS: &[(&str, &[&str])] = &[
    (
        "connect",
        &[
            "url",
            "auth_url",
            "access_token",
            "access_token_file",
            "refresh_token",
            "refresh_token_file",
            "token_file",
            "poll_interval",
            "active_poll_interval",
            "request_timeout",
            "printers",
        ],
    ),
    (
        "mqtt",
        &[
            "url",
            "username",
            "password",
            "password_file",
            "ca_file",
            "client_cert_file",
            "client_key_file",
            "client_id",
            "base_topic",
            "printer_ids",
        ],
    ),
    (
        "homeassistant",
        &["enabled", "discovery_prefix", "mode", "status_topic"],
    ),
    ("commands", &["allow"]),
    ("camera", &["enabled", "interval"]),
    ("state", &["dir"]),
    ("log", &["level", "format"]),
];

const SECRET_KEYS: &[(&str, &str)] = &[
    ("connect", "access_token"),
    ("connect", "refresh_token"),
    ("mqtt", "password"),
];

#[derive(Debug, Clone)]
enum Toml {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Date(String),
    Array(Vec<Toml>),
    Table(BTreeMap<String, Toml>),
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = std::fmt::Write::write_fmt(&mut out, format_args!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Toml {
    fn inline(&self) -> String {
        match self {
            Toml::Str(s) => toml_string(s),
            Toml::Int(i) => i.to_string(),
            Toml::Float(f) if f.is_nan() => "nan".into(),
            Toml::Float(f) if f.is_infinite() => if *f > 0.0 { "inf" } else { "-inf" }.into(),
            Toml::Float(f) => {
                let s = format!("{f:?}");
                if s.contains(['.', 'e', 'E']) {
                    s
                } else {
                    format!("{s}.0")
                }
            }
            Toml::Bool(b) => b.to_string(),
            Toml::Date(d) => d.clone(),
            Toml::Array(a) => format!(
                "[{}]",
                a.iter().map(Toml::inline).collect::<Vec<_>>().join(", ")
            ),
            Toml::Table(t) => format!(
                "{{{}}}",
                t.iter()
                    .map(|(k, v)| format!("{} = {}", toml_string(k), v.inline()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Top-level tables become `[section]`s, everything else `key = value` lines above them.
fn render(doc: &BTreeMap<String, Toml>) -> String {
    let mut out = String::new();
    for (k, v) in doc {
        if !matches!(v, Toml::Table(_)) {
            out.push_str(&format!("{} = {}\n", toml_string(k), v.inline()));
        }
    }
    for (k, v) in doc {
        if let Toml::Table(t) = v {
            out.push_str(&format!("[{}]\n", toml_string(k)));
            for (k, v) in t {
                out.push_str(&format!("{} = {}\n", toml_string(k), v.inline()));
            }
        }
    }
    out
}

fn toml_scalar() -> impl Strategy<Value = Toml> {
    prop_oneof![
        "\\PC{0,24}".prop_map(Toml::Str),
        any::<i64>().prop_map(Toml::Int),
        any::<f64>().prop_map(Toml::Float),
        any::<bool>().prop_map(Toml::Bool),
        prop::sample::select(vec![
            "1979-05-27T07:32:00Z",
            "1979-05-27",
            "07:32:00",
            "1979-05-27T00:32:00.999999-07:00"
        ])
        .prop_map(|d| Toml::Date(d.to_string())),
    ]
}

fn toml_value() -> impl Strategy<Value = Toml> {
    toml_scalar().prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Toml::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4).prop_map(Toml::Table),
        ]
    })
}

/// A value a user might plausibly write for this key, right or wrong.
fn plausible(key: &str) -> BoxedStrategy<Toml> {
    let strs = |v: &[&str]| {
        prop::sample::select(v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .prop_map(Toml::Str)
            .boxed()
    };
    match key {
        "url" | "auth_url" => strs(&[
            "https://connect.prusa3d.com",
            "http://127.0.0.1:1",
            "mqtt://localhost:1883",
            "mqtts://broker:8883",
            "tcp://[::1]:1883",
            "ftp://x",
            "not a url",
            "",
            "http://",
            "mqtt://",
            "mqtt://:0",
        ]),
        "poll_interval" | "active_poll_interval" | "request_timeout" | "interval" => strs(&[
            "5s",
            "0s",
            "1ms",
            "soon",
            "",
            "-5s",
            "1h 30m",
            "5",
            "1000000000000000000000s",
            "18446744073709551615s",
            "584942417355y",
            "1ns",
        ]),
        "access_token_file" | "refresh_token_file" | "token_file" | "password_file" | "ca_file"
        | "client_cert_file" | "client_key_file" | "dir" => strs(&[
            "/nonexistent/file",
            "",
            "/",
            "relative/path",
            "/proc/self/status",
        ]),
        "base_topic" | "discovery_prefix" | "status_topic" | "client_id" => strs(&[
            "pc",
            "a/#",
            "+",
            "/lead",
            "trail/",
            "",
            "a/b",
            "a\u{0}b",
            "prusa_connect",
        ]),
        "mode" => strs(&["device", "entity", "both", "", "Device"]),
        "format" => strs(&["text", "json", "xml", ""]),
        "level" => prop_oneof![
            strs(&[
                "info",
                "debug,hyper=warn",
                "loud",
                "=info",
                ",",
                "INFO",
                "a=b=c",
                "foo[bar{x=1}]=info",
                "foo[{x=/(a+)+$/}]=debug",
                "[]=info",
                "off",
            ]),
            "[a-z:\\[\\]{}=,_/+.*()$]{0,30}".prop_map(Toml::Str).boxed(),
        ]
        .boxed(),
        "enabled" => any::<bool>().prop_map(Toml::Bool).boxed(),
        "printers" | "allow" => prop::collection::vec("\\PC{0,12}".prop_map(Toml::Str), 0..4)
            .prop_map(Toml::Array)
            .boxed(),
        "printer_ids" => {
            prop::collection::btree_map("\\PC{0,10}", "\\PC{0,10}".prop_map(Toml::Str), 0..3)
                .prop_map(Toml::Table)
                .boxed()
        }
        _ => toml_value().boxed(),
    }
}

fn section(keys: &'static [&'static str]) -> impl Strategy<Value = Toml> {
    let entry = prop_oneof![
        4 => prop::sample::select(keys).prop_flat_map(|k| {
            (Just(k.to_string()), prop_oneof![3 => plausible(k), 1 => toml_value().boxed()])
        }),
        1 => ("[a-z_]{1,14}", toml_value()),
    ];
    prop::collection::vec(entry, 0..6)
        .prop_map(|entries| Toml::Table(entries.into_iter().collect()))
}

/// A config document: known sections with known and unknown keys, unknown sections and
/// top-level values, and secrets at their keys; returns the document and the secrets in it.
fn config_doc() -> impl Strategy<Value = (BTreeMap<String, Toml>, Vec<String>)> {
    let sections: Vec<_> = SECTIONS
        .iter()
        .map(|(name, keys)| (Just(name.to_string()), section(keys)))
        .collect();
    (
        sections,
        any::<[bool; 7]>(),
        prop::collection::vec(("[a-z_]{1,10}", toml_value()), 0..2),
        prop::collection::vec(("[A-Za-z0-9]{12}", any::<bool>(), 0usize..3), 3),
    )
        .prop_map(|(sections, keep, unknown, secrets)| {
            let mut doc = BTreeMap::new();
            for ((name, table), keep) in sections.into_iter().zip(keep) {
                if keep {
                    doc.insert(name, table);
                }
            }
            for (k, v) in unknown {
                doc.entry(k).or_insert(v);
            }
            let mut placed = Vec::new();
            for ((section, key), (secret, put, shape)) in SECRET_KEYS.iter().zip(secrets) {
                if !put {
                    continue;
                }
                let secret = format!("S3CR3T{secret}");
                let value = match shape {
                    0 => Toml::Str(secret.clone()),
                    1 => Toml::Array(vec![Toml::Str(secret.clone())]),
                    _ => Toml::Table(BTreeMap::from([(
                        "v".to_string(),
                        Toml::Str(secret.clone()),
                    )])),
                };
                let entry = doc
                    .entry(section.to_string())
                    .or_insert_with(|| Toml::Table(BTreeMap::new()));
                if let Toml::Table(t) = entry {
                    t.insert(key.to_string(), value);
                    placed.push(secret);
                }
            }
            (doc, placed)
        })
}

/// Whether an error message tells the user which key is wrong.
fn names_a_key(msg: &str) -> bool {
    if msg.contains("key") {
        return true;
    }
    SECTIONS
        .iter()
        .any(|(section, keys)| keys.iter().any(|k| msg.contains(&format!("{section}.{k}"))))
}

proptest! {
    #![proptest_config(config(400))]

    /// Any config document: parsed or refused with a message that names the key and never
    /// repeats a secret.
    #[test]
    fn config_errors_name_the_key_and_hide_secrets((doc, secrets) in config_doc()) {
        let text = render(&doc);
        match Config::from_toml(&text) {
            Ok(config) => {
                for d in [
                    config.connect.poll_interval,
                    config.connect.active_poll_interval,
                    config.connect.request_timeout,
                    config.camera.interval,
                ] {
                    prop_assert!(!d.is_zero() && d <= Duration::from_secs(86_400), "{d:?}");
                }
                let debug = format!("{config:?}");
                for s in &secrets {
                    prop_assert!(!debug.contains(s.as_str()), "secret in Debug: {debug}");
                }
            }
            Err(e) => {
                let msg = format!("{e:#} {e:?}");
                prop_assert!(names_a_key(&msg), "no key named in {msg:?}\nfor\n{text}");
                for s in &secrets {
                    prop_assert!(!msg.contains(s.as_str()), "secret {s} in {msg:?}\nfor\n{text}");
                }
            }
        }
    }
}

/// Was a known issue (fixed): a TOML syntax error is reported with the offending line, so a token pasted
/// without quotes is copied into the error (and the log), and the message names a line and
/// column, not a key.
#[test]
fn a_syntax_error_does_not_echo_a_secret() {
    let err = Config::from_toml("[connect]\naccess_token = eyJhbGciOiJSUzI1NiJ9.S3CR3T\n")
        .expect_err("not TOML");
    let msg = format!("{err:#}");
    assert!(!msg.contains("S3CR3T"), "{msg}");
}

// ---------------------------------------------------------------------------------------------
// MQTT: job reasons and topics

fn reason_json() -> impl Strategy<Value = Value> {
    let tag = prop_oneof![
        prop::sample::select(command::REASON_TAGS).prop_map(|t| json!(t.to_lowercase())),
        prop::sample::select(command::REASON_TAGS).prop_map(|t| json!(t)),
        odd_value(),
    ];
    (
        proptest::option::of(odd_value()),
        proptest::option::of(prop_oneof![
            prop::collection::vec(tag, 0..4).prop_map(Value::Array),
            odd_value()
        ]),
        proptest::option::of(prop_oneof![odd_string().prop_map(Value::from), odd_value()]),
        proptest::option::of(odd_value()),
        prop::collection::vec(("[a-z_]{1,8}", odd_value()), 0..2),
    )
        .prop_map(|(job_id, tags, other, transaction, extra)| {
            let mut m = Map::new();
            for (k, v) in [
                ("job_id", job_id),
                ("tags", tags),
                ("other", other),
                ("transaction", transaction),
            ] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            for (k, v) in extra {
                m.entry(k).or_insert(v);
            }
            Value::Object(m)
        })
}

fn check_reason(payload: &[u8]) -> Result<(), TestCaseError> {
    let reply = match command::parse_job_reason(payload) {
        Ok(r) => {
            let tags = r.reason["tag"].as_array().expect("tag list");
            for t in tags {
                prop_assert!(command::REASON_TAGS.contains(&t.as_str().unwrap()));
            }
            prop_assert!(!tags.is_empty() || r.reason.get("other").is_some());
            CommandReply::ok(&r.request, None)
        }
        Err(reply) => reply,
    };
    let json = reply.to_json();
    prop_assert_eq!(json["command"].as_str(), Some(command::SET_JOB_REASON));
    match json["status"].as_str() {
        Some("ok") => {}
        Some("error") => {
            prop_assert!(json["error"].as_str().is_some_and(|e| !e.is_empty()));
            prop_assert!(json["code"].is_string());
        }
        other => prop_assert!(false, "status {other:?}"),
    }
    prop_assert!(
        json["transaction"].is_null()
            || json["transaction"].is_string()
            || json["transaction"].is_number()
    );
    Ok(())
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn job_reason_bytes_get_one_reply(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_reason(&bytes)?;
    }

    #[test]
    fn job_reason_json_gets_one_reply(v in reason_json()) {
        check_reason(&serde_json::to_vec(&v).unwrap())?;
    }

    /// Any topic the broker delivers: a printer id (one non-empty level) or nothing.
    #[test]
    fn topics_parse_to_one_level_or_nothing(
        base in prop_oneof![Just("pc".to_string()), "\\PC{0,6}"],
        topic in prop_oneof![
            "\\PC{0,40}",
            "(pc|\\PC{0,3})(/[a-z+#/]{0,8}){0,4}/(command|job/reason)",
        ],
    ) {
        let topics = Topics::new(&base);
        for id in [topics.parse_command(&topic), topics.parse_job_reason(&topic)].into_iter().flatten() {
            prop_assert!(!id.is_empty() && !id.contains('/'), "{topic:?} -> {id:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The account server's token answer, JWTs and auth.json

fn jwt(claims: &Value) -> String {
    format!(
        "eyJhbGciOiJSUzI1NiJ9.{}.c2ln",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap())
    )
}

fn token_json() -> impl Strategy<Value = Value> {
    let access = prop_oneof![
        odd_number().prop_map(|exp| json!(jwt(&json!({"exp": exp, "type": "access"})))),
        odd_value().prop_map(|exp| json!(jwt(&json!({"exp": exp})))),
        odd_string().prop_map(Value::from),
        odd_value(),
    ];
    (
        proptest::option::of(access),
        proptest::option::of(prop_oneof![odd_string().prop_map(Value::from), odd_value()]),
        proptest::option::of(prop_oneof![odd_number(), odd_value()]),
        prop::collection::vec(("[a-z_]{1,10}", odd_value()), 0..2),
    )
        .prop_map(|(access, refresh, expires_in, extra)| {
            let mut m = Map::new();
            for (k, v) in [
                ("access_token", access),
                ("refresh_token", refresh),
                ("expires_in", expires_in),
            ] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            for (k, v) in extra {
                m.entry(k).or_insert(v);
            }
            Value::Object(m)
        })
}

fn jwt_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_=.-]{0,80}",
        odd_value().prop_map(|exp| jwt(&json!({"exp": exp}))),
        json_value().prop_map(|claims| jwt(&claims)),
        (any::<String>(), any::<String>())
            .prop_map(|(a, b)| format!("{a}.{}.{b}", URL_SAFE_NO_PAD.encode(a.as_bytes()))),
    ]
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn jwt_expiry_reads_exp_or_nothing(token in jwt_like()) {
        let exp = auth::jwt_expiry(&token);
        let claims = token.split('.').nth(1)
            .and_then(|p| URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok())
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        match claims.as_ref().and_then(|c| c.get("exp")) {
            // Unix times are far below 2^53, where f64 is exact.
            Some(e) if e.as_u64().is_some_and(|e| e < 1 << 53) => prop_assert_eq!(exp, e.as_u64()),
            Some(e) if e.as_f64().is_some_and(|e| e <= 0.0) => prop_assert_eq!(exp, Some(0)),
            Some(e) if !e.is_number() => prop_assert_eq!(exp, None),
            _ => {}
        }
    }

    #[test]
    fn token_responses_parse_or_fail(v in token_json()) {
        let parsed = serde_json::from_value::<TokenResponse>(v.clone());
        let has_access = v.get("access_token").is_some_and(Value::is_string);
        if parsed.is_ok() {
            prop_assert!(has_access);
        }
        let _ = serde_json::from_slice::<TokenResponse>(&serde_json::to_vec(&v).unwrap());
    }
}

proptest! {
    #![proptest_config(config(300))]

    /// Whatever the token endpoint answers, a refresh gives a token or an error.
    #[test]
    fn any_token_answer_is_adopted_or_refused(
        status in prop::sample::select(vec![200u16, 200, 200, 400, 401, 429, 503]),
        body in prop_oneof![
            3 => token_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
            1 => body(),
        ],
    ) {
        let _rt = rt().enter();
        let server = own_server!();
        server.set(Reply { status, headers: Vec::new(), body });
        let dir = tempfile::tempdir().unwrap();
        let refresher = auth::Refresher::new(
            &server.url(),
            dir.path(),
            Some(&SecretString::from("configured-refresh")),
            None,
            Duration::from_secs(5),
        )
        .unwrap();
        let result = rt()
            .block_on(tokio::time::timeout(Duration::from_secs(10), refresher.access_token()))
            .expect("a refresh answers within 10 s");
        if result.is_ok() {
            prop_assert_eq!(status, 200);
            // The refresh token is stored before the access token is handed out (a blank
            // rotated one too: see `a_blank_rotated_refresh_token_is_not_adopted`).
            prop_assert!(dir.path().join(auth::AUTH_FILE).exists());
        }
    }

    /// Whatever `auth.json` holds, it is used or ignored.
    #[test]
    fn any_auth_file_is_used_or_ignored(
        doc in prop_oneof![
            (
                "[a-z0-9]{1,10}",
                proptest::option::of(odd_number()),
                odd_number(),
                proptest::option::of(odd_string()),
            )
                .prop_map(|(refresh, expires, obtained, access)| {
                    serde_json::to_vec(&json!({
                        "refresh_token": refresh,
                        "access_token": access,
                        "access_expires_at": expires,
                        "obtained_at": obtained,
                        "source": "refresh",
                    }))
                    .unwrap()
                }),
            body(),
        ],
    ) {
        let _rt = rt().enter();
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path());
        std::fs::write(store.path(), &doc).unwrap();
        let stored = store.load();
        let refresher = auth::Refresher::new(
            "http://127.0.0.1:9",
            dir.path(),
            None,
            None,
            Duration::from_secs(1),
        );
        prop_assert_eq!(stored.is_some(), refresher.is_ok());
    }
}

/// Was a known issue (fixed): a token answer with `"refresh_token": ""` replaces the working refresh token
/// with the blank one (in memory and in `auth.json`, which then reads as empty), so the next
/// renewal fails and the user has to log in again. Keeping the old token would be safer.
#[test]
fn a_blank_rotated_refresh_token_is_not_adopted() {
    let _rt = rt().enter();
    let server = own_server!();
    server.set(Reply::ok(
        json!({"access_token": "a1", "refresh_token": " ", "expires_in": 1}).to_string(),
    ));
    let dir = tempfile::tempdir().unwrap();
    let refresher = auth::Refresher::new(
        &server.url(),
        dir.path(),
        Some(&SecretString::from("configured-refresh")),
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    rt().block_on(refresher.refresh_now()).unwrap();
    let stored = TokenStore::new(dir.path()).load();
    assert!(stored.is_some(), "auth.json holds no usable refresh token");
}
