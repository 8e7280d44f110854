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
mod refresher;
mod token_endpoint;
mod token_store;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

pub use refresher::Refresher;
pub use token_endpoint::TokenResponse;
pub(crate) use token_endpoint::{TokenEndpointError, token_request};
pub use token_store::{StoredAuth, TokenStore, choose_refresh_token, store_login};

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
mod tests;
