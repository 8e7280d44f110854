//! The reads: one GET per Connect resource, parsed into the API's types.

use reqwest::{Method, StatusCode, header};
use serde_json::Value;
use serde_json::value::RawValue;

use super::budget::Lane;
use super::error::ConnectError;
use super::response::check_and_read;
use super::transport::ConnectClient;
use crate::connect::model::{
    CameraList, FeedEvent, Job, JobList, Opaque, Pager, PrintFile, Printer, PrinterTypes, Queue,
    ServerVersion, Storage, SupportedCommands, Unseen,
};
use crate::http::describe_reqwest;

/// Printers asked for per list request; a farm larger than this takes more than one request.
pub const PRINTERS_PAGE: u64 = 100;

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
    /// The catch-up read as many pages as it may ([`crate::connect::EVENTS_MAX_PAGES`]) and the last
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
                // Each printer is read from its own text: one that cannot be read is
                // reported, not fatal, and no `Value` tree is built on the way (it was a
                // fifth of a 2,000-printer farm's CPU).
                printers: Vec<Box<RawValue>>,
                #[serde(default)]
                pager: Pager,
            }
            let page: Page = self
                .get_json_in(
                    Lane::List,
                    "/app/printers",
                    &[
                        ("limit", PRINTERS_PAGE.to_string()),
                        ("offset", offset.to_string()),
                    ],
                )
                .await?;
            let n = page.printers.len() as u64;
            let mut new_on_page = 0;
            for raw in page.printers {
                match serde_json::from_str::<Printer>(raw.get()) {
                    // A Connect that ignores `offset` sends the same page again: skip repeats.
                    Ok(p) if seen.insert(p.uuid.clone()) => {
                        new_on_page += 1;
                        printers.push(p);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        #[derive(serde::Deserialize)]
                        struct Named {
                            uuid: Option<Value>,
                        }
                        let uuid = serde_json::from_str::<Named>(raw.get())
                            .ok()
                            .and_then(|n| n.uuid?.as_str().map(str::to_string));
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
    /// its query as Connect wrote it); see [`super::transport::connect_url`] for what is refused.
    pub async fn preview(&self, url: &str) -> Result<Vec<u8>, ConnectError> {
        let resp = self.send(Method::GET, url, &[], None, &[]).await?;
        self.abortable(check_and_read(resp, self.max_body)).await
    }

    pub async fn storages(&self, uuid: &str) -> Result<Opaque, ConnectError> {
        self.get_json(&format!("/app/printers/{uuid}/storages"), &[])
            .await
    }

    /// The printer's storages, as far as their shape can be read.
    pub async fn storage_list(&self, uuid: &str) -> Result<Vec<Storage>, ConnectError> {
        let body: serde_json::Value = self
            .get_json(&format!("/app/printers/{uuid}/storages"), &[])
            .await?;
        Ok(crate::connect::model::storages(&body))
    }

    /// One of Connect's statistics of a printer (`endpoint`: `jobs_success`...), from `from`
    /// to `to` (Unix seconds), as the JSON it is: its shape is not documented.
    pub async fn printer_stats(
        &self,
        uuid: &str,
        endpoint: &str,
        from: i64,
        to: i64,
    ) -> Result<serde_json::Value, ConnectError> {
        let query = [("from", from.to_string()), ("to", to.to_string())];
        self.get_json(&format!("/app/stats/printers/{uuid}/{endpoint}"), &query)
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
                // A read waits out a pause: it is never refused by the budget.
                let _ = self.budget.turn(Lane::Read).await;
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
}
