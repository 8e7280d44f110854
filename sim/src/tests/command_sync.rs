//! `commands/sync`: states, arguments, job reasons and dialogs.

use super::*;

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
