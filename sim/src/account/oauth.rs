//! What the OAuth2 endpoints take and give: validated authorize and token requests, their
//! errors, the token answer, PKCE, and the outcomes of the login steps.

use std::collections::HashMap;

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{CLIENT_ID, REDIRECT_URI, SCOPE};

/// The outcome of the password step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PasswordStep {
    /// A new session key, logged in.
    LoggedIn(String),
    /// A new session key, waiting for the 2FA code.
    NeedsTotp(String),
    Refused,
}

/// The outcome of the 2FA step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TotpStep {
    /// No session waiting for a code (never logged in, or already through).
    NoPendingSession,
    LoggedIn,
    Refused,
}

/// A validated `GET /o/authorize/` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthorizeRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub challenge: String,
    pub state: Option<String>,
}

impl AuthorizeRequest {
    pub fn parse(params: &HashMap<String, String>) -> Result<AuthorizeRequest, AuthorizeError> {
        let get = |key: &str| {
            params
                .get(key)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
        };
        let invalid = |description| AuthorizeError {
            error: "invalid_request",
            description,
        };
        let client_id = match get("client_id") {
            None => return Err(invalid("Missing client_id parameter.")),
            Some(CLIENT_ID) => CLIENT_ID,
            Some(_) => return Err(invalid("Invalid client_id parameter value.")),
        };
        let redirect_uri = match get("redirect_uri") {
            None => return Err(invalid("Missing redirect URI.")),
            Some(REDIRECT_URI) => REDIRECT_URI,
            Some(_) => return Err(invalid("Mismatching redirect URI.")),
        };
        match get("response_type") {
            Some("code") => {}
            None => return Err(invalid("Missing response_type parameter.")),
            Some(_) => {
                return Err(AuthorizeError {
                    error: "unsupported_response_type",
                    description: "Only response_type=code is supported.",
                });
            }
        }
        let challenge = get("code_challenge").ok_or(invalid("Code challenge required."))?;
        if !is_pkce_value(challenge) {
            return Err(invalid(
                "code_challenge must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~",
            ));
        }
        if get("code_challenge_method") != Some("S256") {
            return Err(invalid("Transform algorithm not supported."));
        }
        Ok(AuthorizeRequest {
            client_id: client_id.to_string(),
            redirect_uri: redirect_uri.to_string(),
            challenge: challenge.to_string(),
            state: get("state").map(str::to_string),
        })
    }
}

/// Why `/o/authorize/` refuses a request: shown on a 400 page as django-oauth-toolkit does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthorizeError {
    pub error: &'static str,
    pub description: &'static str,
}

/// A `POST /o/token/` request whose parameters are all there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenRequest {
    AuthorizationCode {
        code: String,
        redirect_uri: String,
        code_verifier: String,
    },
    RefreshToken {
        refresh_token: String,
    },
}

impl TokenRequest {
    /// Checks the grant type, then the client, then that the grant's parameters are present
    /// (empty counts as missing).
    pub fn parse(form: &HashMap<String, String>) -> Result<TokenRequest, TokenError> {
        let get = |key: &str| form.get(key).map(String::as_str).filter(|v| !v.is_empty());
        let grant_type = get("grant_type");
        if !matches!(grant_type, Some("authorization_code" | "refresh_token")) {
            return Err(TokenError::UnsupportedGrantType);
        }
        if get("client_id") != Some(CLIENT_ID) {
            return Err(TokenError::InvalidClient);
        }
        let required = |key: &str, missing| get(key).map(str::to_string).ok_or(missing);
        if grant_type == Some("refresh_token") {
            return Ok(TokenRequest::RefreshToken {
                refresh_token: required(
                    "refresh_token",
                    TokenError::InvalidRequest("Missing refresh token parameter."),
                )?,
            });
        }
        Ok(TokenRequest::AuthorizationCode {
            code: required(
                "code",
                TokenError::InvalidRequest("Missing code parameter."),
            )?,
            redirect_uri: required(
                "redirect_uri",
                TokenError::InvalidRequest("Missing redirect URI."),
            )?,
            code_verifier: required(
                "code_verifier",
                TokenError::InvalidRequest("Code verifier required."),
            )?,
        })
    }
}

/// An OAuth2 error answer of the token endpoint (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenError {
    InvalidRequest(&'static str),
    InvalidClient,
    InvalidGrant(&'static str),
    UnsupportedGrantType,
}

impl TokenError {
    pub fn status(&self) -> StatusCode {
        match self {
            TokenError::InvalidClient => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub fn body(&self) -> serde_json::Value {
        match self {
            TokenError::InvalidRequest(description) => {
                json!({ "error": "invalid_request", "error_description": description })
            }
            TokenError::InvalidClient => json!({ "error": "invalid_client" }),
            TokenError::InvalidGrant(description) => {
                json!({ "error": "invalid_grant", "error_description": description })
            }
            TokenError::UnsupportedGrantType => json!({ "error": "unsupported_grant_type" }),
        }
    }
}

/// A successful token answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenGrant {
    pub access_token: String,
    /// Whole seconds, rounded up.
    pub expires_in: u64,
    pub refresh_token: String,
}

impl TokenGrant {
    pub fn body(&self) -> serde_json::Value {
        json!({
            "access_token": self.access_token,
            "expires_in": self.expires_in,
            "token_type": "Bearer",
            "scope": SCOPE,
            "refresh_token": self.refresh_token,
        })
    }
}

/// `base64url_nopad(sha256(verifier))`, the S256 code challenge of RFC 7636.
pub(crate) fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// 43 to 128 characters of `[A-Za-z0-9-._~]` (RFC 7636 §4.1, §4.2).
fn is_pkce_value(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}
