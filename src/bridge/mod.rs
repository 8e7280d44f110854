//! The bridge: Connect's printers in, MQTT messages out, commands in between.
//!
//! A sans-IO core ([`core::Core`]) routes every input to the printer ([`printer`]) or the
//! account ([`account`]) it is for: a poll's printer list, a read's result, a pushed value
//! or a command go in; messages to publish and reads to make come out ([`effects`]). The
//! shell ([`shell::Shell`]) owns the clocks and the network: it polls the list, carries out
//! the reads, runs commands and hands messages to the MQTT session ([`crate::mqtt`]), which
//! delivers them ([`crate::outbox`]).
//!
//! The data path of one printer update: the shell's list task returns the printers →
//! [`core::Core::list_begin`] assigns topic ids → [`core::Core::observe`] hands each to its
//! [`printer::PrinterEntry::update`], which compares it with what was shown and queues
//! `P/state`, `P/availability`, `P/job`, discovery and dialog events, and asks for reads (job
//! record, feed, queues, cameras) → the shell makes the reads concurrently →
//! [`core::Core::on_read`] hands each result to its printer, which publishes what it shows
//! (feed events, `P/job/finished`, pictures) → the session writes each message to the broker
//! and keeps what the broker has not acknowledged.

pub mod account;
pub mod commands;
pub mod core;
pub mod effects;
mod fleet;
mod info;
pub mod live;
mod migration;
mod poll;
pub mod printer;
pub mod reads;
pub mod registry;
pub mod schedule;
pub mod settings;
mod shards;
pub mod shell;
mod spools;

#[cfg(test)]
mod tests;

pub use core::{Core, REMOVE_AFTER_MISSING_POLLS};
pub use settings::Settings;
pub use shell::{STOP_GRACE, Shell};

use crate::config::Config;
use crate::topics::Topics;

/// MQTT subscriptions the bridge needs on every connection.
pub fn subscriptions(config: &Config) -> Vec<String> {
    let topics = Topics::for_config(config);
    let mut subs = vec![
        topics.command_filter(),
        topics.job_reason_filter(),
        topics.print_file_filter(),
    ];
    if config.spoolman.url.is_some() {
        subs.push(topics.spool_filter());
    }
    if config.homeassistant.enabled {
        subs.push(config.homeassistant.status_topic.clone());
    }
    subs
}
