//! A stand-in for Spoolman (the self-hosted filament inventory), for the gateway's tests and
//! `simulate --spoolman`: the part of its REST API the gateway uses, answering as Spoolman
//! 0.26's source does (fields without a value left out, `{"message"}` for its own errors,
//! FastAPI's `{"detail": [...]}` for a body it cannot read), with faults to switch on.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::{Value, json};

/// A spool as Spoolman keeps it.
#[derive(Debug, Clone)]
struct Spool {
    id: u64,
    vendor: String,
    name: String,
    material: String,
    initial_g: f64,
    used_g: f64,
    archived: bool,
    last_used: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    spools: BTreeMap<u64, Spool>,
    /// Every request as `METHOD /path`, in order.
    requests: Vec<String>,
    /// Uses counted: `(spool, grams)`.
    uses: Vec<(u64, f64)>,
    /// The next requests answered 503 without being looked at.
    fail_next: u32,
    /// The next uses counted, then answered 502 (the answer "lost").
    lose_next: u32,
}

/// The stand-in; clones share it.
#[derive(Debug, Clone, Default)]
pub struct SpoolmanStandIn {
    inner: Arc<Mutex<Inner>>,
}

impl SpoolmanStandIn {
    pub fn new() -> SpoolmanStandIn {
        SpoolmanStandIn::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a spool of `weight_g` grams; its id.
    pub fn add_spool(&self, vendor: &str, name: &str, material: &str, weight_g: f64) -> u64 {
        let mut inner = self.lock();
        let id = inner.spools.keys().last().map_or(1, |last| last + 1);
        inner.spools.insert(
            id,
            Spool {
                id,
                vendor: vendor.into(),
                name: name.into(),
                material: material.into(),
                initial_g: weight_g,
                used_g: 0.0,
                archived: false,
                last_used: None,
            },
        );
        id
    }

    pub fn archive(&self, id: u64) {
        if let Some(s) = self.lock().spools.get_mut(&id) {
            s.archived = true;
        }
    }

    /// Spool `id`'s used grams.
    pub fn used_g(&self, id: u64) -> Option<f64> {
        self.lock().spools.get(&id).map(|s| s.used_g)
    }

    /// The uses counted, in order: `(spool, grams)`.
    pub fn uses(&self) -> Vec<(u64, f64)> {
        self.lock().uses.clone()
    }

    /// Every request so far, as `METHOD /path`.
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    /// The next `n` requests are answered 503 (Spoolman down behind a proxy).
    pub fn fail_next(&self, n: u32) {
        self.lock().fail_next = n;
    }

    /// The next `n` uses are counted, and answered 502: the answer is lost on the way.
    pub fn lose_next_answers(&self, n: u32) {
        self.lock().lose_next = n;
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/api/v1/health",
                get(|| async { json_ok(json!({"status": "healthy"})) }),
            )
            .route(
                "/api/v1/info",
                get(|| async { json_ok(json!({"version": "0.26.1"})) }),
            )
            .route("/api/v1/spool", get(list))
            .route("/api/v1/spool/{id}", get(one))
            .route("/api/v1/spool/{id}/use", put(use_filament))
            .layer(axum::middleware::from_fn_with_state(self.clone(), record))
            .with_state(self.clone())
    }

    /// Serves on `listener` until `shutdown`.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// Records each request; answers 503 instead while `fail_next` lasts.
async fn record(
    State(stand_in): State<SpoolmanStandIn>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    {
        let mut inner = stand_in.lock();
        let line = format!("{} {}", request.method(), request.uri().path());
        inner.requests.push(line);
        if inner.fail_next > 0 {
            inner.fail_next -= 1;
            return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
        }
    }
    next.run(request).await
}

fn json_ok(v: Value) -> Response {
    axum::Json(v).into_response()
}

fn message(status: StatusCode, text: String) -> Response {
    (status, axum::Json(json!({ "message": text }))).into_response()
}

fn detail(kind: &str, loc: Value, msg: &str) -> Response {
    let body = json!({"detail": [{"type": kind, "loc": loc, "msg": msg}]});
    (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response()
}

/// Spoolman's JSON of a spool: what has no value is left out.
fn render(s: &Spool) -> Value {
    let remaining = (s.initial_g - s.used_g).max(0.0);
    let mut v = json!({
        "id": s.id,
        "registered": "2026-11-01T10:00:00Z",
        "filament": {
            "id": s.id, "registered": "2026-11-01T10:00:00Z", "name": s.name,
            "vendor": {"id": 1, "registered": "2026-11-01T10:00:00Z", "name": s.vendor, "extra": {}},
            "material": s.material, "density": 1.24, "diameter": 1.75, "weight": s.initial_g,
            "extra": {}
        },
        "initial_weight": s.initial_g,
        "remaining_weight": remaining,
        "used_weight": s.used_g,
        "used_length": (s.used_g / 1.24 / (std::f64::consts::PI * 0.875 * 0.875) * 1000.0).round(),
        "archived": s.archived,
        "extra": {}
    });
    if let Some(t) = &s.last_used {
        v["first_used"] = json!(t);
        v["last_used"] = json!(t);
    }
    v
}

#[derive(serde::Deserialize)]
struct ListQuery {
    allow_archived: Option<String>,
}

async fn list(State(stand_in): State<SpoolmanStandIn>, Query(q): Query<ListQuery>) -> Response {
    let archived = match q.allow_archived.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return detail(
                "bool_parsing",
                json!(["query", "allow_archived"]),
                "Input should be a valid boolean",
            );
        }
    };
    let inner = stand_in.lock();
    let spools: Vec<Value> = inner
        .spools
        .values()
        .filter(|s| archived || !s.archived)
        .map(render)
        .collect();
    let total = spools.len().to_string();
    ([("x-total-count", total)], axum::Json(spools)).into_response()
}

/// FastAPI's answer to a path id that is no integer.
fn bad_id() -> Response {
    detail(
        "int_parsing",
        json!(["path", "spool_id"]),
        "Input should be a valid integer, unable to parse string as an integer",
    )
}

async fn one(State(stand_in): State<SpoolmanStandIn>, Path(raw): Path<String>) -> Response {
    let Ok(id) = raw.parse::<u64>() else {
        return bad_id();
    };
    match stand_in.lock().spools.get(&id) {
        Some(s) => json_ok(render(s)),
        None => message(
            StatusCode::NOT_FOUND,
            format!("No spool with ID {id} found."),
        ),
    }
}

/// `PUT /api/v1/spool/{id}/use`: `{"use_weight": g}` or `{"use_length": mm}`, not both.
async fn use_filament(
    State(stand_in): State<SpoolmanStandIn>,
    Path(raw): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let Ok(id) = raw.parse::<u64>() else {
        return bad_id();
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return detail("json_invalid", json!(["body", 0]), "JSON decode error");
    };
    // A value that is no number: the key FastAPI names.
    let field = |key: &'static str| match &body[key] {
        Value::Null => Ok(None),
        Value::Number(n) => Ok(n.as_f64()),
        _ => Err(key),
    };
    let (weight, length) = match (field("use_weight"), field("use_length")) {
        (Ok(w), Ok(l)) => (w, l),
        (Err(key), _) | (_, Err(key)) => {
            return detail(
                "float_parsing",
                json!(["body", key]),
                "Input should be a valid number, unable to parse string as a number",
            );
        }
    };
    let grams = match (weight, length) {
        (Some(_), Some(_)) => {
            return message(
                StatusCode::BAD_REQUEST,
                "Only specify either use_weight or use_length.".into(),
            );
        }
        (None, None) => {
            return message(
                StatusCode::BAD_REQUEST,
                "Either use_weight or use_length must be specified.".into(),
            );
        }
        (Some(g), None) => g,
        (None, Some(mm)) => mm / 1000.0 * 1.24 * std::f64::consts::PI * 0.875 * 0.875,
    };
    let mut inner = stand_in.lock();
    let lose = inner.lose_next > 0;
    let Some(spool) = inner.spools.get_mut(&id) else {
        return message(
            StatusCode::NOT_FOUND,
            format!("No spool with ID {id} found."),
        );
    };
    spool.used_g = (spool.used_g + grams).max(0.0);
    spool.last_used = Some("2026-12-06T12:00:00Z".into());
    let rendered = render(spool);
    inner.uses.push((id, grams));
    if lose {
        inner.lose_next -= 1;
        return (StatusCode::BAD_GATEWAY, "Bad Gateway").into_response();
    }
    json_ok(rendered)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn serve(stand_in: &SpoolmanStandIn) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(stand_in.clone().serve(listener, std::future::pending()));
        url
    }

    #[tokio::test]
    async fn it_answers_as_spoolman_does() {
        let stand_in = SpoolmanStandIn::new();
        let a = stand_in.add_spool("Polymaker", "PolyTerra Charcoal Black", "PLA", 1000.0);
        let b = stand_in.add_spool("Prusament", "PETG Jet Black", "PETG", 1000.0);
        stand_in.archive(b);
        let url = serve(&stand_in).await;
        let http = reqwest::Client::new();
        let list = http
            .get(format!("{url}/api/v1/spool"))
            .send()
            .await
            .unwrap();
        assert_eq!(list.headers()["x-total-count"], "1");
        let list: Value = list.json().await.unwrap();
        assert_eq!(list[0]["filament"]["vendor"]["name"], "Polymaker");
        assert!(list[0].get("last_used").is_none(), "no value, no field");
        let put = |id: &str, body: &str| {
            http.put(format!("{url}/api/v1/spool/{id}/use"))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
        };
        let used = put(&a.to_string(), r#"{"use_weight": 12.5}"#)
            .await
            .unwrap();
        assert_eq!(used.status(), 200);
        let used: Value = used.json().await.unwrap();
        assert_eq!(
            (
                used["used_weight"].as_f64(),
                used["remaining_weight"].as_f64()
            ),
            (Some(12.5), Some(987.5))
        );
        for (id, body, status, text) in [
            (
                "999",
                r#"{"use_weight": 1}"#,
                404,
                "No spool with ID 999 found.",
            ),
            (
                "1",
                r#"{"use_weight": 1, "use_length": 3}"#,
                400,
                "Only specify either",
            ),
            ("1", "{}", 400, "Either use_weight or use_length"),
            ("1", r#"{"use_weight": "abc"}"#, 422, "float_parsing"),
            ("1", "not json", 422, "json_invalid"),
            ("abc", r#"{"use_weight": 1}"#, 422, "int_parsing"),
        ] {
            let r = put(id, body).await.unwrap();
            assert_eq!(r.status(), status, "{id} {body}");
            assert!(r.text().await.unwrap().contains(text), "{id} {body}");
        }
        assert_eq!(stand_in.uses(), [(a, 12.5)]);
        stand_in.lose_next_answers(1);
        assert_eq!(
            put("1", r#"{"use_weight": 2}"#).await.unwrap().status(),
            502
        );
        assert_eq!(stand_in.used_g(a), Some(14.5), "counted, answer lost");
        stand_in.fail_next(1);
        assert_eq!(
            put("1", r#"{"use_weight": 2}"#).await.unwrap().status(),
            503
        );
        assert_eq!(stand_in.used_g(a), Some(14.5), "not looked at");
    }
}
