//! Prusa Account authentication: refresh tokens that rotate, stored atomically, refreshed by
//! one task at a time; and the PKCE login of `prusa-connect-mqtt login` ([`login`]).
//!
//! Connect's access tokens live two hours. With a refresh token the gateway renews them
//! before they expire and once after any 401. The account server rotates refresh tokens on
//! every use, so the new one is written to `state.dir/auth.json` (temporary file, fsync,
//! rename, mode 0600) before the new access token is handed out, and a single async mutex
//! makes sure two refreshes never run at once.

pub mod form;
pub mod login;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The Connect web app's public OAuth client (see the facts file).
pub const CLIENT_ID: &str = "MRHTlZhZqkNrrQ6FUPtjyusAz8nc59ErHXP8XkS4";
/// Where the account server sends the browser after login; never fetched by the gateway.
pub const REDIRECT_URI: &str = "https://connect.prusa3d.com/login/auth-callback";
/// The file in `state.dir` that holds the current refresh token.
pub const AUTH_FILE: &str = "auth.json";
/// What the user has to do when no refresh token works any more.
pub const LOGIN_ACTION: &str = "run prusa-connect-mqtt login";
/// [`LOGIN_ACTION`] for a gateway whose web page can log in.
pub const WEB_LOGIN_ACTION: &str = "log in on the web page (or run prusa-connect-mqtt login)";
/// Renew at most this long before expiry (less for short-lived tokens: a quarter of the life).
const REFRESH_AHEAD: Duration = Duration::from_secs(60);
/// When an access token's lifetime is unknown, assume this; a 401 corrects it.
const ASSUMED_LIFETIME: Duration = Duration::from_secs(3600);
/// After the account server failed, wait this long before trying again while the current
/// access token still works.
const RETRY_WHILE_VALID: Duration = Duration::from_secs(15);
/// Longer token lifetimes (from `expires_in`, the JWT's `exp` or `auth.json`) are taken as
/// this: the clock arithmetic must not overflow on whatever the account server sends.
const MAX_LIFETIME: Duration = Duration::from_secs(1_000_000_000);

/// Why a refresh failed. `Display` is the message for the log and `bridge/info`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "the account server refused the refresh token ({detail}): it was revoked, expired \
         (unused for 30 days) or already used; {LOGIN_ACTION} to store a new one"
    )]
    RefreshRejected { detail: String },
    #[error("no refresh token: nobody is logged in (logged out, or never logged in); {action}")]
    LoginNeeded { action: &'static str },
    #[error("cannot renew the access token: the account server {url} {detail}; retrying")]
    AccountUnavailable {
        url: String,
        detail: String,
        retry_after: Option<Duration>,
    },
}

impl AuthError {
    /// Short machine-readable status for `bridge/info`.
    pub fn status(&self) -> &'static str {
        match self {
            Self::RefreshRejected { .. } => "refresh_token_rejected",
            Self::LoginNeeded { .. } => "login_needed",
            Self::AccountUnavailable { .. } => "account_server_unreachable",
        }
    }

    /// What the user must do, when anything.
    pub fn action(&self) -> Option<String> {
        match self {
            Self::RefreshRejected { .. } => Some(LOGIN_ACTION.into()),
            Self::LoginNeeded { action } => Some(action.to_string()),
            Self::AccountUnavailable { .. } => None,
        }
    }

    /// Only a person can fix it: retrying the same token is pointless.
    pub fn needs_user(&self) -> bool {
        matches!(
            self,
            Self::RefreshRejected { .. } | Self::LoginNeeded { .. }
        )
    }
}

/// The token endpoint's answer (RFC 6749 §5.1), as far as the gateway needs it.
#[derive(Deserialize)]
pub struct TokenResponse {
    pub access_token: SecretString,
    #[serde(default)]
    pub refresh_token: Option<SecretString>,
    #[serde(default)]
    pub expires_in: Option<f64>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// `state.dir/auth.json`. The refresh token is the one to use next; `configured_sha256` is
/// the hash of the configured refresh token this file superseded, so a restart can tell an
/// old configured token (already rotated away) from a new one the user pasted since.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredAuth {
    pub refresh_token: String,
    #[serde(default)]
    pub access_token: Option<String>,
    /// Unix seconds.
    #[serde(default)]
    pub access_expires_at: Option<u64>,
    /// Unix seconds.
    pub obtained_at: u64,
    #[serde(default)]
    pub configured_sha256: Option<String>,
    /// `login` or `refresh`.
    #[serde(default)]
    pub source: String,
    /// The email of the login (when the web page or `login` knew it), for the web page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

impl std::fmt::Debug for StoredAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredAuth")
            .field("obtained_at", &self.obtained_at)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Reads and writes `auth.json` in the state directory.
#[derive(Debug, Clone)]
pub struct TokenStore {
    path: PathBuf,
}

impl TokenStore {
    pub fn new(state_dir: &Path) -> TokenStore {
        TokenStore {
            path: state_dir.join(AUTH_FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `None` when there is no file; an unreadable file is reported and ignored.
    pub fn load(&self) -> Option<StoredAuth> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!("cannot read {}: {e}", self.path.display());
                return None;
            }
        };
        match serde_json::from_slice::<StoredAuth>(&bytes) {
            Ok(s) if !s.refresh_token.trim().is_empty() => Some(s),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!("{} is not readable ({e}); ignoring it", self.path.display());
                None
            }
        }
    }

    pub fn save(&self, stored: &StoredAuth) -> anyhow::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let bytes = serde_json::to_vec_pretty(stored)?;
        crate::store::write_atomically(&self.path, &bytes)
    }

    /// Deletes the file (log-out); a missing file is fine.
    pub fn remove(&self) -> anyhow::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(anyhow::Error::new(e).context(format!("cannot delete {}", self.path.display())))
            }
            _ => Ok(()),
        }
    }

    /// [`TokenStore::load`] for async code: the file is read on a thread for blocking work.
    pub async fn load_async(&self) -> Option<StoredAuth> {
        let store = self.clone();
        crate::store::off_runtime(move || store.load())
            .await
            .unwrap_or_else(|e| {
                tracing::warn!("cannot read {}: {e:#}", self.path.display());
                None
            })
    }

    /// [`TokenStore::save`] for async code: the write, its fsync and the rename run on a
    /// thread for blocking work; it has happened when this returns.
    pub async fn save_async(&self, stored: &StoredAuth) -> anyhow::Result<()> {
        let (store, stored) = (self.clone(), stored.clone());
        crate::store::off_runtime(move || store.save(&stored)).await?
    }
}

/// Stores what a login obtained as `state.dir/auth.json` (the CLI `login` and the web page):
/// the running gateway takes it up at its next poll. `configured` is the config's
/// `connect.refresh_token`, which this file supersedes.
pub fn store_login(
    store: &TokenStore,
    tokens: &login::LoginTokens,
    configured: Option<&SecretString>,
    account: Option<&str>,
) -> anyhow::Result<()> {
    let now = unix_now();
    let access_expires_at = tokens
        .expires_in
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| now.saturating_add(s.min(MAX_LIFETIME.as_secs_f64()) as u64));
    store.save(&StoredAuth {
        refresh_token: tokens.refresh_token.expose_secret().to_string(),
        access_token: Some(tokens.access_token.expose_secret().to_string()),
        access_expires_at,
        obtained_at: now,
        configured_sha256: configured.map(|t| sha256_hex(t.expose_secret().trim())),
        source: "login".into(),
        account: account.map(str::to_string),
    })
}

pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `exp` claim of a JWT (Unix seconds), without verifying anything.
pub fn jwt_expiry(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_f64().map(|e| e.max(0.0) as u64)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Picks the refresh token to start with: the stored one unless the configured one is new
/// (neither the stored token nor the one the stored file superseded).
pub fn choose_refresh_token(
    configured: Option<&str>,
    stored: Option<&StoredAuth>,
) -> Option<(String, bool)> {
    match (configured.filter(|c| !c.is_empty()), stored) {
        (None, None) => None,
        (None, Some(s)) => Some((s.refresh_token.clone(), true)),
        (Some(c), None) => Some((c.to_string(), false)),
        (Some(c), Some(s)) => {
            let known = s.refresh_token == c
                || s.configured_sha256.as_deref() == Some(sha256_hex(c).as_str());
            if known {
                Some((s.refresh_token.clone(), true))
            } else {
                Some((c.to_string(), false))
            }
        }
    }
}

/// Posts a form to the token endpoint and classifies the answer.
pub(crate) async fn token_request(
    http: &reqwest::Client,
    token_url: &Url,
    form: &[(&str, &str)],
) -> Result<TokenResponse, TokenEndpointError> {
    let resp = http
        .post(token_url.clone())
        .form(form)
        .send()
        .await
        .map_err(|e| {
            TokenEndpointError::Unreachable(crate::connect::client::describe_reqwest(&e))
        })?;
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::connect::client::parse_retry_after);
    let bytes = resp.bytes().await.map_err(|e| {
        TokenEndpointError::Unreachable(crate::connect::client::describe_reqwest(&e))
    })?;
    if status.is_success() {
        return serde_json::from_slice::<TokenResponse>(&bytes).map_err(|e| {
            TokenEndpointError::Unavailable {
                detail: format!("sent a token response that cannot be read ({e})"),
                retry_after: None,
            }
        });
    }
    #[derive(Deserialize)]
    struct OAuthError {
        error: String,
        #[serde(default)]
        error_description: Option<String>,
    }
    let oauth = serde_json::from_slice::<OAuthError>(&bytes).ok();
    let describe = |o: &OAuthError| match &o.error_description {
        Some(d) => format!("{}: {d}", o.error),
        None => o.error.clone(),
    };
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(TokenEndpointError::Unavailable {
            detail: format!("answered HTTP {}", status.as_u16()),
            retry_after,
        });
    }
    match oauth {
        Some(o) => Err(TokenEndpointError::Refused {
            status: status.as_u16(),
            detail: describe(&o),
        }),
        None => Err(TokenEndpointError::Unavailable {
            detail: format!("answered HTTP {} without an OAuth error", status.as_u16()),
            retry_after,
        }),
    }
}

#[derive(Debug)]
pub(crate) enum TokenEndpointError {
    Unreachable(String),
    Unavailable {
        detail: String,
        retry_after: Option<Duration>,
    },
    Refused {
        status: u16,
        detail: String,
    },
}

struct Access {
    token: SecretString,
    expires_at: SystemTime,
    lifetime: Duration,
}

impl Access {
    fn new(token: SecretString, expires_in: Option<f64>) -> Access {
        let lifetime = expires_in
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(|s| Duration::from_secs_f64(s.min(MAX_LIFETIME.as_secs_f64())))
            .or_else(|| {
                let exp = jwt_expiry(token.expose_secret())?;
                Some(Duration::from_secs(exp.saturating_sub(unix_now())).min(MAX_LIFETIME))
            })
            .unwrap_or(ASSUMED_LIFETIME);
        Access {
            token,
            expires_at: SystemTime::now() + lifetime,
            lifetime,
        }
    }

    fn from_stored(s: &StoredAuth) -> Option<Access> {
        let token = s.access_token.clone()?;
        let exp = s.access_expires_at?;
        let now = unix_now();
        // An expiry further away than any real token's (a damaged file) is not trusted: renew.
        let left = exp.saturating_sub(now);
        (left > 0 && left <= MAX_LIFETIME.as_secs()).then(|| Access {
            token: SecretString::from(token),
            expires_at: UNIX_EPOCH + Duration::from_secs(exp),
            lifetime: Duration::from_secs(exp.saturating_sub(s.obtained_at).max(1)),
        })
    }

    /// Time to renew: within a quarter of the lifetime (at most a minute) of expiry.
    fn due(&self) -> bool {
        let ahead = (self.lifetime / 4).min(REFRESH_AHEAD);
        SystemTime::now() + ahead >= self.expires_at
    }

    fn expired(&self) -> bool {
        SystemTime::now() >= self.expires_at
    }
}

struct Inner {
    /// `None` until someone logs in (the web page), and after a log-out.
    refresh: Option<SecretString>,
    access: Option<Access>,
    /// Hashes of refresh tokens the account server refused: never sent again.
    refused: HashSet<String>,
    failed: Option<AuthError>,
    /// While the access token still works, do not retry a failing account server before this.
    quiet_until: Option<SystemTime>,
    /// The email of the login, kept in `auth.json` across rotations.
    account: Option<String>,
}

/// Hands out access tokens, renewing them with the refresh token. One per process; shared by
/// every request through [`crate::connect::TokenSource::Refresh`].
pub struct Refresher {
    http: reqwest::Client,
    token_url: Url,
    auth_url: String,
    store: TokenStore,
    configured_sha256: Option<String>,
    configured_file: Option<PathBuf>,
    login_action: &'static str,
    inner: tokio::sync::Mutex<Inner>,
}

impl std::fmt::Debug for Refresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresher")
            .field("token_url", &self.token_url.as_str())
            .finish_non_exhaustive()
    }
}

impl Refresher {
    /// `configured`: the refresh token from the config (if any); `configured_file`: the file
    /// it came from, re-read when the token in use has been refused. Fails only when there is
    /// no refresh token at all.
    pub fn new(
        auth_url: &str,
        state_dir: &Path,
        configured: Option<&SecretString>,
        configured_file: Option<PathBuf>,
        timeout: Duration,
    ) -> anyhow::Result<Refresher> {
        Self::build(
            auth_url,
            state_dir,
            configured,
            configured_file,
            timeout,
            false,
        )
    }

    /// [`Refresher::new`] for a gateway with a web page: without any refresh token it starts
    /// anyway, reports [`AuthError::LoginNeeded`] and takes up the first login.
    pub fn new_or_awaiting_login(
        auth_url: &str,
        state_dir: &Path,
        configured: Option<&SecretString>,
        configured_file: Option<PathBuf>,
        timeout: Duration,
    ) -> anyhow::Result<Refresher> {
        Self::build(
            auth_url,
            state_dir,
            configured,
            configured_file,
            timeout,
            true,
        )
    }

    fn build(
        auth_url: &str,
        state_dir: &Path,
        configured: Option<&SecretString>,
        configured_file: Option<PathBuf>,
        timeout: Duration,
        web: bool,
    ) -> anyhow::Result<Refresher> {
        let base = Url::parse(auth_url)
            .map_err(|e| anyhow::anyhow!("connect.auth_url = {auth_url:?} is not a URL: {e}"))?;
        let token_url = base
            .join("/o/token/")
            .map_err(|e| anyhow::anyhow!("connect.auth_url = {auth_url:?}: {e}"))?;
        let store = TokenStore::new(state_dir);
        let stored = store.load();
        let configured = configured.map(|c| c.expose_secret().trim().to_string());
        let chosen = choose_refresh_token(configured.as_deref(), stored.as_ref());
        if chosen.is_none() && web {
            tracing::warn!("no Connect credentials yet: waiting for a login on the web page");
        }
        let Some((refresh, from_store)) = chosen.or(web.then(|| (String::new(), false))) else {
            anyhow::bail!(
                "no refresh token: {LOGIN_ACTION} (it stores one in {}), or set connect.refresh_token",
                state_dir.display()
            );
        };
        let access = if from_store {
            tracing::info!(
                "using the refresh token stored in {}",
                store.path().display()
            );
            stored.as_ref().and_then(Access::from_stored)
        } else {
            if stored.is_some() {
                tracing::info!(
                    "connect.refresh_token changed since {} was written: using the configured one",
                    store.path().display()
                );
            }
            None
        };
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("prusa-connect-mqtt/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Refresher {
            http,
            token_url,
            auth_url: auth_url.to_string(),
            store,
            configured_sha256: configured.as_deref().map(sha256_hex),
            configured_file,
            login_action: if web { WEB_LOGIN_ACTION } else { LOGIN_ACTION },
            inner: tokio::sync::Mutex::new(Inner {
                refresh: (!refresh.is_empty()).then(|| SecretString::from(refresh)),
                access,
                refused: HashSet::new(),
                failed: None,
                quiet_until: None,
                account: stored.as_ref().and_then(|s| s.account.clone()),
            }),
        })
    }

    /// A usable access token, renewed first when it is about to expire.
    pub async fn access_token(&self) -> Result<SecretString, AuthError> {
        let mut inner = self.inner.lock().await;
        if let Some(access) = &inner.access
            && !access.due()
        {
            return Ok(access.token.clone());
        }
        // Renewal is due. While the token still works, a failing account server is retried
        // at most every RETRY_WHILE_VALID and the old token keeps being used meanwhile.
        if let Some(access) = &inner.access
            && !access.expired()
            && inner.quiet_until.is_some_and(|t| SystemTime::now() < t)
        {
            return Ok(access.token.clone());
        }
        match self.refresh_locked(&mut inner).await {
            Ok(token) => Ok(token),
            Err(e) => match &inner.access {
                Some(access) if !access.expired() && !e.needs_user() => {
                    let left = access
                        .expires_at
                        .duration_since(SystemTime::now())
                        .unwrap_or_default();
                    tracing::warn!(
                        "{e}; the current access token stays valid for {}s",
                        left.as_secs()
                    );
                    let token = access.token.clone();
                    inner.quiet_until = Some(SystemTime::now() + RETRY_WHILE_VALID);
                    Ok(token)
                }
                _ => Err(e),
            },
        }
    }

    /// Connect refused `rejected` (401): renew, unless another request already did.
    pub async fn after_rejection(
        &self,
        rejected: &SecretString,
    ) -> Result<SecretString, AuthError> {
        let mut inner = self.inner.lock().await;
        if let Some(access) = &inner.access
            && access.token.expose_secret() != rejected.expose_secret()
        {
            return Ok(access.token.clone());
        }
        inner.access = None;
        self.refresh_locked(&mut inner).await
    }

    /// Renews now (used by tests and `check`); stores the new refresh token before returning.
    pub async fn refresh_now(&self) -> Result<SecretString, AuthError> {
        let mut inner = self.inner.lock().await;
        self.refresh_locked(&mut inner).await
    }

    /// Takes up a login made elsewhere (the web page): `store` writes its tokens to
    /// `auth.json` while the tokens are held, so a renewal in flight cannot write the old
    /// account's token over it; once stored, they are used at once.
    pub async fn use_login(
        &self,
        tokens: &login::LoginTokens,
        account: &str,
        store: impl FnOnce() -> anyhow::Result<()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let mut inner = self.inner.lock().await;
        crate::store::off_runtime(store).await??;
        inner.account = Some(account.to_string());
        inner.refresh = Some(tokens.refresh_token.clone());
        inner.access = Some(Access::new(tokens.access_token.clone(), tokens.expires_in));
        inner.failed = None;
        inner.quiet_until = None;
        Ok(())
    }

    /// Logs out: the tokens in use are dropped and never sent again, and `auth.json` is
    /// deleted while they are held (a renewal in flight would write it again); requests fail
    /// with [`AuthError::LoginNeeded`] until the next login.
    pub async fn forget(&self) -> anyhow::Result<()> {
        let mut inner = self.inner.lock().await;
        if let Some(refresh) = inner.refresh.take() {
            inner.refused.insert(sha256_hex(refresh.expose_secret()));
        }
        inner.access = None;
        inner.quiet_until = None;
        inner.account = None;
        inner.failed = Some(AuthError::LoginNeeded {
            action: self.login_action,
        });
        let store = self.store.clone();
        crate::store::off_runtime(move || store.remove()).await?
    }

    /// The last failure, if the last attempt failed.
    pub async fn failure(&self) -> Option<AuthError> {
        self.inner.lock().await.failed.clone()
    }

    async fn refresh_locked(&self, inner: &mut Inner) -> Result<SecretString, AuthError> {
        if inner.refresh.is_none() {
            match self.newer_token(inner).await {
                Some(token) => {
                    tracing::info!("found a refresh token from a login; trying it");
                    inner.refresh = Some(token);
                }
                None => {
                    let error = AuthError::LoginNeeded {
                        action: self.login_action,
                    };
                    inner.failed = Some(error.clone());
                    return Err(error);
                }
            }
        }
        let current = sha256_hex(inner.refresh.as_ref().map_or("", |r| r.expose_secret()));
        if inner.refused.contains(&current) {
            match self.newer_token(inner).await {
                Some(token) => {
                    tracing::info!("found a new refresh token; trying it");
                    inner.refresh = Some(token);
                }
                None => {
                    return Err(inner.failed.clone().unwrap_or(AuthError::RefreshRejected {
                        detail: "refused before".into(),
                    }));
                }
            }
        }
        // Two tries: when the token is refused because another process (`login`, `check`, a
        // second gateway on the same state directory) rotated it, the new one is in auth.json.
        let mut tries = 0;
        let error = loop {
            tries += 1;
            let refresh = inner
                .refresh
                .clone()
                .unwrap_or_else(|| SecretString::from(""));
            let form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.expose_secret()),
                ("client_id", CLIENT_ID),
            ];
            tracing::debug!("renewing the Connect access token");
            break match token_request(&self.http, &self.token_url, &form).await {
                Ok(tokens) => return Ok(self.adopt(inner, tokens).await),
                Err(TokenEndpointError::Refused { status, detail, .. }) => {
                    inner.refused.insert(sha256_hex(refresh.expose_secret()));
                    inner.access = None;
                    if tries == 1
                        && let Some(newer) = self.newer_token(inner).await
                    {
                        tracing::info!(
                            "the refresh token was replaced by another process; using the new one"
                        );
                        inner.refresh = Some(newer);
                        continue;
                    }
                    AuthError::RefreshRejected {
                        detail: format!("HTTP {status} {detail}"),
                    }
                }
                Err(TokenEndpointError::Unreachable(detail)) => AuthError::AccountUnavailable {
                    url: self.auth_url.clone(),
                    detail: format!("is not reachable ({detail})"),
                    retry_after: None,
                },
                Err(TokenEndpointError::Unavailable {
                    detail,
                    retry_after,
                }) => AuthError::AccountUnavailable {
                    url: self.auth_url.clone(),
                    detail,
                    retry_after,
                },
            };
        };
        // The caller reports it (the bridge logs once per change of fault).
        tracing::debug!("renewing the access token failed: {error}");
        inner.failed = Some(error.clone());
        Err(error)
    }

    /// Stores the rotated refresh token, then hands out the new access token. The write runs
    /// off the runtime's threads while the refresh lock is held: no second refresh starts
    /// before the new token is on disk.
    async fn adopt(&self, inner: &mut Inner, tokens: TokenResponse) -> SecretString {
        // A blank "rotated" token would strand the gateway: keep the one that worked.
        let refresh = tokens
            .refresh_token
            .filter(|t| !t.expose_secret().trim().is_empty())
            .or_else(|| inner.refresh.clone())
            .unwrap_or_else(|| SecretString::from(""));
        let access = Access::new(tokens.access_token, tokens.expires_in);
        let now = unix_now();
        let stored = StoredAuth {
            refresh_token: refresh.expose_secret().to_string(),
            access_token: Some(access.token.expose_secret().to_string()),
            access_expires_at: access
                .expires_at
                .duration_since(UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs()),
            obtained_at: now,
            configured_sha256: self.configured_sha256.clone(),
            source: "refresh".into(),
            account: inner.account.clone(),
        };
        if let Err(e) = self.store.save_async(&stored).await {
            // The old refresh token is spent: keep the new one in memory so the service works
            // until it restarts, and say loudly that a restart will need a new login.
            tracing::error!(
                "cannot store the new refresh token in {}: {e:#}; the gateway works until it \
                 restarts, then needs `prusa-connect-mqtt login` (make state.dir writable)",
                self.store.path().display()
            );
        }
        if inner.failed.take().is_some() {
            tracing::info!("the Connect access token was renewed; authentication works again");
        }
        tracing::debug!(
            "Connect access token renewed, valid for {}s",
            access.lifetime.as_secs()
        );
        inner.refresh = Some(refresh);
        inner.quiet_until = None;
        let token = access.token.clone();
        inner.access = Some(access);
        token
    }

    /// A refresh token that appeared since the current one was refused: from `login` (the
    /// state file) or from the configured token file.
    async fn newer_token(&self, inner: &Inner) -> Option<SecretString> {
        let fresh = |t: &str| !t.is_empty() && !inner.refused.contains(&sha256_hex(t));
        if let Some(stored) = self.store.load_async().await
            && fresh(stored.refresh_token.trim())
        {
            return Some(SecretString::from(stored.refresh_token.trim().to_string()));
        }
        let path = self.configured_file.as_ref()?;
        let text = tokio::fs::read_to_string(path).await.ok()?;
        fresh(text.trim()).then(|| SecretString::from(text.trim().to_string()))
    }
}

/// A PKCE verifier (RFC 7636: 43-128 unreserved characters) and its S256 challenge.
pub fn pkce_pair() -> (String, String) {
    use rand::Rng;
    let bytes: [u8; 48] = rand::rng().random();
    let verifier = URL_SAFE_NO_PAD.encode(bytes);
    let challenge = pkce_challenge(&verifier);
    (verifier, challenge)
}

pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
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
}
