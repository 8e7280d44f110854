use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;

fn stored(refresh: &str, configured: Option<&str>) -> StoredAuth {
    StoredAuth {
        refresh_token: refresh.into(),
        access_token: None,
        access_expires_at: None,
        obtained_at: 1,
        configured_sha256: configured.map(sha256_hex),
        source: "refresh".into(),
        account: None,
    }
}

#[test]
fn stored_token_wins_unless_the_configured_one_is_new() {
    assert_eq!(choose_refresh_token(None, None), None);
    assert_eq!(
        choose_refresh_token(Some("c"), None),
        Some(("c".into(), false))
    );
    let s = stored("s2", Some("c"));
    assert_eq!(
        choose_refresh_token(None, Some(&s)),
        Some(("s2".into(), true))
    );
    // The configured token is the one the stored file superseded: stored wins.
    assert_eq!(
        choose_refresh_token(Some("c"), Some(&s)),
        Some(("s2".into(), true))
    );
    // A token the user pasted since: it wins.
    assert_eq!(
        choose_refresh_token(Some("new"), Some(&s)),
        Some(("new".into(), false))
    );
    assert_eq!(
        choose_refresh_token(Some("s2"), Some(&s)),
        Some(("s2".into(), true))
    );
}

#[test]
fn pkce_challenge_matches_rfc7636_example() {
    // RFC 7636 appendix B.
    assert_eq!(
        pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
    let (v, c) = pkce_pair();
    assert!((43..=128).contains(&v.len()));
    assert_eq!(pkce_challenge(&v), c);
}

#[test]
fn jwt_expiry_reads_exp_and_tolerates_garbage() {
    let payload = URL_SAFE_NO_PAD.encode(br#"{"exp":1700000000,"type":"access"}"#);
    assert_eq!(jwt_expiry(&format!("h.{payload}.s")), Some(1_700_000_000));
    assert_eq!(jwt_expiry("not-a-jwt"), None);
    assert_eq!(jwt_expiry("a.!!!.b"), None);
    assert_eq!(jwt_expiry(""), None);
}

#[test]
fn store_round_trip_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let store = TokenStore::new(dir.path());
    assert!(store.load().is_none());
    store.save(&stored("r1", None)).unwrap();
    assert_eq!(store.load().unwrap().refresh_token, "r1");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::write(store.path(), b"{oops").unwrap();
    assert!(store.load().is_none());
}
