//! The bridge's router, with no I/O: the printer list, read results, pushed values and
//! commands go in; messages to publish and reads to make come out ([`Core::take_messages`],
//! [`Core::take_reads`]). The core owns no decision a printer can make: it finds the printer
//! (or the account) an input is for and hands it the input with a [`Ctx`]. Time is an
//! argument (`now` for schedules, `wall` Unix seconds for payloads), and so is the backoff's
//! jitter, so every decision can be tested in-process.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::bridge::account::Account;
use crate::bridge::commands::{self, CommandDone, Inbound, Outcome, Prepared};
use crate::bridge::effects::Effects;
use crate::bridge::fleet;
use crate::bridge::info::{Health, InfoParts, fleet_stats, info_payload};
use crate::bridge::live::{self, Channel};
use crate::bridge::migration::Migration;
use crate::bridge::poll::Poll;
use crate::bridge::printer::{Ctx, PrinterEntry};
use crate::bridge::reads::{Read, ReadDone};
use crate::bridge::registry::{self, Registry, StateFile, StateFileView};
use crate::bridge::schedule::NOTIFICATIONS_EVERY_POLLS;
use crate::bridge::settings::{Settings, is_bridged};
use crate::bridge::shards;
use crate::command::{self, CommandReply, ErrorCode};
use crate::connect::client::{AuthStatus, ConnectError, RejectedPrinter};
use crate::connect::model::Printer;
use crate::message::{Incoming, Kind, Message};

/// A printer missing from this many successful list polls in a row is gone: its discovery
/// and retained topics are removed. More than one, so a glitch in Connect's list does not
/// wipe a farm's entities.
pub const REMOVE_AFTER_MISSING_POLLS: u32 = 3;
/// ...and missing for at least this many `poll_interval`s.
pub const REMOVE_AFTER_MISSING_INTERVALS: u32 = 2;
/// Longest wait between polls while Connect fails.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

pub struct Core {
    pub(super) settings: Settings,
    pub(super) registry: Registry,
    pub(super) account: Account,
    pub(super) health: Health,
    pub(super) poll: Poll,
    /// The live channel (`connect.live`): its status and which printers it covers.
    pub(super) channel: Channel,
    pub(super) migration: Migration,
    pub(super) fx: Effects,
    /// [`Ctx::scratch`].
    scratch: Vec<u8>,
}

impl Core {
    pub fn new(settings: Settings, mut state: StateFile) -> Core {
        let notifications = std::mem::take(&mut state.notifications);
        let remembered_mode = state.discovery_mode.take();
        let mut registry = Registry::from_state_file(state);
        let mut fx = Effects::default();
        let migration = Migration::start(&settings, &mut registry, remembered_mode, &mut fx);
        let mut account = Account::new(notifications);
        account.shard = settings.shard;
        Core {
            channel: Channel::new(settings.live),
            settings,
            registry,
            account,
            health: Health::default(),
            poll: Poll::default(),
            migration,
            fx,
            scratch: Vec::new(),
        }
    }

    /// What to publish at start: the bridge's own discovery (after the first poll when its
    /// entities move to another discovery mode).
    pub fn start(&mut self) {
        if !self.migration.bridge_pending() {
            self.publish_bridge_discovery();
        }
    }

    fn publish_bridge_discovery(&mut self) {
        self.migration.finish_bridge(&mut self.fx);
        if let Some(d) = &self.settings.discovery {
            for (topic, payload) in d.bridge() {
                self.fx
                    .publish(Message::retain(Kind::Discovery, topic, payload.to_string()));
            }
        }
    }

    /// The broker may have lost discovery (a reconnect) or Home Assistant asks for it (its
    /// birth message): the bridge's is published again, and the printers returned render
    /// theirs again, one at a time ([`Core::introduce`]).
    pub fn discovery_again(&mut self) -> Vec<String> {
        if !self.migration.bridge_pending() {
            self.publish_bridge_discovery();
        }
        self.registry.forget_shown_discovery()
    }

    /// The messages decided since the last call, in order.
    pub fn take_messages(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.fx.messages)
    }

    /// Gives back the vector [`Core::take_messages`] returned (see [`Effects::recycle`]).
    pub fn recycle_messages(&mut self, spare: Vec<Message>) {
        self.fx.recycle(spare);
    }

    /// How many extra reads (cameras, queues, supported commands, storages) asked for
    /// earlier still wait for their turn: they count against the next poll's budget of them.
    pub fn reads_waiting(&mut self, extras: usize) {
        self.poll.waiting = extras;
    }

    /// The reads decided since the last call.
    pub fn take_reads(&mut self) -> Vec<Read> {
        std::mem::take(&mut self.fx.reads)
    }

    /// The reads asked for before that no longer serve, since the last call.
    pub fn take_withdrawn(&mut self) -> Vec<Read> {
        std::mem::take(&mut self.fx.withdrawn)
    }

    /// The printers to render again, each with [`Core::introduce`] (then
    /// [`Core::introduced`]), since the last call.
    pub fn take_renders(&mut self) -> Vec<String> {
        std::mem::take(&mut self.fx.renders)
    }

    /// What goes into the state file.
    pub fn state_file(&self) -> StateFile {
        StateFile {
            notifications: self.account.notifications.clone(),
            discovery_mode: self.migration.mode_to_save(&self.settings),
            ..self.registry.state_file()
        }
    }

    /// [`Core::state_file`] as it is written, borrowed (see [`StateFileView`]).
    pub fn state_view(&self) -> StateFileView<'_> {
        self.registry.state_view(
            &self.account.notifications,
            self.migration.mode_to_save(&self.settings),
        )
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Printer `uuid`'s entry, with what its decisions may touch.
    pub(super) fn printer(&mut self, uuid: &str) -> Option<(&mut PrinterEntry, Ctx<'_>)> {
        let reachable = self.health.reachable && !self.poll.is_rejected(uuid);
        let entry = self.registry.get_mut(uuid)?;
        let cx = Ctx {
            settings: &self.settings,
            account: &mut self.account,
            fx: &mut self.fx,
            budget: &mut self.poll.budget,
            reachable,
            scratch: &mut self.scratch,
        };
        Some((entry, cx))
    }

    /// How long to wait for the next poll.
    fn interval(&self, now: Instant) -> Duration {
        let s = &self.settings;
        let covered = self.channel.covers_busy(&self.registry);
        let interval = self
            .poll
            .interval(now, covered, s.poll_interval, s.active_poll_interval);
        interval.max(s.list_page_gap * self.poll.pages)
    }

    /// One poll's whole list at once (the shell goes printer by printer, see
    /// [`Core::list_begin`]), its request sent at `requested`; returns how long to wait for
    /// the next poll. A failed poll's backoff has no jitter here.
    pub fn on_list(
        &mut self,
        now: Instant,
        wall: f64,
        requested: Instant,
        listed: Result<(Vec<Printer>, Vec<RejectedPrinter>), ConnectError>,
        auth: AuthStatus,
    ) -> Duration {
        match listed {
            Err(e) => self.list_failed(wall, e, auth, 1.0),
            Ok((printers, rejected)) => {
                for printer in self.list_begin(now, wall, requested, printers, rejected) {
                    self.observe(now, wall, printer);
                }
                self.list_end(now, auth)
            }
        }
    }

    /// The list request failed: every known printer is unavailable (also those known only
    /// from the state file: their retained `online` is from an earlier run). Returns the
    /// backoff before the next poll, times `jitter` (the shell draws it from 0.8 to 1.2).
    pub fn list_failed(
        &mut self,
        wall: f64,
        e: ConnectError,
        auth: AuthStatus,
        jitter: f64,
    ) -> Duration {
        // A poll went by: the bridge's migration goes on even while Connect is away.
        if self.migration.bridge_pending() {
            self.publish_bridge_discovery();
        }
        self.health.failed(wall, e.to_string());
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
            self.fx
                .publish(Message::retain(Kind::Data, topic, "offline"));
        }
        self.publish_info(auth);
        if e.needs_user() && matches!(e, ConnectError::Auth(_)) {
            // Waiting for a new token costs no request: look for one every normal poll.
            return self.settings.poll_interval;
        }
        let base = self.settings.active_poll_interval;
        let exp = base.saturating_mul(1u32 << self.health.failures.min(10));
        let wait = exp.mul_f64(jitter).clamp(base, MAX_BACKOFF.max(base));
        // Honour Retry-After up to the longest backoff: a larger one must not stop the
        // gateway from ever looking again.
        wait.max(e.retry_after().unwrap_or_default().min(MAX_BACKOFF))
    }

    /// Starts a poll's processing: Connect answered at `wall` with `printers` to the request
    /// sent at `requested`. Returns the printers to bridge (the `connect.printers` filter
    /// applied), each with its topic id assigned; pass each to [`Core::observe`], then call
    /// [`Core::list_end`].
    pub fn list_begin(
        &mut self,
        now: Instant,
        wall: f64,
        requested: Instant,
        printers: Vec<Printer>,
        rejected: Vec<RejectedPrinter>,
    ) -> Vec<Printer> {
        self.poll
            .begin(printers.len(), rejected, now, &self.settings);
        let answer = self.health.answered(wall);
        self.account.connect_answered(answer, now);
        let types = self
            .registry
            .entries()
            .filter_map(|e| e.runtime.as_ref()?.printer.printer_type.as_ref());
        self.account.poll_reads(types, &mut self.fx, now);
        let printers: Vec<Printer> = printers
            .into_iter()
            .filter(|p| is_bridged(&self.settings.printers, p))
            .collect();
        let (printers, ids) = match self.settings.shard {
            None => (printers, None),
            Some(shard) => {
                let split = shards::split(shard, printers, &self.settings.printer_ids);
                shards::hand_over(&mut self.registry, &split.other_uuids, shard);
                self.poll.other_shards = split.others;
                (split.mine, Some(split.ids))
            }
        };
        self.poll.listed = printers.iter().map(|p| p.uuid.clone()).collect();
        self.unreadable_offline(now);
        live::list_requested(&mut self.registry, &printers, requested);
        self.assign_ids(&printers, ids);
        printers
    }

    /// Gives the listed printers their topic ids (`ids`: the ones a shard's printers have
    /// across the account; otherwise worked out here); a printer whose id changed has its old
    /// topics cleared and everything published again on the new ones.
    fn assign_ids(&mut self, printers: &[Printer], ids: Option<BTreeMap<String, String>>) {
        let overrides = ids.as_ref().unwrap_or(&self.settings.printer_ids);
        let (topics, fx) = (&self.settings.topics, &mut self.fx);
        registry::assign_ids(&mut self.registry, printers, overrides, topics, fx);
    }

    /// A printer the list sends unreadable shows no live values: it is `offline` (the reason
    /// is in `bridge/info.rejected_printers`), and its feed, which may say what happened, is
    /// read at once and on its schedule.
    fn unreadable_offline(&mut self, now: Instant) {
        for uuid in self.poll.rejected_uuids() {
            if let Some(entry) = self.registry.get_mut(&uuid) {
                entry.unreadable(&self.settings.topics, &mut self.fx, now);
            }
        }
    }

    /// One printer of the list: what changed is published, and the reads it calls for are
    /// asked for.
    pub fn observe(&mut self, now: Instant, wall: f64, printer: Printer) {
        let covered = self.channel.covers(&printer.uuid);
        let printer = match self.registry.get_mut(&printer.uuid) {
            // Not assigned an id: not listed by list_begin.
            None => {
                self.poll.active |= printer.effective_state().is_active();
                return;
            }
            Some(entry) => {
                entry.missing = 0;
                entry.missing_since = None;
                // What the live channel said is newer than the list.
                match entry.runtime.as_ref() {
                    Some(live) if covered => live.pushed.overlay(printer),
                    _ => printer,
                }
            }
        };
        self.poll.active |= printer.effective_state().is_active();
        if let Some((entry, mut cx)) = self.printer(&printer.uuid) {
            entry.update(&mut cx, now, wall, printer);
        }
    }

    /// Ends a poll's processing: printers gone for long enough are removed, account-wide
    /// reads and pictures that are due are asked for, `bridge/info` is published. Returns
    /// how long to wait for the next poll.
    pub fn list_end(&mut self, now: Instant, auth: AuthStatus) -> Duration {
        if self.migration.bridge_pending() {
            self.publish_bridge_discovery();
        }
        self.forget_missing(now);
        let tick = self.interval(now);
        fleet::scheduled_feed_reads(
            &mut self.registry,
            &self.poll,
            &self.settings,
            &mut self.fx,
            now,
            tick,
        );
        fleet::storage_reads(
            &mut self.registry,
            &mut self.poll,
            &self.account,
            &mut self.fx,
            now,
            self.settings.camera.enabled,
        );
        // Unseen notifications: after a printer changed, at most every few active polls.
        let every = self.settings.active_poll_interval * NOTIFICATIONS_EVERY_POLLS;
        self.account.unseen_reads(every, &mut self.fx, now);
        self.snapshot_reads(now);
        self.publish_info(auth);
        self.interval(now)
    }

    /// Printers gone from the (filtered) list for long enough lose their topics and discovery.
    fn forget_missing(&mut self, now: Instant) {
        let (registry, settings, fx) = (&mut self.registry, &self.settings, &mut self.fx);
        for uuid in fleet::remove_missing(registry, settings, &self.poll, fx, now) {
            self.account.unavailable.forget_printer(&uuid);
        }
    }

    /// Starts the snapshot fetches that are due; none while Connect is unreachable.
    fn snapshot_reads(&mut self, now: Instant) {
        if self.settings.camera.enabled && self.health.reachable {
            fleet::snapshot_reads(&mut self.registry, &self.settings, &mut self.fx, now);
        }
    }

    pub(super) fn publish_info(&mut self, auth: AuthStatus) {
        self.health.last_auth = Some(auth.clone());
        // It is the last message of a poll: it waits for what it shows (account reads) and
        // for printers not published yet.
        let introducing = self
            .registry
            .entries()
            .any(|e| e.runtime.as_ref().is_some_and(|l| !l.introduced));
        if self.account.info_reads_running() || introducing {
            self.health.info_owed = Some(auth);
            return;
        }
        self.health.info_owed = None;
        let info = info_payload(
            InfoParts {
                settings: &self.settings,
                registry: &self.registry,
                account: &self.account,
                health: &self.health,
                poll: &self.poll,
                channel: &self.channel,
            },
            &auth,
        );
        if let Some((print, payload)) = self.health.changed_info(&info) {
            self.health.info_shown(print);
            let topic = self.settings.topics.bridge_info();
            self.fx.publish(Message::retain(Kind::Data, topic, payload));
        }
        let fleet = fleet_stats(&self.registry);
        let print = crate::payloads::fingerprint(&fleet);
        if self.health.shown_fleet_stats != Some(print) {
            self.health.shown_fleet_stats = Some(print);
            let topic = self.settings.topics.bridge_stats();
            self.fx
                .publish(Message::retain(Kind::Data, topic, fleet.to_string()));
        }
    }

    /// Takes a read's result: the printer (or the account) it was made for publishes what
    /// it shows and asks for the reads that follow.
    pub fn on_read(&mut self, done: ReadDone, now: Instant, wall: f64) {
        match done.read.uuid().map(str::to_string) {
            Some(uuid) => {
                let pictures = matches!(done.read, Read::Cameras { .. } | Read::Snapshot { .. });
                let supported = matches!(done.read, Read::Supported { .. });
                if let Some((entry, mut cx)) = self.printer(&uuid) {
                    entry.on_read(&mut cx, done.read, done.result, now, wall);
                }
                if pictures {
                    self.snapshot_reads(now);
                }
                if supported {
                    self.share_supported(now);
                }
            }
            None => {
                let types = matches!(done.read, Read::PrinterTypes);
                let registry = &self.registry;
                let printer_id = |uuid: &str| Some(registry.get(uuid)?.id()?.to_string());
                let topics = &self.settings.topics;
                self.account
                    .on_read(done.result, topics, printer_id, &mut self.fx, now, wall);
                if types {
                    let waiting = self.waiting_printers();
                    self.fx.renders.extend(waiting);
                }
            }
        }
        if let Some(auth) = self.health.info_owed.take() {
            self.publish_info(auth);
        }
    }

    /// Gives the printers waiting for a `supported-commands` read of their printer type and
    /// firmware the list that came back, at once rather than at the next poll.
    fn share_supported(&mut self, now: Instant) {
        let pool = &self.account.supported_pool;
        let served = fleet::take_shared_supported(&mut self.registry, pool, now);
        self.fx.renders.extend(served);
    }

    /// When the first publication of a printer waiting for its first reads is due anyway:
    /// the shell hands each of [`Core::waiting_printers`] to [`Core::introduce`] then.
    pub fn introduce_due(&self, wall: f64) -> Option<Duration> {
        fleet::introduce_due(&self.registry, &self.account, wall)
    }

    /// The printers not published yet.
    pub fn waiting_printers(&self) -> Vec<String> {
        self.registry.unpublished()
    }

    /// Publishes printer `uuid` if its first publication waited long enough at `wall`.
    pub fn introduce(&mut self, uuid: &str, wall: f64) {
        if let Some((entry, mut cx)) = self.printer(uuid) {
            entry.render(&mut cx, wall);
        }
    }

    /// After [`Core::introduce`]: `bridge/info`, if it waited for them.
    pub fn introduced(&mut self) {
        if let Some(auth) = self.health.info_owed.take() {
            self.publish_info(auth);
        }
    }

    /// Whether this instance answers messages for printer `printer_id`: always, unless it is
    /// a shard (`connect.shard`) and another shard bridges that printer. A printer no shard
    /// knows is answered (`UNKNOWN_PRINTER`) by shard 1 alone.
    pub fn answers_for(&self, printer_id: &str) -> bool {
        shards::answers_for(
            self.settings.shard,
            &self.registry,
            &self.poll.other_shards,
            printer_id,
        )
    }

    /// Which printer's command or job-reason topic `topic` is.
    pub fn classify(&self, topic: &str) -> Inbound {
        commands::classify(&self.settings, topic)
    }

    /// Checks a message on a command or job-reason topic: the reply at once, or the request
    /// to make.
    pub fn prepare(&mut self, msg: &Incoming) -> Prepared {
        if let Inbound::Command { printer_id } | Inbound::JobReason { printer_id } =
            self.classify(&msg.topic)
            && !self.answers_for(&printer_id)
        {
            return Prepared::Ignore;
        }
        let (printer_id, is_command) = match commands::check_message(&self.settings, msg) {
            Ok(checked) => checked,
            Err(None) => return Prepared::Ignore,
            Err(Some(reply)) => return Prepared::Reply(reply),
        };
        let never_listed = self.health.never_listed();
        let printer = |req: &command::CommandRequest| {
            self.registry
                .bridged_by_id(&printer_id, never_listed.clone())
                .map_err(|e| CommandReply::error(req, e))
        };
        let job = if is_command {
            command::parse(&msg.payload).and_then(|req| {
                printer(&req)?.command_job(&self.settings, &self.account, &printer_id, req)
            })
        } else {
            command::parse_job_reason(&msg.payload).and_then(|reason| {
                commands::reason_allowed(&self.settings, &reason.request)?;
                printer(&reason.request)?.reason_job(&self.settings, &printer_id, reason)
            })
        };
        match job {
            Ok(job) => Prepared::Run(job),
            Err(reply) => {
                Prepared::Reply(commands::reply_message(&self.settings, &printer_id, reply))
            }
        }
    }

    /// The reply to a message the gateway does not run: it stops, the connection it came on
    /// dropped, or too many wait. `None` for messages that are not commands.
    pub fn refuse(&self, msg: &Incoming, code: ErrorCode, why: &str) -> Option<Message> {
        commands::refusal(&self.settings, msg, code, why)
    }

    /// Takes Connect's answer to a command: the reply, and what it changes. Returns when the
    /// next poll should come, when it should come soon.
    pub fn command_done(&mut self, done: CommandDone, now: Instant) -> Option<Instant> {
        commands::log_refusal(&done);
        let CommandDone {
            printer_id,
            uuid,
            reply,
            replied,
            supported,
            outcome,
        } = done;
        if !replied {
            let reply = commands::reply_message(&self.settings, &printer_id, reply);
            self.fx.publish(reply);
        }
        if outcome == Outcome::Accepted {
            self.poll.fast_until = Some(now + commands::FAST_AFTER_COMMAND);
        }
        if let Some(entry) = self.registry.get_mut(&uuid) {
            entry.on_command_done(outcome, supported, &mut self.account.supported_pool, now);
        }
        (outcome != Outcome::Other).then_some(now + commands::POLL_AFTER_COMMAND)
    }

    /// A message on `P/print_file`: the file "Start print" prints.
    pub fn select_file(&mut self, printer_id: &str, payload: &[u8], wall: f64) {
        let Some(uuid) = self.registry.by_id(printer_id).map(|e| e.uuid.clone()) else {
            return;
        };
        if let Some((entry, mut cx)) = self.printer(&uuid) {
            entry.select_file(&mut cx, payload, wall);
        }
    }

    /// The feed said printer `uuid`'s files changed: read them again.
    pub fn files_changed(&mut self, uuid: &str, now: Instant) {
        if let Some(entry) = self.registry.get_mut(uuid) {
            entry.files_changed(now);
        }
    }

    /// The bridge's `online`/`offline` on the way out, or (`clear`) every retained topic.
    pub fn stop_messages(&mut self, clear: bool) -> Option<Message> {
        let topic = self.settings.topics.bridge_state();
        (!clear).then(|| Message::retain(Kind::Data, topic, "offline"))
    }
}
