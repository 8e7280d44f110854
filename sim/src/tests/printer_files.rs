//! A printer's files, START_PRINT of them, and their previews.

use super::*;

/// The printer's files as `/files` lists them.
async fn files(server: &Server, uuid: &str) -> Value {
    let (status, body) = server.get(&format!("/app/printers/{uuid}/files")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Status, content type and bytes of a GET with the bearer token.
async fn fetch(server: &Server, path: &str) -> (StatusCode, String, Vec<u8>) {
    let response = server
        .client
        .get(server.url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request sent");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = response.bytes().await.expect("body read").to_vec();
    (status, content_type, bytes)
}

#[tokio::test]
async fn each_printer_has_files_and_start_print_takes_only_those() {
    let server = start_empty().await;
    let sim = &server.sim;
    let uuid = sim.add_printer(PrinterSpec::named("A"));

    let listed = files(&server, &uuid).await;
    assert_eq!(
        listed["pager"],
        json!({ "limit": 20, "offset": 0, "total": 4 })
    );
    let list = listed["files"].as_array().unwrap();
    let field = |key: &str| -> std::collections::BTreeSet<String> {
        list.iter()
            .map(|f| f[key].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        (field("name").len(), field("path").len()),
        (4, 4),
        "{listed}"
    );
    assert!(
        field("path")
            .iter()
            .all(|p| p.starts_with("/usb/") && p.ends_with(".bgcode"))
    );
    assert_eq!(files(&server, &uuid).await["files"][1], list[1], "stable");

    let (status, body) = server
        .command(
            &uuid,
            "START_PRINT",
            json!({ "path": "/usb/nowhere.bgcode" }),
        )
        .await;
    assert_eq!(
        (status, body["reason"].clone()),
        (StatusCode::BAD_REQUEST, json!("INVALID_ARGUMENT")),
        "{body}"
    );
    assert_eq!(server.printer(&uuid).await["printer_state"], "IDLE");

    let chosen = list[2].clone();
    let (status, body) = server
        .command(&uuid, "START_PRINT", json!({ "path": chosen["path"] }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let p = server.printer(&uuid).await;
    assert_eq!(p["printer_state"], "PRINTING");
    assert_eq!(p["job_info"]["path"], chosen["path"]);
    assert_eq!(p["job_info"]["display_name"], chosen["name"]);
    assert_eq!(p["job_info"]["preview_url"], chosen["preview_url"]);
    server.sim.finish_job(&uuid, "FIN_OK");

    // Tests change the list: through the API and over HTTP.
    assert_eq!(
        sim.add_file(&uuid, "new-part.bgcode"),
        "/usb/new-part.bgcode"
    );
    let (status, body) = server
        .post(
            &format!("/_sim/printers/{uuid}/files"),
            json!({ "path": "/usb/other.bgcode" }),
        )
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "path": "/usb/other.bgcode" }))
    );
    assert_eq!(files(&server, &uuid).await["pager"]["total"], 6);
    let (status, _) = server
        .command(
            &uuid,
            "START_PRINT",
            json!({ "path": "/usb/new-part.bgcode" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    server.sim.finish_job(&uuid, "FIN_OK");

    assert!(sim.remove_file(&uuid, "/usb/new-part.bgcode"));
    assert!(!sim.remove_file(&uuid, "/usb/new-part.bgcode"));
    let (status, _) = server
        .send(server.client.delete(server.url(&format!(
            "/_sim/printers/{uuid}/files?path=/usb/other.bgcode"
        ))))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server
        .send(
            server
                .client
                .delete(server.url(&format!("/_sim/printers/{uuid}/files")))
                .json(&json!({ "path": "/usb/other.bgcode" })),
        )
        .await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::NOT_FOUND, json!("NOT_FOUND_FILE"))
    );
    assert_eq!(files(&server, &uuid).await["pager"]["total"], 4);
    let (status, _) = server
        .command(
            &uuid,
            "START_PRINT",
            json!({ "path": "/usb/new-part.bgcode" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "deleted");
    server.stop().await;
}

#[tokio::test]
async fn previews_are_served_per_file_behind_auth_and_faults() {
    let server = start_empty().await;
    let sim = &server.sim;
    let uuid = sim.add_printer(PrinterSpec::named("A"));
    let job = sim.start_job(&uuid, "cube.bgcode", 600, &["a"]);

    let p = server.printer(&uuid).await;
    let url = p["job_info"]["preview_url"].as_str().unwrap().to_string();
    let hash = url
        .strip_prefix("/app/teams/1/files/")
        .and_then(|rest| rest.strip_suffix("/preview"))
        .unwrap_or_else(|| panic!("{url}"));
    assert!(
        hash.len() >= 16 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{hash}"
    );
    let (_, detail) = server
        .get(&format!("/app/printers/{uuid}/jobs/{job}"))
        .await;
    assert_eq!(detail["preview_url"], json!(url));
    assert_eq!(detail["file"]["preview_url"], json!(url));
    let (_, jobs) = server.get(&format!("/app/printers/{uuid}/jobs")).await;
    assert_eq!(jobs["jobs"][0]["files"][0]["preview_url"], json!(url));

    let (status, content_type, bytes) = fetch(&server, &url).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "image/jpeg");
    assert!(bytes.starts_with(&[0xff, 0xd8]) && bytes.ends_with(&[0xff, 0xd9]));
    // 320x240 in the frame header.
    let sof = bytes.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
    assert_eq!(&bytes[sof + 5..sof + 9], &[0, 240, 1, 64]);
    assert_eq!(
        fetch(&server, &url).await.2,
        bytes,
        "the same file, the same picture"
    );
    let other = files(&server, &uuid).await["files"][0]["preview_url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(other, url);
    assert_ne!(fetch(&server, &other).await.2, bytes);

    // The job keeps its preview after the file is deleted.
    assert!(sim.remove_file(&uuid, "/usb/cube.bgcode"));
    assert_eq!(fetch(&server, &url).await.0, StatusCode::OK);

    for unknown in [
        "/app/teams/1/files/0123456789abcdef/preview".to_string(),
        url.replace("/teams/1/", "/teams/2/"),
    ] {
        let (status, body) = server.get(&unknown).await;
        assert_eq!(
            (status, body["code"].clone()),
            (StatusCode::NOT_FOUND, json!("NOT_FOUND_FILE")),
            "{unknown}"
        );
    }
    let (status, _) = server.send(server.client.get(server.url(&url))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    sim.add_fault(
        FaultRule::new(Fault::Status(503))
            .on_paths_containing("/preview")
            .times(1),
    );
    assert_eq!(
        fetch(&server, &url).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(fetch(&server, &url).await.0, StatusCode::OK);

    let fetched = sim
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == url)
        .count();
    assert_eq!(fetched, 6, "every preview request is recorded");
    server.stop().await;
}
