//! Codes and tokens over HTTP: single use, rotation, expiry, faults, concurrency, and the
//! account server's `/_sim/account/..` scripting.

use super::*;

#[tokio::test]
async fn codes_are_single_use_and_bound_to_the_verifier() {
    let server = start_empty().await;
    server.sim.add_user(EMAIL, PASSWORD, None);
    let browser = browser();
    let pkce = new_pkce();
    let first = log_in(&server, &browser, &pkce).await;
    // The session is logged in now: authorizing again gives a new code at once.
    let response = browser
        .get(server.url(&authorize_path(&pkce.challenge)))
        .send()
        .await
        .expect("authorize");
    let (second, _) = code_from(&response);
    assert_ne!(first, second);

    let (status, body) = exchange(&server, &first, &new_pkce().verifier).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(invalid_grant(&body), "{body}");
    // A failed exchange used the code up.
    let (status, body) = exchange(&server, &first, &pkce.verifier).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(invalid_grant(&body), "{body}");

    // A request missing a parameter is refused before the code is looked at.
    let (status, body) = token_request(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", &second),
            ("redirect_uri", REDIRECT_URI),
            ("client_id", CLIENT_ID),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request");
    let (status, body) = exchange(&server, &second, &pkce.verifier).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = exchange(&server, &second, &pkce.verifier).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(invalid_grant(&body), "{body}");
    let stats = server.sim.account_stats();
    assert_eq!((stats.codes_exchanged, stats.codes_refused), (1, 3));

    let (status, body) = token_request(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_id", "SomeoneElse"),
        ],
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::UNAUTHORIZED,
            json!({ "error": "invalid_client" })
        )
    );
    for form in [vec![], vec![("grant_type", "password")]] {
        let (status, body) = token_request(&server, &form).await;
        assert_eq!(
            (status, body),
            (
                StatusCode::BAD_REQUEST,
                json!({ "error": "unsupported_grant_type" })
            )
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn refresh_tokens_rotate() {
    let server = start_empty().await;
    server.sim.add_user(EMAIL, PASSWORD, None);
    let first = server.sim.issue_refresh_token(EMAIL);
    assert!(server.sim.is_refresh_token_valid(&first));

    let (status, body) = refresh(&server, &first).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = field(&body, "refresh_token");
    let access_token = field(&body, "access_token");
    assert_ne!(first, second);
    assert!(!server.sim.is_refresh_token_valid(&first));
    assert!(server.sim.is_refresh_token_valid(&second));
    assert_eq!(printers_with(&server, &access_token).await, StatusCode::OK);

    let refused = json!({ "error": "invalid_grant", "error_description": "Invalid refresh token" });
    assert_eq!(
        refresh(&server, &first).await,
        (StatusCode::BAD_REQUEST, refused.clone())
    );
    assert_eq!(
        refresh(&server, "never-issued").await,
        (StatusCode::BAD_REQUEST, refused.clone())
    );
    let (status, body) = refresh(&server, &second).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let third = field(&body, "refresh_token");

    // Revoking refresh tokens leaves issued access tokens working until they expire.
    server.sim.revoke_refresh_tokens();
    assert!(!server.sim.is_refresh_token_valid(&third));
    assert_eq!(
        refresh(&server, &third).await,
        (StatusCode::BAD_REQUEST, refused)
    );
    assert_eq!(printers_with(&server, &access_token).await, StatusCode::OK);
    let stats = server.sim.account_stats();
    assert_eq!((stats.refreshes_ok, stats.refreshes_refused), (2, 3));
    assert_eq!(stats.access_tokens_issued, 2);
    server.stop().await;
}

/// Polls `/app/printers` with the token until it is refused; panics after `within`.
async fn wait_until_refused(server: &Server, access_token: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let response = server
            .client
            .get(server.url("/app/printers"))
            .bearer_auth(access_token)
            .send()
            .await
            .expect("request");
        if response.status() == StatusCode::UNAUTHORIZED {
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            assert_eq!(response.text().await.expect("body"), UNAUTHORIZED);
            return;
        }
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            Instant::now() < deadline,
            "token still accepted after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn connect_refuses_issued_access_tokens_once_expired() {
    // With no Connect token configured, any other token passes; expired issued ones do not.
    let server = start_empty().await;
    server.sim.add_user(EMAIL, PASSWORD, None);
    server.sim.set_access_ttl(Duration::from_millis(2500));
    let (status, body) = refresh(&server, &server.sim.issue_refresh_token(EMAIL)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expires_in"], 3, "whole seconds, rounded up");
    let short_lived = field(&body, "access_token");
    assert_eq!(printers_with(&server, &short_lived).await, StatusCode::OK);
    wait_until_refused(&server, &short_lived, Duration::from_secs(10)).await;
    assert_eq!(printers_with(&server, TOKEN).await, StatusCode::OK);
    assert_eq!(server.sim.account_stats().access_tokens_rejected, 1);

    server.sim.set_access_ttl(DEFAULT_ACCESS_TTL);
    let (_, body) = refresh(&server, &field(&body, "refresh_token")).await;
    let long_lived = field(&body, "access_token");
    assert_eq!(printers_with(&server, &long_lived).await, StatusCode::OK);
    server.sim.expire_access_tokens();
    assert_eq!(
        printers_with(&server, &long_lived).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(server.sim.account_stats().access_tokens_rejected, 2);
    server.stop().await;
}

#[tokio::test]
async fn account_faults_hit_the_account_server_only() {
    let server = start_empty().await;
    server.sim.add_user(EMAIL, PASSWORD, None);
    let refresh_token = server.sim.issue_refresh_token(EMAIL);

    server.sim.set_account_fault(Some(Fault::Status(503)));
    let (status, body) = refresh(&server, &refresh_token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.as_str().is_some_and(|b| b.contains("503")), "{body}");
    let (status, _) = server.send(server.client.get(server.url("/login/"))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.get("/app/printers").await.0, StatusCode::OK);
    assert!(
        server.sim.is_refresh_token_valid(&refresh_token),
        "a faulted request has no effect"
    );

    server
        .sim
        .set_account_fault(Some(Fault::TooManyRequests { retry_after_s: 9 }));
    let response = server
        .client
        .post(server.url("/o/token/"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "9");

    server.sim.set_account_fault(Some(Fault::MalformedJson));
    let (status, body) = refresh(&server, &refresh_token).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_string(), "not JSON: {body}");

    // Connect's fault switch leaves the account server alone.
    server.sim.set_account_fault(None);
    server.sim.set_fault(Some(Fault::Status(500)));
    let (status, body) = refresh(&server, &refresh_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        server.get("/app/printers").await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let token_posts = server
        .sim
        .requests()
        .iter()
        .filter(|r| r.path == "/o/token/")
        .count();
    assert_eq!(token_posts, 4, "faulted requests are recorded too");
    server.stop().await;
}

#[tokio::test]
async fn overlapping_token_requests_are_counted() {
    let server = start_empty().await;
    server.sim.add_user(EMAIL, PASSWORD, None);
    server
        .sim
        .set_token_endpoint_delay(Duration::from_millis(500));
    let (status, _) = refresh(&server, &server.sim.issue_refresh_token(EMAIL)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.sim.account_stats().max_concurrent_token_requests, 1);

    let (a, b) = (
        server.sim.issue_refresh_token(EMAIL),
        server.sim.issue_refresh_token(EMAIL),
    );
    let started = Instant::now();
    let (first, second) = tokio::join!(refresh(&server, &a), refresh(&server, &b));
    assert_eq!((first.0, second.0), (StatusCode::OK, StatusCode::OK));
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(server.sim.account_stats().max_concurrent_token_requests, 2);
    server.stop().await;
}

#[tokio::test]
async fn admin_interface_scripts_the_account_server() {
    let server = start_empty().await;
    let admin = |method: reqwest::Method, path: &str, body: Value| {
        server
            .client
            .request(method, server.url(&format!("/_sim/account{path}")))
            .json(&body)
    };
    let post = |path: &str, body: Value| admin(reqwest::Method::POST, path, body);
    let (status, _) = server
        .send(post(
            "/users",
            json!({ "email": EMAIL, "password": PASSWORD }),
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server
        .send(post("/refresh-tokens", json!({ "email": EMAIL })))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refresh_token = field(&body, "refresh_token");
    let (status, _) = server
        .send(admin(
            reqwest::Method::PUT,
            "/access-ttl",
            json!({ "seconds": 3 }),
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = refresh(&server, &refresh_token).await;
    assert_eq!(
        (status, body["expires_in"].clone()),
        (StatusCode::OK, json!(3))
    );
    let access_token = field(&body, "access_token");
    server.send(post("/expire", Value::Null)).await;
    assert_eq!(
        printers_with(&server, &access_token).await,
        StatusCode::UNAUTHORIZED
    );

    server
        .send(post("/fault", json!({ "kind": "status", "status": 502 })))
        .await;
    assert_eq!(refresh(&server, "x").await.0, StatusCode::BAD_GATEWAY);
    server.send(post("/fault", Value::Null)).await;
    let (status, _) = server
        .send(admin(
            reqwest::Method::PUT,
            "/token-delay",
            json!({ "ms": 20 }),
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server
        .send(admin(
            reqwest::Method::PUT,
            "/token-delay",
            json!({ "ms": -1 }),
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    server.send(post("/revoke", Value::Null)).await;
    assert!(
        !server
            .sim
            .is_refresh_token_valid(&field(&body, "refresh_token"))
    );
    let (status, body) = server
        .send(post(
            "/refresh-tokens",
            json!({ "email": "nobody@example.com" }),
        ))
        .await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::NOT_FOUND, json!("NOT_FOUND_USER"))
    );
    let (status, stats) = server
        .send(server.client.get(server.url("/_sim/account/stats")))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats["refreshes_ok"], 1);
    assert_eq!(stats["access_tokens_issued"], 1);
    assert!(
        server
            .sim
            .requests()
            .iter()
            .all(|r| r.path == "/o/token/" || r.path == "/app/printers"),
        "admin requests are not recorded"
    );
    server.stop().await;
}
