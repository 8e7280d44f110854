//! Spoolman's HTTP API, the three calls the gateway makes.

use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde_json::{Value, json};

use super::Spool;
use crate::http::{describe_reqwest, read_capped};

/// A spool list larger than this is refused (100 spools are about 150 KB).
const MAX_BODY_BYTES: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpoolmanError {
    /// 404: no such spool.
    #[error("Spoolman has no spool {0}")]
    NotFound(u64),
    /// 400 or 422: Spoolman refused the request as made; asking again will not help.
    #[error("Spoolman refused the request ({status}): {message}")]
    Refused { status: u16, message: String },
    /// No answer, another error status, or an answer not understood: worth asking again.
    #[error("Spoolman did not answer: {0}")]
    Unavailable(String),
}

#[derive(Debug, Clone)]
pub struct SpoolmanClient {
    http: reqwest::Client,
    /// `spoolman.url` with a trailing slash (Spoolman may be served under a path).
    base: Url,
}

impl SpoolmanClient {
    pub fn new(url: &str, timeout: Duration) -> Result<SpoolmanClient, String> {
        let mut base =
            Url::parse(url).map_err(|e| format!("spoolman.url = {url:?} is not a URL: {e}"))?;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("prusa-connect-mqtt/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(SpoolmanClient { http, base })
    }

    /// The spools not archived (see [`Spool::parse_list`]).
    pub async fn spools(&self) -> Result<Vec<Spool>, SpoolmanError> {
        let body = self
            .send(self.http.get(self.url("api/v1/spool")?), 0)
            .await?;
        Spool::parse_list(&body).map_err(SpoolmanError::Unavailable)
    }

    /// One spool, archived or not.
    pub async fn spool(&self, id: u64) -> Result<Spool, SpoolmanError> {
        let url = self.url(&format!("api/v1/spool/{id}"))?;
        let body = self.send(self.http.get(url), id).await?;
        Spool::parse(&body).ok_or_else(|| {
            SpoolmanError::Unavailable(format!("spool {id}'s answer has no spool in it"))
        })
    }

    /// Adds `grams` to spool `id`'s used weight. Whatever a success answers, it went through.
    pub async fn use_weight(&self, id: u64, grams: f64) -> Result<(), SpoolmanError> {
        let url = self.url(&format!("api/v1/spool/{id}/use"))?;
        let request = self.http.put(url).json(&json!({ "use_weight": grams }));
        match self.send(request, id).await {
            Ok(_) => Ok(()),
            Err(SpoolmanError::Unavailable(why)) if why.starts_with(NOT_JSON) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn url(&self, path: &str) -> Result<Url, SpoolmanError> {
        self.base.join(path).map_err(|e| SpoolmanError::Refused {
            status: 0,
            message: format!("cannot make a URL of {path:?}: {e}"),
        })
    }

    /// Sends `request` (about spool `id`, 0 for none) and reads its JSON answer.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        id: u64,
    ) -> Result<Value, SpoolmanError> {
        let unavailable = |e: reqwest::Error| SpoolmanError::Unavailable(describe_reqwest(&e));
        let mut resp = request.send().await.map_err(unavailable)?;
        let status = resp.status();
        let limit = if status.is_success() {
            MAX_BODY_BYTES
        } else {
            64 << 10
        };
        let bytes = read_capped(&mut resp, limit).await.map_err(unavailable)?;
        let body = bytes
            .as_deref()
            .and_then(|b| serde_json::from_slice::<Value>(b).ok());
        if status == StatusCode::NOT_FOUND && id != 0 {
            return Err(SpoolmanError::NotFound(id));
        }
        // A body it does not take; any other status (401 behind a proxy, 429, 5xx) may pass.
        if status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY {
            return Err(SpoolmanError::Refused {
                status: status.as_u16(),
                message: message(body.as_ref(), status),
            });
        }
        if !status.is_success() {
            return Err(SpoolmanError::Unavailable(format!(
                "{status}: {}",
                message(body.as_ref(), status)
            )));
        }
        body.ok_or_else(|| match bytes {
            None => SpoolmanError::Unavailable(format!("{NOT_JSON}: over {MAX_BODY_BYTES} bytes")),
            Some(_) => SpoolmanError::Unavailable(format!("{NOT_JSON} ({status})")),
        })
    }
}

/// How an answer that is no JSON is described (a success still is one for a use).
const NOT_JSON: &str = "the answer is not JSON";

/// Spoolman's `{"message": ...}`, FastAPI's `{"detail": [{"msg": ...}]}`, or the status.
fn message(body: Option<&Value>, status: StatusCode) -> String {
    let said = body.and_then(|b| {
        b["message"].as_str().map(str::to_string).or_else(|| {
            let details = b["detail"].as_array()?;
            let msgs: Vec<&str> = details.iter().filter_map(|d| d["msg"].as_str()).collect();
            (!msgs.is_empty()).then(|| msgs.join("; "))
        })
    });
    let said = said.map(|s| s.chars().take(200).collect::<String>());
    said.unwrap_or_else(|| status.canonical_reason().unwrap_or("no reason").to_string())
}
