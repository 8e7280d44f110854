//! Configuration: built-in defaults < TOML file < `PRUSA_CONNECT_MQTT__SECTION__KEY`.
//!
//! Every struct denies unknown fields so a typo is an error that names the key instead of a
//! setting silently ignored. Secrets are `SecretString`s: their `Debug` prints `[REDACTED]`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Where `run` and `check` look when no `--config` is given (used only when the file exists).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/prusa-connect-mqtt/config.toml";
/// Names another default config file (also used only when it exists): the container image
/// sets it to `/data/config.toml`, so the config lives in the state volume or, without that
/// file, comes from the environment alone.
pub const CONFIG_PATH_ENV: &str = "PRUSA_CONNECT_MQTT_CONFIG";
pub const ENV_PREFIX: &str = "PRUSA_CONNECT_MQTT__";
const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];
/// Intervals and timeouts longer than this are refused: far beyond any use, and the poll
/// loop's clock arithmetic overflows near u64::MAX seconds ("18446744073709551615s" parses).
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub connect: ConnectConfig,
    pub mqtt: MqttConfig,
    pub homeassistant: HomeAssistantConfig,
    pub commands: CommandsConfig,
    pub camera: CameraConfig,
    pub state: StateConfig,
    pub log: LogConfig,
    pub web: WebConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectConfig {
    pub url: String,
    pub auth_url: String,
    pub access_token: Option<SecretString>,
    pub access_token_file: Option<PathBuf>,
    pub refresh_token: Option<SecretString>,
    pub refresh_token_file: Option<PathBuf>,
    /// A file holding an access token that something else keeps fresh; re-read after a 401.
    pub token_file: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub active_poll_interval: Duration,
    /// Each printer's event feed is read at least this often even when nothing visible
    /// changed (0: only on changes).
    #[serde(with = "humantime_serde")]
    pub feed_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Uuids or names of the printers to bridge; empty bridges all.
    pub printers: Vec<String>,
    /// Larger Connect responses are refused with an error instead of being buffered.
    pub max_response_bytes: usize,
    /// Connect's live channel (MQTT over a websocket) beside the REST poll: unofficial,
    /// opt-in.
    pub live: bool,
    /// Its broker: `wss://` (or `ws://` for a local test).
    pub live_url: String,
}

/// Connect's live broker, as the web app reads it from Connect's `environment.js`.
pub const LIVE_URL: &str = "wss://mqtt.prusa3d.com:8084/mqtt";

impl Default for ConnectConfig {
    fn default() -> Self {
        Self {
            url: "https://connect.prusa3d.com".into(),
            auth_url: "https://account.prusa3d.com".into(),
            access_token: None,
            access_token_file: None,
            refresh_token: None,
            refresh_token_file: None,
            token_file: None,
            poll_interval: Duration::from_secs(30),
            active_poll_interval: Duration::from_secs(5),
            feed_interval: Duration::from_secs(600),
            request_timeout: Duration::from_secs(10),
            printers: Vec::new(),
            max_response_bytes: crate::connect::client::MAX_BODY_BYTES,
            live: false,
            live_url: LIVE_URL.into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    pub client_id: String,
    pub base_topic: String,
    /// Topic id per printer, keyed by uuid or Connect name: overrides the slug of the name.
    pub printer_ids: BTreeMap<String, String>,
    /// Larger command messages are answered with INVALID_PAYLOAD and not parsed.
    pub max_payload_bytes: usize,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            url: "mqtt://localhost:1883".into(),
            username: None,
            password: None,
            password_file: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            client_id: "prusa-connect-mqtt".into(),
            base_topic: "prusa_connect".into(),
            printer_ids: BTreeMap::new(),
            max_payload_bytes: 64 * 1024,
        }
    }
}

/// `mqtt://host:port` or `mqtts://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl BrokerAddress {
    pub fn parse(url: &str) -> Result<BrokerAddress> {
        let parsed = reqwest::Url::parse(url).context("not a URL like mqtt://host:1883")?;
        let tls = match parsed.scheme() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            other => {
                bail!("unsupported scheme {other:?}: use mqtt://host:1883 or mqtts://host:8883")
            }
        };
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .context("no host in the URL: use mqtt://host:1883")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = parsed.port().unwrap_or(if tls { 8883 } else { 1883 });
        Ok(BrokerAddress { host, port, tls })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscoveryMode {
    /// One device-based discovery message per printer (Home Assistant 2024.11+).
    Device,
    /// One discovery message per entity (older Home Assistant, other consumers).
    Entity,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HomeAssistantConfig {
    pub enabled: bool,
    pub discovery_prefix: String,
    pub mode: DiscoveryMode,
    pub status_topic: String,
}

impl Default for HomeAssistantConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            discovery_prefix: "homeassistant".into(),
            mode: DiscoveryMode::Device,
            status_topic: "homeassistant/status".into(),
        }
    }
}

pub const DEFAULT_ALLOWED_COMMANDS: &[&str] = &[
    "PAUSE_PRINT",
    "RESUME_PRINT",
    "STOP_PRINT",
    "SET_PRINTER_READY",
    "CANCEL_PRINTER_READY",
    "CANCEL_OBJECT",
    "MOVE",
    "MOVE_Z",
    "HOME",
    "SET_NOZZLE_TEMPERATURE",
    "SET_HEATBED_TEMPERATURE",
    "SET_SPEED",
    "SET_FLOW",
    "SET_CHAMBER_LED_INTENSITY",
    "DIALOG_ACTION",
    "BEEP",
    "DISABLE_STEPPERS",
    "LOAD_FILAMENT",
    "UNLOAD_FILAMENT",
    // Tagging an ended job's failure reason (`B/P/job/reason`), not a printer command.
    "SET_JOB_REASON",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommandsConfig {
    pub allow: Vec<String>,
    /// Per printer, at most this many commands a second reach Connect (0: no limit)...
    pub max_per_second: f64,
    /// ...after a burst of this many.
    pub burst: u32,
}

impl Default for CommandsConfig {
    fn default() -> Self {
        Self {
            allow: DEFAULT_ALLOWED_COMMANDS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            max_per_second: 2.0,
            burst: 5,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CameraConfig {
    pub enabled: bool,
    /// Between snapshot fetches while the printer is busy (printing, paused, attention...).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Between snapshot fetches while the printer is idle or offline.
    #[serde(with = "humantime_serde")]
    pub idle_interval: Duration,
}

impl Default for CameraConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(30),
            idle_interval: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    pub dir: PathBuf,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/var/lib/prusa-connect-mqtt"),
        }
    }
}

/// The status and login page (`src/web/`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Where the page listens; unset: no page.
    pub listen: Option<std::net::SocketAddr>,
    /// Lets clients other than loopback (and the ingress proxy) in, with HTTP Basic.
    pub password: Option<SecretString>,
    pub password_file: Option<PathBuf>,
    /// Behind Home Assistant's ingress: only the Supervisor's proxy may connect, and links
    /// carry its `X-Ingress-Path` prefix.
    pub ingress: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

impl Config {
    /// Loads defaults < `path` (when given, it must exist; otherwise the default path, or the
    /// one `PRUSA_CONNECT_MQTT_CONFIG` names, is used when present) < environment, then
    /// resolves `*_file` secrets and validates.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let mut figment = Figment::new();
        match path {
            Some(p) => {
                if !p.is_file() {
                    bail!(
                        "config file {} does not exist (copy config.example.toml there, or drop --config to use the defaults)",
                        p.display()
                    );
                }
                figment = figment.merge(Toml::file_exact(p));
            }
            None => {
                let default = std::env::var_os(CONFIG_PATH_ENV)
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
                if default.is_file() {
                    figment = figment.merge(Toml::file_exact(default));
                }
            }
        }
        figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
        Self::from_figment(figment)
    }

    /// Parses a TOML document (no environment): used by tests and `demo`.
    pub fn from_toml(text: &str) -> Result<Config> {
        Self::from_figment(Figment::new().merge(Toml::string(text)))
    }

    /// Built-in defaults < `layer` (the Home Assistant add-on's options, see
    /// [`crate::addon`]) < the environment when `with_env`, then validates.
    pub fn from_layer(layer: impl figment::Provider, with_env: bool) -> Result<Config> {
        let mut figment = Figment::new().merge(layer);
        if with_env {
            figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
        }
        Self::from_figment(figment)
    }

    fn from_figment(figment: Figment) -> Result<Config> {
        let mut config: Config = figment.extract().map_err(|e| {
            // figment's message names the key ("unknown field `x` ... for key `connect.x`").
            anyhow::anyhow!("invalid configuration: {}", explain_figment_error(e))
        })?;
        config.resolve_secret_files()?;
        config.validate()?;
        Ok(config)
    }

    fn resolve_secret_files(&mut self) -> Result<()> {
        let c = &mut self.connect;
        if let Some(path) = &c.access_token_file {
            c.access_token = Some(read_secret(path, "connect.access_token_file")?);
        }
        if let Some(path) = &c.refresh_token_file {
            c.refresh_token = Some(read_secret(path, "connect.refresh_token_file")?);
        }
        if let Some(path) = &self.mqtt.password_file {
            self.mqtt.password = Some(read_secret(path, "mqtt.password_file")?);
        }
        if let Some(path) = &self.web.password_file {
            self.web.password = Some(read_secret(path, "web.password_file")?);
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<()> {
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
        BrokerAddress::parse(&self.mqtt.url)
            .with_context(|| format!("mqtt.url = {:?}", redact_url(&self.mqtt.url)))?;
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
        // 0 turns the scheduled feed reads off.
        if !self.connect.feed_interval.is_zero() {
            check_duration("connect.feed_interval", self.connect.feed_interval)?;
        }
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
        if !(1024..=crate::command::MAX_COMMAND_BYTES).contains(&self.mqtt.max_payload_bytes) {
            bail!(
                "mqtt.max_payload_bytes = {} must be between 1024 and {}",
                self.mqtt.max_payload_bytes,
                crate::command::MAX_COMMAND_BYTES
            );
        }
        if self.connect.max_response_bytes < 64 * 1024 {
            bail!(
                "connect.max_response_bytes = {} is too small for Connect's answers (at least 65536)",
                self.connect.max_response_bytes
            );
        }
        if self.mqtt.client_id.is_empty() {
            bail!("mqtt.client_id must not be empty");
        }
        self.validate_web()?;
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

    /// The access token configured directly (not the refresh flow), if any.
    pub fn static_access_token(&self) -> Option<SecretString> {
        self.connect
            .access_token
            .as_ref()
            .map(|s| SecretString::from(s.expose_secret().trim().to_string()))
            .filter(|s| !s.expose_secret().is_empty())
    }
}

fn explain_figment_error(e: figment::Error) -> String {
    let mut parts = Vec::new();
    for err in e {
        let key = err.path.join(".");
        let what = without_source_lines(&err.kind.to_string());
        if key.is_empty() {
            parts.push(what);
        } else {
            parts.push(format!("key `{key}`: {what}"));
        }
    }
    parts.join("; ")
}

/// `url` for messages: a password in it (`mqtt://user:secret@host`) is replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}:***@{host}")
            }
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// A TOML syntax error quotes the offending line, which may hold a secret (an unquoted
/// token): keep the position and the explanation, drop the quoted source.
fn without_source_lines(message: &str) -> String {
    message
        .lines()
        .filter(|line| {
            let t = line.trim_start();
            let numbered = t
                .split_once('|')
                .is_some_and(|(n, _)| n.trim().chars().all(|c| c.is_ascii_digit()));
            !numbered
        })
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn read_secret(path: &Path, key: &str) -> Result<SecretString> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{key}: cannot read {}", path.display()))?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        bail!("{key}: {} is empty", path.display());
    }
    Ok(SecretString::from(trimmed.to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        assert_eq!(
            BrokerAddress::parse("mqtt://localhost:1883").unwrap(),
            BrokerAddress {
                host: "localhost".into(),
                port: 1883,
                tls: false
            }
        );
        assert_eq!(BrokerAddress::parse("mqtts://broker").unwrap().port, 8883);
        assert_eq!(
            BrokerAddress::parse("mqtt://[::1]:1884").unwrap().host,
            "::1"
        );
        assert!(BrokerAddress::parse("http://x").is_err());
        assert!(BrokerAddress::parse("localhost:1883").is_err());
    }

    #[test]
    fn example_config_parses_to_the_defaults() {
        let text = include_str!("../config.example.toml");
        let parsed = Config::from_toml(text).expect("config.example.toml parses");
        let defaults = Config::from_toml("").unwrap();
        // The example documents every key with its default value.
        assert_eq!(format!("{parsed:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("[connect]\npoll_intervall = \"5s\"\n").unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("poll_intervall"), "{msg}");
        assert!(msg.contains("connect"), "{msg}");
    }

    #[test]
    fn bad_duration_is_named() {
        let err = Config::from_toml("[connect]\npoll_interval = \"soon\"\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("connect.poll_interval"),
            "{err:#}"
        );
    }

    #[test]
    fn a_password_in_the_broker_url_is_never_echoed() {
        let err = Config::from_toml("[mqtt]\nurl = \"mqtt://u:hunter2@host:99999\"\n").unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("mqtt.url") && !msg.contains("hunter2"),
            "{msg}"
        );
        assert_eq!(redact_url("mqtts://a:b@h:1"), "mqtts://a:***@h:1");
        assert_eq!(redact_url("mqtt://h:1"), "mqtt://h:1");
    }

    #[test]
    fn bad_values_are_explained() {
        for (toml, needle) in [
            ("[mqtt]\nurl = \"http://x\"\n", "mqtt.url"),
            ("[mqtt]\nbase_topic = \"a/#\"\n", "mqtt.base_topic"),
            ("[connect]\nurl = \"not a url\"\n", "connect.url"),
            (
                "[connect]\npoll_interval = \"0s\"\n",
                "connect.poll_interval",
            ),
            ("[homeassistant]\nmode = \"both\"\n", "homeassistant.mode"),
            ("[log]\nlevel = \"loud!!\"\n", "log.level"),
            // Issue 22 (1, 2): no two printers on one id, none on the bridge's topics.
            (
                "[mqtt.printer_ids]\nMK4 = \"left\"\n\"Core One\" = \"left\"\n",
                "gives \"left\" to both \"Core One\" and \"MK4\"",
            ),
            (
                "[mqtt.printer_ids]\nMK4 = \"bridge\"\n",
                "mqtt.printer_ids.\"MK4\" = \"bridge\" is taken by the gateway's own topics",
            ),
            (
                "[connect]\naccess_token = \"a\"\nrefresh_token = \"r\"\n",
                "connect.access_token and connect.refresh_token are all set",
            ),
            ("[web]\nlisten = \"localhost\"\n", "web.listen"),
            (
                "[web]\ningress = true\n",
                "web.ingress is set but web.listen is not",
            ),
            (
                "[web]\nlisten = \"127.0.0.1:8099\"\npassword = \" \"\n",
                "web.password must not be empty",
            ),
        ] {
            let err = Config::from_toml(toml).unwrap_err();
            assert!(format!("{err:#}").contains(needle), "{toml}: {err:#}");
        }
    }

    #[test]
    fn secrets_come_from_files_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "hunter2\n").unwrap();
        let toml = format!(
            "[mqtt]\npassword_file = {:?}\n[connect]\naccess_token = \"tok-secret\"\n",
            path
        );
        let config = Config::from_toml(&toml).unwrap();
        assert_eq!(
            config.mqtt.password.as_ref().unwrap().expose_secret(),
            "hunter2"
        );
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("tok-secret"), "{debug}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
    fn environment_overrides_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[connect]\npoll_interval = \"10s\"\n")?;
            jail.set_env("PRUSA_CONNECT_MQTT__CONNECT__POLL_INTERVAL", "7s");
            jail.set_env("PRUSA_CONNECT_MQTT__MQTT__BASE_TOPIC", "farm");
            let config = Config::load(Some(Path::new("c.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.connect.poll_interval, Duration::from_secs(7));
            assert_eq!(config.mqtt.base_topic, "farm");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
    fn config_path_from_the_environment_is_used_when_present() {
        figment::Jail::expect_with(|jail| {
            // The container image's setup: PRUSA_CONNECT_MQTT_CONFIG=/data/config.toml and
            // the state directory from the environment.
            jail.set_env("PRUSA_CONNECT_MQTT__STATE__DIR", "/data");
            jail.set_env(CONFIG_PATH_ENV, "absent.toml");
            let config = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(config.state.dir, Path::new("/data"));
            assert_eq!(config.mqtt.base_topic, "prusa_connect");

            jail.create_file("present.toml", "[mqtt]\nbase_topic = \"farm\"\n")?;
            jail.set_env(CONFIG_PATH_ENV, "present.toml");
            let config = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(config.mqtt.base_topic, "farm");
            assert_eq!(config.state.dir, Path::new("/data"));
            Ok(())
        });
    }
}
