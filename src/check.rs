//! `prusa-connect-mqtt check`: everything the service needs, tried once, each problem said
//! with its key and its fix. Secrets never appear in the report.

use std::path::Path;
use std::time::Duration;

use rumqttc::{Event, Packet};

use crate::auth::{self, TokenStore};
use crate::bridge::registry::{Registry, StateFile};
use crate::config::{Config, DiscoveryMode};
use crate::connect::model::Printer;
use crate::connect::{ConnectClient, ConnectError, TokenSource};
use crate::discovery::{Discovery, PrinterDevice};
use crate::mqtt::explain_broker_error;
use crate::topics::Topics;

/// How long the broker gets to accept the connection.
const BROKER_WAIT: Duration = Duration::from_secs(5);

/// What `check` found: the lines to print and how many were problems.
#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<String>,
    pub problems: usize,
}

impl Report {
    fn ok(&mut self, text: impl Into<String>) {
        self.lines.push(format!("ok    {}", text.into()));
    }

    fn problem(&mut self, text: impl Into<String>) {
        self.problems += 1;
        self.lines.push(format!("FAIL  {}", text.into()));
    }

    fn note(&mut self, text: impl Into<String>) {
        self.lines.push(format!("      {}", text.into()));
    }

    pub fn text(&self) -> String {
        let mut out = self.lines.join("\n");
        out.push('\n');
        out.push_str(&match self.problems {
            0 => "All good: `prusa-connect-mqtt run` will work with this configuration.\n".into(),
            1 => "1 problem found.\n".into(),
            n => format!("{n} problems found.\n"),
        });
        out
    }
}

/// Loads the config at `path` (or the default places, or the add-on's options under the
/// Supervisor) and tries everything.
pub async fn check(path: Option<&Path>) -> Report {
    let mut report = Report::default();
    let config = match crate::addon::load_config(path).await {
        Ok(c) => c,
        Err(e) => {
            report.problem(format!("config: {e:#}"));
            return report;
        }
    };
    report.ok(format!(
        "config: {} is valid",
        path.map(|p| p.display().to_string())
            .unwrap_or_else(|| "the default configuration".into())
    ));
    check_with(&config, &mut report).await;
    report
}

/// Checks a loaded config: credentials, Connect and its printers, the broker.
pub async fn check_with(config: &Config, report: &mut Report) {
    if let Some(client) = credentials(config, report) {
        printers(config, &client, report).await;
    }
    broker(config, report).await;
    spoolman(config, report).await;
}

/// With `spoolman.url`: reads Spoolman's spool list, as the gateway will.
async fn spoolman(config: &Config, report: &mut Report) {
    let Some(url) = &config.spoolman.url else {
        return;
    };
    let shown = crate::config::redact_url(url);
    let timeout = config.connect.request_timeout.max(Duration::from_secs(5));
    let listed = match crate::spoolman::SpoolmanClient::new(url, timeout) {
        Ok(client) => client.spools().await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    match listed {
        Ok(spools) if spools.is_empty() => report.ok(format!(
            "spoolman {shown}: answers, with no spool (add spools in Spoolman for the Spool \
             select)"
        )),
        Ok(spools) => report.ok(format!(
            "spoolman {shown}: {} spool(s), the first {}",
            spools.len(),
            spools[0].label
        )),
        Err(e) => report.problem(format!(
            "spoolman {shown}: {e} (spoolman.url is Spoolman's address, like \
             http://127.0.0.1:7912)"
        )),
    }
}

fn credentials(config: &Config, report: &mut Report) -> Option<ConnectClient> {
    let c = &config.connect;
    let tokens = match crate::token_source(config) {
        Ok(t) => t,
        Err(e) => {
            report.problem(format!("credentials: {e:#}"));
            return None;
        }
    };
    match &tokens {
        TokenSource::Static(token) => {
            use secrecy::ExposeSecret;
            let source = if c.access_token_file.is_some() {
                "connect.access_token_file"
            } else {
                "connect.access_token"
            };
            match auth::jwt_expiry(token.expose_secret()) {
                Some(exp) if exp <= crate::payloads::now_unix() as u64 => {
                    report.problem(format!(
                        "credentials: the access token in {source} expired at {}; access \
                         tokens live 2 hours: {} to use a refresh token that renews itself",
                        iso(exp),
                        auth::LOGIN_ACTION
                    ));
                    return None;
                }
                Some(exp) => report.ok(format!(
                    "credentials: access token from {source}, valid until {}; it will not be \
                     renewed ({} for one that is)",
                    iso(exp),
                    auth::LOGIN_ACTION
                )),
                None => report.ok(format!("credentials: access token from {source}")),
            }
        }
        TokenSource::File(path) => report.ok(format!(
            "credentials: access token read from {} (connect.token_file)",
            path.display()
        )),
        TokenSource::Refresh(_) => {
            let stored = TokenStore::new(&config.state_dir());
            let from = if stored.load().is_some() {
                format!(
                    "{} (kept up to date by the gateway)",
                    stored.path().display()
                )
            } else if c.refresh_token_file.is_some() {
                "connect.refresh_token_file".into()
            } else if c.refresh_token.is_some() {
                "connect.refresh_token".into()
            } else {
                // Only with the web page on does `run` start without any token.
                report.problem(format!(
                    "credentials: nobody is logged in: {}",
                    auth::WEB_LOGIN_ACTION
                ));
                return None;
            };
            report.ok(format!("credentials: refresh token from {from}"));
        }
        TokenSource::None => {}
    }
    match ConnectClient::new(&c.url, tokens, c.request_timeout) {
        Ok(client) => Some(client.with_max_response_bytes(c.max_response_bytes)),
        Err(e) => {
            report.problem(format!("connect.url: {e}"));
            None
        }
    }
}

async fn printers(config: &Config, client: &ConnectClient, report: &mut Report) {
    let url = &config.connect.url;
    let (all, rejected) = match client.printers().await {
        Ok(found) => found,
        Err(e) => {
            let advice = connect_advice(&e, client);
            report.problem(format!("Connect {url}: {e}{advice}"));
            return;
        }
    };
    let wanted = &config.connect.printers;
    let bridged: Vec<_> = all
        .iter()
        .filter(|p| crate::bridge::settings::is_bridged(wanted, p))
        .collect();
    report.ok(format!(
        "Connect {url}: the account has {} printer(s); {} will be bridged",
        all.len(),
        bridged.len()
    ));
    for r in &rejected {
        report.problem(format!("Connect sent a printer that cannot be read: {r}"));
    }
    unknown_wanted(wanted, &all, report);
    // The ids the gateway uses: those it persisted in the state directory, new ones given
    // the way it gives them (the state file is only read).
    let memory = std::fs::read(config.state_dir().join("state.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<StateFile>(&bytes).ok())
        .unwrap_or_default();
    let mut registry = Registry::from_state_file(memory);
    registry.assign_ids(&bridged, &config.mqtt.printer_ids);
    for clash in registry.clashes() {
        report.problem(clash.to_string());
    }
    let topics = Topics::for_config(config);
    if let Some(first) = bridged.first() {
        live(config, client, &first.uuid, first.display_name(), report).await;
    }
    for p in bridged {
        let id = registry
            .get(&p.uuid)
            .and_then(|e| e.id())
            .unwrap_or_default();
        report.note(format!(
            "{} ({}, {}): topics {}/{id}/...",
            p.display_name(),
            p.uuid,
            p.effective_state().as_str(),
            topics.base()
        ));
        if config.homeassistant.enabled {
            let entities = entity_ids(config, p.display_name(), &p.uuid, id);
            report.note(format!("  Home Assistant: {}", entities.join(", ")));
        }
    }
}

/// What to do about a failed printer list, after the error (empty when nothing useful).
fn connect_advice(e: &ConnectError, client: &ConnectClient) -> String {
    match e {
        ConnectError::Transport(_) => " (check connect.url, the network and any proxy)".to_string(),
        ConnectError::Unauthorized { .. } | ConnectError::Auth(_) => {
            let status = client.auth_status();
            status
                .action
                .map(|a| format!(" (to fix: {a})"))
                .unwrap_or_default()
        }
        _ => String::new(),
    }
}

/// Each entry of `connect.printers` that names no printer of the account is a problem.
fn unknown_wanted(wanted: &[String], all: &[Printer], report: &mut Report) {
    for w in wanted {
        if !all
            .iter()
            .any(|p| &p.uuid == w || p.name.as_deref() == Some(w.as_str()))
        {
            let names: Vec<&str> = all.iter().map(|p| p.display_name()).collect();
            report.problem(format!(
                "connect.printers: {w:?} is neither the name nor the uuid of a printer of this \
                 account (names: {})",
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            ));
        }
    }
}

/// With `connect.live`: logs in to the live channel, subscribes to one printer and reports
/// the first value it hears.
async fn live(
    config: &Config,
    client: &ConnectClient,
    uuid: &str,
    name: &str,
    report: &mut Report,
) {
    let c = &config.connect;
    if !c.live {
        report.note(
            "live channel: off (connect.live = true adds Connect's push channel; unofficial)",
        );
        return;
    }
    let settings = crate::connect::live::LiveSettings {
        url: c.live_url.clone(),
        auth_url: c.auth_url.clone(),
        ca_file: crate::mqtt::SYSTEM_CA_BUNDLE.into(),
    };
    let timeout = c.request_timeout.max(Duration::from_secs(5));
    match crate::connect::live::probe(client, &settings, uuid, timeout).await {
        Ok((topic, value)) => report.ok(format!(
            "live channel {}: logged in; {name} said {topic} = {value:?}",
            c.live_url
        )),
        Err(e) => report.problem(format!(
            "live channel {}: {e} (unofficial: the gateway keeps polling without it)",
            c.live_url
        )),
    }
}

/// The entity ids Home Assistant gives the discovery's entities (`default_entity_id`), from
/// the discovery code itself, not guessed from names. The controls that depend on the
/// printer's supported commands are not listed.
pub fn entity_ids(config: &Config, name: &str, uuid: &str, id: &str) -> Vec<String> {
    let discovery = Discovery {
        prefix: config.homeassistant.discovery_prefix.clone(),
        mode: DiscoveryMode::Entity,
        topics: Topics::for_config(config),
    };
    discovery.entity_ids(&PrinterDevice {
        spools: config.spoolman.url.as_ref().map(|_| Vec::new()),
        ..PrinterDevice::bare(uuid, id, name)
    })
}

async fn broker(config: &Config, report: &mut Report) {
    let url = &crate::config::redact_url(&config.mqtt.url);
    let mut cfg = config.mqtt.clone();
    // Never kick the running service off the broker (same client id).
    cfg.client_id = format!("{}-check", cfg.client_id);
    let options = match crate::mqtt::options(&cfg, None) {
        Ok(o) => o,
        Err(e) => {
            report.problem(format!("MQTT broker {url}: {e:#}"));
            return;
        }
    };
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 10);
    let outcome = tokio::time::timeout(BROKER_WAIT, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    match outcome {
        Ok(Ok(())) => {
            let user = config
                .mqtt
                .username
                .as_deref()
                .map(|u| format!(" as {u}"))
                .unwrap_or_default();
            report.ok(format!("MQTT broker {url}: connected{user}"));
            let _ = client.disconnect().await;
            let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
        }
        Ok(Err(e)) => report.problem(format!(
            "MQTT broker {url}: {}",
            explain_broker_error(&e, url)
        )),
        Err(_) => report.problem(format!(
            "MQTT broker {url}: no answer within {}s: a firewall, a wrong host, or a TLS port \
             reached with mqtt:// (use mqtts://)",
            BROKER_WAIT.as_secs()
        )),
    }
}

fn iso(unix: u64) -> String {
    crate::payloads::iso(unix as f64).unwrap_or_else(|| unix.to_string())
}
