//! The simulator over real HTTP, as the gateway sees it.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::*;
use crate::world::real_now_us;

mod admin_http;
mod command_sync;
mod connect_api;
mod controls;
mod faults_and_records;
mod feed_and_jobs;
mod live;
mod printer_files;
mod scenarios;

pub(super) const TOKEN: &str = "test-token";

/// A simulator serving on 127.0.0.1:0; the account server's tests use it too.
pub(super) struct Server {
    pub base: String,
    pub client: reqwest::Client,
    pub sim: Simulator,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub(super) async fn start(opts: SimOptions) -> Server {
    let sim = Simulator::new(opts);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(sim.clone().serve(listener, async move {
        let _ = stopped.await;
    }));
    Server {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        sim,
        stop: Some(stop),
        handle,
    }
}

pub(super) async fn start_empty() -> Server {
    start(SimOptions::default()).await
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends and reads the body as JSON, or as a JSON string when it is not JSON.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let text = response.text().await.expect("body read");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.client.get(self.url(path)).bearer_auth(TOKEN))
            .await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(
            self.client
                .post(self.url(path))
                .bearer_auth(TOKEN)
                .json(&body),
        )
        .await
    }

    async fn command(&self, uuid: &str, command: &str, kwargs: Value) -> (StatusCode, Value) {
        let path = format!("/app/printers/{uuid}/commands/sync");
        self.post(&path, json!({ "command": command, "kwargs": kwargs }))
            .await
    }

    async fn printer(&self, uuid: &str) -> Value {
        let (status, body) = self.get(&format!("/app/printers/{uuid}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn events(&self, uuid: &str, query: &str) -> Vec<Value> {
        let (status, body) = self
            .get(&format!("/app/printers/{uuid}/events?{query}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["events"].as_array().cloned().unwrap_or_default()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(5), self.handle)
            .await
            .expect("server stops within 5 s")
            .expect("server task did not panic");
        assert!(result.is_ok(), "{result:?}");
    }
}

fn names(events: &[Value]) -> Vec<&str> {
    events.iter().filter_map(|e| e["event"].as_str()).collect()
}

fn created(events: &[Value]) -> Vec<f64> {
    events
        .iter()
        .filter_map(|e| e["created"].as_f64())
        .collect()
}
