//! `/_sim/`: scripting over HTTP.

use super::*;

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
