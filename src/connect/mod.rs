//! Prusa Connect: the HTTP client and the API's types.
pub mod client;
pub mod model;

pub use client::{ConnectClient, ConnectError, TokenSource};
