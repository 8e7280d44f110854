//! One printer: its persisted record, its runtime view, and every decision about it.

pub mod commands;
pub mod controls;
pub mod feed;
pub mod files;
pub mod jobs;
mod render;
mod results;
