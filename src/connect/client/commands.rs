//! The writes: a printer command, and a finished job's failure reason. Never retried.

use reqwest::Method;
use serde_json::Value;

use super::error::ConnectError;
use super::response::check_and_read;
use super::transport::ConnectClient;
use crate::connect::model::CommandResult;

impl ConnectClient {
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
