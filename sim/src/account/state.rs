//! The account server's state and every transition: users, browser sessions, authorization
//! codes, rotating refresh tokens and the access tokens Connect accepts. Times are passed in
//! (Unix microseconds) so the rules can be tested without waiting.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::Serialize;
use serde_json::json;

use super::oauth::{
    AuthorizeRequest, PasswordStep, TokenError, TokenGrant, TokenRequest, TotpStep, s256_challenge,
};
use super::{CLIENT_ID, CODE_TTL, DEFAULT_ACCESS_TTL, REFRESH_TTL, STATIC_TOKEN_ACCOUNT_ID};
use crate::Fault;

const FIRST_USER_ID: u64 = 2_084_417;
const FIRST_CONNECT_ID: u64 = 140_321;

/// What the account server has seen; read it with [`Simulator::account_stats`](crate::Simulator::account_stats).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AccountStats {
    /// Refresh tokens exchanged for new tokens.
    pub refreshes_ok: u64,
    /// Refresh attempts with a reused, revoked, expired or unknown refresh token.
    pub refreshes_refused: u64,
    /// Authorization codes exchanged for tokens.
    pub codes_exchanged: u64,
    /// Authorization code exchanges refused (unknown, reused, expired, wrong redirect URI or
    /// PKCE verifier).
    pub codes_refused: u64,
    /// Password steps passed.
    pub logins_ok: u64,
    /// Password steps refused (unknown email or wrong password).
    pub logins_failed: u64,
    /// Wrong codes entered at the 2FA step.
    pub totp_failed: u64,
    /// The most `/o/token/` requests ever in progress at once.
    pub max_concurrent_token_requests: u64,
    /// Access tokens handed out by `/o/token/`.
    pub access_tokens_issued: u64,
    /// `/app` requests refused because the access token they offered was issued here but has
    /// expired.
    pub access_tokens_rejected: u64,
}

#[derive(Debug, Clone)]
struct User {
    id: u64,
    connect_id: u64,
    email: String,
    password: String,
    totp: Option<String>,
}

/// A browser session (`sessionid` cookie).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Session {
    /// The password was right; the 2FA code is still missing.
    AwaitingTotp {
        user_id: u64,
    },
    LoggedIn {
        user_id: u64,
    },
}

#[derive(Debug, Clone)]
struct AuthCode {
    user_id: u64,
    client_id: String,
    redirect_uri: String,
    challenge: String,
    expires_us: i64,
}

#[derive(Debug, Clone)]
struct RefreshToken {
    user_id: u64,
    expires_us: i64,
    revoked: bool,
}

/// What the account server says about a token offered to Connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AccessTokenStatus {
    /// Never issued here: Connect's own token rule applies.
    NotIssued,
    Valid,
    Expired,
}

/// `len` random characters from `[A-Za-z0-9]`: url-safe without encoding.
pub(crate) fn random_token(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

pub(super) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The account server's state.
#[derive(Debug)]
pub(crate) struct Accounts {
    users: Vec<User>,
    sessions: HashMap<String, Session>,
    codes: HashMap<String, AuthCode>,
    /// Revoked ones are kept, so that a reuse is told apart from garbage only in the stats.
    refresh_tokens: HashMap<String, RefreshToken>,
    /// Expiry (Unix µs) of every access token issued; never pruned, or an expired token
    /// would become "never issued" and pass when Connect accepts any token.
    /// and whose it is (the user id).
    access_tokens: HashMap<String, (i64, u64)>,
    pub access_ttl: Duration,
    /// Applies to `/o/*` and `/login/*`.
    pub fault: Option<Fault>,
    /// How long `/o/token/` waits before it handles a request.
    pub token_delay: Duration,
    token_requests_in_flight: u64,
    pub stats: AccountStats,
    next_user: u64,
}

impl Default for Accounts {
    fn default() -> Self {
        Accounts {
            users: Vec::new(),
            sessions: HashMap::new(),
            codes: HashMap::new(),
            refresh_tokens: HashMap::new(),
            access_tokens: HashMap::new(),
            access_ttl: DEFAULT_ACCESS_TTL,
            fault: None,
            token_delay: Duration::ZERO,
            token_requests_in_flight: 0,
            stats: AccountStats::default(),
            next_user: 0,
        }
    }
}

impl Accounts {
    /// Adds a user; an email already known (case-insensitively) gets the new password and
    /// TOTP code and keeps its id and tokens.
    pub fn add_user(&mut self, email: &str, password: &str, totp: Option<&str>) {
        let totp = totp.map(str::to_string);
        if let Some(user) = self.user_by_email_mut(email) {
            user.password = password.to_string();
            user.totp = totp;
            return;
        }
        let n = self.next_user;
        self.next_user += 1;
        self.users.push(User {
            id: FIRST_USER_ID + n,
            connect_id: FIRST_CONNECT_ID + n,
            email: email.trim().to_string(),
            password: password.to_string(),
            totp,
        });
    }

    fn user_by_email_mut(&mut self, email: &str) -> Option<&mut User> {
        let email = email.trim();
        self.users
            .iter_mut()
            .find(|u| u.email.eq_ignore_ascii_case(email))
    }

    fn user(&self, id: u64) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    pub fn session(&self, key: &str) -> Option<Session> {
        self.sessions.get(key).copied()
    }

    fn new_session(&mut self, session: Session) -> String {
        // Django's session keys: 32 characters of [a-z0-9].
        let key = random_token(32).to_ascii_lowercase();
        self.sessions.insert(key.clone(), session);
        key
    }

    /// The password step. A right password starts a new session.
    pub fn check_password(&mut self, email: &str, password: &str) -> PasswordStep {
        let user = self
            .user_by_email_mut(email)
            .filter(|u| u.password == password)
            .map(|u| (u.id, u.totp.is_some()));
        match user {
            None => {
                self.stats.logins_failed += 1;
                PasswordStep::Refused
            }
            Some((user_id, false)) => {
                self.stats.logins_ok += 1;
                PasswordStep::LoggedIn(self.new_session(Session::LoggedIn { user_id }))
            }
            Some((user_id, true)) => {
                self.stats.logins_ok += 1;
                PasswordStep::NeedsTotp(self.new_session(Session::AwaitingTotp { user_id }))
            }
        }
    }

    /// The 2FA step: the session must be waiting for a code. Spaces in `code` are ignored.
    pub fn check_totp(&mut self, session_key: &str, code: &str) -> TotpStep {
        let Some(Session::AwaitingTotp { user_id }) = self.session(session_key) else {
            return TotpStep::NoPendingSession;
        };
        let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        let expected = self.user(user_id).and_then(|u| u.totp.as_deref());
        if code.is_empty() || expected != Some(code.as_str()) {
            self.stats.totp_failed += 1;
            return TotpStep::Refused;
        }
        self.sessions
            .insert(session_key.to_string(), Session::LoggedIn { user_id });
        TotpStep::LoggedIn
    }

    /// A new authorization code when `session_key` is logged in, else `None`.
    pub fn authorize(
        &mut self,
        session_key: Option<&str>,
        request: &AuthorizeRequest,
        now_us: i64,
    ) -> Option<String> {
        let Some(Session::LoggedIn { user_id }) = session_key.and_then(|k| self.session(k)) else {
            return None;
        };
        // oauthlib's codes: 30 characters of [A-Za-z0-9].
        let code = random_token(30);
        self.codes.insert(
            code.clone(),
            AuthCode {
                user_id,
                client_id: request.client_id.clone(),
                redirect_uri: request.redirect_uri.clone(),
                challenge: request.challenge.clone(),
                expires_us: now_us.saturating_add(micros(CODE_TTL)),
            },
        );
        Some(code)
    }

    pub fn exchange(
        &mut self,
        request: TokenRequest,
        now_us: i64,
    ) -> Result<TokenGrant, TokenError> {
        match request {
            TokenRequest::AuthorizationCode {
                code,
                redirect_uri,
                code_verifier,
            } => {
                let result = self.redeem_code(&code, &redirect_uri, &code_verifier, now_us);
                match result {
                    Ok(user_id) => {
                        self.stats.codes_exchanged += 1;
                        Ok(self.issue_tokens(user_id, now_us))
                    }
                    Err(e) => {
                        self.stats.codes_refused += 1;
                        Err(e)
                    }
                }
            }
            TokenRequest::RefreshToken { refresh_token } => {
                match self.rotate_refresh_token(&refresh_token, now_us) {
                    Some(user_id) => {
                        self.stats.refreshes_ok += 1;
                        Ok(self.issue_tokens(user_id, now_us))
                    }
                    None => {
                        self.stats.refreshes_refused += 1;
                        Err(TokenError::InvalidGrant("Invalid refresh token"))
                    }
                }
            }
        }
    }

    /// Consumes the code whatever happens next, so a failed exchange cannot be retried.
    fn redeem_code(
        &mut self,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
        now_us: i64,
    ) -> Result<u64, TokenError> {
        let code = self
            .codes
            .remove(code)
            .ok_or(TokenError::InvalidGrant("Invalid authorization code"))?;
        if now_us >= code.expires_us {
            return Err(TokenError::InvalidGrant("Authorization code expired"));
        }
        // One client exists today; the check keeps a code from moving between clients.
        if code.client_id != CLIENT_ID {
            return Err(TokenError::InvalidGrant(
                "Authorization code was issued to another client",
            ));
        }
        if code.redirect_uri != redirect_uri {
            return Err(TokenError::InvalidGrant("Mismatching redirect URI."));
        }
        if s256_challenge(code_verifier) != code.challenge {
            return Err(TokenError::InvalidGrant(
                "Code verifier does not match the code challenge",
            ));
        }
        self.user(code.user_id)
            .map(|u| u.id)
            .ok_or(TokenError::InvalidGrant("Invalid authorization code"))
    }

    /// Revokes a valid refresh token and gives its user; `None` when it is not valid.
    fn rotate_refresh_token(&mut self, token: &str, now_us: i64) -> Option<u64> {
        let entry = self.refresh_tokens.get_mut(token)?;
        if entry.revoked || now_us >= entry.expires_us {
            return None;
        }
        entry.revoked = true;
        Some(entry.user_id)
    }

    fn new_refresh_token(&mut self, user_id: u64, now_us: i64) -> String {
        let token = random_token(30);
        self.refresh_tokens.insert(
            token.clone(),
            RefreshToken {
                user_id,
                expires_us: now_us.saturating_add(micros(REFRESH_TTL)),
                revoked: false,
            },
        );
        token
    }

    fn issue_tokens(&mut self, user_id: u64, now_us: i64) -> TokenGrant {
        let ttl = self.access_ttl;
        let expires_us = now_us.saturating_add(micros(ttl));
        let access_token = self
            .user(user_id)
            .map(|u| access_jwt(u, now_us, expires_us))
            .unwrap_or_default();
        self.access_tokens
            .insert(access_token.clone(), (expires_us, user_id));
        self.stats.access_tokens_issued += 1;
        TokenGrant {
            access_token,
            expires_in: ttl.as_micros().div_ceil(1_000_000) as u64,
            refresh_token: self.new_refresh_token(user_id, now_us),
        }
    }

    /// A refresh token for the user with this email, as if they had logged in in a browser
    /// (the browser's access token is not counted); `None` for an unknown email.
    pub fn issue_refresh_token(&mut self, email: &str, now_us: i64) -> Option<String> {
        let user_id = self.user_by_email_mut(email)?.id;
        Some(self.new_refresh_token(user_id, now_us))
    }

    pub fn is_refresh_token_valid(&self, token: &str, now_us: i64) -> bool {
        self.refresh_tokens
            .get(token)
            .is_some_and(|t| !t.revoked && now_us < t.expires_us && self.user(t.user_id).is_some())
    }

    pub fn revoke_refresh_tokens(&mut self) {
        for token in self.refresh_tokens.values_mut() {
            token.revoked = true;
        }
    }

    pub fn expire_access_tokens(&mut self, now_us: i64) {
        for (expires_us, _) in self.access_tokens.values_mut() {
            *expires_us = (*expires_us).min(now_us);
        }
    }

    /// Whether Connect lets in a request offering these tokens: a token issued here passes
    /// while unexpired; any other follows Connect's own rule (`connect_token`: `None` accepts
    /// anything non-empty, `Some(t)` only `t`). A refusal because of an expired issued token
    /// is counted.
    pub fn admits(&mut self, offered: &[String], connect_token: Option<&str>, now_us: i64) -> bool {
        let mut expired = false;
        for token in offered.iter().filter(|t| !t.is_empty()) {
            match self.access_token_status(token, now_us) {
                AccessTokenStatus::Valid => return true,
                AccessTokenStatus::Expired => expired = true,
                AccessTokenStatus::NotIssued => {
                    if connect_token.is_none_or(|t| t == token) {
                        return true;
                    }
                }
            }
        }
        if expired {
            self.stats.access_tokens_rejected += 1;
        }
        false
    }

    /// `/api/v1/me`'s answer for a token, `None` when the token is not admitted.
    pub fn me(
        &mut self,
        token: &str,
        connect_token: Option<&str>,
        now_us: i64,
    ) -> Option<serde_json::Value> {
        let id = self.account_of(token, connect_token, now_us)?;
        Some(match self.user(id) {
            Some(u) => json!({ "id": u.id, "connect_id": u.connect_id, "email": u.email }),
            None => json!({ "id": id }),
        })
    }

    fn access_token_status(&self, token: &str, now_us: i64) -> AccessTokenStatus {
        match self.access_tokens.get(token) {
            None => AccessTokenStatus::NotIssued,
            Some(&(expires_us, _)) if now_us < expires_us => AccessTokenStatus::Valid,
            Some(_) => AccessTokenStatus::Expired,
        }
    }

    /// The account (user id) a token admitted by [`Accounts::admits`] belongs to, as
    /// `/api/v1/me` says it: its user's for a token issued here, [`STATIC_TOKEN_ACCOUNT_ID`]
    /// for one Connect's own rule lets in. `None`: the token is not admitted.
    pub fn account_of(
        &mut self,
        token: &str,
        connect_token: Option<&str>,
        now_us: i64,
    ) -> Option<u64> {
        if !self.admits(&[token.to_string()], connect_token, now_us) {
            return None;
        }
        Some(match self.access_tokens.get(token) {
            Some(&(_, user_id)) => user_id,
            None => STATIC_TOKEN_ACCOUNT_ID,
        })
    }

    pub fn token_request_started(&mut self) {
        self.token_requests_in_flight += 1;
        let stats = &mut self.stats;
        stats.max_concurrent_token_requests = stats
            .max_concurrent_token_requests
            .max(self.token_requests_in_flight);
    }

    pub fn token_request_ended(&mut self) {
        self.token_requests_in_flight = self.token_requests_in_flight.saturating_sub(1);
    }
}

/// A JWT-shaped access token like the account server's RS256 ones. The signature is random
/// bytes: nobody can verify it, and Connect (here) looks tokens up instead.
fn access_jwt(user: &User, issued_us: i64, expires_us: i64) -> String {
    let header = json!({ "alg": "RS256", "typ": "JWT" });
    let claims = json!({
        // Rounded down: a client that trusts `exp` never uses a token the server has expired.
        "exp": expires_us.div_euclid(1_000_000),
        "iat": issued_us.div_euclid(1_000_000),
        "sub": user.id.to_string(),
        "connect_id": user.connect_id,
        "app": "connect",
        "type": "access",
        "jti": random_token(32),
    });
    let signature: [u8; 32] = rand::random();
    [
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature),
    ]
    .join(".")
}
