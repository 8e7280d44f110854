//! The client handle and how one request goes: a URL on Connect only, the bearer token
//! (renewed once after a 401), and abandoned when the gateway stops.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url, header};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Mutex;

use super::budget::{Lane, SharedBudget};
use super::error::ConnectError;
use super::response::{check_and_read, error_body};
use super::token_source::{AuthStatus, TokenSource};
use crate::http::describe_reqwest;

/// Responses larger than this are refused instead of being buffered (the default of
/// `connect.max_response_bytes`).
pub const MAX_BODY_BYTES: usize = crate::config::DEFAULT_MAX_RESPONSE_BYTES;

#[derive(Clone)]
pub struct ConnectClient {
    pub(super) http: reqwest::Client,
    base: Url,
    tokens: TokenSource,
    /// The token file's content as last read.
    file_token: Arc<Mutex<Option<SecretString>>>,
    auth: Arc<std::sync::Mutex<AuthStatus>>,
    pub(super) max_body: usize,
    /// Cancelled when the gateway stops: requests still waiting give up at once.
    abort: tokio_util::sync::CancellationToken,
    /// `connect.max_requests_per_second`, shared by every clone.
    pub(super) budget: SharedBudget,
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
            budget: SharedBudget::new(0.0, 1),
        })
    }

    /// Every request (of every clone) takes its turn from one budget: `per_second` on
    /// average (0: no limit), up to `burst` at once; a 429 pauses and slows them all.
    pub fn with_request_budget(mut self, per_second: f64, burst: u32) -> Self {
        self.budget = SharedBudget::new(per_second, burst);
        self
    }

    /// Cancelling it makes every request in progress (and every later one) fail at once with
    /// a transport error: how a stopping gateway stops waiting for a slow Connect.
    pub fn abort_handle(&self) -> tokio_util::sync::CancellationToken {
        self.abort.clone()
    }

    pub(super) async fn abortable<T>(
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

    /// How authentication stands now.
    pub fn auth_status(&self) -> AuthStatus {
        self.auth.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Marks authentication as working; on every successful request, so no copy is made.
    fn auth_ok(&self) {
        let mut auth = self.auth.lock().unwrap_or_else(|p| p.into_inner());
        if auth.status != "ok" {
            auth.status = "ok";
            auth.action = None;
            auth.detail = None;
        }
    }

    fn set_auth(&self, status: &'static str, action: Option<String>, detail: Option<String>) {
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

    pub(super) fn url(&self, path: &str, query: &[(&str, String)]) -> Result<Url, ConnectError> {
        connect_url(&self.base, path, query)
    }

    /// Sends one request when its turn in the request budget comes (a read: `GET`; a write
    /// otherwise); on a 401 renews the token once (refresh token, token file) and retries.
    /// Everything it waits for, the token included, is abandoned when the gateway stops
    /// ([`ConnectClient::abort_handle`]).
    pub(super) async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        headers: &[(header::HeaderName, String)],
    ) -> Result<reqwest::Response, ConnectError> {
        let lane = if method == Method::GET {
            Lane::Read
        } else {
            Lane::Write
        };
        self.send_in(lane, method, path, query, body, headers).await
    }

    /// [`ConnectClient::send`] in the budget's `lane`.
    pub(super) async fn send_in(
        &self,
        lane: Lane,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        headers: &[(header::HeaderName, String)],
    ) -> Result<reqwest::Response, ConnectError> {
        let request = Request {
            method,
            path,
            query,
            body,
            headers,
        };
        self.abortable(self.send_renewing(lane, request)).await
    }

    async fn send_renewing(
        &self,
        lane: Lane,
        request: Request<'_>,
    ) -> Result<reqwest::Response, ConnectError> {
        let Request {
            method,
            path,
            query,
            body,
            headers,
        } = request;
        let url = self.url(path, query)?;
        let mut rejected: Option<SecretString> = None;
        loop {
            // The turn first: a read that waited for it still gets a fresh token.
            if let Err(left) = self.budget.turn(lane).await {
                return Err(ConnectError::Api {
                    status: StatusCode::TOO_MANY_REQUESTS.as_u16(),
                    code: None,
                    message: format!(
                        "Connect asked to wait (429): not asked again for {} s",
                        left.as_secs_f64().ceil()
                    ),
                    retry_after: Some(left),
                    body: None,
                });
            }
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
            if resp.status() == StatusCode::TOO_MANY_REQUESTS {
                let retry_after = resp
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(crate::http::parse_retry_after);
                self.budget.refused(retry_after);
            }
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

    pub(in crate::connect) async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ConnectError> {
        self.get_json_in(Lane::Read, path, query).await
    }

    /// [`ConnectClient::get_json`] in the budget's `lane`.
    pub(in crate::connect) async fn get_json_in<T: DeserializeOwned>(
        &self,
        lane: Lane,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ConnectError> {
        let resp = self
            .send_in(lane, Method::GET, path, query, None, &[])
            .await?;
        let bytes = self.abortable(check_and_read(resp, self.max_body)).await?;
        serde_json::from_slice(&bytes).map_err(|e| ConnectError::Decode {
            what: path.to_string(),
            detail: e.to_string(),
        })
    }
}

/// One request's parts.
struct Request<'a> {
    method: Method,
    path: &'a str,
    query: &'a [(&'a str, String)],
    body: Option<&'a Value>,
    headers: &'a [(header::HeaderName, String)],
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
