//! Validation: every value checked once, each refusal naming its key and a good example.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use secrecy::ExposeSecret;

use super::{BrokerAddress, Config, redact_url};

const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];
/// Intervals and timeouts longer than this are refused: far beyond any use, and the poll
/// loop's clock arithmetic overflows near u64::MAX seconds ("18446744073709551615s" parses).
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

impl Config {
    pub fn validate(&self) -> Result<()> {
        self.validate_connect_urls()?;
        self.validate_auth_method()?;
        BrokerAddress::parse(&self.mqtt.url)
            .with_context(|| format!("mqtt.url = {:?}", redact_url(&self.mqtt.url)))?;
        self.validate_intervals()?;
        self.validate_command_rate()?;
        self.validate_request_budget()?;
        // 0 turns the scheduled feed reads off.
        if !self.connect.feed_interval.is_zero() {
            check_duration("connect.feed_interval", self.connect.feed_interval)?;
        }
        self.validate_topics()?;
        self.validate_sizes()?;
        if self.mqtt.client_id.is_empty() {
            bail!("mqtt.client_id must not be empty");
        }
        self.validate_web()?;
        self.validate_spoolman()?;
        self.validate_log_level()
    }

    fn validate_spoolman(&self) -> Result<()> {
        let Some(url) = &self.spoolman.url else {
            return Ok(());
        };
        let parsed = reqwest::Url::parse(url).with_context(|| {
            format!("spoolman.url = {url:?} is not a URL (like \"http://127.0.0.1:7912\")")
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            bail!("spoolman.url = {url:?} must be http://host:port (or https://)");
        }
        check_duration("spoolman.interval", self.spoolman.interval)
    }

    /// Connect's API and account server over HTTP(S), its live broker over websocket.
    fn validate_connect_urls(&self) -> Result<()> {
        for (key, url) in [
            ("connect.url", &self.connect.url),
            ("connect.auth_url", &self.connect.auth_url),
        ] {
            let parsed = reqwest::Url::parse(url)
                .with_context(|| format!("{key} = {url:?} is not a URL"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                bail!("{key} = {url:?} must start with https:// (or http://)");
            }
        }
        let live = reqwest::Url::parse(&self.connect.live_url).with_context(|| {
            format!(
                "connect.live_url = {:?} is not a URL",
                self.connect.live_url
            )
        })?;
        if !matches!(live.scheme(), "wss" | "ws") || live.host_str().is_none() {
            bail!(
                "connect.live_url = {:?} must be a websocket URL: wss://host:port/path (or ws:// \
                 for a local test)",
                self.connect.live_url
            );
        }
        Ok(())
    }

    /// At most one of the three ways to authenticate.
    fn validate_auth_method(&self) -> Result<()> {
        let c = &self.connect;
        let methods: Vec<&str> = [
            ("connect.access_token", c.access_token.is_some()),
            ("connect.refresh_token", c.refresh_token.is_some()),
            ("connect.token_file", c.token_file.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect();
        if methods.len() > 1 {
            bail!(
                "{} are all set: keep only one way to authenticate (connect.refresh_token is the \
                 one that lasts)",
                methods.join(" and ")
            );
        }
        Ok(())
    }

    fn validate_intervals(&self) -> Result<()> {
        for (key, d) in [
            ("connect.poll_interval", self.connect.poll_interval),
            (
                "connect.active_poll_interval",
                self.connect.active_poll_interval,
            ),
            ("connect.request_timeout", self.connect.request_timeout),
            ("camera.interval", self.camera.interval),
            ("camera.idle_interval", self.camera.idle_interval),
        ] {
            check_duration(key, d)?;
        }
        Ok(())
    }

    fn validate_request_budget(&self) -> Result<()> {
        let rate = self.connect.max_requests_per_second;
        if !rate.is_finite() || !(0.0..=1000.0).contains(&rate) {
            bail!(
                "connect.max_requests_per_second = {rate} must be between 0 (no limit) and 1000 \
                 (for example 5)"
            );
        }
        if !(1..=10_000).contains(&self.connect.request_burst) {
            bail!(
                "connect.request_burst = {} must be between 1 and 10000 (for example 20)",
                self.connect.request_burst
            );
        }
        Ok(())
    }

    fn validate_command_rate(&self) -> Result<()> {
        let rate = self.commands.max_per_second;
        if !rate.is_finite() || !(0.0..=1000.0).contains(&rate) {
            bail!(
                "commands.max_per_second = {rate} must be between 0 (no limit) and 1000 \
                 (for example 2)"
            );
        }
        if self.commands.burst == 0 {
            bail!("commands.burst must be at least 1 (for example 5)");
        }
        Ok(())
    }

    /// The topic prefixes, and the printer ids that become topic segments.
    fn validate_topics(&self) -> Result<()> {
        check_topic_segment("mqtt.base_topic", &self.mqtt.base_topic, true)?;
        check_topic_segment(
            "homeassistant.discovery_prefix",
            &self.homeassistant.discovery_prefix,
            true,
        )?;
        check_topic_segment(
            "homeassistant.status_topic",
            &self.homeassistant.status_topic,
            true,
        )?;
        self.validate_printer_ids()
    }

    fn validate_printer_ids(&self) -> Result<()> {
        let mut ids: BTreeMap<&str, &str> = BTreeMap::new();
        for (printer, id) in &self.mqtt.printer_ids {
            let key = format!("mqtt.printer_ids.{printer:?}");
            check_topic_segment(&key, id, false)?;
            if crate::topics::is_reserved(id) {
                bail!(
                    "{key} = {id:?} is taken by the gateway's own topics ({}/{id}/...); choose another id",
                    self.mqtt.base_topic
                );
            }
            // Two printers on one id would share their topics: a command for one would
            // reach the other.
            if let Some(other) = ids.insert(id, printer) {
                bail!(
                    "mqtt.printer_ids gives {id:?} to both {other:?} and {printer:?}; each printer needs its own id"
                );
            }
        }
        Ok(())
    }

    /// The payload and response size limits.
    fn validate_sizes(&self) -> Result<()> {
        if !(1024..=crate::message::MAX_COMMAND_BYTES).contains(&self.mqtt.max_payload_bytes) {
            bail!(
                "mqtt.max_payload_bytes = {} must be between 1024 and {}",
                self.mqtt.max_payload_bytes,
                crate::message::MAX_COMMAND_BYTES
            );
        }
        if self.connect.max_response_bytes < 64 * 1024 {
            bail!(
                "connect.max_response_bytes = {} is too small for Connect's answers (at least 65536)",
                self.connect.max_response_bytes
            );
        }
        Ok(())
    }

    fn validate_log_level(&self) -> Result<()> {
        let level_ok = self.log.level.split(',').all(|directive| {
            let level = directive.rsplit('=').next().unwrap_or("").trim();
            LEVELS.contains(&level.to_ascii_lowercase().as_str())
        });
        if !level_ok || tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            bail!(
                "log.level = {:?} is not a level (use error, warn, info, debug or trace)",
                self.log.level
            );
        }
        Ok(())
    }

    fn validate_web(&self) -> Result<()> {
        let w = &self.web;
        if w.password
            .as_ref()
            .is_some_and(|p| p.expose_secret().trim().is_empty())
        {
            bail!("web.password must not be empty (remove it to allow loopback clients only)");
        }
        if w.listen.is_none() {
            for (key, set) in [
                ("web.ingress", w.ingress),
                ("web.password", w.password.is_some()),
            ] {
                if set {
                    bail!(
                        "{key} is set but web.listen is not: set web.listen = \"127.0.0.1:8099\" to turn the page on"
                    );
                }
            }
        }
        Ok(())
    }
}

fn check_duration(key: &str, d: Duration) -> anyhow::Result<()> {
    if d.is_zero() {
        bail!("{key} must be longer than 0s (for example \"30s\")");
    }
    if d > MAX_DURATION {
        bail!(
            "{key} = \"{}\" is too long: at most {} (for example \"30s\")",
            humantime::format_duration(d),
            humantime::format_duration(MAX_DURATION)
        );
    }
    Ok(())
}

fn check_topic_segment(key: &str, value: &str, allow_slash: bool) -> Result<()> {
    if value.is_empty() {
        bail!("{key} must not be empty");
    }
    if value.contains(['+', '#', '\0']) {
        bail!("{key} = {value:?} must not contain MQTT wildcards (+ or #)");
    }
    if !allow_slash && value.contains('/') {
        bail!("{key} = {value:?} must not contain '/'");
    }
    if value.starts_with('/') || value.ends_with('/') {
        bail!("{key} = {value:?} must not start or end with '/'");
    }
    Ok(())
}
