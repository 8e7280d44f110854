//! Home Assistant add-on mode. The Supervisor starts the binary with `SUPERVISOR_TOKEN` in its
//! environment; the config then comes from the add-on's options (`/data/options.json`, which
//! the Supervisor writes from the add-on's Configuration tab) and the broker from the
//! Supervisor's MQTT service (`GET http://supervisor/services/mqtt`, provided by the Mosquitto
//! add-on). State lives in `/data`, the add-on's own volume.
//!
//! [`config_from`] is the mapping, pure; [`Addon::load`] reads the file and asks the
//! Supervisor. `addon/config.yaml` declares the options listed in [`OPTIONS`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use figment::providers::Serialized;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

use crate::config::{Config, redact_url};

/// Set by the Supervisor for every add-on it starts: add-on mode is on when it is present.
pub const TOKEN_ENV: &str = "SUPERVISOR_TOKEN";
/// Where the Supervisor answers instead of [`SUPERVISOR_URL`] (tests: a fake on loopback).
pub const SUPERVISOR_URL_ENV: &str = "SUPERVISOR_URL";
/// Where the options are read instead of [`OPTIONS_PATH`] (tests).
pub const OPTIONS_ENV: &str = "PCM_ADDON_OPTIONS";
pub const SUPERVISOR_URL: &str = "http://supervisor";
pub const OPTIONS_PATH: &str = "/data/options.json";
pub const STATE_DIR: &str = "/data";
/// `ingress_port` in addon/config.yaml: where the web page listens behind ingress.
pub const INGRESS_PORT: u16 = 8099;

const SUPERVISOR_TIMEOUT: Duration = Duration::from_secs(10);
/// The Supervisor's answer is a few hundred bytes; anything far larger is not its answer.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
const MAX_OPTIONS_BYTES: u64 = 1024 * 1024;
const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];
const DISCOVERY_MODES: &[&str] = &["device", "entity"];

/// The options addon/config.yaml declares, each with the config key it sets.
pub const OPTIONS: &[(&str, &str)] = &[
    ("base_topic", "mqtt.base_topic"),
    ("discovery_mode", "homeassistant.mode"),
    ("poll_interval", "connect.poll_interval"),
    ("active_poll_interval", "connect.active_poll_interval"),
    ("printers", "connect.printers"),
    ("commands_allow", "commands.allow"),
    ("live", "connect.live"),
    ("log_level", "log.level"),
    ("spoolman_url", "spoolman.url"),
];

/// The one error for a Supervisor without an MQTT broker to hand out.
const NO_MQTT_SERVICE: &str = "the Supervisor has no MQTT broker for this add-on: install and \
     start the Mosquitto broker add-on (Settings > Add-ons > Add-on store), set up the MQTT \
     integration it offers, then start this add-on again";

/// The broker the Supervisor's MQTT service names (the Mosquitto add-on registers itself
/// with a user it made for add-ons).
#[derive(Debug, Clone)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub ssl: bool,
    pub username: Option<String>,
    pub password: Option<SecretString>,
}

impl Broker {
    pub fn url(&self) -> String {
        let scheme = if self.ssl { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Reads the Supervisor's answer to `GET /services/mqtt`:
/// `{"result": "ok", "data": {"host", "port", "ssl", "username", "password", "protocol"}}`,
/// or `{"result": "error", "message": ..}` with 400 when no add-on provides the service.
pub fn broker_from_answer(status: u16, body: &[u8]) -> Result<Broker> {
    let answer: Option<Value> = serde_json::from_slice(body).ok();
    let said = answer
        .as_ref()
        .and_then(|a| a.get("message"))
        .and_then(Value::as_str)
        .filter(|m| !m.trim().is_empty())
        .map(|m| format!(" (the Supervisor said: {})", clip(m.trim())))
        .unwrap_or_default();
    match status {
        200 => {}
        400 | 404 => bail!("{NO_MQTT_SERVICE}{said}"),
        401 => {
            bail!("the Supervisor refused this add-on's token (HTTP 401){said}; restart the add-on")
        }
        403 => bail!(
            "the Supervisor does not let this add-on read its MQTT service (HTTP 403){said}: the \
             add-on's config.yaml must declare `services: [\"mqtt:need\"]`"
        ),
        other => bail!(
            "the Supervisor answered HTTP {other} when asked for the MQTT broker{said}; start \
             the add-on again"
        ),
    }
    let Some(answer) = answer else {
        bail!("the Supervisor's answer for the MQTT broker is not JSON")
    };
    if answer.get("result").and_then(Value::as_str) != Some("ok") {
        bail!("{NO_MQTT_SERVICE}{said}");
    }
    let data = match answer.get("data") {
        Some(Value::Object(data)) => data,
        _ => bail!("{NO_MQTT_SERVICE} (its answer has no broker)"),
    };
    let host = match data.get("host") {
        Some(Value::String(h)) if !h.trim().is_empty() => h.trim().to_string(),
        _ => bail!("{NO_MQTT_SERVICE} (its answer names no host)"),
    };
    let ssl = match data.get("ssl") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => bail!("the Supervisor's MQTT service has ssl = {other}, not true or false"),
    };
    // The Supervisor validates a port number; some versions pass it on as text.
    let port = match data.get("port") {
        None | Some(Value::Null) => Some(if ssl { 8883 } else { 1883 }),
        Some(Value::Number(n)) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    }
    .filter(|p| *p != 0);
    let Some(port) = port else {
        bail!(
            "the Supervisor's MQTT service has port = {}, not a port number",
            data.get("port").unwrap_or(&Value::Null)
        )
    };
    let text = |key: &str| match data.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    Ok(Broker {
        host,
        port,
        ssl,
        username: text("username"),
        password: text("password").map(SecretString::from),
    })
}

/// The config add-on mode runs with: `options` (the add-on's options.json) and `broker` over
/// the built-in defaults. The environment is not read.
pub fn config_from(options: &Value, broker: &Broker) -> Result<Config> {
    let layer = with_broker(options_layer(options)?, broker);
    Config::from_layer(Serialized::defaults(layer), false).map_err(explain)
}

/// A document shaped like config.toml: what the options set.
fn options_layer(options: &Value) -> Result<Map<String, Value>> {
    let Value::Object(options) = options else {
        bail!(
            "the add-on options are not a JSON object but {}",
            kind(options)
        )
    };
    let mut doc = Map::new();
    for (option, key) in OPTIONS {
        // Options a newer add-on version added, and optional ones left empty, keep defaults.
        let Some(value) = options.get(*option).filter(|v| !v.is_null()) else {
            continue;
        };
        if *option == "spoolman_url" && value.as_str().is_some_and(|s| s.trim().is_empty()) {
            continue;
        }
        set(&mut doc, key, option_value(option, value)?);
    }
    Ok(doc)
}

/// `doc` with what add-on mode fixes: the Supervisor's broker, state in the add-on's volume.
fn with_broker(mut doc: Map<String, Value>, broker: &Broker) -> Value {
    set(&mut doc, "state.dir", json!(STATE_DIR));
    set(&mut doc, "mqtt.url", json!(broker.url()));
    if let Some(user) = &broker.username {
        set(&mut doc, "mqtt.username", json!(user));
    }
    if let Some(password) = &broker.password {
        set(&mut doc, "mqtt.password", json!(password.expose_secret()));
    }
    // The page a user logs in on, behind ingress: only the Supervisor's proxy may reach it
    // (`web.ingress`), so it needs no password of its own.
    set(
        &mut doc,
        "web.listen",
        json!(format!("0.0.0.0:{INGRESS_PORT}")),
    );
    set(&mut doc, "web.ingress", json!(true));
    Value::Object(doc)
}

/// One option's value as its config key wants it, or an error naming the option.
fn option_value(option: &str, value: &Value) -> Result<Value> {
    let wrong = |wanted: &str| {
        anyhow::anyhow!(
            "add-on option `{option}` must be {wanted}, not {}",
            clip(&value.to_string())
        )
    };
    match option {
        "base_topic" => {
            let text = value.as_str().ok_or_else(|| wrong("text"))?;
            Ok(json!(text.trim()))
        }
        "discovery_mode" => one_of(value, DISCOVERY_MODES).ok_or_else(|| wrong("device or entity")),
        "log_level" => {
            one_of(value, LOG_LEVELS).ok_or_else(|| wrong("error, warn, info, debug or trace"))
        }
        "poll_interval" | "active_poll_interval" => {
            let seconds = value
                .as_u64()
                .filter(|s| *s > 0)
                .ok_or_else(|| wrong("a whole number of seconds, at least 1"))?;
            Ok(json!(format!("{seconds}s")))
        }
        "spoolman_url" => {
            let text = value
                .as_str()
                .ok_or_else(|| wrong("a URL like http://127.0.0.1:7912"))?;
            Ok(json!(text.trim()))
        }
        "live" => value
            .as_bool()
            .map(Value::Bool)
            .ok_or_else(|| wrong("true or false")),
        "printers" => {
            let names = texts(value).ok_or_else(|| wrong("a list of printer names or uuids"))?;
            Ok(json!(names))
        }
        "commands_allow" => {
            let names = texts(value)
                .filter(|names| names.iter().all(|n| is_command_name(n)))
                .ok_or_else(|| wrong("a list of command names like PAUSE_PRINT"))?;
            Ok(json!(names))
        }
        other => unreachable!("{other} is in OPTIONS without a conversion"),
    }
}

fn one_of(value: &Value, allowed: &[&str]) -> Option<Value> {
    let text = value.as_str()?.trim().to_ascii_lowercase();
    allowed.contains(&text.as_str()).then(|| json!(text))
}

/// The non-empty entries of a list of texts (the Configuration tab leaves empty rows).
fn texts(value: &Value) -> Option<Vec<String>> {
    value
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(|s| s.trim().to_string()))
        .filter(|s| s.as_ref().is_none_or(|s| !s.is_empty()))
        .collect()
}

/// The names Connect gives its commands: what addon/config.yaml's `match(^[A-Z0-9_]+$)` allows.
fn is_command_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

fn set(doc: &mut Map<String, Value>, key: &str, value: Value) {
    let (section, field) = key.split_once('.').expect("keys are section.field");
    let table = doc
        .entry(section)
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(table) = table {
        table.insert(field.to_string(), value);
    }
}

/// A config error in the terms the add-on's user knows: the option, not the config key.
fn explain(err: anyhow::Error) -> anyhow::Error {
    let message = format!("{err:#}");
    if let Some((option, _)) = OPTIONS.iter().find(|(_, key)| message.contains(key)) {
        return anyhow::anyhow!("add-on option `{option}`: {message}");
    }
    if message.contains("mqtt.") {
        return anyhow::anyhow!("the broker the Supervisor named: {message}");
    }
    err
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "true or false",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// At most 100 characters of something quoted in an error.
fn clip(text: &str) -> String {
    match text.char_indices().nth(100) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// Where add-on mode finds the Supervisor and the options.
pub struct Addon {
    token: SecretString,
    supervisor_url: String,
    options_path: PathBuf,
}

impl Addon {
    /// Add-on mode: the Supervisor's token is in the environment and no `--config` was given
    /// (a config file named on the command line wins).
    pub fn from_env(config_path: Option<&Path>) -> Option<Addon> {
        if config_path.is_some() {
            return None;
        }
        let token = std::env::var(TOKEN_ENV).ok()?;
        let token = token.trim();
        if token.is_empty() {
            return None;
        }
        let env = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| default.to_string())
        };
        Some(Addon {
            token: SecretString::from(token.to_string()),
            supervisor_url: env(SUPERVISOR_URL_ENV, SUPERVISOR_URL)
                .trim_end_matches('/')
                .to_string(),
            options_path: PathBuf::from(env(OPTIONS_ENV, OPTIONS_PATH)),
        })
    }

    /// The options, the Supervisor's broker, then `PRUSA_CONNECT_MQTT__*` from the
    /// environment over both, as over a config file.
    pub async fn load(&self) -> Result<Config> {
        // A mistake in the options is reported before the Supervisor is asked anything.
        let options = options_layer(&read_options(&self.options_path)?)?;
        let layer = with_broker(options, &self.broker().await?);
        Config::from_layer(Serialized::defaults(layer), true).map_err(explain)
    }

    pub fn options_path(&self) -> &Path {
        &self.options_path
    }

    /// Asks the Supervisor for the MQTT broker.
    pub async fn broker(&self) -> Result<Broker> {
        let url = format!("{}/services/mqtt", self.supervisor_url);
        let client = reqwest::Client::builder()
            .timeout(SUPERVISOR_TIMEOUT)
            .build()
            .context("cannot set up an HTTP client")?;
        let mut response = client
            .get(&url)
            .bearer_auth(self.token.expose_secret())
            .send()
            .await
            .with_context(|| {
                format!(
                    "cannot ask the Supervisor at {} for the MQTT broker",
                    redact_url(&url)
                )
            })?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .context("the Supervisor's answer for the MQTT broker broke off")?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_ANSWER_BYTES {
                bail!(
                    "the Supervisor's answer for the MQTT broker is over {MAX_ANSWER_BYTES} bytes"
                );
            }
        }
        broker_from_answer(status, &body)
    }
}

/// Reads the options file the Supervisor wrote.
pub fn read_options(path: &Path) -> Result<Value> {
    let too_big = std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_OPTIONS_BYTES);
    if too_big {
        bail!(
            "the add-on options {} are over {MAX_OPTIONS_BYTES} bytes",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the add-on options {}", path.display()))?;
    // serde_json's error gives the place, never the text.
    serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("the add-on options {} are not JSON: {e}", path.display()))
}

/// The config `run`, `check` and `login` use: add-on mode when the Supervisor started the
/// binary (and no `--config` was given), else [`Config::load`].
pub async fn load_config(config_path: Option<&Path>) -> Result<Config> {
    match Addon::from_env(config_path) {
        Some(addon) => addon.load().await,
        None => Config::load(config_path),
    }
}

#[cfg(test)]
mod tests;
