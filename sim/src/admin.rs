//! `/_sim/`: scripting over HTTP for curl, Node-RED and other processes. Thin wrappers over
//! the Rust API; no authentication, never faulted, never recorded.

mod account_server;
mod answer;
mod live_channel;
mod printers;
mod server;

use axum::Router;
use axum::routing::{delete, get, post, put};

use crate::Simulator;
use crate::http::{method_not_allowed, not_found};

pub(crate) fn router() -> Router<Simulator> {
    Router::new()
        .route(
            "/requests",
            get(server::requests).delete(server::clear_requests),
        )
        .route(
            "/printers",
            get(printers::printers).post(printers::add_printer),
        )
        .route("/printers/{uuid}", delete(printers::remove_printer))
        .route("/printers/{uuid}/state", post(printers::set_state))
        .route("/printers/{uuid}/online", post(printers::set_online))
        .route("/printers/{uuid}/job", post(printers::start_job))
        .route("/printers/{uuid}/progress", post(printers::set_progress))
        .route("/printers/{uuid}/finish", post(printers::finish_job))
        .route("/printers/{uuid}/dialog", post(printers::set_dialog))
        .route(
            "/printers/{uuid}/dialog-answers",
            get(printers::dialog_answers),
        )
        .route(
            "/printers/{uuid}/files",
            post(printers::add_file).delete(printers::remove_file),
        )
        .route("/printers/{uuid}/temps", post(printers::set_temps))
        .route("/printers/{uuid}/event", post(printers::push_event))
        .route("/printers/{uuid}/queue", post(printers::queue_job))
        .route("/printers/{uuid}/hidden", post(printers::hide_printer))
        .route("/printers/{uuid}/quick-job", post(printers::quick_job))
        .route(
            "/printers/{uuid}/record-lag",
            post(printers::set_record_lag),
        )
        .route("/notifications", post(server::add_notification))
        .route("/fault", post(server::set_fault))
        .route("/faults", get(server::faults).post(server::add_fault))
        .route("/clock", post(server::set_clock))
        .route("/token", post(server::set_token))
        .route("/unseen", post(server::set_unseen))
        .route("/step", post(server::step))
        .route(
            "/live",
            get(live_channel::live_status).post(live_channel::set_live),
        )
        .route("/live/drop", post(live_channel::drop_live))
        .route("/account/users", post(account_server::add_user))
        .route(
            "/account/refresh-tokens",
            post(account_server::issue_refresh_token),
        )
        .route(
            "/account/revoke",
            post(account_server::revoke_refresh_tokens),
        )
        .route(
            "/account/expire",
            post(account_server::expire_access_tokens),
        )
        .route("/account/access-ttl", put(account_server::set_access_ttl))
        .route("/account/token-delay", put(account_server::set_token_delay))
        .route("/account/fault", post(account_server::set_account_fault))
        .route("/account/stats", get(account_server::account_stats))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}
