use super::*;

#[test]
fn retry_after_seconds_or_date() {
    assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
    assert_eq!(parse_retry_after("99999"), Some(Duration::from_secs(3600)));
    let soon = std::time::SystemTime::now() + Duration::from_secs(120);
    let wait = parse_retry_after(&httpdate::fmt_http_date(soon)).unwrap();
    assert!((118..=120).contains(&wait.as_secs()), "{wait:?}");
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
        Some(Duration::ZERO)
    );
    assert_eq!(parse_retry_after("soon"), None);
}
