//! Prusa Connect: the HTTP client and the API's types.
pub mod client;
pub mod lists;
pub mod live;
pub mod model;

pub use client::{ConnectClient, ConnectError, TokenSource};
pub use lists::{EVENTS_MAX_PAGES, EVENTS_PAGE, JOBS_MAX_PAGES, JOBS_PAGE};
