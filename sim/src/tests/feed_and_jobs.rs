//! The feed (newest first, paged, through clock jumps) and the record of jobs.

use super::*;

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

#[tokio::test]
async fn statistics_count_the_jobs_that_ended_in_the_range_by_outcome_material_and_time() {
    let server = start_empty().await;
    let sim = &server.sim;
    let uuid = sim.add_printer(PrinterSpec::named("A"));
    sim.start_job(&uuid, "cube.bgcode", 60, &[]);
    sim.set_progress(&uuid, 50.0);
    sim.finish_job(&uuid, "FIN_OK");
    sim.start_job(&uuid, "vase.bgcode", 60, &[]);
    sim.finish_job(&uuid, "FIN_ERROR");
    let (_, jobs) = server.get(&format!("/app/printers/{uuid}/jobs")).await;
    let jobs = jobs["jobs"].as_array().unwrap().clone();
    let grams: f64 = jobs
        .iter()
        .filter_map(|j| j["data"]["weight"].as_f64())
        .sum();
    let seconds: f64 = jobs
        .iter()
        .filter_map(|j| j["time_printing"].as_f64())
        .sum();
    let material = jobs[0]["data"]["material"].as_str().unwrap().to_string();

    let base = format!("/app/stats/printers/{uuid}");
    let (status, success) = server.get(&format!("{base}/jobs_success")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(success["uuid"], uuid.as_str());
    assert_eq!(success["name"], "A");
    let days = success["xAxis"].as_array().unwrap().len();
    assert!(days >= 30, "{days} days");
    let total = |name: &str| {
        let series = success["series"].as_array().unwrap();
        let one = series.iter().find(|s| s["name"] == name).unwrap();
        assert_eq!(one["data"].as_array().unwrap().len(), days);
        one["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_u64)
            .sum::<u64>()
    };
    assert_eq!(
        (total("FIN_OK"), total("FIN_ERROR"), total("FIN_STOPPED")),
        (1, 1, 0)
    );

    let (_, material_used) = server.get(&format!("{base}/material_quantity")).await;
    let data = material_used["data"].as_array().unwrap();
    let used: i64 = data.iter().filter_map(|d| d["value"].as_i64()).sum();
    assert_eq!(used, grams.round() as i64);
    assert!(
        data.iter().any(|d| d["name"] == material.as_str()),
        "{data:?}"
    );

    let (_, printing) = server.get(&format!("{base}/printing_not_printing")).await;
    assert_eq!(printing["data"][0]["name"], "printing");
    assert_eq!(printing["data"][0]["value"], seconds.round() as i64);

    // A range before the jobs holds none of them; a bad range is refused.
    let (_, before) = server
        .get(&format!("{base}/jobs_success?from=1000&to=2000"))
        .await;
    assert!(
        before["series"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["data"].as_array().unwrap().iter().all(|n| n == 0))
    );
    let (status, _) = server.get(&format!("{base}/jobs_success?from=soon")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let range = format!("{base}/jobs_success?from=-9223372036854775808&to=9223372036854775807");
    let (status, _) = server.get(&range).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
