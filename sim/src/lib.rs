//! A simulated Prusa Connect: a real HTTP server with an in-memory world of printers.
//!
//! prusa-connect-mqtt's tests, `demo` and `simulate` talk to it over TCP exactly as they would talk
//! to `connect.prusa3d.com`. Tests script it synchronously through [`Simulator`]; the `demo`
//! and `simulate` commands let scenario printers run by themselves through [`Simulator::step`]
//! (usually from [`run_ticker`]). Other processes (curl, Node-RED) can script it over HTTP
//! under `/_sim/` (see `admin.rs`).
//!
//! Layout: `world.rs` holds the state and every state transition (the only place that appends
//! feed events); `controls.rs` what commands change besides the state (heaters, filament,
//! chamber, dialog answers); `files.rs` a printer's files and their preview hashes;
//! `render.rs` turns it into Connect's JSON; `commands.rs` is `commands/sync` and
//! `commands/table.rs` the `supported-commands` table; `scenario.rs` drives the demo and farm
//! printers; `simulator.rs` is the handle and `simulator/` what it scripts, part by part
//! (`options.rs`, `faults.rs` and `recorded.rs` its types); `http.rs` and `admin.rs` are the
//! HTTP edges; `live.rs` is the live channel (MQTT over a websocket at `/mqtt`); `jpeg.rs`
//! draws camera snapshots and file previews. `account/` is the simulated Prusa Account
//! (OAuth2 login and tokens), served by the same HTTP server so that the gateway's `auth_url`
//! can point at the simulator too. `spoolman.rs` is a stand-in for Spoolman (the filament
//! inventory), served apart.

// Functions stay under 80 lines (clippy.toml); tests may be longer.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

mod account;
mod admin;
mod commands;
mod controls;
mod error;
mod faults;
mod files;
mod http;
mod jpeg;
mod live;
mod options;
mod recorded;
mod render;
mod scenario;
mod simulator;
pub mod spoolman;
mod world;

#[cfg(test)]
mod tests;

pub use account::{
    AccountStats, CLIENT_ID, CODE_TTL, DEFAULT_ACCESS_TTL, REDIRECT_URI, REFRESH_TTL,
    STATIC_TOKEN_ACCOUNT_ID,
};
pub use faults::{Fault, FaultRule, PathFilter};
pub use http::REASON_TAGS;
pub use live::LiveStats;
pub use options::{PrinterSpec, Scenario, SimOptions};
pub use recorded::RecordedRequest;
pub use simulator::{Simulator, run_ticker};
pub use spoolman::SpoolmanStandIn;
