//! Where the bearer token comes from, and how authentication stands for `bridge/info`.

use std::path::PathBuf;
use std::sync::Arc;

use secrecy::SecretString;
use serde::Serialize;

use super::{ConnectClient, ConnectError};
use crate::auth::{LOGIN_ACTION, Refresher};

/// How authentication stands, for `bridge/info`'s `auth` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuthStatus {
    /// `refresh_token`, `access_token` or `token_file`.
    pub method: &'static str,
    /// `ok`, `refresh_token_rejected`, `account_server_unreachable`, `access_token_rejected`,
    /// `no_credentials` or `login_needed`.
    pub status: &'static str,
    /// What the user has to do, when anything.
    pub action: Option<String>,
    pub detail: Option<String>,
}

/// Where the bearer token comes from.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// Fixed for the life of the process.
    Static(SecretString),
    /// A file that something else keeps fresh: re-read after a 401.
    File(PathBuf),
    /// Renewed with a rotating refresh token (the normal way).
    Refresh(Arc<Refresher>),
    None,
}

impl TokenSource {
    pub(super) fn method(&self) -> &'static str {
        match self {
            Self::Static(_) | Self::None => "access_token",
            Self::File(_) => "token_file",
            Self::Refresh(_) => "refresh_token",
        }
    }

    /// What to tell the user when Connect refuses the token this source gave.
    pub(super) fn rejected_action(&self) -> String {
        match self {
            Self::Static(_) | Self::None => format!(
                "set a new connect.access_token, or {LOGIN_ACTION} to use a refresh token that renews itself"
            ),
            Self::File(path) => format!("write a valid access token to {}", path.display()),
            Self::Refresh(_) => LOGIN_ACTION.to_string(),
        }
    }
}

impl ConnectClient {
    /// How authentication stands now.
    pub fn auth_status(&self) -> AuthStatus {
        self.auth.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Marks authentication as working; on every successful request, so no copy is made.
    pub(super) fn auth_ok(&self) {
        let mut auth = self.auth.lock().unwrap_or_else(|p| p.into_inner());
        if auth.status != "ok" {
            auth.status = "ok";
            auth.action = None;
            auth.detail = None;
        }
    }

    pub(super) fn set_auth(
        &self,
        status: &'static str,
        action: Option<String>,
        detail: Option<String>,
    ) {
        let mut auth = self.auth.lock().unwrap_or_else(|p| p.into_inner());
        auth.status = status;
        auth.action = action;
        auth.detail = detail;
    }

    /// The token for the next request; `rejected` is the one Connect just refused (401).
    pub(in crate::connect) async fn bearer(
        &self,
        rejected: Option<&SecretString>,
    ) -> Result<SecretString, ConnectError> {
        let result = match &self.tokens {
            TokenSource::Static(t) => Ok(t.clone()),
            TokenSource::None => Err(ConnectError::NoCredentials),
            TokenSource::File(path) => {
                let mut cached = self.file_token.lock().await;
                if rejected.is_some() || cached.is_none() {
                    *cached = tokio::fs::read_to_string(path)
                        .await
                        .ok()
                        .map(|t| t.trim().to_string())
                        .filter(|t| !t.is_empty())
                        .map(SecretString::from);
                }
                cached.clone().ok_or(ConnectError::NoCredentials)
            }
            TokenSource::Refresh(refresher) => {
                // A task of its own: a request given up mid-renewal (the gateway stopping, a
                // poll task aborted) must not cut the exchange short after the account server
                // rotated the refresh token and before the new one is stored.
                let (refresher, rejected) = (refresher.clone(), rejected.cloned());
                let renewal = tokio::spawn(async move {
                    match rejected {
                        Some(token) => refresher.after_rejection(&token).await,
                        None => refresher.access_token().await,
                    }
                });
                match renewal.await {
                    Ok(result) => result.map_err(ConnectError::Auth),
                    Err(e) => match e.try_into_panic() {
                        Ok(panic) => std::panic::resume_unwind(panic),
                        Err(e) => Err(ConnectError::Transport(format!(
                            "the token renewal stopped: {e}"
                        ))),
                    },
                }
            }
        };
        if let Err(e) = &result {
            match e {
                ConnectError::Auth(a) => self.set_auth(a.status(), a.action(), Some(a.to_string())),
                _ => self.set_auth(
                    "no_credentials",
                    Some(self.tokens.rejected_action()),
                    Some(e.to_string()),
                ),
            }
        }
        result
    }
}
