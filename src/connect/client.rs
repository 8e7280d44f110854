//! HTTP client for Prusa Connect's `/app` API: bearer auth, size-bounded bodies, typed errors.

mod budget;
mod commands;
mod error;
mod reads;
mod response;
mod token_source;
mod transport;

pub use budget::{Budget, Lane};
pub use error::ConnectError;
pub use reads::{FeedBatch, PRINTERS_PAGE, RejectedPrinter, Snapshot};
pub use token_source::{AuthStatus, TokenSource};
pub use transport::{ConnectClient, MAX_BODY_BYTES, connect_url};

pub use crate::http::parse_retry_after;

#[cfg(test)]
mod tests;
