//! The printer controls of the captured `supported-commands` document, their effects, and
//! the chamber of the CORE One.

use super::*;

async fn supported(server: &Server, uuid: &str) -> Vec<Value> {
    let (status, body) = server
        .get(&format!("/app/printers/{uuid}/supported-commands"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["commands"].as_array().cloned().unwrap_or_default()
}

fn entry<'a>(commands: &'a [Value], name: &str) -> &'a Value {
    commands
        .iter()
        .find(|c| c["command"] == name)
        .unwrap_or_else(|| panic!("{name} missing"))
}

fn arg<'a>(command: &'a Value, name: &str) -> &'a Value {
    command["args"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == name))
        .unwrap_or_else(|| panic!("{} has no argument {name}", command["command"]))
}

#[tokio::test]
async fn supported_commands_follow_the_capture_and_only_a_core_one_has_the_chambers() {
    let server = start_empty().await;
    let mk4 = server.sim.add_printer(PrinterSpec::named("MK4"));
    let core = server.sim.add_printer(PrinterSpec::core_one("Core"));

    let commands = supported(&server, &mk4).await;
    for name in [
        "SET_PRINTER_READY",
        "CANCEL_PRINTER_READY",
        "START_PRINT",
        "PAUSE_PRINT",
        "RESUME_PRINT",
        "STOP_PRINT",
        "LOAD_FILAMENT",
        "UNLOAD_FILAMENT",
        "DIALOG_ACTION",
        "HOME",
        "MOVE",
        "MOVE_Z",
        "MOVE_E",
        "CANCEL_OBJECT",
        "SET_SPEED",
        "SET_FLOW",
        "SET_NOZZLE_TEMPERATURE",
        "SET_HEATBED_TEMPERATURE",
        "BEEP",
        "DISABLE_STEPPERS",
        "MESH_BED_LEVELING",
        "SEND_GCODE",
        "FLASH",
        "RESET_PRINTER",
        "DELETE_FILE",
    ] {
        let c = entry(&commands, name);
        assert!(c["description"].is_string(), "{c}");
        assert_eq!(c["duplicates_allowed"], false, "{c}");
        assert!(c["executable_from_state"].is_array(), "{c}");
    }
    let cancels: Vec<&Value> = commands
        .iter()
        .filter(|c| c["command"] == "CANCEL_OBJECT")
        .collect();
    assert_eq!(cancels.len(), 2, "listed twice, as in the capture");
    assert_eq!(cancels[0], cancels[1]);
    assert_eq!(arg(cancels[0], "object_id")["type"], "integer");

    let dialog = entry(&commands, "DIALOG_ACTION");
    assert_eq!(arg(dialog, "dialog_id")["reference"], "dialog_info.id");
    assert_eq!(arg(dialog, "button")["type"], "string");
    let states = dialog["executable_from_state"].as_array().unwrap();
    assert!(states.contains(&json!("ATTENTION")) && !states.contains(&json!("UNKNOWN")));
    let start = entry(&commands, "START_PRINT");
    assert_eq!(arg(start, "path")["required"], true);
    assert_eq!(arg(start, "tool_mapping")["type"], "object");
    assert_eq!(arg(start, "tool_mapping")["required"], false);
    let home = entry(&commands, "HOME");
    assert_eq!(arg(home, "axis")["default"], "XYZ");
    assert_eq!(
        home["executable_from_state"],
        json!(["IDLE", "READY", "MANIPULATING"])
    );
    let move_e = entry(&commands, "MOVE_E");
    assert_eq!(move_e["min_temp_nozzle_e"], 170);
    assert_eq!(
        (
            arg(move_e, "length")["min_limit"].clone(),
            arg(move_e, "length")["max_limit"].clone()
        ),
        (json!(-10), json!(100))
    );
    let move_z = entry(&commands, "MOVE_Z");
    assert_eq!(arg(move_z, "feedrate")["max_limit"], 720);
    assert!(
        arg(move_z, "distance").get("max_limit").is_none(),
        "relative"
    );
    let speed = arg(entry(&commands, "SET_SPEED"), "speed").clone();
    assert_eq!(
        (speed["min_limit"].clone(), speed["max_limit"].clone()),
        (json!(10), json!(300))
    );
    assert_eq!(
        (speed["unit"].clone(), speed["default"].clone()),
        (json!("%"), json!(100))
    );
    assert_eq!(arg(entry(&commands, "SET_FLOW"), "flow")["max_limit"], 150);
    assert!(
        entry(&commands, "SET_HEATBED_TEMPERATURE")["executable_from_state"]
            .as_array()
            .unwrap()
            .contains(&json!("MANIPULATING"))
    );
    assert!(!commands.iter().any(|c| {
        c["command"]
            .as_str()
            .is_some_and(|n| n.starts_with("SET_CHAMBER") || n.starts_with("SET_ENCLOSURE"))
    }));
    let (status, body) = server
        .command(
            &mk4,
            "SET_CHAMBER_LED_INTENSITY",
            json!({ "chamber.led_intensity": 50 }),
        )
        .await;
    assert_eq!(
        (status, body["reason"].clone()),
        (StatusCode::BAD_REQUEST, json!("UNKNOWN_COMMAND"))
    );

    let commands = supported(&server, &core).await;
    let led = entry(&commands, "SET_CHAMBER_LED_INTENSITY");
    let intensity = arg(led, "chamber.led_intensity");
    assert_eq!(
        (intensity["type"].clone(), intensity["unit"].clone()),
        (json!("integer"), json!("%"))
    );
    assert!(
        !led["executable_from_state"]
            .as_array()
            .unwrap()
            .contains(&json!("ERROR"))
    );
    for name in [
        "SET_ENCLOSURE_ENABLED",
        "SET_ENCLOSURE_PRINTING_FILTRATION",
        "SET_ENCLOSURE_POSTPRINT",
        "SET_ENCLOSURE_POSTPRINT_FILTRATION_TIME",
    ] {
        entry(&commands, name);
    }
    let (status, body) = server
        .command(
            &core,
            "SET_ENCLOSURE_ENABLED",
            json!({ "enclosure_enabled": "yes" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a boolean: {body}");
    let (status, body) = server
        .command(
            &core,
            "SET_ENCLOSURE_ENABLED",
            json!({ "enclosure_enabled": true }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn setting_commands_change_what_the_printer_shows() {
    let server = start_empty().await;
    let uuid = server.sim.add_printer(PrinterSpec::named("A"));
    let ok = |(status, body): (StatusCode, Value)| assert_eq!(status, StatusCode::OK, "{body}");

    ok(server
        .command(&uuid, "SET_SPEED", json!({ "speed": 120 }))
        .await);
    ok(server
        .command(&uuid, "SET_FLOW", json!({ "flow": 95 }))
        .await);
    ok(server
        .command(
            &uuid,
            "SET_NOZZLE_TEMPERATURE",
            json!({ "nozzle_temperature": 215 }),
        )
        .await);
    ok(server
        .command(
            &uuid,
            "SET_HEATBED_TEMPERATURE",
            json!({ "bed_temperature": 60 }),
        )
        .await);
    ok(server
        .command(&uuid, "LOAD_FILAMENT", json!({ "filament": "petg" }))
        .await);
    let p = server.printer(&uuid).await;
    assert_eq!(
        (p["speed"].clone(), p["flow"].clone()),
        (json!(120), json!(95))
    );
    assert_eq!(p["temp"]["target_nozzle"], 215.0);
    assert_eq!(p["temp"]["target_bed"], 60.0);
    assert_eq!(p["filament"]["material"], "PETG");
    assert_eq!(p["tools"]["1"]["material"], "PETG");

    let (status, _) = server
        .command(&uuid, "SET_FLOW", json!({ "flow": 151 }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = server
        .command(
            &uuid,
            "SET_NOZZLE_TEMPERATURE",
            json!({ "nozzle_temperature": 291 }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    ok(server.command(&uuid, "UNLOAD_FILAMENT", json!({})).await);
    assert_eq!(server.printer(&uuid).await["filament"]["material"], "---");

    // HOME homes the axes it names, all of them by default.
    ok(server.command(&uuid, "HOME", json!({ "axis": "X" })).await);
    let p = server.printer(&uuid).await;
    assert_eq!(
        (p["axis_x"].clone(), p["axis_z"].clone()),
        (json!(0.0), json!(10.0))
    );
    ok(server.command(&uuid, "HOME", json!({})).await);
    assert_eq!(server.printer(&uuid).await["axis_z"], 0.0);

    // These only tell in the feed.
    for name in ["BEEP", "DISABLE_STEPPERS", "MESH_BED_LEVELING"] {
        ok(server.command(&uuid, name, json!({})).await);
        let events = server.events(&uuid, "limit=1").await;
        assert_eq!(
            (events[0]["event"].clone(), events[0]["command"].clone()),
            (json!("FINISHED"), json!(name))
        );
    }
    assert_eq!(server.printer(&uuid).await["printer_state"], "IDLE");
    // MESH_BED_LEVELING is for an idle printer only; BEEP also while manipulating.
    server.sim.set_state(&uuid, "FINISHED");
    let (status, _) = server.command(&uuid, "MESH_BED_LEVELING", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    server.sim.set_state(&uuid, "MANIPULATING");
    ok(server.command(&uuid, "BEEP", json!({})).await);
    let (status, _) = server.command(&uuid, "DISABLE_STEPPERS", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    ok(server
        .command(
            &uuid,
            "SET_HEATBED_TEMPERATURE",
            json!({ "bed_temperature": 0 }),
        )
        .await);
    server.stop().await;
}

#[test]
fn a_manual_printer_heats_toward_a_commanded_target_as_time_advances() {
    let sim = Simulator::new(SimOptions::default());
    let uuid = sim.add_printer(PrinterSpec::named("A"));
    let run = |command: &str, kwargs: Value| {
        let body = json!({ "command": command, "kwargs": kwargs }).to_string();
        commands::execute(&mut sim.world(), &uuid, body.as_bytes()).expect(command);
    };
    let nozzle = || sim.world().printer(&uuid).map(|p| p.temps.nozzle).unwrap();
    let bed = || sim.world().printer(&uuid).map(|p| p.temps.bed).unwrap();

    // Scripted temperatures stay as scripted.
    sim.set_temps(&uuid, 200.0, 50.0);
    sim.step(Duration::from_secs(30));
    assert_eq!((nozzle(), bed()), (200.0, 50.0));

    sim.set_temps(&uuid, 24.0, 23.5);
    run(
        "SET_NOZZLE_TEMPERATURE",
        json!({ "nozzle_temperature": 215 }),
    );
    run("SET_HEATBED_TEMPERATURE", json!({ "bed_temperature": 60 }));
    let mut last = nozzle();
    for _ in 0..5 {
        sim.step(Duration::from_secs(1));
        let now = nozzle();
        assert!(now > last && now < 215.0, "{last} -> {now}");
        last = now;
    }
    for _ in 0..60 {
        sim.step(Duration::from_secs(1));
    }
    assert!((nozzle() - 215.0).abs() < 1.0, "{}", nozzle());
    assert!((bed() - 60.0).abs() < 1.0, "{}", bed());

    // Heaters off: back toward the room, more slowly.
    run("SET_NOZZLE_TEMPERATURE", json!({ "nozzle_temperature": 0 }));
    sim.step(Duration::from_secs(5));
    let cooling = nozzle();
    assert!(cooling < 215.0 && cooling > 150.0, "{cooling}");
}

#[tokio::test]
async fn dialog_action_needs_the_dialog_shown_and_one_of_its_buttons() {
    let server = start_empty().await;
    let sim = &server.sim;
    let uuid = sim.add_printer(PrinterSpec::named("A"));
    let press = |dialog_id: Value, button: &str| {
        let kwargs = json!({ "dialog_id": dialog_id, "button": button });
        server.command(&uuid, "DIALOG_ACTION", kwargs)
    };
    let refused = |(status, body): (StatusCode, Value)| {
        assert_eq!(
            (status, body["code"].clone(), body["reason"].clone()),
            (
                StatusCode::BAD_REQUEST,
                json!("BAD_REQUEST"),
                json!("INVALID_ARGUMENT")
            ),
            "{body}"
        );
    };

    refused(press(json!(1), "Ok").await);
    sim.start_job(&uuid, "cube.bgcode", 600, &[]);
    sim.set_dialog(
        &uuid,
        Some(json!({ "title": "Filament runout", "buttons": ["Continue", "Unload"] })),
    );
    let p = server.printer(&uuid).await;
    assert_eq!(p["printer_state"], "ATTENTION");
    let id = p["dialog_info"]["id"].clone();

    refused(press(json!(id.as_i64().unwrap() + 1), "Continue").await);
    refused(press(id.clone(), "Retry").await);
    let (status, _) = server
        .command(&uuid, "DIALOG_ACTION", json!({ "dialog_id": id }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "button is required");
    assert_eq!(server.printer(&uuid).await["printer_state"], "ATTENTION");
    assert!(sim.dialog_answers(&uuid).is_empty());

    let (status, body) = press(id.clone(), "continue").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let p = server.printer(&uuid).await;
    assert_eq!(p["printer_state"], "PRINTING", "back to where it was");
    assert_eq!(p["dialog_info"], Value::Null);
    let id = id.as_i64().unwrap();
    assert_eq!(sim.dialog_answers(&uuid), [(id, "Continue".to_string())]);
    let (status, answers) = server
        .get(&format!("/_sim/printers/{uuid}/dialog-answers"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answers, json!([{ "dialog_id": id, "button": "Continue" }]));
    // The dialog is gone: pressing again is refused.
    refused(press(json!(id), "Continue").await);
    server.stop().await;
}

#[tokio::test]
async fn move_e_is_refused_while_the_nozzle_is_cold() {
    let server = start_empty().await;
    let uuid = server.sim.add_printer(PrinterSpec::named("A"));
    let extrude = json!({ "length": 20, "feedrate": 200 });

    let (status, body) = server.command(&uuid, "MOVE_E", extrude.clone()).await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::CONFLICT, json!("CONFLICT"))
    );
    assert!(body["message"].as_str().unwrap().contains("170"), "{body}");
    server.sim.set_temps(&uuid, 169.0, 60.0);
    assert_eq!(
        server.command(&uuid, "MOVE_E", extrude.clone()).await.0,
        StatusCode::CONFLICT
    );
    server.sim.set_temps(&uuid, 215.0, 60.0);
    let (status, body) = server.command(&uuid, "MOVE_E", extrude).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = server
        .command(&uuid, "MOVE_E", json!({ "length": 101, "feedrate": 200 }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.stop().await;
}

#[tokio::test]
async fn only_a_core_one_shows_its_chamber_which_warms_while_printing() {
    let server = start_empty().await;
    let sim = &server.sim;
    let mk4 = sim.add_printer(PrinterSpec::named("MK4"));
    let core = sim.add_printer(PrinterSpec::core_one("Core"));

    let p = server.printer(&mk4).await;
    assert!(p["temp"].get("temp_chamber").is_none(), "{p}");
    assert!(p["temp"].get("target_chamber").is_none(), "{p}");
    assert!(p.get("chamber").is_none(), "{p}");

    let p = server.printer(&core).await;
    assert_eq!(p["temp"]["temp_chamber"], 24.0);
    assert_eq!(p["temp"]["target_chamber"], 0.0);
    assert_eq!(p["chamber"], json!({ "led_intensity": 100 }));
    let (status, body) = server
        .command(
            &core,
            "SET_CHAMBER_LED_INTENSITY",
            json!({ "chamber.led_intensity": 40 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(server.printer(&core).await["chamber"]["led_intensity"], 40);
    let (status, _) = server
        .command(
            &core,
            "SET_CHAMBER_LED_INTENSITY",
            json!({ "chamber.led_intensity": 101 }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    sim.start_job(&core, "vase.bgcode", 3600, &[]);
    for _ in 0..300 {
        sim.step(Duration::from_secs(1));
    }
    let p = server.printer(&core).await;
    let warm = p["temp"]["temp_chamber"].as_f64().unwrap();
    assert!(warm > 27.0 && warm < 35.0, "slowly: {warm}");
    assert_eq!(p["temp"]["target_chamber"], 35.0);
    assert!(p["chamber"].get("led_intensity").is_some());

    sim.finish_job(&core, "FIN_OK");
    for _ in 0..300 {
        sim.step(Duration::from_secs(1));
    }
    let p = server.printer(&core).await;
    let cooler = p["temp"]["temp_chamber"].as_f64().unwrap();
    assert!(cooler < warm && cooler > 24.0, "{warm} -> {cooler}");
    assert_eq!(p["temp"]["target_chamber"], 0.0);
    assert!(
        server.printer(&mk4).await["temp"]
            .get("temp_chamber")
            .is_none()
    );
    server.stop().await;
}
