//! Loading: defaults < TOML file < environment, `*_file` secrets read, errors that never
//! quote a secret.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::SecretString;

use super::{CONFIG_PATH_ENV, Config, DEFAULT_CONFIG_PATH, ENV_PREFIX};

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
