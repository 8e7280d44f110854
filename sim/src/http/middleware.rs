//! What every request goes through: recording, faults (Connect's and the account server's),
//! and authentication.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::world::real_now_us;
use crate::{Fault, RecordedRequest, Simulator, account};

/// Larger bodies are refused with 413.
const MAX_BODY: usize = 1 << 20;
const AUTH_COOKIE: &str = "auth.access_token";

/// The fault chosen for a Connect request when it was recorded, for [`apply_fault`].
#[derive(Debug, Clone)]
struct ChosenFault(Option<Fault>);

/// Buffers the body and records the request (admin requests excepted). Connect's fault for
/// the request is chosen here, so that the record says which fault it got.
pub(super) async fn record(State(sim): State<Simulator>, request: Request, next: Next) -> Response {
    let at = sim.world().started.elapsed();
    let (mut parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("Request bodies are limited to {MAX_BODY} bytes"),
        )
        .into_response();
    };
    let path = parts.uri.path().to_string();
    if path != "/_sim" && !path.starts_with("/_sim/") {
        let seq = {
            let mut world = sim.world();
            let fault = if path == "/app" || path.starts_with("/app/") {
                world.take_fault(&path)
            } else {
                None
            };
            parts.extensions.insert(ChosenFault(fault.clone()));
            world.record(RecordedRequest {
                method: parts.method.to_string(),
                path: path.to_string(),
                query: parts.uri.query().unwrap_or_default().to_string(),
                authorization: parts
                    .headers
                    .get(AUTHORIZATION)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
                body: String::from_utf8_lossy(&bytes).into_owned(),
                at,
                fault,
                status: None,
                took: None,
                seq: 0,
            })
        };
        let started = std::time::Instant::now();
        let response = next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
        sim.world()
            .answered(seq, response.status().as_u16(), started.elapsed());
        return response;
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

pub(super) async fn apply_fault(request: Request, next: Next) -> Response {
    let fault = request
        .extensions()
        .get::<ChosenFault>()
        .and_then(|c| c.0.clone());
    with_fault(fault, Service::Connect, request, next).await
}

/// Which server a fault hits: the error bodies differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    /// Connect's JSON errors.
    Connect,
    /// The account server's HTML error pages.
    Account,
}

/// Answers `request` as `fault` says, or passes it on when there is none.
pub(crate) async fn with_fault(
    fault: Option<Fault>,
    service: Service,
    request: Request,
    next: Next,
) -> Response {
    let error = |status: StatusCode, code: &'static str, message: String| match service {
        Service::Connect => ApiError::new(status, code, message).into_response(),
        Service::Account => account::http::status_page(status),
    };
    match fault {
        None => next.run(request).await,
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error(
                status,
                "SIMULATED_FAULT",
                format!("Simulated fault: HTTP {}", status.as_u16()),
            )
        }
        Some(Fault::TooManyRequests { retry_after_s }) => {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "TOO_MANY_REQUESTS",
                "Too many requests, slow down".to_string(),
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry_after_s));
            response
        }
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            next.run(request).await
        }
        Some(Fault::MalformedJson) => {
            let body = match service {
                Service::Connect => r#"{"printers": [oops"#,
                Service::Account => r#"{"access_token": oops"#,
            };
            ([(CONTENT_TYPE, "application/json")], body).into_response()
        }
        Some(Fault::TruncatedJson) => {
            let (mut parts, body) = next.run(request).await.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            parts.headers.remove(CONTENT_LENGTH);
            let half = bytes.slice(..bytes.len() / 2);
            Response::from_parts(parts, Body::from(half))
        }
        Some(Fault::ConnectionReset) => {
            // hyper writes nothing until the body gives its first chunk, and closes the
            // connection when the body fails: the client gets no status line at all.
            Body::from_stream(tokio_util::io::ReaderStream::new(FailingReader)).into_response()
        }
    }
}

/// A body source that fails at once, for [`Fault::ConnectionReset`].
struct FailingReader;

impl tokio::io::AsyncRead for FailingReader {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        _buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "simulated connection reset",
        )))
    }
}

/// `Authorization: Bearer <token>` or the `auth.access_token` cookie. Access tokens the
/// account server issued pass while unexpired; other tokens must be the configured one, or
/// anything non-empty when none is configured.
pub(super) async fn authenticate(
    State(sim): State<Simulator>,
    request: Request,
    next: Next,
) -> Response {
    let expected = sim.world().token.clone();
    let offered = offered_tokens(request.headers());
    let accepted = sim
        .account()
        .admits(&offered, expected.as_deref(), real_now_us());
    if !accepted {
        let mut response = ApiError::unauthorized().into_response();
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    next.run(request).await
}

fn offered_tokens(headers: &HeaderMap) -> Vec<String> {
    let bearer = headers
        .get_all(AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    bearer
        .chain(cookie_values(headers, AUTH_COOKIE))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// The values of every cookie called `name` in the request's `Cookie` headers.
pub(crate) fn cookie_values<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then(|| value.trim())
        })
}
