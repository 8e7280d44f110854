//! What the bridge needs of the configuration, read once at start.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{CameraConfig, Config};
use crate::connect::model::Printer;
use crate::discovery::Discovery;
use crate::topics::Topics;

/// What the core needs of the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub topics: Topics,
    pub discovery: Option<Discovery>,
    /// Uuids or names to bridge (empty: all).
    pub printers: Vec<String>,
    pub printer_ids: BTreeMap<String, String>,
    pub poll_interval: Duration,
    pub active_poll_interval: Duration,
    /// Each printer's feed is read at least this often (zero: only on changes).
    pub feed_interval: Duration,
    pub camera: CameraConfig,
    /// `stats.backfill`: how far back a printer's totals are seeded from Connect.
    pub stats_backfill: Duration,
    pub connect_url: reqwest::Url,
    pub allow: Vec<String>,
    /// Per printer: commands a second to Connect (0: no limit), and the burst.
    pub commands_per_second: f64,
    pub commands_burst: u32,
    pub max_payload_bytes: usize,
    /// `connect.live`: the live channel's values are laid over the list's.
    pub live: bool,
    /// `connect.shard`: the share of the account's printers this instance bridges.
    pub shard: Option<crate::shard::Shard>,
    /// The least time between two polls for each page the printer list takes, so that the
    /// list uses at most [`LIST_SHARE`] of `connect.max_requests_per_second` (zero: no limit).
    pub list_page_gap: Duration,
    /// `spoolman.url`: each printer gets a spool, and its jobs' filament is reported.
    pub spoolman: Option<String>,
}

/// The share of the request budget the printer list may use. A farm of 2,000 printers lists
/// in 20 pages: every 5 s that is 4 requests a second, four fifths of the default budget,
/// and the start-up reads would crawl.
pub const LIST_SHARE: f64 = 0.5;

/// See [`Settings::list_page_gap`].
pub fn list_page_gap(max_requests_per_second: f64) -> Duration {
    if max_requests_per_second > 0.0 {
        Duration::from_secs_f64(1.0 / (max_requests_per_second * LIST_SHARE))
    } else {
        Duration::ZERO
    }
}

impl Settings {
    pub fn from_config(config: &Config) -> anyhow::Result<Settings> {
        let topics = Topics::for_config(config);
        let connect_url = reqwest::Url::parse(&config.connect.url).map_err(|e| {
            anyhow::anyhow!("connect.url = {:?} is not a URL: {e}", config.connect.url)
        })?;
        Ok(Settings {
            discovery: config.homeassistant.enabled.then(|| Discovery {
                prefix: config.homeassistant.discovery_prefix.clone(),
                mode: config.homeassistant.mode,
                topics: topics.clone(),
            }),
            topics,
            printers: config.connect.printers.clone(),
            printer_ids: config.mqtt.printer_ids.clone(),
            poll_interval: config.connect.poll_interval,
            active_poll_interval: config.connect.active_poll_interval,
            feed_interval: config.connect.feed_interval,
            camera: config.camera.clone(),
            stats_backfill: config.stats.backfill,
            connect_url,
            allow: config.commands.allow.clone(),
            commands_per_second: config.commands.max_per_second,
            commands_burst: config.commands.burst,
            max_payload_bytes: config.mqtt.max_payload_bytes,
            live: config.connect.live,
            shard: config.connect.shard,
            list_page_gap: list_page_gap(config.connect.max_requests_per_second),
            spoolman: config.spoolman.url.clone(),
        })
    }
}

/// Whether `connect.printers` (`wanted`: uuids or names, empty for all) takes printer `p`.
pub fn is_bridged(wanted: &[String], p: &Printer) -> bool {
    wanted.is_empty()
        || wanted.contains(&p.uuid)
        || p.name.as_ref().is_some_and(|n| wanted.contains(n))
}
