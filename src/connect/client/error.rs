//! What can go wrong with a request to Connect, and what a caller does about it.

use std::time::Duration;

use serde_json::Value;

use crate::auth::AuthError;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("Connect refused the access token (401: {message})")]
    Unauthorized { message: String },
    #[error("Connect answered {status}{}: {message}", code.as_ref().map(|c| format!(" {c}")).unwrap_or_default())]
    Api {
        status: u16,
        code: Option<String>,
        message: String,
        retry_after: Option<Duration>,
        body: Option<Value>,
    },
    #[error("cannot reach Connect ({0})")]
    Transport(String),
    /// A path or URL (from Connect's JSON) that leads to another host: never requested, so
    /// the access token goes to Connect only.
    #[error("{0:?} is not on Connect: not requested")]
    OffConnect(String),
    #[error("Connect sent a response that could not be read ({what}): {detail}")]
    Decode { what: String, detail: String },
    #[error(
        "no Connect credentials: set connect.access_token, connect.refresh_token or connect.token_file"
    )]
    NoCredentials,
    #[error("{0}")]
    Auth(AuthError),
}

impl ConnectError {
    /// How long Connect asked us to wait (429/503 `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api { retry_after, .. } => *retry_after,
            Self::Auth(AuthError::AccountUnavailable { retry_after, .. }) => *retry_after,
            _ => None,
        }
    }

    /// Only the user can fix it (a new token): retrying sooner than a normal poll is useless.
    pub fn needs_user(&self) -> bool {
        match self {
            Self::Auth(e) => e.needs_user(),
            Self::Unauthorized { .. } | Self::NoCredentials => true,
            _ => false,
        }
    }
}
