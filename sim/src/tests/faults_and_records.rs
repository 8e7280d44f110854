//! Faults and the record of requests.

use super::*;

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
