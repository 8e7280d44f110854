//! The simulator over real HTTP, as the gateway sees it.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::*;
use crate::world::real_now_us;

mod controls;
mod live;

pub(super) const TOKEN: &str = "test-token";

/// A simulator serving on 127.0.0.1:0; the account server's tests use it too.
pub(super) struct Server {
    pub base: String,
    pub client: reqwest::Client,
    pub sim: Simulator,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub(super) async fn start(opts: SimOptions) -> Server {
    let sim = Simulator::new(opts);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(sim.clone().serve(listener, async move {
        let _ = stopped.await;
    }));
    Server {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        sim,
        stop: Some(stop),
        handle,
    }
}

pub(super) async fn start_empty() -> Server {
    start(SimOptions::default()).await
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends and reads the body as JSON, or as a JSON string when it is not JSON.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let text = response.text().await.expect("body read");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.client.get(self.url(path)).bearer_auth(TOKEN))
            .await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(
            self.client
                .post(self.url(path))
                .bearer_auth(TOKEN)
                .json(&body),
        )
        .await
    }

    async fn command(&self, uuid: &str, command: &str, kwargs: Value) -> (StatusCode, Value) {
        let path = format!("/app/printers/{uuid}/commands/sync");
        self.post(&path, json!({ "command": command, "kwargs": kwargs }))
            .await
    }

    async fn printer(&self, uuid: &str) -> Value {
        let (status, body) = self.get(&format!("/app/printers/{uuid}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn events(&self, uuid: &str, query: &str) -> Vec<Value> {
        let (status, body) = self
            .get(&format!("/app/printers/{uuid}/events?{query}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["events"].as_array().cloned().unwrap_or_default()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(5), self.handle)
            .await
            .expect("server stops within 5 s")
            .expect("server task did not panic");
        assert!(result.is_ok(), "{result:?}");
    }
}

fn names(events: &[Value]) -> Vec<&str> {
    events.iter().filter_map(|e| e["event"].as_str()).collect()
}

fn created(events: &[Value]) -> Vec<f64> {
    events
        .iter()
        .filter_map(|e| e["created"].as_f64())
        .collect()
}

#[tokio::test]
async fn printers_list_has_connect_shape_and_pages() {
    let server = start_empty().await;
    let uuids: Vec<String> = ["A", "B", "C"]
        .iter()
        .map(|n| server.sim.add_printer(PrinterSpec::named(n)))
        .collect();
    assert_eq!(uuids[0], "00000000-0000-4000-8000-000000000001");
    assert_eq!(uuids[2], "00000000-0000-4000-8000-000000000003");
    assert_eq!(server.sim.printers(), uuids);

    let (status, body) = server.get("/app/printers").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["pager"],
        json!({ "limit": 20, "offset": 0, "total": 3 })
    );
    let first = &body["printers"][0];
    for key in [
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
        "dialog_info",
        "rights_r",
        "rights_w",
        "rights_u",
        "sim_extra",
    ] {
        assert!(first.get(key).is_some(), "printer lacks {key}: {first}");
    }
    assert_eq!(first["printer_model"], "MK4IS");
    assert_eq!(first["printer_type"], "7.1.0");
    assert_eq!(first["printer_state"], "IDLE");
    assert_eq!(first["connect_state"], "IDLE");
    assert!(first["temp"]["temp_nozzle"].is_number());
    assert!(first.get("job_info").is_none(), "no job yet: {first}");

    let (_, body) = server.get("/app/printers?limit=2&offset=1&unknown=x").await;
    let names: Vec<&str> = body["printers"]
        .as_array()
        .expect("printers array")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["B", "C"]);
    assert_eq!(
        body["pager"],
        json!({ "limit": 2, "offset": 1, "total": 3 })
    );

    let (_, body) = server.get("/app/printers?limit=5000").await;
    assert_eq!(body["pager"]["limit"], 1000);
    let (status, body) = server.get("/app/printers?limit=ten").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "BAD_REQUEST");
    server.stop().await;
}

#[tokio::test]
async fn authentication_is_enforced_with_connect_error_body() {
    let server = start(SimOptions {
        token: Some("right".into()),
        scenario: Scenario::Empty,
    })
    .await;
    let unauthorized =
        json!({ "code": "UNAUTHORIZED", "message": "Missing or invalid security token" });

    let (status, body) = server.get("/app/printers").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, unauthorized);
    let (status, body) = server
        .send(server.client.get(server.url("/app/printers")))
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::UNAUTHORIZED, unauthorized.clone())
    );

    let ok = server
        .send(
            server
                .client
                .get(server.url("/app/printers"))
                .bearer_auth("right"),
        )
        .await;
    assert_eq!(ok.0, StatusCode::OK);
    let by_cookie = server
        .send(
            server
                .client
                .get(server.url("/app/printers"))
                .header("Cookie", "theme=dark; auth.access_token=right"),
        )
        .await;
    assert_eq!(by_cookie.0, StatusCode::OK);

    // /version.json needs no token.
    let (status, body) = server
        .send(server.client.get(server.url("/version.json")))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body["version"].is_string() && body["date"].is_string(),
        "{body}"
    );

    // Without a configured token any bearer passes, but one is still needed.
    server.sim.set_token(None);
    assert_eq!(server.get("/app/printers").await.0, StatusCode::OK);
    let (status, _) = server
        .send(server.client.get(server.url("/app/printers")))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn unknown_things_are_json_404s() {
    let server = start_empty().await;
    let uuid = server.sim.add_printer(PrinterSpec::named("A"));
    let (status, body) = server.get("/app/printers/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "NOT_FOUND_PRINTER");
    let (status, body) = server.get(&format!("/app/printers/{uuid}/jobs/999")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "NOT_FOUND_JOB");
    let (status, body) = server.get(&format!("/app/printers/{uuid}/jobs/abc")).await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::NOT_FOUND, json!("NOT_FOUND_JOB"))
    );
    let (status, body) = server.get("/app/nothing/here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "NOT_FOUND");
    let (status, body) = server.get("/app/cameras/77/snapshots/last").await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::NOT_FOUND, json!("NOT_FOUND_CAMERA"))
    );
    server.stop().await;
}

#[tokio::test]
async fn events_are_newest_first_filtered_by_time_and_paged() {
    let server = start_empty().await;
    let sim = &server.sim;
    let uuid = sim.add_printer(PrinterSpec::named("A"));
    let job = sim.start_job(&uuid, "cube.bgcode", 60, &["cube"]); // STATE_CHANGED, JOB_INFO
    sim.pause(&uuid); // STATE_CHANGED
    sim.pause(&uuid); // no change, no event
    sim.resume(&uuid); // STATE_CHANGED
    sim.finish_job(&uuid, "FIN_OK"); // JOB_INFO, STATE_CHANGED
    sim.push_event(&uuid, "INFO", json!({ "data": { "note": "hello" } }));

    let all = server.events(&uuid, "").await;
    assert_eq!(
        names(&all),
        [
            "INFO",
            "STATE_CHANGED",
            "JOB_INFO",
            "STATE_CHANGED",
            "STATE_CHANGED",
            "JOB_INFO",
            "STATE_CHANGED"
        ]
    );
    let times = created(&all);
    assert!(
        times.windows(2).all(|w| w[0] > w[1]),
        "newest first: {times:?}"
    );
    let states: Vec<&str> = all.iter().filter_map(|e| e["state"].as_str()).collect();
    assert_eq!(states[1], "FINISHED");
    assert_eq!(states[3], "PRINTING");
    assert_eq!(states[4], "PAUSED");
    assert_eq!(all[2]["data"]["state"], "FIN_OK");
    assert_eq!(all[2]["job_id"], job);
    assert_eq!(all[0]["data"]["note"], "hello");
    assert!(all[0]["server_time"].as_f64() >= all[0]["created"].as_f64());

    // `from` is inclusive and may carry microseconds.
    let from = times[2];
    let recent = server.events(&uuid, &format!("from={from}")).await;
    assert_eq!(created(&recent), times[..3]);
    let older = server.events(&uuid, &format!("to={from}")).await;
    assert_eq!(created(&older), times[3..]);

    let page1 = server.events(&uuid, "limit=3").await;
    let page2 = server.events(&uuid, "limit=3&offset=3").await;
    let page3 = server.events(&uuid, "limit=3&offset=6").await;
    let paged: Vec<f64> = [page1, page2, page3]
        .iter()
        .flat_map(|p| created(p))
        .collect();
    assert_eq!(paged, times);

    let jobs_only = server.events(&uuid, "event=JOB_INFO").await;
    assert_eq!(names(&jobs_only), ["JOB_INFO", "JOB_INFO"]);

    let (_, body) = server
        .get(&format!(
            "/app/printers/{uuid}/events?from=100.5&to=200&limit=2"
        ))
        .await;
    assert_eq!(body["events"], json!([]));
    assert_eq!(
        body["pager"],
        json!({ "limit": 2, "offset": 0, "from": 100.5, "to": 200 })
    );
    server.stop().await;
}

#[tokio::test]
async fn commands_are_refused_in_the_wrong_state_and_take_effect_in_the_right_one() {
    let server = start_empty().await;
    let sim = &server.sim;
    let uuid = sim.add_printer(PrinterSpec::named("A"));

    let (status, body) = server.command(&uuid, "PAUSE_PRINT", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body["message"],
        "Command PAUSE_PRINT cannot be executed in state IDLE"
    );
    assert_eq!(body["code"], "CONFLICT");

    let job = sim.start_job(&uuid, "cube.bgcode", 100, &["a", "b"]);
    sim.set_progress(&uuid, 25.0);
    let (status, body) = server.command(&uuid, "PAUSE_PRINT", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["command"]["id"], 1_075_300);
    assert_eq!(body["command"]["state"], "CREATED");
    assert_eq!(body["command"]["command"], "PAUSE_PRINT");
    assert_eq!(body["command"]["source"], "CONNECT_USER");
    assert_eq!(body["command"]["kwargs"], json!({}));
    assert!(body["command"]["received"].is_i64());
    assert_eq!(body["event"]["event"], "FINISHED");
    assert_eq!(body["event"]["state"], "PRINTING");
    assert!(body["event"]["created"].is_f64());

    let printer = server.printer(&uuid).await;
    assert_eq!(printer["printer_state"], "PAUSED");
    assert_eq!(printer["job_info"]["state"], "PAUSED");
    assert_eq!(printer["job_info"]["id"], job);
    assert_eq!(printer["job_info"]["progress"], 25);
    assert_eq!(printer["job_info"]["time_remaining"], 75);
    let events = server.events(&uuid, "limit=2").await;
    assert_eq!(names(&events), ["STATE_CHANGED", "FINISHED"]);
    assert_eq!(events[0]["command"], "PAUSE_PRINT");
    assert_eq!(events[0]["command_id"], 1_075_300);
    assert_eq!(events[0]["source"], "CONNECT_USER");
    assert_eq!(events[0]["state"], "PAUSED");

    // Cancel an object, resume, stop, set ready.
    let (status, _) = server
        .command(&uuid, "CANCEL_OBJECT", json!({ "object_id": 1 }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server
        .command(&uuid, "CANCEL_OBJECT", json!({ "object_id": 7 }))
        .await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("BAD_REQUEST"))
    );
    let (_, detail) = server
        .get(&format!("/app/printers/{uuid}/jobs/{job}"))
        .await;
    assert_eq!(detail["cancelable"]["objects"][1]["canceled"], true);
    assert_eq!(detail["cancelable"]["objects"][0]["canceled"], false);
    assert_eq!(detail["cancelable"]["objects"][1]["id"], 1);
    assert_eq!(
        detail["file"]["meta"]["objects_info"]["objects"][0]["name"],
        "a"
    );

    let (status, body) = server.command(&uuid, "RESUME_PRINT", json!(null)).await;
    assert_eq!(
        (status, body["command"]["id"].clone()),
        (StatusCode::OK, json!(1_075_302))
    );
    assert_eq!(server.printer(&uuid).await["printer_state"], "PRINTING");
    let (status, _) = server.command(&uuid, "STOP_PRINT", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let printer = server.printer(&uuid).await;
    assert_eq!(printer["printer_state"], "STOPPED");
    assert_eq!(
        printer["job_info"]["state"], "FIN_STOPPED",
        "job_info kept after the end"
    );
    let (status, _) = server.command(&uuid, "SET_PRINTER_READY", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let printer = server.printer(&uuid).await;
    assert_eq!(printer["printer_state"], "READY");
    assert!(printer.get("job_info").is_none(), "{printer}");
    let (status, _) = server
        .command(&uuid, "CANCEL_PRINTER_READY", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.printer(&uuid).await["printer_state"], "IDLE");

    let (_, jobs) = server
        .get(&format!("/app/printers/{uuid}/jobs?state=FIN_STOPPED"))
        .await;
    assert_eq!(jobs["jobs"][0]["id"], job);
    assert_eq!(jobs["jobs"][0]["files"][0]["path"], "/usb/cube.bgcode");
    assert_eq!(jobs["jobs"][0]["time_remaining"], Value::Null);
    assert_eq!(jobs["pager"]["total"], 1);

    // Offline printers take no commands.
    sim.set_online(&uuid, false);
    let (status, body) = server.command(&uuid, "HOME", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body["message"],
        "Command HOME cannot be executed in state OFFLINE"
    );
    server.stop().await;
}

#[tokio::test]
async fn arguments_are_checked_against_supported_commands() {
    let server = start_empty().await;
    let uuid = server.sim.add_printer(PrinterSpec::named("A"));

    let (_, supported) = server
        .get(&format!("/app/printers/{uuid}/supported-commands"))
        .await;
    let commands = supported["commands"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let find = |name: &str| {
        commands
            .iter()
            .find(|c| c["command"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let mv = find("MOVE");
    assert_eq!(
        mv["executable_from_state"],
        json!(["IDLE", "PAUSED", "FINISHED", "STOPPED", "READY"])
    );
    let feedrate = mv["args"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == "feedrate"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(feedrate["max_limit"], 3000);
    assert_eq!(feedrate["min_limit"], 0);
    assert_eq!(feedrate["type"], "integer");
    assert_eq!(feedrate["required"], true);
    assert_eq!(feedrate["default"], 3000);
    assert_eq!(feedrate["unit"], "mm/min");
    for name in [
        "PAUSE_PRINT",
        "RESUME_PRINT",
        "STOP_PRINT",
        "SET_PRINTER_READY",
        "CANCEL_PRINTER_READY",
        "START_PRINT",
        "CANCEL_OBJECT",
        "MOVE",
        "MOVE_Z",
        "HOME",
        "SET_SPEED",
        "SEND_GCODE",
        "FLASH",
    ] {
        assert!(find(name).is_object(), "{name} missing");
    }

    let bad = [
        json!({ "x": 10, "y": 10, "feedrate": 3001 }),
        json!({ "x": "ten", "y": 10, "feedrate": 3000 }),
        json!({ "x": 10, "y": 10 }),
    ];
    for kwargs in bad {
        let (status, body) = server.command(&uuid, "MOVE", kwargs.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{kwargs}");
        assert_eq!(body["code"], "BAD_REQUEST");
        assert!(
            body["message"].is_string() && body["reason"].is_string(),
            "{body}"
        );
    }
    let (status, body) = server.command(&uuid, "DANCE", json!({})).await;
    assert_eq!(
        (status, body["reason"].clone()),
        (StatusCode::BAD_REQUEST, json!("UNKNOWN_COMMAND"))
    );
    let (status, _) = server
        .send(
            server
                .client
                .post(server.url(&format!("/app/printers/{uuid}/commands/sync")))
                .bearer_auth(TOKEN)
                .body("{not json"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(server.sim.requests().iter().any(|r| r.body == "{not json"));

    // MOVE is relative (G91): from the parked head at x 245, y 0, the x end of the bed
    // (250 mm on an MK4) stops it.
    let (status, _) = server
        .command(
            &uuid,
            "MOVE",
            json!({ "x": -114, "y": 134, "feedrate": 3000 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server
        .command(&uuid, "MOVE_Z", json!({ "distance": 5, "feedrate": 720 }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let printer = server.printer(&uuid).await;
    assert_eq!(
        (printer["axis_x"].clone(), printer["axis_y"].clone()),
        (json!(131.0), json!(134.0))
    );
    let (status, _) = server
        .command(
            &uuid,
            "MOVE",
            json!({ "x": 400, "y": -10, "feedrate": 3000 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let printer = server.printer(&uuid).await;
    assert_eq!(
        (printer["axis_x"].clone(), printer["axis_y"].clone()),
        (json!(250.0), json!(124.0))
    );
    assert_eq!(printer["axis_z"], 15.0);
    let (status, _) = server
        .command(&uuid, "MOVE_Z", json!({ "distance": 5, "feedrate": 721 }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    server.sim.start_job(&uuid, "x.bgcode", 60, &[]);
    let (status, _) = server
        .command(&uuid, "MOVE", json!({ "x": 1, "y": 1, "feedrate": 100 }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = server
        .command(&uuid, "SET_SPEED", json!({ "speed": 9 }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = server
        .command(&uuid, "SET_SPEED", json!({ "speed": 150.0 }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.printer(&uuid).await["speed"], 150);
    server.stop().await;
}

#[tokio::test]
async fn job_reason_is_stored_and_validated() {
    let server = start_empty().await;
    let uuid = server.sim.add_printer(PrinterSpec::named("A"));
    let job = server
        .sim
        .start_job(&uuid, "/usb/part.bgcode", 60, &["part"]);
    server.sim.finish_job(&uuid, "FIN_STOPPED");
    let path = format!("/app/printers/{uuid}/jobs/{job}");
    let reason = json!({ "reason": { "tag": ["WARPING", "OTHER"], "other": "corner lifted" } });
    let (status, body) = server
        .send(
            server
                .client
                .patch(server.url(&path))
                .bearer_auth(TOKEN)
                .json(&reason),
        )
        .await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    let (_, detail) = server.get(&path).await;
    assert_eq!(detail["reason"], reason["reason"]);
    assert_eq!(detail["state"], "FIN_STOPPED");
    assert!(detail["ts_ended"].is_i64());

    let wrong = json!({ "reason": { "tag": ["BAD_LUCK"] } });
    let (status, body) = server
        .send(
            server
                .client
                .patch(server.url(&path))
                .bearer_auth(TOKEN)
                .json(&wrong),
        )
        .await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("BAD_REQUEST"))
    );
    server.stop().await;
}

#[tokio::test]
async fn offline_printer_keeps_its_stale_printer_state() {
    let server = start_empty().await;
    let uuid = server.sim.add_printer(PrinterSpec::named("A"));
    server.sim.set_state(&uuid, "READY");
    server.sim.set_online(&uuid, false);
    let printer = server.printer(&uuid).await;
    assert_eq!(printer["printer_state"], "READY");
    assert_eq!(printer["connect_state"], "OFFLINE");
    let events = server.events(&uuid, "limit=1").await;
    assert_eq!(events[0]["state"], "OFFLINE");
    server.sim.set_online(&uuid, true);
    assert_eq!(server.printer(&uuid).await["connect_state"], "READY");
    server.stop().await;
}

#[tokio::test]
async fn dialog_puts_the_printer_in_attention_and_back() {
    let server = start_empty().await;
    let uuid = server.sim.add_printer(PrinterSpec::named("A"));
    server.sim.start_job(&uuid, "x.bgcode", 60, &[]);
    server.sim.set_dialog(
        &uuid,
        Some(json!({ "title": "Filament runout", "buttons": ["Continue"] })),
    );
    let printer = server.printer(&uuid).await;
    assert_eq!(printer["printer_state"], "ATTENTION");
    let dialog = &printer["dialog_info"];
    assert_eq!(dialog["title"], "Filament runout");
    for key in ["id", "code", "text", "buttons", "key"] {
        assert!(dialog.get(key).is_some(), "dialog lacks {key}: {dialog}");
    }
    server.sim.set_dialog(&uuid, None);
    let printer = server.printer(&uuid).await;
    assert_eq!(printer["printer_state"], "PRINTING");
    assert_eq!(printer["dialog_info"], Value::Null);
    server.stop().await;
}

#[tokio::test]
async fn snapshot_has_an_etag_and_answers_304() {
    let server = start_empty().await;
    let uuid = server.sim.add_printer(PrinterSpec::named("A"));
    let (_, cameras) = server.get(&format!("/app/printers/{uuid}/cameras")).await;
    assert_eq!(cameras["pager"]["total"], 1);
    let id = cameras["cameras"][0]["id"].as_i64().expect("camera id");
    let url = server.url(&format!(
        "/app/cameras/{id}/snapshots/last?printer_uuid={uuid}"
    ));

    let response = server
        .client
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("snapshot");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    let etag = response.headers()["etag"]
        .to_str()
        .expect("etag")
        .to_string();
    let jpeg = response.bytes().await.expect("bytes");
    assert!(jpeg.starts_with(&[0xff, 0xd8]) && jpeg.ends_with(&[0xff, 0xd9]));

    let again = server
        .client
        .get(&url)
        .bearer_auth(TOKEN)
        .header("If-None-Match", &etag)
        .send()
        .await
        .expect("conditional snapshot");
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert!(again.bytes().await.expect("body").is_empty());

    server.sim.start_job(&uuid, "x.bgcode", 60, &[]);
    server.sim.set_progress(&uuid, 10.0);
    let changed = server
        .client
        .get(&url)
        .bearer_auth(TOKEN)
        .header("If-None-Match", &etag)
        .send()
        .await
        .expect("snapshot after progress");
    assert_eq!(changed.status(), StatusCode::OK);
    assert_ne!(changed.headers()["etag"].to_str().ok(), Some(etag.as_str()));

    let other = server.sim.add_printer(PrinterSpec::named("B"));
    let wrong = server
        .get(&format!(
            "/app/cameras/{id}/snapshots/last?printer_uuid={other}"
        ))
        .await;
    assert_eq!(wrong.0, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn faults_switch_on_and_off() {
    let server = start_empty().await;
    let uuid = server.sim.add_printer(PrinterSpec::named("A"));

    server.sim.set_fault(Some(Fault::Status(503)));
    let (status, body) = server.get("/app/printers").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["code"].is_string() && body["message"].is_string(),
        "{body}"
    );
    // A faulted command has no effect.
    server.sim.start_job(&uuid, "x.bgcode", 60, &[]);
    let (status, _) = server.command(&uuid, "PAUSE_PRINT", json!({})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.sim.printer_state(&uuid).as_deref(), Some("PRINTING"));
    // /version.json is not an /app/ request.
    let (status, _) = server
        .send(server.client.get(server.url("/version.json")))
        .await;
    assert_eq!(status, StatusCode::OK);

    server
        .sim
        .set_fault(Some(Fault::TooManyRequests { retry_after_s: 7 }));
    let response = server
        .client
        .get(server.url("/app/printers"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "7");

    server.sim.set_fault(Some(Fault::MalformedJson));
    let text = server
        .client
        .get(server.url("/app/printers"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("text");
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");

    server.sim.set_fault(None);
    let full = server
        .client
        .get(server.url("/app/printers"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("text");
    server.sim.set_fault(Some(Fault::TruncatedJson));
    let response = server
        .client
        .get(server.url("/app/printers"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let cut = response.text().await.expect("text");
    assert!(serde_json::from_str::<Value>(&cut).is_err());
    // `last_online` moves between requests; the rest is the same response, cut in half.
    assert_eq!(cut.get(..30), full.get(..30));
    assert!(cut.len().abs_diff(full.len() / 2) < 10, "{cut}");

    server
        .sim
        .set_fault(Some(Fault::Delay(Duration::from_millis(150))));
    let started = Instant::now();
    let (status, _) = server.get("/app/printers").await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(150));

    server.sim.set_fault(None);
    let (status, body) = server.get("/app/printers").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["pager"]["total"], 1);
    server.stop().await;
}

#[tokio::test]
async fn requests_are_recorded_in_order() {
    let server = start_empty().await;
    let uuid = server.sim.add_printer(PrinterSpec::named("A"));
    server.get("/app/printers?limit=5").await;
    server.command(&uuid, "HOME", json!({ "axis": "xy" })).await;
    server
        .send(server.client.get(server.url("/_sim/requests")))
        .await;
    let requests = server.sim.requests();
    assert_eq!(
        requests.len(),
        2,
        "admin requests are not recorded: {requests:?}"
    );
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, "/app/printers");
    assert_eq!(requests[0].query, "limit=5");
    assert_eq!(
        requests[0].authorization.as_deref(),
        Some("Bearer test-token")
    );
    assert_eq!(requests[1].method, "POST");
    assert_eq!(
        requests[1].path,
        format!("/app/printers/{uuid}/commands/sync")
    );
    let body: Value = serde_json::from_str(&requests[1].body).expect("recorded JSON");
    assert_eq!(body["kwargs"]["axis"], "xy");
    server.sim.clear_requests();
    assert!(server.sim.requests().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn requests_record_when_they_arrived_and_which_fault_they_got() {
    let server = start_empty().await;
    server.get("/app/printers").await;
    tokio::time::sleep(Duration::from_millis(60)).await;
    server
        .sim
        .set_fault(Some(Fault::TooManyRequests { retry_after_s: 3 }));
    server.get("/app/printers").await;
    let requests = server.sim.requests();
    assert_eq!(requests.len(), 2);
    let gap = requests[1].at - requests[0].at;
    assert!(gap >= Duration::from_millis(60), "{gap:?}");
    assert_eq!(requests[0].fault, None);
    assert_eq!(
        requests[1].fault,
        Some(Fault::TooManyRequests { retry_after_s: 3 })
    );
    // Over HTTP `at` is in seconds and the fault in `/fault`'s form.
    let (_, body) = server
        .send(server.client.get(server.url("/_sim/requests")))
        .await;
    assert!(body[0]["at"].as_f64().is_some(), "{body}");
    assert_eq!(
        body[1]["fault"],
        json!({ "kind": "too_many_requests", "retry_after_s": 3 })
    );
    server.stop().await;
}

#[tokio::test]
async fn a_connection_reset_closes_the_connection_without_an_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let server = start_empty().await;
    let uuid = server.sim.add_printer(PrinterSpec::named("A"));
    server.sim.start_job(&uuid, "x.bgcode", 60, &[]);
    server.sim.set_fault(Some(Fault::ConnectionReset));

    // reqwest sees a transport error: no status, and not a timeout.
    let err = server
        .client
        .get(server.url("/app/printers"))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect_err("no response");
    assert!(err.status().is_none() && !err.is_timeout(), "{err:?}");
    let chain = format!("{:?}", anyhow::Error::from(err));
    assert!(chain.contains("connection closed"), "{chain}");

    // On the wire: not one byte comes back before the server closes the connection.
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let request = format!(
        "GET /app/printers HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection at once");
    assert!(
        answer.is_empty(),
        "{read:?}: {}",
        String::from_utf8_lossy(&answer)
    );

    // A command that met a reset has no effect.
    let sent = server
        .client
        .post(server.url(&format!("/app/printers/{uuid}/commands/sync")))
        .bearer_auth(TOKEN)
        .json(&json!({ "command": "PAUSE_PRINT", "kwargs": {} }))
        .send()
        .await;
    assert!(sent.is_err(), "{sent:?}");
    assert_eq!(server.sim.printer_state(&uuid).as_deref(), Some("PRINTING"));
    server.sim.set_fault(None);
    assert_eq!(server.get("/app/printers").await.0, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn fault_rules_hit_only_their_paths_and_run_out() {
    let server = start_empty().await;
    let uuid = server.sim.add_printer(PrinterSpec::named("A"));
    server.sim.add_fault(
        FaultRule::new(Fault::Status(503))
            .on_path("/app/printers")
            .times(2),
    );
    server.sim.add_fault(
        FaultRule::new(Fault::Status(502))
            .on_path("/app/printers")
            .times(1),
    );
    server
        .sim
        .add_fault(FaultRule::new(Fault::Status(500)).on_paths_containing("/events"));
    let events = format!("/app/printers/{uuid}/events");

    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(server.get("/app/printers?limit=5").await.0.as_u16());
    }
    assert_eq!(statuses, [503, 503, 502, 200], "in order, then used up");
    assert_eq!(
        server.get(&format!("/app/printers/{uuid}")).await.0,
        StatusCode::OK,
        "a printer's own page is not the list"
    );
    for _ in 0..3 {
        assert_eq!(
            server.get(&events).await.0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    assert_eq!(
        server.sim.faults(),
        vec![FaultRule::new(Fault::Status(500)).on_paths_containing("/events")],
        "the counted rules are gone, the open-ended one stays"
    );
    let faulted: Vec<(String, Option<Fault>)> = server
        .sim
        .requests()
        .into_iter()
        .map(|r| (r.path, r.fault))
        .collect();
    assert_eq!(faulted[3], ("/app/printers".into(), None));
    assert_eq!(faulted[4], (format!("/app/printers/{uuid}"), None));
    assert_eq!(faulted[5], (events.clone(), Some(Fault::Status(500))));

    // `set_fault` replaces every rule.
    server.sim.set_fault(None);
    assert_eq!(server.get(&events).await.0, StatusCode::OK);

    // The same over HTTP.
    let admin = |body: Value| server.client.post(server.url("/_sim/faults")).json(&body);
    let (status, _) = server
        .send(admin(json!({
            "kind": "connection_reset", "path_contains": "/events", "times": 1
        })))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, rules) = server
        .send(server.client.get(server.url("/_sim/faults")))
        .await;
    assert_eq!(
        rules,
        json!([{
            "fault": { "kind": "connection_reset" },
            "path": null, "path_contains": "/events", "times": 1,
        }])
    );
    assert!(
        server
            .client
            .get(server.url(&events))
            .bearer_auth(TOKEN)
            .send()
            .await
            .is_err()
    );
    assert_eq!(server.get(&events).await.0, StatusCode::OK);
    let (status, _) = server
        .send(admin(
            json!({ "kind": "status", "status": 500, "path": "/a", "path_contains": "/b" }),
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.stop().await;
}

#[tokio::test]
async fn a_hidden_printer_is_left_out_of_the_list_only() {
    let server = start_empty().await;
    let a = server.sim.add_printer(PrinterSpec::named("A"));
    let b = server.sim.add_printer(PrinterSpec::named("B"));
    server.sim.hide_printer(&a, true);
    let (_, list) = server.get("/app/printers").await;
    assert_eq!(list["pager"]["total"], 1);
    assert_eq!(list["printers"][0]["uuid"], b.as_str());
    assert_eq!(server.printer(&a).await["uuid"], a.as_str());
    assert_eq!(
        server.get(&format!("/app/printers/{a}/events")).await.0,
        StatusCode::OK
    );
    assert_eq!(server.sim.printers(), vec![a.clone(), b.clone()]);

    server.sim.hide_printer(&a, false);
    let (_, list) = server.get("/app/printers").await;
    assert_eq!(list["pager"]["total"], 2);

    let (status, _) = server
        .send(
            server
                .client
                .post(server.url(&format!("/_sim/printers/{b}/hidden")))
                .json(&json!({ "hidden": true })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, list) = server.get("/app/printers").await;
    assert_eq!(list["printers"][0]["uuid"], a.as_str());
    assert_eq!(list["pager"]["total"], 1);
    server.stop().await;
}

#[tokio::test]
async fn the_feed_clock_jumps_backwards_and_forwards() {
    let server = start_empty().await;
    let uuid = server.sim.add_printer(PrinterSpec::named("A"));
    let marked = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .filter_map(|e| e["marker"].as_str().map(str::to_string))
            .collect()
    };
    server.sim.push_event(&uuid, "X", json!({ "marker": "a" }));
    server.sim.set_clock_offset(-600.0);
    server.sim.push_event(&uuid, "X", json!({ "marker": "b" }));
    server.sim.push_event(&uuid, "X", json!({ "marker": "c" }));
    server.sim.set_clock_offset(3_600.0);
    server.sim.push_event(&uuid, "X", json!({ "marker": "d" }));
    server.sim.set_clock_offset(0.0);
    server.sim.push_event(&uuid, "X", json!({ "marker": "e" }));

    let all = server.events(&uuid, "from=0&limit=100").await;
    let at = |m: &str| {
        all.iter()
            .find(|e| e["marker"] == m)
            .and_then(|e| e["created"].as_f64())
            .expect("marked event")
    };
    assert!((at("a") - at("b") - 600.0).abs() < 1.0, "{all:?}");
    assert!(at("b") < at("c"), "steady after the jump");
    assert!((at("d") - at("e") - 3_600.0).abs() < 1.0);
    // Sorted by `created`, as Connect sorts it, not in the order they happened.
    assert_eq!(marked(&all), ["d", "e", "a", "c", "b"]);
    assert!(
        created(&all).windows(2).all(|w| w[0] >= w[1]),
        "newest first: {all:?}"
    );
    // A cursor taken at `a` misses what came after a backwards jump.
    let from = at("a").floor();
    let since_a = server
        .events(&uuid, &format!("from={from}&limit=100"))
        .await;
    assert_eq!(marked(&since_a), ["d", "e", "a"]);

    // `pager.to` follows Connect's clock.
    server.sim.set_clock_offset(-7_200.0);
    let (_, body) = server
        .get(&format!("/app/printers/{uuid}/events?from=0"))
        .await;
    let to = body["pager"]["to"].as_f64().expect("pager.to");
    let real_now = real_now_us() as f64 / 1e6;
    assert!((real_now - 7_200.0 - to).abs() < 5.0, "{to} vs {real_now}");
    let (status, _) = server
        .send(
            server
                .client
                .post(server.url("/_sim/clock"))
                .json(&json!({ "offset_s": 0 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = server
        .get(&format!("/app/printers/{uuid}/events?from=0"))
        .await;
    let to = body["pager"]["to"].as_f64().expect("pager.to");
    assert!((real_now - to).abs() < 5.0, "{to} vs {real_now}");
    server.stop().await;
}

#[tokio::test]
async fn admin_interface_scripts_the_world() {
    let server = start_empty().await;
    let admin = |path: &str, body: Value| {
        server
            .client
            .post(server.url(&format!("/_sim{path}")))
            .json(&body)
    };
    let (status, body) = server
        .send(admin(
            "/printers",
            json!({ "name": "Shelf", "model": "MINI" }),
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let uuid = body["uuid"].as_str().expect("uuid").to_string();
    let (_, body) = server
        .send(admin(
            &format!("/printers/{uuid}/job"),
            json!({ "file": "x.bgcode", "duration": 60 }),
        ))
        .await;
    let job = body["job_id"].as_i64().expect("job id");
    assert_eq!(job, 100);
    assert_eq!(server.printer(&uuid).await["printer_model"], "MINI");
    server
        .send(admin(
            &format!("/printers/{uuid}/state"),
            json!({ "state": "PAUSED" }),
        ))
        .await;
    assert_eq!(server.printer(&uuid).await["job_info"]["state"], "PAUSED");
    server
        .send(admin(
            &format!("/printers/{uuid}/finish"),
            json!({ "state": "FIN_ERROR" }),
        ))
        .await;
    let printer = server.printer(&uuid).await;
    assert_eq!(
        (
            printer["printer_state"].clone(),
            printer["job_info"]["state"].clone()
        ),
        (json!("ERROR"), json!("FIN_ERROR"))
    );
    server
        .send(admin(
            &format!("/printers/{uuid}/online"),
            json!({ "online": false }),
        ))
        .await;
    assert_eq!(server.printer(&uuid).await["connect_state"], "OFFLINE");

    server
        .send(admin("/fault", json!({ "kind": "status", "status": 500 })))
        .await;
    assert_eq!(
        server.get("/app/printers").await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    server.send(admin("/fault", Value::Null)).await;
    assert_eq!(server.get("/app/printers").await.0, StatusCode::OK);

    let (status, body) = server
        .send(admin("/printers/nope/state", json!({ "state": "IDLE" })))
        .await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::NOT_FOUND, json!("NOT_FOUND_PRINTER"))
    );
    let (status, _) = server
        .send(admin(
            &format!("/printers/{uuid}/state"),
            json!({ "oops": 1 }),
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (_, recorded) = server
        .send(server.client.get(server.url("/_sim/requests")))
        .await;
    let paths: Vec<&str> = recorded
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["path"].as_str()).collect())
        .unwrap_or_default();
    assert!(paths.iter().all(|p| p.starts_with("/app/")), "{paths:?}");
    assert!(!paths.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn queues_files_storages_and_small_endpoints() {
    let server = start_empty().await;
    let uuid = server.sim.add_printer(PrinterSpec::named("A"));
    server.sim.queue_job(&uuid, "/usb/next.bgcode");
    let (_, queue) = server
        .get(&format!("/app/printers/{uuid}/queue?limit=1"))
        .await;
    assert_eq!(queue["planned_jobs"][0]["path"], "/usb/next.bgcode");
    assert_eq!(queue["pager"]["total"], 1);
    assert!(queue["pager"]["from"].is_i64());
    let (status, _) = server
        .post(
            &format!("/app/printers/{uuid}/queue"),
            json!({ "path": "/usb/first.bgcode", "position": 0, "set_ready": true }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, queue) = server.get(&format!("/app/printers/{uuid}/queue")).await;
    assert_eq!(queue["planned_jobs"][0]["path"], "/usb/first.bgcode");
    let (_, downloads) = server
        .get(&format!("/app/printers/{uuid}/download-queue"))
        .await;
    assert_eq!(downloads["planned_jobs"], json!([]));

    let (_, files) = server.get(&format!("/app/printers/{uuid}/files")).await;
    assert!(
        files["files"][0]["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("/usb/"))
    );
    let (_, storages) = server.get(&format!("/app/printers/{uuid}/storages")).await;
    assert_eq!(storages["storages"][0]["type"], "USB");

    server.sim.set_unseen(3);
    assert_eq!(
        server.get("/app/notifications/unseen").await.1,
        json!({ "unseen": 3 })
    );
    let (_, types) = server.get("/app/printer-types").await;
    let mk4 = types["printer_types"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["id"] == "7.1.0").cloned())
        .unwrap_or(Value::Null);
    assert_eq!(
        (mk4["type"].clone(), mk4["version"].clone()),
        (json!(7), json!(1))
    );
    assert_eq!(
        server.get("/app/invitations").await.1,
        json!({ "invitations": [], "refused": [] })
    );
    assert_eq!(server.get("/app/config").await.0, StatusCode::OK);
    server.stop().await;
}

/// Events seen in a printer's whole feed, oldest first.
fn feed(sim: &Simulator, uuid: &str) -> Vec<Value> {
    let world = sim.world();
    world
        .printer(uuid)
        .map(|p| {
            p.events
                .iter()
                .map(|e| Value::Object(e.json.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn job_ends(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "JOB_INFO")
        .filter_map(|e| e["data"]["state"].as_str().map(str::to_string))
        .collect()
}

fn states(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "STATE_CHANGED")
        .filter_map(|e| e["state"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn demo_shows_a_full_cycle_within_two_minutes() {
    let sim = Simulator::new(SimOptions {
        token: None,
        scenario: Scenario::Demo,
    });
    let uuid = |name: &str| sim.printer_uuid(name).expect(name);
    let (busy, core, mini) = (uuid("Busy MK4"), uuid("Core One"), uuid("MINI"));
    assert_eq!(sim.printer_state(&busy).as_deref(), Some("PRINTING"));
    let manual = sim.add_printer(PrinterSpec::named("Manual"));
    let mut max_nozzle: f64 = 0.0;
    for _ in 0..120 {
        sim.step(Duration::from_secs(1));
        let world = sim.world();
        if let Some(p) = world.printer(&core) {
            max_nozzle = max_nozzle.max(p.temps.nozzle);
        }
    }
    let busy_events = feed(&sim, &busy);
    assert!(
        job_ends(&busy_events).contains(&"FIN_OK".to_string()),
        "{busy_events:?}"
    );
    let busy_states = states(&busy_events);
    let finished = busy_states
        .iter()
        .position(|s| s == "FINISHED")
        .expect("busy finished");
    assert!(busy_states[finished..].contains(&"READY".to_string()));
    assert!(
        busy_states[finished..].contains(&"PRINTING".to_string()),
        "next job: {busy_states:?}"
    );

    let core_events = feed(&sim, &core);
    assert!(
        job_ends(&core_events).contains(&"FIN_ERROR".to_string()),
        "{core_events:?}"
    );
    let core_states = states(&core_events);
    let attention = core_states
        .iter()
        .position(|s| s == "ATTENTION")
        .expect("attention");
    let error = core_states
        .iter()
        .position(|s| s == "ERROR")
        .expect("error");
    assert!(
        attention < error && core_states[error..].contains(&"IDLE".to_string()),
        "{core_states:?}"
    );
    assert!(
        max_nozzle > 230.0,
        "Core One heated up for PETG: {max_nozzle}"
    );

    let mini_events = feed(&sim, &mini);
    let mini_states = states(&mini_events);
    let paused = mini_states
        .iter()
        .position(|s| s == "PAUSED")
        .expect("paused");
    assert_eq!(mini_states[paused + 1], "PRINTING", "{mini_states:?}");
    assert!(
        job_ends(&mini_events).contains(&"FIN_OK".to_string()),
        "{mini_states:?}"
    );

    // Manual printers are never moved by step().
    assert!(feed(&sim, &manual).is_empty());
    assert_eq!(sim.printer_state(&manual).as_deref(), Some("IDLE"));
    let world = sim.world();
    let m = world.printer(&manual).expect("manual printer");
    assert_eq!((m.temps.nozzle, m.axes.z), (24.0, 10.0));
}

#[test]
fn demo_survives_user_interference() {
    let sim = Simulator::new(SimOptions {
        token: None,
        scenario: Scenario::Demo,
    });
    let busy = sim.printer_uuid("Busy MK4").expect("busy");
    sim.pause(&busy);
    for _ in 0..30 {
        sim.step(Duration::from_secs(1));
    }
    assert_eq!(
        sim.printer_state(&busy).as_deref(),
        Some("PAUSED"),
        "a user pause is kept"
    );
    sim.finish_job(&busy, "FIN_STOPPED");
    for _ in 0..200 {
        sim.step(Duration::from_secs(1));
    }
    let ends = job_ends(&feed(&sim, &busy));
    assert!(
        ends.iter().filter(|s| *s == "FIN_OK").count() >= 1,
        "{ends:?}"
    );
}

#[test]
fn farm_cycles_deterministically() {
    let farm = |n| {
        Simulator::new(SimOptions {
            token: None,
            scenario: Scenario::Farm { printers: n },
        })
    };
    let sim = farm(24);
    let names: Vec<String> = sim
        .world()
        .printers
        .iter()
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(names.first().map(String::as_str), Some("Farm 001"));
    assert_eq!(names.last().map(String::as_str), Some("Farm 024"));
    let count = |sim: &Simulator, state: &str| {
        sim.world()
            .printers
            .iter()
            .filter(|p| p.effective_state() == state)
            .count()
    };
    assert!(count(&sim, "PRINTING") > 0 && count(&sim, "IDLE") > 0);
    let twin = farm(24);
    for _ in 0..900 {
        sim.step(Duration::from_secs(1));
        twin.step(Duration::from_secs(1));
    }
    let summary = |sim: &Simulator| -> Vec<(String, usize)> {
        sim.world()
            .printers
            .iter()
            .map(|p| (p.effective_state().to_string(), p.jobs.len()))
            .collect()
    };
    assert_eq!(summary(&sim), summary(&twin));
    let finished: usize = sim
        .world()
        .printers
        .iter()
        .map(|p| p.jobs.iter().filter(|j| j.ended_us.is_some()).count())
        .sum();
    assert!(
        finished >= 24,
        "jobs ended in 15 simulated minutes: {finished}"
    );
}

#[tokio::test]
async fn ticker_steps_until_shutdown() {
    let sim = Simulator::new(SimOptions::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let ticker = tokio::spawn(run_ticker(
        sim.clone(),
        Duration::from_millis(5),
        async move {
            let _ = stopped.await;
        },
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    while sim.world().sim_time < 0.02 {
        assert!(Instant::now() < deadline, "ticker did not step");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), ticker)
        .await
        .expect("ticker stops")
        .expect("ticker did not panic");
}

/// Walks the JPEG's segments: each length must land on the next marker, and the scan must
/// run to the end-of-image marker.
#[test]
fn snapshot_is_a_well_formed_jpeg() {
    let bytes = jpeg::snapshot(&jpeg::Scene {
        camera_id: 1,
        printer_number: 3,
        state: "PRINTING",
        progress: 42.0,
    });
    assert_eq!(&bytes[..2], &[0xff, 0xd8]);
    let mut i = 2;
    let mut markers = Vec::new();
    loop {
        assert_eq!(bytes[i], 0xff, "marker expected at {i}");
        let marker = bytes[i + 1];
        markers.push(marker);
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        i += 2 + len;
        if marker == 0xda {
            break;
        }
    }
    // Entropy-coded data: every 0xFF is stuffed until EOI.
    while !(bytes[i] == 0xff && bytes[i + 1] == 0xd9) {
        if bytes[i] == 0xff {
            assert_eq!(bytes[i + 1], 0x00, "unstuffed 0xFF at {i}");
            i += 1;
        }
        i += 1;
    }
    assert_eq!(i + 2, bytes.len());
    assert_eq!(markers, [0xe0, 0xfe, 0xdb, 0xc0, 0xc4, 0xc4, 0xda]);
    let other = jpeg::snapshot(&jpeg::Scene {
        camera_id: 1,
        printer_number: 3,
        state: "PRINTING",
        progress: 42.5,
    });
    assert_ne!(bytes, other);
}

#[tokio::test]
async fn a_quick_job_shows_only_in_the_feed_the_job_list_and_the_notifications() {
    let server = start_empty().await;
    let sim = &server.sim;
    let uuid = sim.add_printer(PrinterSpec::named("A"));
    let (_, before) = server.get(&format!("/app/printers/{uuid}")).await;
    let job = sim.quick_job(&uuid, "calibration.gcode", "FIN_OK");
    let (_, after) = server.get(&format!("/app/printers/{uuid}")).await;
    assert_eq!(after["printer_state"], before["printer_state"]);
    assert_eq!(after.get("job_info"), before.get("job_info"));
    let (_, jobs) = server.get(&format!("/app/printers/{uuid}/jobs")).await;
    assert_eq!(jobs["jobs"][0]["id"], job);
    assert_eq!(jobs["jobs"][0]["state"], "FIN_OK");
    let feed = server.events(&uuid, "").await;
    assert!(
        feed.iter()
            .any(|e| e["event"] == "JOB_INFO" && e["job_id"] == job)
    );
    // Connect makes a notification of it, newest first in the list.
    let first = sim.add_notification(Some(&uuid), "INFO", "hello");
    let (_, unseen) = server.get("/app/notifications/unseen").await;
    assert_eq!(unseen["unseen"], 2);
    let (_, list) = server.get("/app/notifications?limit=1&offset=1").await;
    assert_eq!(list["notifications"][0]["data"]["job_id"], job);
    assert_eq!(list["notifications"][0]["severity"], "SUCCESS");
    assert_eq!(list["pager"]["total"], 2);
    let (_, list) = server.get("/app/notifications").await;
    assert_eq!(list["notifications"][0]["id"], first);
    assert_eq!(list["notifications"][0]["data"]["printer_name"], "A");
}

#[tokio::test]
async fn a_lagging_job_record_says_printing_until_the_lag_is_over() {
    let server = start_empty().await;
    let sim = &server.sim;
    let uuid = sim.add_printer(PrinterSpec::named("A"));
    sim.set_record_lag(&uuid, Duration::from_millis(300));
    let job = sim.start_job(&uuid, "cube.bgcode", 60, &[]);
    sim.finish_job(&uuid, "FIN_ERROR");
    let (_, printer) = server.get(&format!("/app/printers/{uuid}")).await;
    assert_eq!(printer["printer_state"], "ERROR");
    let (_, record) = server
        .get(&format!("/app/printers/{uuid}/jobs/{job}"))
        .await;
    assert_eq!(record["state"], "PRINTING");
    let (_, jobs) = server.get(&format!("/app/printers/{uuid}/jobs")).await;
    assert_eq!(jobs["jobs"][0]["state"], "PRINTING");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, record) = server
            .get(&format!("/app/printers/{uuid}/jobs/{job}"))
            .await;
        if record["state"] == "FIN_ERROR" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {record}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
