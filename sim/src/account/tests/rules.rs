//! The account server's rules with a fake clock, without HTTP.

use super::*;

const T0: i64 = 1_750_000_000_000_000;

fn logged_in_code(accounts: &mut Accounts, challenge: &str, now_us: i64) -> String {
    accounts.add_user(EMAIL, PASSWORD, None);
    let PasswordStep::LoggedIn(session) = accounts.check_password(EMAIL, PASSWORD) else {
        panic!("no 2FA configured");
    };
    let request = AuthorizeRequest {
        client_id: CLIENT_ID.to_string(),
        redirect_uri: REDIRECT_URI.to_string(),
        challenge: challenge.to_string(),
        state: None,
    };
    accounts
        .authorize(Some(&session), &request, now_us)
        .expect("logged in")
}

fn code_exchange(code: &str, verifier: &str) -> TokenRequest {
    TokenRequest::AuthorizationCode {
        code: code.to_string(),
        redirect_uri: REDIRECT_URI.to_string(),
        code_verifier: verifier.to_string(),
    }
}

#[test]
fn s256_matches_the_rfc_7636_example() {
    assert_eq!(
        s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
}

#[test]
fn codes_expire_after_a_minute() {
    let pkce = new_pkce();
    let mut accounts = Accounts::default();
    let code = logged_in_code(&mut accounts, &pkce.challenge, T0);
    let late = T0 + micros(CODE_TTL);
    assert_eq!(
        accounts.exchange(code_exchange(&code, &pkce.verifier), late),
        Err(TokenError::InvalidGrant("Authorization code expired"))
    );
    let code = logged_in_code(&mut accounts, &pkce.challenge, T0);
    assert!(
        accounts
            .exchange(code_exchange(&code, &pkce.verifier), late - 1)
            .is_ok()
    );
}

#[test]
fn refresh_tokens_expire_after_thirty_days_and_access_tokens_after_their_ttl() {
    let mut accounts = Accounts::default();
    accounts.add_user(EMAIL, PASSWORD, None);
    accounts.access_ttl = Duration::from_millis(2500);
    let token = accounts.issue_refresh_token(EMAIL, T0).expect("known user");
    let end = T0 + micros(REFRESH_TTL);
    assert!(accounts.is_refresh_token_valid(&token, end - 1));
    assert!(!accounts.is_refresh_token_valid(&token, end));

    let grant = accounts
        .exchange(
            TokenRequest::RefreshToken {
                refresh_token: token,
            },
            T0,
        )
        .expect("refreshed");
    assert_eq!(grant.expires_in, 3);
    let claims = decode_part(grant.access_token.split('.').nth(1).expect("claims"));
    assert_eq!(claims["exp"], (T0 + 2_500_000) / 1_000_000, "rounded down");
    let offered = [grant.access_token];
    assert!(accounts.admits(&offered, Some("other"), T0 + 2_499_999));
    assert!(!accounts.admits(&offered, None, T0 + 2_500_000));
    assert_eq!(accounts.stats.access_tokens_rejected, 1);
}

#[test]
fn token_requests_are_checked_in_order_grant_client_parameters() {
    let form = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        TokenRequest::parse(&form(&[("client_id", "nope")])),
        Err(TokenError::UnsupportedGrantType)
    );
    assert_eq!(
        TokenRequest::parse(&form(&[("grant_type", "refresh_token")])),
        Err(TokenError::InvalidClient)
    );
    assert_eq!(
        TokenRequest::parse(&form(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("refresh_token", ""),
        ])),
        Err(TokenError::InvalidRequest(
            "Missing refresh token parameter."
        ))
    );
    assert_eq!(
        TokenRequest::parse(&form(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("refresh_token", "abc"),
        ])),
        Ok(TokenRequest::RefreshToken {
            refresh_token: "abc".to_string()
        })
    );
}
