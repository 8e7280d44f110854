//! The account server's token endpoint: one form POST, its answer classified.

use std::time::Duration;

use reqwest::Url;
use secrecy::SecretString;
use serde::Deserialize;

/// The Connect web app's public OAuth client (see the facts file).
pub const CLIENT_ID: &str = "MRHTlZhZqkNrrQ6FUPtjyusAz8nc59ErHXP8XkS4";
/// Where the account server sends the browser after login; never fetched by the gateway.
pub const REDIRECT_URI: &str = "https://connect.prusa3d.com/login/auth-callback";

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
        .map_err(|e| TokenEndpointError::Unreachable(crate::http::describe_reqwest(&e)))?;
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::http::parse_retry_after);
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| TokenEndpointError::Unreachable(crate::http::describe_reqwest(&e)))?;
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
