//! HTTP client for Prusa Connect's `/app` API: bearer auth, size-bounded bodies, typed errors.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url, header};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Mutex;

use super::model::*;
use crate::auth::{AuthError, LOGIN_ACTION, Refresher};

/// Responses larger than this are refused instead of being buffered (the default of
/// `connect.max_response_bytes`).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
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
    fn method(&self) -> &'static str {
        match self {
            Self::Static(_) | Self::None => "access_token",
            Self::File(_) => "token_file",
            Self::Refresh(_) => "refresh_token",
        }
    }

    /// What to tell the user when Connect refuses the token this source gave.
    fn rejected_action(&self) -> String {
        match self {
            Self::Static(_) | Self::None => format!(
                "set a new connect.access_token, or {LOGIN_ACTION} to use a refresh token that renews itself"
            ),
            Self::File(path) => format!("write a valid access token to {}", path.display()),
            Self::Refresh(_) => LOGIN_ACTION.to_string(),
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

/// A printer in Connect's list whose JSON could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedPrinter {
    pub uuid: Option<String>,
    pub error: String,
}

impl std::fmt::Display for RejectedPrinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "printer {}: {}",
            self.uuid.as_deref().unwrap_or("<no uuid>"),
            self.error
        )
    }
}

/// Feed events, oldest first, and Connect's clock when the feed said it.
#[derive(Debug, Clone)]
pub struct FeedBatch {
    pub events: Vec<FeedEvent>,
    pub server_now: Option<f64>,
    /// The catch-up read as many pages as it may ([`super::EVENTS_MAX_PAGES`]) and the last
    /// was full: older events after the cursor may be missing.
    pub capped: bool,
}

/// A successful snapshot fetch: new bytes, or "not modified".
#[derive(Debug, Clone)]
pub enum Snapshot {
    Image {
        bytes: Vec<u8>,
        etag: Option<String>,
        last_modified: Option<String>,
    },
    NotModified,
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
    pub(super) async fn bearer(
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

    /// Every printer of the account, paging when there are more than [`PRINTERS_PAGE`].
    /// A printer whose JSON cannot be read is returned in the second list, not fatal.
    pub async fn printers(&self) -> Result<(Vec<Printer>, Vec<RejectedPrinter>), ConnectError> {
        let mut printers = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut bad = Vec::new();
        let mut offset = 0u64;
        loop {
            #[derive(serde::Deserialize)]
            struct Page {
                printers: Vec<Value>,
                #[serde(default)]
                pager: Pager,
            }
            let page: Page = self
                .get_json(
                    "/app/printers",
                    &[
                        ("limit", PRINTERS_PAGE.to_string()),
                        ("offset", offset.to_string()),
                    ],
                )
                .await?;
            let n = page.printers.len() as u64;
            let mut new_on_page = 0;
            for value in page.printers {
                match serde_json::from_value::<Printer>(value.clone()) {
                    // A Connect that ignores `offset` sends the same page again: skip repeats.
                    Ok(p) if seen.insert(p.uuid.clone()) => {
                        new_on_page += 1;
                        printers.push(p);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let uuid = value
                            .get("uuid")
                            .and_then(Value::as_str)
                            .map(str::to_string);
                        bad.push(RejectedPrinter {
                            uuid,
                            error: e.to_string(),
                        });
                    }
                }
            }
            offset += n;
            let total = page.pager.total.unwrap_or(offset);
            // A page with nothing new ends the list whatever the pager says.
            if n == 0 || new_on_page == 0 || offset >= total || offset >= 100_000 {
                break;
            }
        }
        Ok((printers, bad))
    }

    pub async fn printer(&self, uuid: &str) -> Result<Printer, ConnectError> {
        self.get_json(&format!("/app/printers/{uuid}"), &[]).await
    }

    pub async fn jobs(&self, uuid: &str, limit: u64) -> Result<JobList, ConnectError> {
        self.get_json(
            &format!("/app/printers/{uuid}/jobs"),
            &[("limit", limit.to_string()), ("offset", "0".into())],
        )
        .await
    }

    pub async fn job(&self, uuid: &str, job_id: i64) -> Result<Job, ConnectError> {
        self.get_json(&format!("/app/printers/{uuid}/jobs/{job_id}"), &[])
            .await
    }

    /// The first planned job and (in `pager.total`) how many there are.
    pub async fn queue(&self, uuid: &str) -> Result<Queue, ConnectError> {
        self.get_json(
            &format!("/app/printers/{uuid}/queue"),
            &[("limit", "1".into()), ("offset", "0".into())],
        )
        .await
    }

    /// The first file waiting to be downloaded to the printer, and how many wait.
    pub async fn download_queue(&self, uuid: &str) -> Result<Queue, ConnectError> {
        self.get_json(
            &format!("/app/printers/{uuid}/download-queue"),
            &[("limit", "1".into()), ("offset", "0".into())],
        )
        .await
    }

    pub async fn files(&self, uuid: &str) -> Result<Opaque, ConnectError> {
        self.get_json(&format!("/app/printers/{uuid}/files"), &[])
            .await
    }

    /// The files the printer can print (the first 100).
    pub async fn print_files(&self, uuid: &str) -> Result<Vec<PrintFile>, ConnectError> {
        let body: Value = self
            .get_json(
                &format!("/app/printers/{uuid}/files"),
                &[("limit", "100".into())],
            )
            .await?;
        Ok(crate::connect::model::print_files(&body))
    }

    /// A job's thumbnail. `url` is Connect's `preview_url` (a path on Connect, usually, with
    /// its query as Connect wrote it); see [`connect_url`] for what is refused.
    pub async fn preview(&self, url: &str) -> Result<Vec<u8>, ConnectError> {
        let resp = self.send(Method::GET, url, &[], None, &[]).await?;
        self.abortable(check_and_read(resp, self.max_body)).await
    }

    pub async fn storages(&self, uuid: &str) -> Result<Opaque, ConnectError> {
        self.get_json(&format!("/app/printers/{uuid}/storages"), &[])
            .await
    }

    pub async fn cameras(&self, uuid: &str) -> Result<CameraList, ConnectError> {
        self.get_json(&format!("/app/printers/{uuid}/cameras"), &[])
            .await
    }

    /// The last snapshot of a camera; `etag` / `last_modified` from the previous fetch make
    /// an unchanged image cost a 304 and no body.
    pub async fn snapshot(
        &self,
        camera_id: &str,
        printer_uuid: &str,
        etag: Option<&str>,
        last_modified: Option<&str>,
    ) -> Result<Snapshot, ConnectError> {
        let headers: Vec<_> = etag
            .map(|e| (header::IF_NONE_MATCH, e.to_string()))
            .into_iter()
            .chain(last_modified.map(|m| (header::IF_MODIFIED_SINCE, m.to_string())))
            .collect();
        let resp = self
            .send(
                Method::GET,
                &format!("/app/cameras/{camera_id}/snapshots/last"),
                &[("printer_uuid", printer_uuid.to_string())],
                None,
                &headers,
            )
            .await?;
        if resp.status() == StatusCode::NOT_MODIFIED {
            return Ok(Snapshot::NotModified);
        }
        let header_text = |name| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = header_text(header::ETAG);
        let last_modified = header_text(header::LAST_MODIFIED);
        let bytes = self.abortable(check_and_read(resp, self.max_body)).await?;
        Ok(Snapshot::Image {
            bytes,
            etag,
            last_modified,
        })
    }

    pub async fn supported_commands(&self, uuid: &str) -> Result<SupportedCommands, ConnectError> {
        self.get_json(&format!("/app/printers/{uuid}/supported-commands"), &[])
            .await
    }

    pub async fn printer_types(&self) -> Result<PrinterTypes, ConnectError> {
        self.get_json("/app/printer-types", &[]).await
    }

    pub async fn unseen_notifications(&self) -> Result<Unseen, ConnectError> {
        self.get_json("/app/notifications/unseen", &[]).await
    }

    pub async fn version(&self) -> Result<ServerVersion, ConnectError> {
        let url = self.url("/version.json", &[])?;
        let bytes = self
            .abortable(async {
                let resp = self
                    .http
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| ConnectError::Transport(describe_reqwest(&e)))?;
                check_and_read(resp, self.max_body).await
            })
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| ConnectError::Decode {
            what: "/version.json".into(),
            detail: e.to_string(),
        })
    }

    /// Runs one command. Never retried here: MOVE twice moves twice.
    pub async fn execute(
        &self,
        uuid: &str,
        command: &str,
        kwargs: &serde_json::Map<String, Value>,
    ) -> Result<CommandResult, ConnectError> {
        let body = serde_json::json!({"command": command, "kwargs": kwargs});
        let path = format!("/app/printers/{uuid}/commands/sync");
        let resp = self
            .send(Method::POST, &path, &[], Some(&body), &[])
            .await?;
        let bytes = self.abortable(check_and_read(resp, self.max_body)).await?;
        serde_json::from_slice(&bytes).map_err(|e| ConnectError::Decode {
            what: path,
            detail: e.to_string(),
        })
    }

    /// Sets the failure reason of a finished job (`PATCH /jobs/{id}`).
    pub async fn set_job_reason(
        &self,
        uuid: &str,
        job_id: i64,
        reason: &Value,
    ) -> Result<(), ConnectError> {
        let body = serde_json::json!({ "reason": reason });
        let path = format!("/app/printers/{uuid}/jobs/{job_id}");
        let resp = self
            .send(Method::PATCH, &path, &[], Some(&body), &[])
            .await?;
        self.abortable(check_and_read(resp, self.max_body))
            .await
            .map(|_| ())
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

pub(crate) fn describe_reqwest(e: &reqwest::Error) -> String {
    // reqwest's Display hides the cause ("error sending request"); the chain says why.
    let mut text = if e.is_timeout() {
        "request timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn error_body(resp: reqwest::Response) -> Option<ApiError> {
    let bytes = read_limited(resp, 64 * 1024).await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Turns a non-success status into [`ConnectError::Api`], otherwise reads the body.
async fn check_and_read(resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, ConnectError> {
    let status = resp.status();
    if status.is_success() {
        return read_limited(resp, limit).await;
    }
    let retry_after = resp
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let bytes = read_limited(resp, 64 * 1024).await.unwrap_or_default();
    let body: Option<Value> = serde_json::from_slice(&bytes).ok();
    let parsed: Option<ApiError> = body
        .as_ref()
        .and_then(|b| serde_json::from_value(b.clone()).ok());
    let message = parsed
        .as_ref()
        .and_then(|e| e.message.clone())
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("unexpected status")
                .to_string()
        });
    Err(ConnectError::Api {
        status: status.as_u16(),
        code: parsed.and_then(|e| e.code),
        message,
        retry_after,
        body,
    })
}

/// `Retry-After` as seconds or as an HTTP date (RFC 9110 §10.2.3); at most an hour.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    };
    Some(wait.min(Duration::from_secs(3600)))
}

async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, ConnectError> {
    if let Some(len) = resp.content_length()
        && len as usize > limit
    {
        return Err(ConnectError::Decode {
            what: resp.url().path().to_string(),
            detail: format!(
                "the response of {len} bytes is over the limit of {limit} (connect.max_response_bytes)"
            ),
        });
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ConnectError::Transport(describe_reqwest(&e)))?
    {
        if out.len() + chunk.len() > limit {
            return Err(ConnectError::Decode {
                what: resp.url().path().to_string(),
                detail: format!(
                    "the response is over the limit of {limit} bytes (connect.max_response_bytes)"
                ),
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_or_date() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("99999"), Some(Duration::from_secs(3600)));
        let soon = std::time::SystemTime::now() + Duration::from_secs(120);
        let wait = parse_retry_after(&httpdate::fmt_http_date(soon)).unwrap();
        assert!((118..=120).contains(&wait.as_secs()), "{wait:?}");
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn paths_that_lead_off_connect_are_refused_before_any_request() {
        let base = Url::parse("https://connect.example/").unwrap();
        for hostile in [
            "/\\evil.example/x",
            "\\\\evil.example/x",
            "/\t/evil.example/x",
            "/\n/evil.example/x",
            "\t//evil.example/x",
            "//evil.example/x",
            "https://evil.example/x",
            "http://connect.example/x",
            "https://connect.example:8443/x",
            "https://connect.example@evil.example/x",
            "data:text/plain,x",
        ] {
            let built = connect_url(&base, hostile, &[]);
            assert!(
                matches!(built, Err(ConnectError::OffConnect(_))),
                "{hostile:?} -> {built:?}"
            );
        }
    }

    #[test]
    fn a_path_on_connect_keeps_its_query_as_written() {
        let base = Url::parse("http://127.0.0.1:8080/").unwrap();
        let url = |path, query: &[(&str, String)]| {
            connect_url(&base, path, query)
                .unwrap()
                .as_str()
                .to_string()
        };
        assert_eq!(
            url("/app/teams/1/files/ab/preview?sig=a%2Fb+c&x=1", &[]),
            "http://127.0.0.1:8080/app/teams/1/files/ab/preview?sig=a%2Fb+c&x=1"
        );
        assert_eq!(
            url(
                "/app/printers/u/events",
                &[("limit", "100".into()), ("from", "5".into())]
            ),
            "http://127.0.0.1:8080/app/printers/u/events?limit=100&from=5"
        );
        assert_eq!(
            url("http://127.0.0.1:8080/app/x.png", &[]),
            "http://127.0.0.1:8080/app/x.png",
            "an absolute URL on Connect is Connect"
        );
    }
}
