//! Connect's `/app/` API as the gateway reads it: the list, authentication, 404s, snapshots,
//! queues and files.

use super::*;

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
