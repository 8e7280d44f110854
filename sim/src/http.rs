//! The HTTP edge: Connect's `/app/` API, `/version.json`, and the middleware every request
//! goes through (`http/middleware.rs`: recording, faults, authentication). The handlers are
//! in `http/printers.rs`, `http/jobs.rs`, `http/files.rs` (files and their previews) and
//! `http/account_wide.rs`; `http/request.rs` reads requests. The account server's routes
//! (`/o/*`, `/login/*`) are merged in from `account/http.rs`.

mod account_wide;
mod answer;
mod files;
mod jobs;
mod middleware;
mod printers;
mod request;
mod stats;

use axum::Router;
use axum::extract::OriginalUri;
use axum::http::{Method, StatusCode};
use axum::middleware as layers;
use axum::routing::{get, post};

use crate::error::ApiError;
use crate::{Simulator, account, admin};
use account_wide::{config, invitations, notifications, printer_types, unseen, version};
use jobs::{add_to_queue, download_queue, get_job, list_jobs, patch_job, queue};
use middleware::{apply_fault, authenticate, record};
use printers::{
    cameras, command_sync, get_printer, list_events, list_printers, snapshot, supported_commands,
};

pub use jobs::REASON_TAGS;
pub(crate) use middleware::{Service, cookie_values, with_fault};
pub(crate) use request::{Params, PathArgs, parse_json};

pub(crate) fn router(sim: Simulator) -> Router {
    let app = Router::new()
        .route("/printers", get(list_printers))
        .route("/printers/{uuid}", get(get_printer))
        .route("/printers/{uuid}/jobs", get(list_jobs))
        .route("/printers/{uuid}/jobs/{id}", get(get_job).patch(patch_job))
        .route("/printers/{uuid}/events", get(list_events))
        .route("/printers/{uuid}/queue", get(queue).post(add_to_queue))
        .route("/printers/{uuid}/download-queue", get(download_queue))
        .route("/printers/{uuid}/files", get(files::files))
        .route("/printers/{uuid}/storages", get(files::storages))
        .route("/printers/{uuid}/cameras", get(cameras))
        .route(
            "/printers/{uuid}/supported-commands",
            get(supported_commands),
        )
        .route("/printers/{uuid}/commands/sync", post(command_sync))
        .route("/cameras/{id}/snapshots/last", get(snapshot))
        .route("/teams/{team_id}/files/{hash}/preview", get(files::preview))
        .route(
            "/stats/printers/{uuid}/jobs_success",
            get(stats::jobs_success),
        )
        .route(
            "/stats/printers/{uuid}/material_quantity",
            get(stats::material_quantity),
        )
        .route(
            "/stats/printers/{uuid}/printing_not_printing",
            get(stats::printing_not_printing),
        )
        .route("/printer-types", get(printer_types))
        .route("/notifications", get(notifications))
        .route("/notifications/unseen", get(unseen))
        .route("/invitations", get(invitations))
        .route("/config", get(config))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // The last layer added runs first: a fault hits even unauthenticated requests.
        .layer(layers::from_fn_with_state(sim.clone(), authenticate))
        .layer(layers::from_fn(apply_fault));
    Router::new()
        .route("/version.json", get(version))
        .route("/mqtt", get(super::live::upgrade))
        .nest("/app", app)
        .nest("/_sim", admin::router())
        .merge(account::http::router(sim.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(layers::from_fn_with_state(sim.clone(), record))
        .with_state(sim)
}

pub(crate) async fn not_found(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("Nothing at {method} {}", uri.path()),
    )
}

pub(crate) async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("{method} is not allowed on {}", uri.path()),
    )
}
