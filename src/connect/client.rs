//! HTTP client for Prusa Connect's `/app` API: bearer auth, size-bounded bodies, typed errors.

mod commands;
mod credentials;
mod reads;
mod response;

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url, header};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Mutex;

pub use credentials::{AuthStatus, TokenSource};
pub use reads::{FeedBatch, RejectedPrinter, Snapshot};
use response::{check_and_read, error_body};

pub(crate) use crate::http::describe_reqwest;
pub use crate::http::parse_retry_after;

use crate::auth::AuthError;

/// Responses larger than this are refused instead of being buffered (the default of
/// `connect.max_response_bytes`).
pub const MAX_BODY_BYTES: usize = crate::config::DEFAULT_MAX_RESPONSE_BYTES;
/// Printers asked for per list request; a farm larger than this takes more than one request.
pub const PRINTERS_PAGE: u64 = 100;

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

#[derive(Clone)]
pub struct ConnectClient {
    http: reqwest::Client,
    base: Url,
    tokens: TokenSource,
    /// The token file's content as last read.
    file_token: Arc<Mutex<Option<SecretString>>>,
    auth: Arc<std::sync::Mutex<AuthStatus>>,
    max_body: usize,
    /// Cancelled when the gateway stops: requests still waiting give up at once.
    abort: tokio_util::sync::CancellationToken,
}

impl std::fmt::Debug for ConnectClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl ConnectClient {
    pub fn new(base: &str, tokens: TokenSource, timeout: Duration) -> Result<Self, ConnectError> {
        let base = Url::parse(base)
            .map_err(|e| ConnectError::Transport(format!("bad Connect URL {base:?}: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            .user_agent(concat!("prusa-connect-mqtt/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConnectError::Transport(e.to_string()))?;
        let auth = AuthStatus {
            method: tokens.method(),
            status: "ok",
            action: None,
            detail: None,
        };
        Ok(Self {
            http,
            base,
            tokens,
            file_token: Arc::new(Mutex::new(None)),
            auth: Arc::new(std::sync::Mutex::new(auth)),
            max_body: MAX_BODY_BYTES,
            abort: tokio_util::sync::CancellationToken::new(),
        })
    }

    /// Cancelling it makes every request in progress (and every later one) fail at once with
    /// a transport error: how a stopping gateway stops waiting for a slow Connect.
    pub fn abort_handle(&self) -> tokio_util::sync::CancellationToken {
        self.abort.clone()
    }

    async fn abortable<T>(
        &self,
        request: impl std::future::Future<Output = Result<T, ConnectError>>,
    ) -> Result<T, ConnectError> {
        tokio::select! {
            biased;
            result = request => result,
            _ = self.abort.cancelled() => Err(ConnectError::Transport(
                "the gateway is stopping: request abandoned".into(),
            )),
        }
    }

    /// Refuses response bodies larger than `bytes` (`connect.max_response_bytes`).
    pub fn with_max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> Result<Url, ConnectError> {
        connect_url(&self.base, path, query)
    }

    /// Sends one request; on a 401 renews the token once (refresh token, token file) and
    /// retries. Everything it waits for, the token included, is abandoned when the gateway
    /// stops ([`ConnectClient::abort_handle`]).
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        headers: &[(header::HeaderName, String)],
    ) -> Result<reqwest::Response, ConnectError> {
        self.abortable(self.send_renewing(method, path, query, body, headers))
            .await
    }

    async fn send_renewing(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        headers: &[(header::HeaderName, String)],
    ) -> Result<reqwest::Response, ConnectError> {
        let url = self.url(path, query)?;
        let mut rejected: Option<SecretString> = None;
        loop {
            let token = self.bearer(rejected.as_ref()).await?;
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.expose_secret());
            for (name, value) in headers {
                req = req.header(name, value);
            }
            if let Some(body) = body {
                req = req.json(body);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| ConnectError::Transport(describe_reqwest(&e)))?;
            if resp.status() == StatusCode::UNAUTHORIZED {
                let message = error_body(resp)
                    .await
                    .and_then(|e| e.message)
                    .filter(|m| !m.trim().is_empty())
                    .unwrap_or_else(|| "no reason given".into());
                let renewable =
                    matches!(self.tokens, TokenSource::File(_) | TokenSource::Refresh(_));
                if rejected.is_none() && renewable {
                    rejected = Some(token);
                    continue;
                }
                let error = ConnectError::Unauthorized { message };
                self.set_auth(
                    "access_token_rejected",
                    Some(self.tokens.rejected_action()),
                    Some(error.to_string()),
                );
                return Err(error);
            }
            self.auth_ok();
            return Ok(resp);
        }
    }

    pub(super) async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ConnectError> {
        let resp = self.send(Method::GET, path, query, None, &[]).await?;
        let bytes = self.abortable(check_and_read(resp, self.max_body)).await?;
        serde_json::from_slice(&bytes).map_err(|e| ConnectError::Decode {
            what: path.to_string(),
            detail: e.to_string(),
        })
    }
}

/// The URL of `path` on Connect at `base`, with `query` added. `path` may carry its own
/// query (Connect's `preview_url` does): it is kept as written, so `%2F` stays `%2F`.
///
/// The URL is built first and its origin checked after: a path that leads elsewhere once
/// parsed (`//host/x`, `/\host/x`, a tab or newline between the slashes, an absolute URL) is
/// refused, so a path from Connect's JSON can never send the bearer token to another host.
pub fn connect_url(base: &Url, path: &str, query: &[(&str, String)]) -> Result<Url, ConnectError> {
    let mut url = base
        .join(path)
        .map_err(|_| ConnectError::OffConnect(path.to_string()))?;
    if url.origin() != base.origin() {
        return Err(ConnectError::OffConnect(path.to_string()));
    }
    if !query.is_empty() {
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
    }
    Ok(url)
}

#[cfg(test)]
mod tests;
