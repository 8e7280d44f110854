//! Logging in over HTTP: PKCE, the second factor, wrong passwords, CSRF, bad authorize
//! requests.

use super::*;

#[tokio::test]
async fn pkce_login_gives_tokens_that_connect_accepts() {
    let server = start(SimOptions {
        token: Some("connect-only".into()),
        scenario: Scenario::Empty,
    })
    .await;
    server.sim.add_user(EMAIL, PASSWORD, None);
    let browser = browser();
    let pkce = new_pkce();

    let page = open_login(&server, &browser, &pkce).await;
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    let language_form = page
        .find("action=\"/i18n/setlang/\"")
        .expect("language form");
    let password = page.find("type=\"password\"").expect("password field");
    assert!(language_form < password, "the language switch comes first");
    assert!(
        page.contains("<input type=\"email\" name=\"email\""),
        "{page}"
    );

    let code = log_in(&server, &browser, &pkce).await;
    assert!(code.len() >= 30, "{code}");
    let (status, body) = exchange(&server, &code, &pkce.verifier).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "basic_info");
    assert_eq!(body["expires_in"], 7200);
    let refresh_token = field(&body, "refresh_token");
    assert!(refresh_token.len() >= 30, "{refresh_token}");
    assert!(
        refresh_token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{refresh_token}"
    );

    let access_token = field(&body, "access_token");
    let parts: Vec<&str> = access_token.split('.').collect();
    assert_eq!(parts.len(), 3, "{access_token}");
    assert_eq!(
        decode_part(parts[0]),
        json!({ "alg": "RS256", "typ": "JWT" })
    );
    let claims = decode_part(parts[1]);
    assert_eq!(
        (claims["app"].clone(), claims["type"].clone()),
        (json!("connect"), json!("access"))
    );
    assert!(
        claims["sub"].is_string() && claims["jti"].is_string(),
        "{claims}"
    );
    assert!(claims["connect_id"].is_u64(), "{claims}");
    let lifetime = claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0);
    assert!((7199..=7200).contains(&lifetime), "{claims}");
    assert_eq!(
        URL_SAFE_NO_PAD.decode(parts[2]).map(|s| s.len()).ok(),
        Some(32)
    );

    // Issued tokens pass whatever Connect's own token is.
    assert_eq!(printers_with(&server, &access_token).await, StatusCode::OK);
    assert_eq!(
        printers_with(&server, "made-up").await,
        StatusCode::UNAUTHORIZED
    );
    let stats = server.sim.account_stats();
    assert_eq!(
        (
            stats.logins_ok,
            stats.codes_exchanged,
            stats.access_tokens_issued
        ),
        (1, 1, 1)
    );
    assert!(server.sim.is_refresh_token_valid(&refresh_token));
    let token_posts = server
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/o/token/")
        .count();
    assert_eq!(token_posts, 1, "account requests are recorded");
    server.stop().await;
}

#[tokio::test]
async fn two_factor_login_refuses_a_wrong_code_then_accepts_the_right_one() {
    let server = start_empty().await;
    server.sim.add_user(EMAIL, PASSWORD, Some("123456"));
    let browser = browser();
    let pkce = new_pkce();
    let page = open_login(&server, &browser, &pkce).await;
    let response = submit(
        &server,
        &browser,
        &page,
        "type=\"password\"",
        &[("email", EMAIL), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.url().path(), "/login/2fa/");
    let page = response.text().await.expect("2FA page");
    assert!(
        page.contains(
            r#"<input type="text" name="token" inputmode="numeric" autocomplete="one-time-code""#
        ),
        "{page}"
    );

    let response = submit(
        &server,
        &browser,
        &page,
        "name=\"token\"",
        &[("token", "654321")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let again = response.text().await.expect("2FA page again");
    assert!(
        again.contains(r#"<p class="errorlist">Invalid token.</p>"#),
        "{again}"
    );
    assert_eq!(server.sim.account_stats().totp_failed, 1);
    // Still waiting for the code: authorizing now sends the browser to log in.
    let response = browser
        .get(server.url(&authorize_path(&pkce.challenge)))
        .send()
        .await
        .expect("authorize");
    assert_eq!(response.url().path(), "/login/");

    let response = submit(
        &server,
        &browser,
        &again,
        "name=\"token\"",
        &[("token", "123 456")],
    )
    .await;
    let (code, _) = code_from(&response);
    let (status, body) = exchange(&server, &code, &pkce.verifier).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Without a session waiting for a code, the 2FA page sends the browser to log in.
    let response = raw_client()
        .get(server.url("/login/2fa/?next=/o/authorize/%3Fx%3D1"))
        .send()
        .await
        .expect("2FA page");
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(
        response.headers()["location"],
        "/login/?next=/o/authorize/%3Fx%3D1"
    );
    server.stop().await;
}

#[tokio::test]
async fn wrong_password_shows_the_form_again_and_is_counted() {
    let server = start_empty().await;
    server.sim.add_user(EMAIL, PASSWORD, None);
    let browser = browser();
    let pkce = new_pkce();
    let page = open_login(&server, &browser, &pkce).await;
    for (email, password) in [(EMAIL, "wrong"), ("nobody@example.com", PASSWORD)] {
        let response = submit(
            &server,
            &browser,
            &page,
            "type=\"password\"",
            &[("email", email), ("password", password)],
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.url().path(), "/login/");
        assert!(response.headers().get("set-cookie").is_none());
        let again = response.text().await.expect("login page again");
        assert!(
            again
                .contains(r#"<p class="errorlist">Please enter a correct email and password.</p>"#),
            "{again}"
        );
        assert!(again.contains(&format!("value=\"{email}\"")), "{again}");
        form_with(&again, "type=\"password\"");
    }
    let stats = server.sim.account_stats();
    assert_eq!((stats.logins_failed, stats.logins_ok), (2, 0));
    // Email case does not matter; the password's does.
    let code = {
        let response = submit(
            &server,
            &browser,
            &page,
            "type=\"password\"",
            &[("email", "Maker@Example.COM"), ("password", PASSWORD)],
        )
        .await;
        code_from(&response).0
    };
    assert!(!code.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn login_needs_the_csrf_token_and_sets_an_http_only_session() {
    let server = start_empty().await;
    server.sim.add_user(EMAIL, PASSWORD, None);
    let client = raw_client();
    let next = "/o/authorize/?client_id=x&state=\"y\"";
    let login_url = server.url(&format!("/login/?next={}", pages::url_encode(next)));
    let response = client.get(&login_url).send().await.expect("login page");
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_string();
    let page = response.text().await.expect("page");
    let (action, csrf) = form_with(&page, "type=\"password\"");
    assert_eq!(action, format!("/login/?next={}", pages::url_encode(next)));
    assert!(
        set_cookie.starts_with(&format!("csrftoken={csrf};")),
        "{set_cookie}"
    );
    let cookie = format!("csrftoken={csrf}");

    let post = |fields: Vec<(&'static str, String)>, cookie: Option<&str>| {
        let mut request = client.post(&login_url).form(&fields);
        if let Some(cookie) = cookie {
            request = request.header("Cookie", cookie.to_string());
        }
        request.send()
    };
    let credentials = || {
        vec![
            ("email", EMAIL.to_string()),
            ("password", PASSWORD.to_string()),
        ]
    };
    let mut wrong_token = credentials();
    wrong_token.push(("csrfmiddlewaretoken", "x".repeat(32)));
    let mut right_token = credentials();
    right_token.push(("csrfmiddlewaretoken", csrf.clone()));
    for (fields, cookie) in [
        (credentials(), Some(cookie.as_str())),
        (wrong_token, Some(cookie.as_str())),
        (right_token.clone(), None),
    ] {
        let response = post(fields, cookie).await.expect("login post");
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let page = response.text().await.expect("403 page");
        assert!(page.contains("CSRF verification failed"), "{page}");
    }
    assert_eq!(server.sim.account_stats().logins_failed, 0);

    let response = post(right_token, Some(&cookie)).await.expect("login post");
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()["location"], next.replace('"', "%22"));
    let cookies: Vec<&str> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("sessionid="))
        .expect("session cookie");
    assert!(
        session.contains("; HttpOnly") && session.contains("; Path=/"),
        "{session}"
    );
    assert!(
        cookies.iter().any(|c| c.starts_with("csrftoken=")),
        "the CSRF token rotates at login: {cookies:?}"
    );

    // `next` may only lead back into the authorization flow.
    let response = client
        .post(server.url("/login/?next=https://evil.example/"))
        .header("Cookie", cookie.clone())
        .form(&[
            ("csrfmiddlewaretoken", csrf.as_str()),
            ("email", EMAIL),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .expect("login post");
    assert_eq!(response.headers()["location"], "/");
    server.stop().await;
}

#[tokio::test]
async fn authorize_refuses_bad_requests_with_an_html_page() {
    let server = start_empty().await;
    let challenge = new_pkce().challenge;
    let good = authorize_path(&challenge);
    for bad in [
        good.replace(CLIENT_ID, "SomeoneElse"),
        good.replace("response_type=code", "response_type=token"),
        good.replace(
            &pages::url_encode(REDIRECT_URI),
            "https%3A//evil.example/cb",
        ),
        good.replace("code_challenge_method=S256", "code_challenge_method=plain"),
        good.replace(&challenge, "short"),
        "/o/authorize/".to_string(),
    ] {
        let response = raw_client()
            .get(server.url(&bad))
            .send()
            .await
            .expect("authorize");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .is_ok_and(|c| c.starts_with("text/html")),
            "{bad}"
        );
    }
    // Without a session: to the login page, carrying the whole request in `next`.
    let response = raw_client()
        .get(server.url(&good))
        .send()
        .await
        .expect("authorize");
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(
        response.headers()["location"],
        format!("/login/?next={}", pages::url_encode(&good)).as_str()
    );
    server.stop().await;
}
