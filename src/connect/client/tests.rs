use reqwest::Url;

use super::*;

#[test]
fn paths_that_lead_off_connect_are_refused_before_any_request() {
    let base = Url::parse("https://connect.example/").unwrap();
    for hostile in [
        "/\\evil.example/x",
        "\\\\evil.example/x",
        "/\t/evil.example/x",
        "/\n/evil.example/x",
        "\t//evil.example/x",
        "//evil.example/x",
        "https://evil.example/x",
        "http://connect.example/x",
        "https://connect.example:8443/x",
        "https://connect.example@evil.example/x",
        "data:text/plain,x",
    ] {
        let built = connect_url(&base, hostile, &[]);
        assert!(
            matches!(built, Err(ConnectError::OffConnect(_))),
            "{hostile:?} -> {built:?}"
        );
    }
}

#[test]
fn a_path_on_connect_keeps_its_query_as_written() {
    let base = Url::parse("http://127.0.0.1:8080/").unwrap();
    let url = |path, query: &[(&str, String)]| {
        connect_url(&base, path, query)
            .unwrap()
            .as_str()
            .to_string()
    };
    assert_eq!(
        url("/app/teams/1/files/ab/preview?sig=a%2Fb+c&x=1", &[]),
        "http://127.0.0.1:8080/app/teams/1/files/ab/preview?sig=a%2Fb+c&x=1"
    );
    assert_eq!(
        url(
            "/app/printers/u/events",
            &[("limit", "100".into()), ("from", "5".into())]
        ),
        "http://127.0.0.1:8080/app/printers/u/events?limit=100&from=5"
    );
    assert_eq!(
        url("http://127.0.0.1:8080/app/x.png", &[]),
        "http://127.0.0.1:8080/app/x.png",
        "an absolute URL on Connect is Connect"
    );
}
