//! Why renewing the access token failed, and what the user is asked to do about it.

use std::time::Duration;

/// What the user has to do when no refresh token works any more.
pub const LOGIN_ACTION: &str = "run prusa-connect-mqtt login";
/// [`LOGIN_ACTION`] for a gateway whose web page can log in.
pub const WEB_LOGIN_ACTION: &str = "log in on the web page (or run prusa-connect-mqtt login)";

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
