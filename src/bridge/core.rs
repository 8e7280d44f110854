//! The bridge's decisions, with no I/O: the printer list, read results and commands go in;
//! messages to publish and reads to make come out ([`Core::take_messages`],
//! [`Core::take_reads`]). Time is an argument (`now` for schedules, `wall` Unix seconds for
//! payloads), so every decision can be tested in-process.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::bridge::account::Account;
use crate::bridge::printer::QueueStep;
use crate::bridge::printer::controls::{self, Trigger, dialog_event, dialog_key};
use crate::bridge::printer::jobs;
use crate::bridge::printer::{PrinterEntry, Runtime};
use crate::bridge::reads::Read;
use crate::bridge::registry::{Registry, StateFile};
use crate::bridge::schedule::{EXTRAS_PER_TICK, NOTIFICATIONS_EVERY_POLLS};
use crate::config::{CameraConfig, Config};
use crate::connect::client::{AuthStatus, ConnectError, RejectedPrinter};
use crate::connect::model::{Printer, PrinterType};
use crate::discovery::Discovery;
use crate::message::{Kind, Message};
use crate::payloads::{self, iso};
use crate::topics::Topics;

/// A printer missing from this many successful list polls in a row is gone: its discovery
/// and retained topics are removed. More than one, so a glitch in Connect's list does not
/// wipe a farm's entities.
pub const REMOVE_AFTER_MISSING_POLLS: u32 = 3;
/// ...and missing for at least this many `poll_interval`s.
pub const REMOVE_AFTER_MISSING_INTERVALS: u32 = 2;
/// Longest wait between polls while Connect fails.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

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
    pub connect_url: reqwest::Url,
    pub allow: Vec<String>,
    /// Per printer: commands a second to Connect (0: no limit), and the burst.
    pub commands_per_second: f64,
    pub commands_burst: u32,
    pub max_payload_bytes: usize,
    /// `connect.live`: the live channel's values are laid over the list's.
    pub live: bool,
}

impl Settings {
    pub fn from_config(config: &Config) -> anyhow::Result<Settings> {
        let topics = Topics::new(&config.mqtt.base_topic);
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
            connect_url,
            allow: config.commands.allow.clone(),
            commands_per_second: config.commands.max_per_second,
            commands_burst: config.commands.burst,
            max_payload_bytes: config.mqtt.max_payload_bytes,
            live: config.connect.live,
        })
    }
}

/// Whether Connect answers, for `bridge/info` and availability.
#[derive(Debug, Clone, Default)]
pub(super) struct Health {
    pub(super) reachable: bool,
    /// A printer list came in this run.
    listed_once: bool,
    since: Option<String>,
    last_error: Option<String>,
    last_error_at: Option<String>,
    failures: u32,
}

pub struct Core {
    pub(super) settings: Settings,
    pub(super) registry: Registry,
    pub(super) account: Account,
    pub(super) health: Health,
    rejected: Vec<RejectedPrinter>,
    /// Poll fast until then (after a command).
    pub(super) fast_until: Option<Instant>,
    /// What is left of [`EXTRAS_PER_TICK`] in this poll.
    budget: u32,
    /// The printers of the list being processed, and whether any is busy.
    listed: HashSet<String>,
    active: bool,
    /// `bridge/info` waits for the account reads in flight that it shows.
    info_owed: Option<AuthStatus>,
    /// The last `bridge/info` published.
    shown_info: Option<String>,
    pub(super) out: Vec<Message>,
    reads: Vec<Read>,
    /// Old-mode discovery topics to clear once the new discovery is out (see `migration.rs`),
    /// per printer uuid.
    pub(super) migrating: std::collections::HashMap<String, Vec<String>>,
    /// The discovery mode in the state file, kept while discovery is off.
    remembered_mode: Option<String>,
    pub(super) supported_pool: crate::bridge::printer::controls::SupportedPool,
    /// The live channel (`connect.live`), and the printers whose pushed values changed
    /// since they were last looked at (since when).
    pub(super) channel: crate::bridge::live::Channel,
    pub(super) live_dirty: BTreeMap<String, Instant>,
    /// `bridge/info` is to show the channel's new status (since then).
    pub(super) live_info_due: Option<Instant>,
    /// The authentication status `bridge/info` last showed.
    pub(super) last_auth: Option<AuthStatus>,
}

impl Core {
    pub fn new(s: Settings, mut memory: StateFile) -> Core {
        let notifications = std::mem::take(&mut memory.notifications);
        let remembered_mode = memory.discovery_mode.take();
        let live = s.live;
        let mut core = Core {
            settings: s,
            registry: Registry::from_memory(memory),
            account: Account {
                version_due: true,
                unseen_due: true,
                notifications,
                ..Default::default()
            },
            health: Health::default(),
            rejected: Vec::new(),
            fast_until: None,
            budget: EXTRAS_PER_TICK,
            listed: HashSet::new(),
            active: false,
            info_owed: None,
            shown_info: None,
            out: Vec::new(),
            reads: Vec::new(),
            migrating: Default::default(),
            remembered_mode,
            supported_pool: Default::default(),
            channel: crate::bridge::live::Channel {
                enabled: live,
                ..Default::default()
            },
            live_dirty: BTreeMap::new(),
            live_info_due: None,
            last_auth: None,
        };
        let remembered = core.remembered_mode.clone();
        core.start_migration(remembered.as_deref());
        core
    }

    /// What to publish at start: the bridge's own discovery (after the first poll when its
    /// entities move to another discovery mode).
    pub fn start(&mut self) {
        if !self.bridge_migrating() {
            self.publish_bridge_discovery();
        }
    }

    fn publish_bridge_discovery(&mut self) {
        self.finish_migration(crate::bridge::migration::BRIDGE);
        if let Some(d) = &self.settings.discovery {
            for (topic, payload) in d.bridge() {
                self.out
                    .push(Message::retain(Kind::Discovery, topic, payload.to_string()));
            }
        }
    }

    /// The messages decided since the last call, in order.
    pub fn take_messages(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.out)
    }

    /// The reads decided since the last call.
    pub fn take_reads(&mut self) -> Vec<Read> {
        std::mem::take(&mut self.reads)
    }

    /// What goes into the state file.
    pub fn memory(&self) -> StateFile {
        StateFile {
            notifications: self.account.notifications.clone(),
            discovery_mode: match &self.settings.discovery {
                Some(d) => Some(d.mode.as_str().to_string()),
                None => self.remembered_mode.clone(),
            },
            ..self.registry.memory()
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub(super) fn publish(&mut self, message: Message) {
        self.out.push(message);
    }

    pub(super) fn read(&mut self, read: Read) {
        self.reads.push(read);
    }

    /// Why no printer list came in this run yet (Connect unreachable since the start), if so.
    pub(super) fn never_listed(&self) -> Option<String> {
        if self.health.listed_once {
            return None;
        }
        Some(match &self.health.last_error {
            Some(e) => format!("Prusa Connect has not answered since the gateway started ({e})"),
            None => "the gateway has not read Prusa Connect's printer list yet".to_string(),
        })
    }

    /// In the list being processed (or the last one).
    pub(super) fn is_listed(&self, uuid: &str) -> bool {
        self.listed.contains(uuid)
    }

    /// How long to wait for the next poll.
    fn interval(&self, now: Instant) -> Duration {
        let fast = self.fast_until.is_some_and(|t| now < t);
        // Busy printers the live channel covers need no fast poll: their changes come pushed.
        if (self.active && !self.live_covers_busy()) || fast {
            self.settings.active_poll_interval
        } else {
            self.settings.poll_interval
        }
    }

    /// One poll's whole list at once (the shell goes printer by printer, see
    /// [`Core::list_begin`]), its request sent at `requested`; returns how long to wait for
    /// the next poll.
    pub fn on_list(
        &mut self,
        now: Instant,
        wall: f64,
        requested: Instant,
        listed: Result<(Vec<Printer>, Vec<RejectedPrinter>), ConnectError>,
        auth: AuthStatus,
    ) -> Duration {
        match listed {
            Err(e) => self.list_failed(wall, e, auth),
            Ok((printers, rejected)) => {
                for printer in self.list_begin(now, requested, printers, rejected) {
                    self.observe(now, wall, printer);
                }
                self.list_end(now, auth)
            }
        }
    }

    /// The list request failed: every known printer is unavailable (also those known only
    /// from the state file: their retained `online` is from an earlier run). Returns the
    /// backoff before the next poll.
    pub fn list_failed(&mut self, wall: f64, e: ConnectError, auth: AuthStatus) -> Duration {
        // A poll went by: the bridge's migration goes on even while Connect is away.
        if self.bridge_migrating() {
            self.publish_bridge_discovery();
        }
        let text = e.to_string();
        let h = &mut self.health;
        h.failures += 1;
        if h.reachable || h.since.is_none() || h.last_error.as_deref() != Some(&text) {
            tracing::warn!("Prusa Connect: {text}; marking printers unavailable and retrying");
        } else {
            tracing::debug!("Prusa Connect still failing: {text}");
        }
        if h.reachable || h.since.is_none() {
            h.since = iso(wall);
        }
        h.reachable = false;
        h.last_error = Some(text);
        h.last_error_at = iso(wall);
        let mut offline = Vec::new();
        for entry in self.registry.entries_mut() {
            let Some(id) = entry.id().map(str::to_string) else {
                continue;
            };
            match entry.runtime.as_mut() {
                Some(live) if live.shown_online == Some(false) => continue,
                Some(live) => live.shown_online = Some(false),
                None => {}
            }
            offline.push(id);
        }
        for id in offline {
            let topic = self.settings.topics.availability(&id);
            self.publish(Message::retain(Kind::Data, topic, "offline"));
        }
        self.publish_info(auth);
        if e.needs_user() && matches!(e, ConnectError::Auth(_)) {
            // Waiting for a new token costs no request: look for one every normal poll.
            return self.settings.poll_interval;
        }
        let base = self.settings.active_poll_interval;
        let exp = base.saturating_mul(1u32 << self.health.failures.min(10));
        let jitter = rand::rng().random_range(0.8..1.2);
        let wait = exp.mul_f64(jitter).clamp(base, MAX_BACKOFF.max(base));
        // Honour Retry-After up to the longest backoff: a larger one must not stop the
        // gateway from ever looking again.
        wait.max(e.retry_after().unwrap_or_default().min(MAX_BACKOFF))
    }

    /// Starts a poll's processing: Connect answered with `printers` to the request sent at
    /// `requested`. Returns the printers to bridge (the `connect.printers` filter applied),
    /// each with its topic id assigned; pass each to [`Core::observe`], then call
    /// [`Core::list_end`].
    pub fn list_begin(
        &mut self,
        now: Instant,
        requested: Instant,
        printers: Vec<Printer>,
        rejected: Vec<RejectedPrinter>,
    ) -> Vec<Printer> {
        if rejected != self.rejected {
            for r in &rejected {
                tracing::warn!("Connect sent a printer that cannot be read: {r}");
            }
            self.rejected = rejected;
        }
        if !self.health.reachable {
            if self.health.failures > 0 {
                tracing::info!(
                    "Prusa Connect reachable again after {} failed polls",
                    self.health.failures
                );
                // An outage is often a new release of Connect.
                self.account.version_due = true;
            }
            self.health.reachable = true;
            self.health.since = iso(payloads::now_unix());
        }
        self.health.failures = 0;
        self.health.listed_once = true;
        self.budget = EXTRAS_PER_TICK;
        self.active = false;
        self.account_reads(now);
        let printers: Vec<Printer> = printers
            .into_iter()
            .filter(|p| is_bridged(&self.settings.printers, p))
            .collect();
        self.listed = printers.iter().map(|p| p.uuid.clone()).collect();
        self.unreadable_offline(now);
        self.list_requested(&printers, requested);
        let clashes = self.registry.clashes().to_vec();
        let renamed = self.registry.assign_ids(
            &printers.iter().collect::<Vec<_>>(),
            &self.settings.printer_ids,
        );
        if self.registry.clashes() != clashes {
            for clash in self.registry.clashes() {
                tracing::warn!("{clash}");
            }
        }
        for r in renamed {
            tracing::info!(
                "printer {} now publishes as {} (was {})",
                r.uuid,
                r.new,
                r.old
            );
            // The old topics would be stale retained values, unless another printer took
            // them over.
            let cameras = self
                .registry
                .get(&r.uuid)
                .map(|e| e.record.cameras.clone())
                .unwrap_or_default();
            self.publish_all(self.printer_topics_cleared(&r.uuid, &r.old, &cameras));
            if let Some(live) = self
                .registry
                .get_mut(&r.uuid)
                .and_then(|e| e.runtime.as_mut())
            {
                // Everything is published again on the new topics.
                live.forget_shown();
            }
        }
        printers
    }

    /// Whether the last list had printer `uuid` in a shape that cannot be read.
    pub(super) fn is_rejected(&self, uuid: &str) -> bool {
        self.rejected
            .iter()
            .any(|r| r.uuid.as_deref() == Some(uuid))
    }

    /// A printer the list sends unreadable shows no live values: it is `offline` (the reason
    /// is in `bridge/info.rejected_printers`), and its feed, which may say what happened, is
    /// read at once and on its schedule.
    fn unreadable_offline(&mut self, now: Instant) {
        let uuids: Vec<String> = self
            .rejected
            .iter()
            .filter_map(|r| r.uuid.clone())
            .collect();
        for uuid in uuids {
            let Some(entry) = self.registry.get_mut(&uuid) else {
                continue;
            };
            let Some(id) = entry.id().map(str::to_string) else {
                continue;
            };
            let Some(live) = entry.runtime.as_mut() else {
                continue;
            };
            if live.shown_online != Some(false) {
                live.shown_online = Some(false);
                live.feed.request(now);
                let topic = self.settings.topics.availability(&id);
                self.out.push(Message::retain(Kind::Data, topic, "offline"));
            }
            self.reads
                .extend(live.start_feed_read(&uuid, entry.record.feed.after, now));
        }
    }

    /// The messages that empty printer `uuid`'s topics under `id` (state, job, thumbnail,
    /// availability, pictures), for those no other printer publishes on now; the bridge's
    /// own `B/bridge/state` is never among them.
    fn printer_topics_cleared(
        &self,
        uuid: &str,
        id: &str,
        cameras: &[(String, String)],
    ) -> Vec<Message> {
        let mut out = Vec::new();
        let reserved = crate::topics::is_reserved(id);
        if !reserved && !self.registry.topics_free_for(id, uuid) {
            return out;
        }
        for (camera, _) in cameras {
            let topic = self.settings.topics.camera(id, camera);
            out.push(Message::Forget { topic });
        }
        if !reserved {
            out.push(Message::Clear {
                topic: self.settings.topics.state(id),
            });
        }
        for topic in [
            self.settings.topics.job(id),
            self.settings.topics.job_preview(id),
            self.settings.topics.availability(id),
        ] {
            out.push(Message::Clear { topic });
        }
        out
    }

    fn publish_all(&mut self, messages: Vec<Message>) {
        self.out.extend(messages);
    }

    /// One printer of the list: what changed is published, and the reads it calls for are
    /// asked for.
    pub fn observe(&mut self, now: Instant, wall: f64, printer: Printer) {
        let uuid = printer.uuid.clone();
        let Some(entry) = self.registry.get_mut(&uuid) else {
            self.active |= printer.effective_state().is_active();
            return; // not assigned an id: not listed by list_begin
        };
        entry.missing = 0;
        entry.missing_since = None;
        // What the live channel said is newer than the list.
        let printer = match entry.runtime.as_ref() {
            Some(live) if self.channel.covers(&uuid) => live.pushed.overlay(printer),
            _ => printer,
        };
        self.active |= printer.effective_state().is_active();
        self.look(now, wall, printer);
    }

    /// A new view of one printer, from the list or from the live channel: what changed is
    /// published, and the reads it calls for are asked for.
    pub(super) fn look(&mut self, now: Instant, wall: f64, printer: Printer) {
        let uuid = printer.uuid.clone();
        let Some(entry) = self.registry.get_mut(&uuid) else {
            return;
        };
        // A printer without an id (another took it) publishes nothing until it has one.
        let Some(id) = entry.id().map(str::to_string) else {
            return;
        };
        if !entry.known {
            entry.known = true;
            entry.record.jobs.first_seen(&printer);
            tracing::info!("bridging printer {} as {id}", printer.display_name());
        }
        // The first look in this run: jobs may have ended while the gateway was stopped.
        let fresh = entry.runtime.is_none();
        let live = entry
            .runtime
            .get_or_insert_with(|| Runtime::new(printer.clone(), now));
        let previous_dialog = live.printer.dialog_info.clone();
        let before = (!fresh).then(|| std::mem::replace(&mut live.printer, printer));
        let printer = &live.printer;

        // The queues, when the printer's state, job or queue count moved.
        let signature = feed_signature(printer);
        let queue_key = format!("{signature}|{:?}", printer.queue_count());
        let empty = printer.queue_count() == Some(0);
        let unavailable = &self.account.unavailable;
        if !unavailable.resting("queue", &uuid, now)
            && live.queue.step(queue_key, empty, &mut self.budget, now) == QueueStep::Read
        {
            self.reads.push(Read::Queue { uuid: uuid.clone() });
        }
        // The cameras, when first seen and when a new job starts.
        let running_job = printer
            .job_info
            .as_ref()
            .and_then(|j| j.id)
            .filter(|_| payloads::job_running(printer));
        if self.settings.camera.enabled
            && live.cameras.wants_list(running_job, now)
            && self.budget > 0
            && !unavailable.resting("cameras", &uuid, now)
        {
            self.budget -= 1;
            live.cameras.start_list(running_job);
            self.reads.push(Read::Cameras { uuid: uuid.clone() });
        }
        // The feed, when the state, job or dialog changed (Connect also makes notifications
        // of what printers do).
        if live.signature.as_ref() != Some(&signature) {
            if live.signature.is_some() {
                live.feed.request(now);
                self.account.unseen_due = true;
            }
            live.signature = Some(signature);
        }
        self.reads
            .extend(live.start_feed_read(&uuid, entry.record.feed.after, now));
        // Dialogs: announced once each (across restarts), and their closing.
        let key = live.printer.dialog_info.as_ref().map(dialog_key);
        if key != entry.record.announced_dialog {
            let event = dialog_event(&live.printer, previous_dialog.as_ref(), wall);
            self.out
                .push(Message::event(self.settings.topics.event(&id), event));
            entry.record.announced_dialog = key;
        }
        // Jobs: starts and ends; the ended ones' records and the current one's detail.
        let (was_active, was_last) = (entry.record.jobs.active_job, entry.record.jobs.last_job);
        let jobs_changed = entry.record.jobs.observe(&live.printer, wall);
        let started = entry
            .record
            .jobs
            .active_job
            .is_some_and(|j| was_active != Some(j) && was_last != Some(j));
        let triggers = controls::state_triggers(before.as_ref(), &live.printer, started);
        let unavailable = &self.account.unavailable;
        if !unavailable.resting("supported_commands", &uuid, now) {
            self.reads
                .extend(live.start_supported_read(&uuid, &mut self.budget, now));
        }
        let state_before = before.as_ref().map(Printer::effective_state);
        if !unavailable.resting("files", &uuid, now) {
            self.reads.extend(live.start_files_read(
                &uuid,
                &self.settings.allow,
                state_before.as_ref(),
                &mut self.budget,
                now,
            ));
        }
        self.reads
            .extend(live.start_preview_read(&uuid, &mut self.budget, now));
        if jobs_changed || fresh {
            live.job_reads.list.request(now);
        }
        self.reads
            .extend(live.start_job_list_read(&uuid, entry.record.jobs.boundary(), now));
        let mut jobs = entry.record.jobs.reads_due(&live.job_reads, now);
        if let Some(current) = live.printer.job_info.as_ref().and_then(|j| j.id)
            && (live.current_detail().is_none() || live.detail_stale)
            && !jobs.contains(&current)
        {
            jobs.push(current);
        }
        for job in jobs {
            if live.job_reads.in_flight.insert(job) {
                self.reads.push(Read::Job {
                    uuid: uuid.clone(),
                    job,
                });
            }
        }
        for trigger in triggers {
            self.trigger(&id, trigger);
        }
        self.render(&uuid, wall);
    }

    /// Ends a poll's processing: printers gone for long enough are removed, account-wide
    /// reads and pictures that are due are asked for, `bridge/info` is published. Returns
    /// how long to wait for the next poll.
    pub fn list_end(&mut self, now: Instant, auth: AuthStatus) -> Duration {
        if self.bridge_migrating() {
            self.publish_bridge_discovery();
        }
        self.forget_missing(now);
        self.scheduled_feed_reads(now, self.interval(now));
        // Unseen notifications: after a printer changed, at most every few active polls.
        let every = self.settings.active_poll_interval * NOTIFICATIONS_EVERY_POLLS;
        let a = &mut self.account;
        if a.unseen_due
            && !a.unseen_reading
            && !a.unavailable.resting("notifications_unseen", "", now)
            && a.unseen_read_at
                .is_none_or(|t| now.duration_since(t) >= every)
        {
            a.unseen_read_at = Some(now);
            a.unseen_reading = true;
            self.reads.push(Read::Unseen);
        }
        self.snapshot_reads(now);
        self.publish_info(auth);
        self.interval(now)
    }

    /// Printers gone from the (filtered) list for long enough lose their topics and discovery.
    fn forget_missing(&mut self, now: Instant) {
        let rejected: HashSet<&str> = self
            .rejected
            .iter()
            .filter_map(|r| r.uuid.as_deref())
            .collect();
        // Polls come 300 ms apart after a command: a count alone would remove a printer
        // missing from the list for a second (and Home Assistant would delete its device).
        let long_enough = self.settings.poll_interval * REMOVE_AFTER_MISSING_INTERVALS;
        let mut gone = Vec::new();
        for entry in self.registry.entries_mut() {
            // Unreadable this time is not gone: keep its entities (named in bridge/info).
            if self.listed.contains(&entry.uuid) || rejected.contains(entry.uuid.as_str()) {
                entry.missing = 0;
                entry.missing_since = None;
                continue;
            }
            entry.missing += 1;
            let since = *entry.missing_since.get_or_insert(now);
            if entry.missing >= REMOVE_AFTER_MISSING_POLLS
                && now.duration_since(since) >= long_enough
            {
                gone.push(entry.uuid.clone());
            }
        }
        for uuid in gone {
            let Some(entry) = self.registry.remove(&uuid) else {
                continue;
            };
            match &entry.runtime {
                Some(live) => tracing::info!(
                    "printer {} is gone from Connect: removing it",
                    live.printer.display_name()
                ),
                None => tracing::info!("printer {uuid} is no longer bridged: removing it"),
            }
            self.remove_topics(&entry);
            self.account.unavailable.forget_printer(&uuid);
        }
    }

    fn remove_topics(&mut self, entry: &PrinterEntry) {
        // Discovery first, then the states: Home Assistant must not be left with entities
        // whose state topic was emptied.
        self.finish_migration(&entry.uuid);
        if let Some(discovery) = &self.settings.discovery {
            for topic in discovery.printer_topics(&entry.uuid, &entry.record.cameras) {
                self.out.push(Message::Clear { topic });
            }
        }
        if let Some(id) = entry.id() {
            let cleared = self.printer_topics_cleared(&entry.uuid, id, &entry.record.cameras);
            self.publish_all(cleared);
        }
    }

    pub(super) fn publish_info(&mut self, auth: AuthStatus) {
        self.last_auth = Some(auth.clone());
        // It is the last message of a poll: it waits for what it shows (account reads) and
        // for printers not published yet.
        let introducing = self
            .registry
            .entries()
            .any(|e| e.runtime.as_ref().is_some_and(|l| !l.introduced));
        if self.account.version_reading || self.account.unseen_reading || introducing {
            self.info_owed = Some(auth);
            return;
        }
        self.info_owed = None;
        let printers: Vec<Value> = self
            .registry
            .entries()
            .filter_map(|e| {
                let live = e.runtime.as_ref()?;
                Some(json!({"uuid": e.uuid, "id": e.id(), "name": live.printer.name}))
            })
            .collect();
        let version = self.account.server_version.as_ref();
        let h = &self.health;
        let info = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "printers": printers,
            "connect": {
                "url": self.settings.connect_url.as_str(),
                "server_version": version.and_then(|v| v.version.clone()),
                "server_commit": version.and_then(|v| v.commit.clone()),
                "server_date": version.and_then(|v| v.date.clone()),
                "reachable": h.reachable,
                "since": h.since,
                "last_error": h.last_error,
                "last_error_at": h.last_error_at,
            },
            "auth": auth,
            "notifications_unseen": self.account.unseen,
            "rejected_printers": self.rejected.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            "unavailable": self.account.unavailable.info(),
            "live": self.channel.info(),
        });
        let info = info.to_string();
        if self.shown_info.as_ref() != Some(&info) {
            let topic = self.settings.topics.bridge_info();
            self.publish(Message::retain(Kind::Data, topic, info.clone()));
            self.shown_info = Some(info);
        }
    }

    /// Printer types (model names and command limits) once, again hourly while a printer's
    /// type is missing from them; Connect's version at start and after an outage.
    fn account_reads(&mut self, now: Instant) {
        use crate::bridge::schedule::{CAMERAS_RELIST, EXTRAS_RETRY};
        let a = &self.account;
        let unknown_type = |types: &std::collections::HashMap<String, PrinterType>| {
            self.registry.entries().any(|e| {
                e.runtime
                    .as_ref()
                    .and_then(|l| l.printer.printer_type.as_ref())
                    .is_some_and(|id| !types.contains_key(id))
            })
        };
        let (wanted, wait) = match &a.printer_types {
            None => (true, EXTRAS_RETRY),
            Some(types) => (unknown_type(types), CAMERAS_RELIST),
        };
        let ask = wanted
            && !a.types_reading
            && !a.unavailable.resting("printer_types", "", now)
            && a.types_asked_at
                .is_none_or(|t| now.duration_since(t) >= wait);
        if ask {
            self.account.types_asked_at = Some(now);
            self.account.types_reading = true;
            self.reads.push(Read::PrinterTypes);
        }
        let a = &self.account;
        if a.version_due && !a.version_reading && !a.unavailable.resting("version", "", now) {
            self.account.version_reading = true;
            self.reads.push(Read::Version);
        }
    }

    pub(super) fn printer_type(&self, printer: &Printer) -> Option<&PrinterType> {
        let id = printer.printer_type.as_ref()?;
        self.account.printer_types.as_ref()?.get(id)
    }

    /// The model for the device info: Connect's name of the printer's type.
    pub(super) fn model_name(&self, printer: &Printer) -> Option<String> {
        printer
            .printer_type_name
            .clone()
            .or_else(|| self.printer_type(printer).and_then(|t| t.name.clone()))
            .or_else(|| printer.printer_model.clone())
    }

    /// The last pictures of these cameras of a printer are not sent again.
    pub(super) fn forget_pictures<'a>(
        &mut self,
        uuid: &str,
        cameras: impl Iterator<Item = &'a (String, String)>,
    ) {
        let Some(id) = self
            .registry
            .get(uuid)
            .and_then(|e| e.id())
            .map(str::to_string)
        else {
            return;
        };
        for (camera, _) in cameras {
            let topic = self.settings.topics.camera(&id, camera);
            self.out.push(Message::Forget { topic });
        }
    }

    /// Publishes `bridge/info` if it waited for an account read that is done.
    pub(super) fn info_if_owed(&mut self) {
        if let Some(auth) = self.info_owed.take() {
            self.publish_info(auth);
        }
    }

    /// Publishes `job/finished` for an ended job.
    pub(super) fn announce_end(&mut self, uuid: &str, job: &crate::connect::model::Job) {
        let Some(entry) = self.registry.get(uuid) else {
            return;
        };
        let (Some(id), Some(live)) = (entry.id(), entry.runtime.as_ref()) else {
            return;
        };
        if let Some(payload) = payloads::job_finished(&live.printer, id, job) {
            tracing::info!(
                "{}: job {} ended {}",
                live.printer.display_name(),
                job.id,
                payload["event_type"].as_str().unwrap_or("?")
            );
            let topic = self.settings.topics.job_finished(id);
            let trigger = payload["event_type"].as_str().and_then(Trigger::of_end);
            let id = id.to_string();
            self.publish(Message::event(topic, payload.to_string()));
            if let Some(trigger) = trigger {
                self.trigger(&id, trigger);
            }
        }
    }

    /// Logs what became of an ending job that is not announced.
    pub(super) fn log_verdict(&self, uuid: &str, job: i64, verdict: &jobs::JobVerdict) {
        let name = self
            .registry
            .get(uuid)
            .and_then(|e| e.runtime.as_ref())
            .map(|l| l.printer.display_name().to_string())
            .unwrap_or_else(|| uuid.to_string());
        match verdict {
            jobs::JobVerdict::NotAnnounced(state) => {
                tracing::info!("{name}: job {job} ended in state {state} (not announced)")
            }
            jobs::JobVerdict::Vanished => {
                tracing::warn!("{name}: job {job} vanished from Connect")
            }
            jobs::JobVerdict::GaveUp => tracing::warn!(
                "{name}: Connect's record of job {job} still does not say how it ended, {} hours \
                 after it did: not announced",
                jobs::LAG_GIVE_UP_SECONDS / 3600.0
            ),
            _ => {}
        }
    }

    /// The bridge's `online`/`offline` on the way out, or (`clear`) every retained topic.
    pub fn stop_messages(&mut self, clear: bool) -> Option<Message> {
        let topic = self.settings.topics.bridge_state();
        (!clear).then(|| Message::retain(Kind::Data, topic, "offline"))
    }
}

/// Whether `connect.printers` (`wanted`: uuids or names, empty for all) takes printer `p`.
pub fn is_bridged(wanted: &[String], p: &Printer) -> bool {
    wanted.is_empty()
        || wanted.contains(&p.uuid)
        || p.name.as_ref().is_some_and(|n| wanted.contains(n))
}

/// The parts of a printer whose change means the events feed has something new.
fn feed_signature(p: &Printer) -> String {
    let job = p.job_info.as_ref();
    format!(
        "{}|{}|{:?}|{:?}|{}",
        p.effective_state(),
        p.printer_state.as_ref().map(|s| s.as_str()).unwrap_or(""),
        job.and_then(|j| j.id),
        job.and_then(|j| j.state.as_ref().map(|s| s.as_str().to_string())),
        p.dialog_info.is_some()
    )
}
