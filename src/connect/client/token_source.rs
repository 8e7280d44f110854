//! Where the bearer token comes from, and how authentication stands for `bridge/info`.

use std::path::PathBuf;
use std::sync::Arc;

use secrecy::SecretString;
use serde::Serialize;

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
