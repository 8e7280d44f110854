//! Whether Connect answers, and `bridge/info`: the bridge's own retained status.

use serde::Serialize;
use serde_json::{Value, json};

use crate::bridge::Settings;
use crate::bridge::account::{Account, Answer};
use crate::bridge::live::Channel;
use crate::bridge::poll::Poll;
use crate::bridge::printer::stats::Totals;
use crate::bridge::registry::Registry;
use crate::connect::client::AuthStatus;
use crate::payloads::{fingerprint, iso};

/// Whether Connect answers, for `bridge/info` and availability, and what `bridge/info` showed.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub reachable: bool,
    /// A printer list came in this run.
    listed_once: bool,
    since: Option<String>,
    last_error: Option<String>,
    last_error_at: Option<String>,
    pub failures: u32,
    /// `bridge/info` waits for the account reads in flight that it shows.
    pub info_owed: Option<AuthStatus>,
    /// The fingerprint of the last `bridge/info` published.
    shown_info: Option<u64>,
    /// The authentication status `bridge/info` last showed.
    pub last_auth: Option<AuthStatus>,
    /// The fingerprint of the last `bridge/stats` published.
    pub shown_fleet_stats: Option<u64>,
}

impl Health {
    /// A list request failed with `error` at `wall`.
    pub fn failed(&mut self, wall: f64, error: String) {
        self.failures += 1;
        if self.reachable || self.since.is_none() || self.last_error.as_deref() != Some(&error) {
            tracing::warn!("Prusa Connect: {error}; marking printers unavailable and retrying");
        } else {
            tracing::debug!("Prusa Connect still failing: {error}");
        }
        if self.reachable || self.since.is_none() {
            self.since = iso(wall);
        }
        self.reachable = false;
        self.last_error = Some(error);
        self.last_error_at = iso(wall);
    }

    /// A list came in at `wall`. Returns which answer it is: the first of this run, the
    /// first after an outage (often a new release of Connect), or another.
    pub fn answered(&mut self, wall: f64) -> Answer {
        let first = !self.listed_once;
        let mut outage_ended = false;
        if !self.reachable {
            if self.failures > 0 {
                tracing::info!(
                    "Prusa Connect reachable again after {} failed polls",
                    self.failures
                );
                outage_ended = true;
            }
            self.reachable = true;
            self.since = iso(wall);
        }
        self.failures = 0;
        self.listed_once = true;
        match (first, outage_ended) {
            (true, _) => Answer::First,
            (false, true) => Answer::AfterOutage,
            (false, false) => Answer::Again,
        }
    }

    /// Why no printer list came in this run yet (Connect unreachable since the start), if so.
    pub fn never_listed(&self) -> Option<String> {
        if self.listed_once {
            return None;
        }
        Some(match &self.last_error {
            Some(e) => format!("Prusa Connect has not answered since the gateway started ({e})"),
            None => "the gateway has not read Prusa Connect's printer list yet".to_string(),
        })
    }

    /// The `bridge/info` to publish: `info` unless its fingerprint is what it shows already
    /// (then it is not even written out).
    pub fn changed_info(&self, info: &Info<'_>) -> Option<(u64, Vec<u8>)> {
        let print = fingerprint(info);
        (self.shown_info != Some(print))
            .then(|| (print, serde_json::to_vec(info).unwrap_or_default()))
    }

    /// `bridge/info` now shows the payload of fingerprint `print`.
    pub fn info_shown(&mut self, print: u64) {
        self.shown_info = Some(print);
    }
}

/// What `bridge/info` shows: the parts of the core it reads.
pub struct InfoParts<'a> {
    pub settings: &'a Settings,
    pub registry: &'a Registry,
    pub account: &'a Account,
    pub health: &'a Health,
    pub poll: &'a Poll,
    pub channel: &'a Channel,
}

/// The `bridge/info` payload, borrowed from the core: its fingerprint is taken without
/// building it, and it is written only when that changed (keys in alphabetical order, as
/// they always were).
#[derive(Serialize)]
pub struct Info<'a> {
    auth: Value,
    connect: Value,
    /// How far the start-up reads are: "known: 1480/2000" while a farm starts.
    known: String,
    live: Value,
    notifications_unseen: Option<u64>,
    printers: Bridged<'a>,
    rejected_printers: Vec<String>,
    /// With `spoolman.url`: the spools listed and how the reports stand.
    #[serde(skip_serializing_if = "Option::is_none")]
    spoolman: Option<Value>,
    /// `since`: when the earliest of the printers' totals (`P/stats`) began.
    stats: Value,
    unavailable: Value,
    version: &'static str,
}

/// The printers bridged, as `bridge/info` lists them.
struct Bridged<'a>(&'a Registry);

impl Serialize for Bridged<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Entry<'a> {
            id: Option<&'a str>,
            name: Option<&'a str>,
            uuid: &'a str,
        }
        s.collect_seq(self.0.entries().filter_map(|e| {
            let live = e.runtime.as_ref()?;
            Some(Entry {
                id: e.id(),
                name: live.printer.name.as_deref(),
                uuid: &e.uuid,
            })
        }))
    }
}

/// When the earliest of the printers' totals began.
fn stats_since(registry: &Registry) -> Option<&str> {
    let all = registry.entries();
    all.filter_map(|e| e.record.stats.since.as_deref()).min()
}

/// The fleet's totals (`bridge/stats`): the sum of every printer's the bridge holds, those
/// known from the state file too (so the sum does not drop to zero while Connect does not
/// answer after a restart: Home Assistant would count the whole total again when it came
/// back).
pub fn fleet_stats(registry: &Registry) -> Value {
    let mut sum = Totals::sum(registry.entries().map(|e| &e.record.stats)).payload();
    if let Some(map) = sum.as_object_mut() {
        map.remove("last_outcome");
        map.remove("seeded");
    }
    sum
}

/// What `bridge/info` shows now.
pub fn info_payload<'a>(p: InfoParts<'a>, auth: &AuthStatus) -> Info<'a> {
    let cameras = p.settings.camera.enabled;
    let runtimes = p.registry.entries().filter_map(|e| e.runtime.as_ref());
    let (known, bridged) = runtimes.fold((0, 0), |(k, n), l| {
        (k + usize::from(l.is_known(cameras)), n + 1)
    });
    let version = p.account.server_version.as_ref();
    let h = p.health;
    Info {
        auth: serde_json::to_value(auth).unwrap_or(Value::Null),
        connect: json!({
            "url": p.settings.connect_url.as_str(),
            "server_version": version.and_then(|v| v.version.clone()),
            "server_commit": version.and_then(|v| v.commit.clone()),
            "server_date": version.and_then(|v| v.date.clone()),
            "reachable": h.reachable,
            "since": h.since,
            "last_error": h.last_error,
            "last_error_at": h.last_error_at,
        }),
        known: format!("{known}/{bridged}"),
        live: p.channel.info(),
        notifications_unseen: p.account.unseen,
        printers: Bridged(p.registry),
        rejected_printers: p.poll.rejected.iter().map(|r| r.to_string()).collect(),
        spoolman: p
            .settings
            .spoolman
            .as_deref()
            .map(|url| p.account.spools.info(url)),
        stats: json!({ "since": stats_since(p.registry) }),
        unavailable: p.account.unavailable.info(),
        version: env!("CARGO_PKG_VERSION"),
    }
}
