//! Configuration: built-in defaults < TOML file < `PRUSA_CONNECT_MQTT__SECTION__KEY`.
//!
//! Every struct denies unknown fields so a typo is an error that names the key instead of a
//! setting silently ignored. Secrets are `SecretString`s: their `Debug` prints `[REDACTED]`.
mod load;
mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Where `run` and `check` look when no `--config` is given (used only when the file exists).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/prusa-connect-mqtt/config.toml";
/// Names another default config file (also used only when it exists): the container image
/// sets it to `/data/config.toml`, so the config lives in the state volume or, without that
/// file, comes from the environment alone.
pub const CONFIG_PATH_ENV: &str = "PRUSA_CONNECT_MQTT_CONFIG";
pub const ENV_PREFIX: &str = "PRUSA_CONNECT_MQTT__";
/// Connect responses larger than this are refused instead of being buffered (the default of
/// `connect.max_response_bytes`).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub connect: ConnectConfig,
    pub mqtt: MqttConfig,
    pub homeassistant: HomeAssistantConfig,
    pub commands: CommandsConfig,
    pub camera: CameraConfig,
    pub stats: StatsConfig,
    pub spoolman: SpoolmanConfig,
    pub state: StateConfig,
    pub log: LogConfig,
    pub web: WebConfig,
}

impl Config {
    /// Where the state lives: `state.dir`, or its folder `shard-<k>` for shard k, so shards
    /// sharing a config never share a login (refresh tokens are single-use) or a state file.
    pub fn state_dir(&self) -> PathBuf {
        match self.connect.shard {
            Some(s) => self.state.dir.join(format!("shard-{}", s.k)),
            None => self.state.dir.clone(),
        }
    }

    /// The broker settings, the client id made `<mqtt.client_id>-<k>` for shard k (one
    /// client id per instance).
    pub fn mqtt_for_instance(&self) -> MqttConfig {
        let mut mqtt = self.mqtt.clone();
        if let Some(s) = self.connect.shard {
            mqtt.client_id = format!("{}-{}", mqtt.client_id, s.k);
        }
        mqtt
    }
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
    /// Requests to Connect a second on average, shared by every read (0: no limit).
    pub max_requests_per_second: f64,
    /// ... after a burst of this many at once.
    pub request_burst: u32,
    /// `"k/n"`: this instance bridges only the printers whose uuid hashes to shard k of n.
    pub shard: Option<crate::shard::Shard>,
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
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_requests_per_second: 5.0,
            request_burst: 20,
            shard: None,
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

/// The printers' totals (`P/stats`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatsConfig {
    /// How far back a printer's totals are seeded from Connect's own statistics when the
    /// gateway first counts for it ("0s": not seeded).
    #[serde(with = "humantime_serde")]
    pub backfill: Duration,
}

impl Default for StatsConfig {
    fn default() -> Self {
        Self {
            backfill: Duration::from_secs(90 * 86_400),
        }
    }
}

/// Spoolman, the filament inventory each ended job's filament is reported to.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolmanConfig {
    /// Its address (`http://127.0.0.1:7912`); none: off.
    pub url: Option<String>,
    /// How often its spool list (the "Spool" select's options) is read.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for SpoolmanConfig {
    fn default() -> Self {
        Self {
            url: None,
            interval: Duration::from_secs(60),
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
    /// The access token configured directly (not the refresh flow), if any.
    pub fn static_access_token(&self) -> Option<SecretString> {
        self.connect
            .access_token
            .as_ref()
            .map(|s| SecretString::from(s.expose_secret().trim().to_string()))
            .filter(|s| !s.expose_secret().is_empty())
    }
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
#[cfg(test)]
mod tests;
