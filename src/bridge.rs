//! The event loop: poll Connect -> diff -> publish; MQTT messages in -> act.
//!
//! One `GET /app/printers` per tick watches the whole fleet. Per-printer requests are made
//! only when something changed: a job started or ended (job detail), or the printer's state
//! moved (the events feed, from the cursor kept in the state directory).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tokio_util::task::AbortOnDropHandle;

use crate::command::{self, CommandError, CommandReply, CommandRequest, ErrorCode};
use crate::config::Config;
use crate::connect::client::{ConnectClient, ConnectError, RejectedPrinter, Snapshot};
use crate::connect::model::{
    DialogInfo, Job, Printer, PrinterState, PrinterType, ServerVersion, SupportedCommand,
};
use crate::discovery::{Discovery, PrinterDevice};
use crate::mqtt::{Incoming, Link};
use crate::outbox::{Kind, Outbox};
use crate::payloads::{self, iso, now_unix};
use crate::store::{Memory, PrinterMemory, Store};
use crate::topics::{Topics, assign_ids};

type ListResult = Result<(Vec<Printer>, Vec<RejectedPrinter>), ConnectError>;

/// A printer missing from this many successful list polls in a row is gone: its discovery
/// and retained topics are removed. More than one, so a glitch in Connect's list does not
/// wipe a farm's entities.
pub const REMOVE_AFTER_MISSING_POLLS: u32 = 3;
/// Polls after a job ended during which Connect may still report it running.
const JOB_END_ATTEMPTS: u32 = 20;
/// How long the fleet is polled fast after a command, so its effect shows within seconds.
const FAST_AFTER_COMMAND: Duration = Duration::from_secs(30);
/// The first poll after a command comes this soon.
const POLL_AFTER_COMMAND: Duration = Duration::from_millis(300);
/// Longest wait between polls while Connect fails.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// On SIGTERM, requests to Connect in progress (a command, a poll) get this long to be
/// answered; then they are abandoned. The whole stop must fit in 5 seconds.
pub const STOP_GRACE: Duration = Duration::from_secs(2);
/// Camera snapshots fetched at the same time, at most.
const SNAPSHOT_FETCHES: usize = 4;
/// A request for extras (queue, cameras, printer types) that failed is tried again this late,
/// so an endpoint Connect does not have costs no request per poll.
const EXTRAS_RETRY: Duration = Duration::from_secs(600);
/// A printer's cameras are listed again when a job starts at most this often; printer types
/// are asked again this often while a printer's type is missing from them.
const CAMERAS_RELIST: Duration = Duration::from_secs(3600);
/// Requests for extras (queues, camera lists) one poll may make; a farm's first poll spreads
/// them over the next polls instead of making thousands of requests at once.
const EXTRAS_PER_TICK: u32 = 64;
/// Unseen notifications are read (when a printer's state changed) at most once per this
/// many active poll intervals: every 30 s by default.
const NOTIFICATIONS_EVERY_POLLS: u32 = 6;

/// One camera of a printer, as the gateway follows it.
#[derive(Debug, Clone)]
struct CameraFeed {
    id: String,
    name: String,
    etag: Option<String>,
    last_modified: Option<String>,
    fetched_at: Option<Instant>,
    fetching: bool,
    /// The last picture, sent again when Home Assistant or the broker restarts (camera
    /// messages are not retained).
    image: Option<Arc<Vec<u8>>>,
    too_large: bool,
}

/// A finished snapshot fetch, back from its task.
struct SnapshotDone {
    uuid: String,
    camera: String,
    result: Result<Snapshot, ConnectError>,
}

struct Tracked {
    id: String,
    printer: Printer,
    job_detail: Option<Job>,
    /// The published state without `updated`.
    state: Option<Value>,
    /// What, when it changes, calls for a look at the events feed.
    signature: Option<String>,
    events_due: bool,
    device: Option<PrinterDevice>,
    end_attempts: u32,
    /// Keys of the last published feed events, to recognise them when the feed is re-read
    /// after Connect's clock went back.
    recent_events: std::collections::VecDeque<String>,
    feed_read_at: Option<Instant>,
    /// Per kind of request ("events", "job"), the error last logged for this printer: a
    /// failure is logged when it starts or changes, and once when it ends.
    failing: HashMap<&'static str, String>,
    /// The printer's cameras (`None`: not listed yet).
    cameras: Option<Vec<CameraFeed>>,
    /// The running job the cameras were last listed for, when they were listed, and when
    /// listing last failed.
    cameras_listed_for: Option<i64>,
    cameras_listed_at: Option<Instant>,
    cameras_failed_at: Option<Instant>,
    /// The queue fields of `P/state`, and what they were read for (feed signature and
    /// `job_queue_count`): the queue is read again only when that changes.
    queue: Value,
    queue_read_for: Option<String>,
    queue_failed_at: Option<Instant>,
}

/// How many published event keys each printer remembers.
const RECENT_EVENTS: usize = 256;

impl Tracked {
    fn failed(&mut self, what: &'static str, name: &str, error: &ConnectError) {
        let text = error.to_string();
        if self.failing.get(what) != Some(&text) {
            tracing::warn!("{name}: cannot read {what} ({text}); trying again next poll");
            self.failing.insert(what, text);
        } else {
            tracing::debug!("{name}: still cannot read {what}: {text}");
        }
    }

    fn succeeded(&mut self, what: &'static str, name: &str) {
        if self.failing.remove(what).is_some() {
            tracing::info!("{name}: {what} readable again");
        }
    }

    fn remember_event(&mut self, key: String) {
        if self.recent_events.len() == RECENT_EVENTS {
            self.recent_events.pop_front();
        }
        self.recent_events.push_back(key);
    }
}

#[derive(Debug, Clone)]
struct Health {
    reachable: bool,
    since: Option<String>,
    last_error: Option<String>,
    last_error_at: Option<String>,
    failures: u32,
}

pub struct Bridge {
    config: Config,
    connect: ConnectClient,
    topics: Topics,
    discovery: Option<Discovery>,
    outbox: Outbox,
    store: Store,
    memory: Memory,
    printers: BTreeMap<String, Tracked>,
    missing: HashMap<String, u32>,
    health: Health,
    rejected: Vec<RejectedPrinter>,
    link: Link,
    /// `supported-commands` per printer uuid: fetched once, dropped when Connect refuses one.
    supported: HashMap<String, Vec<SupportedCommand>>,
    fast_until: Option<Instant>,
    next_poll: Instant,
    watchdog: Watchdog,
    /// When the poll that shows a command's effect is due.
    poll_after_command: Option<Instant>,
    /// Connect's printer types by id (`None`: not read yet), and when they were last asked.
    printer_types: Option<HashMap<String, PrinterType>>,
    types_asked_at: Option<Instant>,
    server_version: Option<ServerVersion>,
    version_due: bool,
    unseen: Option<u64>,
    unseen_due: bool,
    unseen_read_at: Option<Instant>,
    /// What is left of [`EXTRAS_PER_TICK`] in this poll.
    extras_budget: u32,
    /// Remove every retained topic on the way out (`demo`).
    pub clear_retained_on_exit: bool,
}

impl Bridge {
    pub fn new(
        config: Config,
        connect: ConnectClient,
        outbox: Outbox,
        store: Store,
        memory: Memory,
    ) -> Self {
        let topics = Topics::new(&config.mqtt.base_topic);
        let discovery = config.homeassistant.enabled.then(|| Discovery {
            prefix: config.homeassistant.discovery_prefix.clone(),
            mode: config.homeassistant.mode,
            topics: topics.clone(),
        });
        Self {
            config,
            connect,
            topics,
            discovery,
            outbox,
            store,
            memory,
            printers: BTreeMap::new(),
            missing: HashMap::new(),
            health: Health {
                reachable: false,
                since: None,
                last_error: None,
                last_error_at: None,
                failures: 0,
            },
            rejected: Vec::new(),
            link: Link::default(),
            supported: HashMap::new(),
            fast_until: None,
            next_poll: Instant::now(),
            watchdog: Watchdog::from_env(),
            poll_after_command: None,
            printer_types: None,
            types_asked_at: None,
            server_version: None,
            version_due: true,
            unseen: None,
            unseen_due: true,
            unseen_read_at: None,
            extras_budget: EXTRAS_PER_TICK,
            clear_retained_on_exit: false,
        }
    }

    /// MQTT subscriptions the bridge needs on every connection.
    pub fn subscriptions(config: &Config) -> Vec<String> {
        let topics = Topics::new(&config.mqtt.base_topic);
        let mut subs = vec![topics.command_filter(), topics.job_reason_filter()];
        if config.homeassistant.enabled {
            subs.push(config.homeassistant.status_topic.clone());
        }
        subs
    }

    /// Runs until `shutdown` resolves, then publishes `offline`. A command in progress when
    /// the stop comes finishes and replies (see [`STOP_GRACE`]); commands still queued are
    /// answered without being sent. Tells systemd when it is ready and feeds its watchdog
    /// from this loop, so a loop that hangs gets the service restarted.
    pub async fn run(
        mut self,
        mut link: watch::Receiver<Link>,
        mut incoming: mpsc::Receiver<Incoming>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<Outbox> {
        tokio::pin!(shutdown);
        if let Some(d) = &self.discovery {
            for (topic, payload) in d.bridge() {
                self.outbox
                    .retain(Kind::Discovery, &topic, payload.to_string().into_bytes())
                    .await;
            }
        }
        let mut watchdog = self.watchdog.every.map(|every| {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        notify_systemd(&[sd_notify::NotifyState::Ready]);
        // The fleet list request in flight, if any: its own task, so neither the request nor
        // the parsing of its pages holds up commands. Aborted when the loop ends.
        let mut listing: Option<AbortOnDropHandle<ListResult>> = None;
        let mut polled_once = false;
        // Camera snapshots being fetched, each in a task of its own (aborted with the set).
        let mut snapshots: JoinSet<SnapshotDone> = JoinSet::new();
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                _ = tick_of(&mut watchdog) => self.watchdog.feed(),
                changed = link.changed() => {
                    if changed.is_err() {
                        anyhow::bail!("the MQTT session ended unexpectedly");
                    }
                    let now = *link.borrow_and_update();
                    self.on_link(now).await;
                }
                // Until the first poll is done no printer is known: messages wait for it.
                Some(msg) = incoming.recv(), if polled_once => {
                    if self.on_message_until(msg, shutdown.as_mut()).await {
                        break;
                    }
                }
                Some(done) = snapshots.join_next(), if !snapshots.is_empty() => {
                    if let Ok(done) = done {
                        self.on_snapshot(done).await;
                    }
                    self.start_snapshots(&mut snapshots);
                }
                _ = sleep_until(self.next_poll), if listing.is_none() => {
                    let connect = self.connect.clone();
                    listing = Some(AbortOnDropHandle::new(tokio::spawn(async move {
                        connect.printers().await
                    })));
                }
                listed = async { listing.as_mut().expect("guarded").await }, if listing.is_some() => {
                    listing = None;
                    let listed = listed.unwrap_or_else(|e| {
                        Err(ConnectError::Transport(format!("the list request stopped: {e}")))
                    });
                    // Commands that come in while the poll's result is processed are served
                    // between printers (once the first poll made printers known).
                    let serve = polled_once.then_some(&mut incoming);
                    let wait = self.tick(listed, serve).await;
                    polled_once = true;
                    self.start_snapshots(&mut snapshots);
                    let now = Instant::now();
                    self.next_poll = match self.poll_after_command.take() {
                        Some(soon) if soon > now => (now + wait).min(soon),
                        _ => now + wait,
                    };
                }
            }
        }
        drop(listing);
        drop(snapshots);
        notify_systemd(&[sd_notify::NotifyState::Stopping]);
        while let Ok(msg) = incoming.try_recv() {
            self.refuse_while_stopping(&msg).await;
        }
        let state = self.topics.bridge_state();
        if self.clear_retained_on_exit {
            for topic in self.outbox.retained_topics() {
                self.outbox.clear(&topic).await;
            }
            self.outbox.clear(&state).await;
        } else {
            self.outbox
                .retain(Kind::Data, &state, b"offline".to_vec())
                .await;
        }
        self.save_memory();
        Ok(self.outbox)
    }

    /// Handles `msg`; returns true when `shutdown` resolved meanwhile (stop now). The
    /// handling itself is not cut short: the caller abandons Connect requests after
    /// [`STOP_GRACE`], so a command in progress always gets its reply.
    async fn on_message_until(
        &mut self,
        msg: Incoming,
        shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> bool {
        let handling = self.on_message(msg);
        tokio::pin!(handling);
        tokio::select! {
            biased;
            _ = &mut handling => false,
            _ = shutdown => {
                handling.await;
                true
            }
        }
    }

    /// Replies to a command the gateway will not (or could not) see through because it stops.
    async fn refuse_while_stopping(&mut self, msg: &Incoming) {
        let Some(printer_id) = self.topics.parse_command(&msg.topic) else {
            return;
        };
        if msg.retain || msg.payload.is_empty() {
            return;
        }
        let error = CommandError::new(
            ErrorCode::ConnectError,
            "the gateway is stopping: the command may not have reached the printer; send it \
             again once the gateway is back",
        );
        let reply = match command::parse(&msg.payload) {
            Ok(req) => CommandReply::error(&req, error),
            Err(reply) => reply,
        };
        let topic = self.topics.command_response(&printer_id);
        self.outbox
            .event(&topic, reply.to_json().to_string().into_bytes())
            .await;
    }

    async fn on_link(&mut self, now: Link) {
        let reconnected = now.connected && now.generation != self.link.generation;
        self.link = now;
        if reconnected {
            let state = self.topics.bridge_state();
            self.outbox.on_connected((&state, b"online")).await;
            self.resend_images().await;
        } else if !now.connected {
            self.outbox.set_disconnected();
        }
    }

    async fn on_message(&mut self, msg: Incoming) {
        if msg.topic == self.config.homeassistant.status_topic {
            if msg.payload.as_ref() == b"online" {
                tracing::info!("Home Assistant is online: republishing discovery and state");
                self.outbox.republish().await;
                self.resend_images().await;
            }
            return;
        }
        let command = self.topics.parse_command(&msg.topic);
        let reason = self.topics.parse_job_reason(&msg.topic);
        let Some(printer_id) = command.clone().or(reason) else {
            return;
        };
        if msg.retain {
            // A broker restart must never pause a print: retained commands are not replayed.
            // Clearing it stops the broker from handing it out again.
            tracing::warn!(
                "ignoring a retained message on {}: commands are never replayed (publish without retain); clearing it",
                msg.topic
            );
            self.outbox.clear(&msg.topic).await;
            return;
        }
        if msg.payload.is_empty() {
            // The echo of clearing a retained command (or a blank message): nothing to do.
            return;
        }
        let limit = self.config.mqtt.max_payload_bytes;
        let reply = if msg.payload.len() > limit {
            CommandReply {
                transaction: None,
                command: None,
                outcome: Err(CommandError::new(
                    ErrorCode::InvalidPayload,
                    format!(
                        "the message is {} bytes; mqtt.max_payload_bytes allows {limit}",
                        msg.payload.len()
                    ),
                )),
            }
        } else if command.is_some() {
            self.run_command(&printer_id, &msg.payload).await
        } else {
            self.set_job_reason(&printer_id, &msg.payload).await
        };
        if let Err(e) = &reply.outcome {
            tracing::info!(
                "{printer_id}: command {} refused: {} ({})",
                reply.command.as_deref().unwrap_or("?"),
                e.message,
                e.code.as_str()
            );
        }
        let topic = self.topics.command_response(&printer_id);
        self.outbox
            .event(&topic, reply.to_json().to_string().into_bytes())
            .await;
    }

    fn printer_by_id(&self, printer_id: &str) -> Result<&Tracked, CommandError> {
        self.printers
            .values()
            .find(|t| t.id == printer_id)
            .ok_or_else(|| {
                let known: Vec<&str> = self.printers.values().map(|t| t.id.as_str()).collect();
                CommandError::new(
                    ErrorCode::UnknownPrinter,
                    format!(
                        "no printer {printer_id:?} is bridged (known: {})",
                        known.join(", ")
                    ),
                )
            })
    }

    async fn run_command(&mut self, printer_id: &str, payload: &[u8]) -> CommandReply {
        let mut req = match command::parse(payload) {
            Ok(req) => req,
            Err(reply) => return reply,
        };
        match self.try_command(printer_id, &mut req).await {
            Ok(id) => CommandReply::ok(&req, id),
            Err(e) => CommandReply::error(&req, e),
        }
    }

    async fn try_command(
        &mut self,
        printer_id: &str,
        req: &mut CommandRequest,
    ) -> Result<Option<i64>, CommandError> {
        let tracked = self.printer_by_id(printer_id)?;
        let uuid = tracked.printer.uuid.clone();
        let state = tracked.printer.effective_state();
        if req.command == "CANCEL_OBJECT" {
            resolve_object_name(req, tracked.job_detail.as_ref())?;
        }
        let limits = self.type_limits(&tracked.printer);
        let supported = self.supported_commands(&uuid).await?;
        command::validate_with_limits(
            req,
            &self.config.commands.allow,
            &supported,
            &state,
            &limits,
        )?;
        match self.connect.execute(&uuid, &req.command, &req.kwargs).await {
            Ok(result) => {
                tracing::info!(
                    "{printer_id}: {} accepted by Connect (command id {})",
                    req.command,
                    result.command.id
                );
                // Poll fast until the printer shows the effect.
                self.fast_until = Some(Instant::now() + FAST_AFTER_COMMAND);
                let soon = Instant::now() + POLL_AFTER_COMMAND;
                self.next_poll = self.next_poll.min(soon);
                // A list request in flight started before the command: poll again after it.
                self.poll_after_command = Some(soon);
                if let Some(t) = self.printers.get_mut(&uuid) {
                    // Object states change with CANCEL_OBJECT: read the job again.
                    t.job_detail = None;
                }
                Ok(Some(result.command.id))
            }
            Err(e) => {
                let (code, message) = match &e {
                    ConnectError::Api {
                        status: 409 | 423,
                        message,
                        ..
                    } => (
                        ErrorCode::PrinterState,
                        format!("Connect refused {}: {message}", req.command),
                    ),
                    ConnectError::Api {
                        status: 400 | 422,
                        message,
                        ..
                    } => (
                        ErrorCode::InvalidArgument,
                        format!("Connect refused {}: {message}", req.command),
                    ),
                    ConnectError::Api { status: 404, .. } => (
                        ErrorCode::UnknownPrinter,
                        format!("Connect does not know printer {printer_id} any more"),
                    ),
                    other => (
                        ErrorCode::ConnectError,
                        format!("{} was not sent: {other}", req.command),
                    ),
                };
                if matches!(code, ErrorCode::PrinterState | ErrorCode::InvalidArgument) {
                    // The printer may have changed (firmware, limits): ask again next time.
                    self.supported.remove(&uuid);
                    let soon = Instant::now() + POLL_AFTER_COMMAND;
                    self.next_poll = self.next_poll.min(soon);
                    // A list request in flight started before the command: poll again after it.
                    self.poll_after_command = Some(soon);
                }
                Err(CommandError::new(code, message))
            }
        }
    }

    async fn supported_commands(
        &mut self,
        uuid: &str,
    ) -> Result<Vec<SupportedCommand>, CommandError> {
        if let Some(s) = self.supported.get(uuid) {
            return Ok(s.clone());
        }
        let fetched = self.connect.supported_commands(uuid).await.map_err(|e| {
            CommandError::new(
                ErrorCode::ConnectError,
                format!("cannot read the printer's supported commands: {e}"),
            )
        })?;
        self.supported
            .insert(uuid.to_string(), fetched.commands.clone());
        Ok(fetched.commands)
    }

    async fn set_job_reason(&mut self, printer_id: &str, payload: &[u8]) -> CommandReply {
        let reason = match command::parse_job_reason(payload) {
            Ok(r) => r,
            Err(reply) => return reply,
        };
        let req = reason.request.clone();
        let result = async {
            let tracked = self.printer_by_id(printer_id)?;
            let uuid = tracked.printer.uuid.clone();
            let job_id = reason
                .job_id
                .or_else(|| {
                    self.memory
                        .printers
                        .get(&uuid)
                        .and_then(|m| m.announced_job)
                })
                .ok_or_else(|| {
                    CommandError::new(
                        ErrorCode::InvalidArgument,
                        "no job has ended yet: give \"job_id\"",
                    )
                })?;
            self.connect
                .set_job_reason(&uuid, job_id, &reason.reason)
                .await
                .map_err(|e| match e {
                    ConnectError::Api {
                        status: 400 | 404 | 422,
                        message,
                        ..
                    } => CommandError::new(
                        ErrorCode::InvalidArgument,
                        format!("Connect refused the reason for job {job_id}: {message}"),
                    ),
                    other => CommandError::new(
                        ErrorCode::ConnectError,
                        format!("the reason was not sent: {other}"),
                    ),
                })?;
            Ok::<_, CommandError>(())
        }
        .await;
        match result {
            Ok(()) => CommandReply::ok(&req, None),
            Err(e) => CommandReply::error(&req, e),
        }
    }

    /// One poll of the fleet; returns how long to wait before the next.
    /// One poll of the fleet, given the list request's result; returns how long to wait
    /// before the next. The list request itself runs beside the loop (see `run`), so that
    /// commands are not held up by it.
    async fn tick(
        &mut self,
        listed: ListResult,
        mut serve: Option<&mut mpsc::Receiver<Incoming>>,
    ) -> Duration {
        let printers = match listed {
            Ok((printers, rejected)) => {
                if rejected != self.rejected {
                    for r in &rejected {
                        tracing::warn!("Connect sent a printer that cannot be read: {r}");
                    }
                    self.rejected = rejected;
                }
                printers
            }
            Err(e) => return self.on_connect_failure(e).await,
        };
        self.on_connect_success();
        self.extras_budget = EXTRAS_PER_TICK;
        self.read_account_extras().await;
        let wanted = &self.config.connect.printers;
        let printers: Vec<Printer> = printers
            .into_iter()
            .filter(|p| {
                wanted.is_empty()
                    || wanted.contains(&p.uuid)
                    || p.name.as_ref().is_some_and(|n| wanted.contains(n))
            })
            .collect();
        let ids = assign_ids(
            &printers.iter().collect::<Vec<_>>(),
            &self.config.mqtt.printer_ids,
        );
        let now = now_unix();
        let mut active = false;
        for printer in printers {
            active |= printer.effective_state().is_active();
            let id = ids[&printer.uuid].clone();
            self.missing.remove(&printer.uuid);
            self.watchdog.feed_if_due();
            self.update_printer(printer, id, now).await;
            if let Some(incoming) = serve.as_deref_mut() {
                // Let the MQTT event loop run (it may be holding a command for us), then
                // serve what came in.
                tokio::task::yield_now().await;
                self.serve_waiting(incoming).await;
            }
        }
        self.forget_missing(&ids).await;
        self.read_notifications().await;
        self.publish_info().await;
        if let Some(incoming) = serve {
            self.serve_waiting(incoming).await;
        }
        if let Err(e) = self.store.save_soon(&self.memory) {
            tracing::warn!("cannot save the state file: {e:#}");
        }
        let fast = self.fast_until.is_some_and(|t| Instant::now() < t);
        if active || fast {
            self.config.connect.active_poll_interval
        } else {
            self.config.connect.poll_interval
        }
    }

    /// Handles the messages that are waiting, so a command is not held up by a long poll
    /// (500 printers take tens of milliseconds to go through).
    async fn serve_waiting(&mut self, incoming: &mut mpsc::Receiver<Incoming>) {
        while let Ok(msg) = incoming.try_recv() {
            self.on_message(msg).await;
        }
    }

    async fn on_connect_failure(&mut self, e: ConnectError) -> Duration {
        let text = e.to_string();
        self.health.failures += 1;
        if self.health.reachable
            || self.health.since.is_none()
            || self.health.last_error.as_deref() != Some(&text)
        {
            tracing::warn!("Prusa Connect: {text}; marking printers unavailable and retrying");
        } else {
            tracing::debug!("Prusa Connect still failing: {text}");
        }
        if self.health.reachable || self.health.since.is_none() {
            self.health.since = iso(now_unix());
        }
        self.health.reachable = false;
        self.health.last_error = Some(text);
        self.health.last_error_at = iso(now_unix());
        let ids: Vec<String> = self.printers.values().map(|t| t.id.clone()).collect();
        for id in ids {
            let topic = self.topics.availability(&id);
            self.outbox
                .retain(Kind::Data, &topic, b"offline".to_vec())
                .await;
        }
        self.publish_info().await;
        if e.needs_user() && matches!(e, ConnectError::Auth(_)) {
            // Waiting for a new token costs no request: look for one every normal poll.
            return self.config.connect.poll_interval;
        }
        let base = self.config.connect.active_poll_interval;
        let exp = base.saturating_mul(1u32 << self.health.failures.min(10));
        let jitter = rand::rng().random_range(0.8..1.2);
        let wait = exp.mul_f64(jitter).clamp(base, MAX_BACKOFF.max(base));
        // Honour Retry-After up to the longest backoff: a larger one (even u64::MAX seconds,
        // which overflowed the clock) must not stop the gateway from ever looking again.
        wait.max(e.retry_after().unwrap_or_default().min(MAX_BACKOFF))
    }

    fn on_connect_success(&mut self) {
        if !self.health.reachable {
            if self.health.failures > 0 {
                tracing::info!(
                    "Prusa Connect reachable again after {} failed polls",
                    self.health.failures
                );
                // An outage is often a new release of Connect.
                self.version_due = true;
            }
            self.health.reachable = true;
            self.health.since = iso(now_unix());
        }
        self.health.failures = 0;
    }

    async fn update_printer(&mut self, printer: Printer, id: String, now: f64) {
        let uuid = printer.uuid.clone();
        let first_seen = !self.memory.printers.contains_key(&uuid);
        if let Some(old) = self.printers.get(&uuid)
            && old.id != id
        {
            // Renamed: the old topics would be stale retained values.
            let old_id = old.id.clone();
            tracing::info!(
                "printer {} now publishes as {id} (was {old_id})",
                printer.display_name()
            );
            for topic in [
                self.topics.state(&old_id),
                self.topics.job(&old_id),
                self.topics.availability(&old_id),
            ] {
                self.outbox.clear(&topic).await;
            }
        }
        let mut tracked = self.printers.remove(&uuid).unwrap_or_else(|| Tracked {
            id: id.clone(),
            printer: printer.clone(),
            job_detail: None,
            state: None,
            signature: None,
            // Catch up with the feed from the stored cursor on the first look.
            events_due: true,
            device: None,
            end_attempts: 0,
            recent_events: Default::default(),
            feed_read_at: None,
            failing: HashMap::new(),
            cameras: None,
            cameras_listed_for: None,
            cameras_listed_at: None,
            cameras_failed_at: None,
            queue: json!({
                "queue_count": null, "queue_next": null,
                "download_queue_count": null, "download_queue_next": null,
            }),
            queue_read_for: None,
            queue_failed_at: None,
        });
        tracked.id = id.clone();
        let mut memory = self.memory.printers.remove(&uuid).unwrap_or_default();
        if first_seen {
            // Never announce the end of a job that ended before this gateway first saw it.
            if !payloads::job_running(&printer) {
                memory.announced_job = printer.job_info.as_ref().and_then(|j| j.id);
            }
            tracing::info!("bridging printer {} as {}", printer.display_name(), id);
        }

        let signature = feed_signature(&printer);
        self.follow_queue(&printer, &signature, &mut tracked).await;
        self.follow_cameras(&printer, &mut tracked, &mut memory)
            .await;
        let mut state = payloads::state(&printer, now);
        merge_object(&mut state, &tracked.queue);
        if tracked.state.as_ref() != Some(&state) {
            let mut with_time = state.clone();
            with_time["updated"] = json!(iso(now));
            self.outbox
                .retain(
                    Kind::Data,
                    &self.topics.state(&id),
                    with_time.to_string().into_bytes(),
                )
                .await;
            tracked.state = Some(state);
        }
        let online = self.health.reachable && printer.effective_state() != PrinterState::Offline;
        self.outbox
            .retain(
                Kind::Data,
                &self.topics.availability(&id),
                if online {
                    b"online".to_vec()
                } else {
                    b"offline".to_vec()
                },
            )
            .await;

        if tracked.signature.as_ref() != Some(&signature) {
            if tracked.signature.is_some() {
                tracked.events_due = true;
                // Connect makes notifications of what printers do.
                self.unseen_due = true;
            }
            tracked.signature = Some(signature);
        }
        self.follow_dialog(&printer, &mut tracked, &mut memory, now)
            .await;

        self.follow_job(&printer, &mut tracked, &mut memory).await;
        self.publish_discovery(&mut tracked, &printer).await;
        if tracked.events_due {
            match self.publish_events(&uuid, &mut tracked, &mut memory).await {
                Ok(()) => {
                    tracked.events_due = false;
                    tracked.succeeded("events", printer.display_name());
                }
                Err(e) => tracked.failed("events", printer.display_name(), &e),
            }
        }
        if let Some(job) = payloads::job(printer.job_info.as_ref(), tracked.job_detail.as_ref()) {
            self.outbox
                .retain(
                    Kind::Data,
                    &self.topics.job(&id),
                    job.to_string().into_bytes(),
                )
                .await;
        }
        tracked.printer = printer;
        self.printers.insert(uuid.clone(), tracked);
        self.memory.printers.insert(uuid, memory);
    }

    async fn publish_discovery(&mut self, tracked: &mut Tracked, printer: &Printer) {
        let Some(discovery) = &self.discovery else {
            return;
        };
        let device = PrinterDevice {
            uuid: printer.uuid.clone(),
            id: tracked.id.clone(),
            name: printer.display_name().to_string(),
            model: self.model_name(printer),
            serial: printer.sn.clone(),
            firmware: printer.firmware.clone(),
            configuration_url: self
                .connect
                .base_url()
                .join(&format!("/printer/{}/dashboard", printer.uuid))
                .ok()
                .map(|u| u.to_string()),
            objects: tracked
                .job_detail
                .as_ref()
                .filter(|_| payloads::job_running(printer))
                .and_then(|j| j.cancelable.as_ref())
                .map(|c| {
                    crate::discovery::object_labels(&c.objects)
                        .into_iter()
                        .zip(&c.objects)
                        .filter(|(_, o)| !o.canceled)
                        .map(|((_, label), _)| label)
                        .collect()
                })
                .unwrap_or_default(),
            cameras: tracked
                .cameras
                .iter()
                .flatten()
                .map(|c| (c.id.clone(), c.name.clone()))
                .collect(),
        };
        if tracked.device.as_ref() == Some(&device) {
            return;
        }
        let messages = discovery.printer(&device);
        if let Some(old) = &tracked.device {
            // Entities that went (a camera removed): their configs go too.
            let gone: Vec<String> = discovery
                .printer_topics(&old.uuid, &old.cameras)
                .into_iter()
                .filter(|t| !messages.iter().any(|(topic, _)| topic == t))
                .collect();
            for topic in gone {
                self.outbox.clear(&topic).await;
            }
        }
        for (topic, payload) in messages {
            self.outbox
                .retain(Kind::Discovery, &topic, payload.to_string().into_bytes())
                .await;
        }
        tracked.device = Some(device);
    }

    /// Notices jobs starting and ending; publishes `job/finished` once per ended job.
    async fn follow_job(
        &mut self,
        printer: &Printer,
        tracked: &mut Tracked,
        memory: &mut PrinterMemory,
    ) {
        let uuid = &printer.uuid;
        let current = printer.job_info.as_ref().and_then(|j| j.id);
        let running = payloads::job_running(printer);
        if let Some(active) = memory.active_job
            && (current != Some(active) || !running)
        {
            match self.connect.job(uuid, active).await {
                Ok(job) if job.state.as_ref().is_some_and(|s| s.is_final()) => {
                    if memory.announced_job != Some(active)
                        && let Some(payload) = payloads::job_finished(printer, &tracked.id, &job)
                    {
                        tracing::info!(
                            "{}: job {active} ended {}",
                            printer.display_name(),
                            payload["event_type"].as_str().unwrap_or("?")
                        );
                        self.outbox
                            .event(
                                &self.topics.job_finished(&tracked.id),
                                payload.to_string().into_bytes(),
                            )
                            .await;
                        memory.announced_job = Some(active);
                    }
                    memory.active_job = None;
                    tracked.end_attempts = 0;
                    if current == Some(active) {
                        tracked.job_detail = Some(job);
                    }
                }
                Ok(job)
                    if job.state.as_ref().is_some_and(|s| s.is_running())
                        && tracked.end_attempts < JOB_END_ATTEMPTS =>
                {
                    // Connect's job record lags the printer: look again next tick.
                    tracked.end_attempts += 1;
                }
                Ok(job) => {
                    tracing::info!(
                        "{}: job {active} ended in state {} (not announced)",
                        printer.display_name(),
                        job.state.as_ref().map(|s| s.as_str()).unwrap_or("none")
                    );
                    memory.active_job = None;
                    tracked.end_attempts = 0;
                }
                Err(ConnectError::Api { status: 404, .. }) => {
                    tracing::warn!(
                        "{}: job {active} vanished from Connect",
                        printer.display_name()
                    );
                    memory.active_job = None;
                }
                Err(e) => tracked.failed("job", printer.display_name(), &e),
            }
        }
        if running
            && let Some(id) = current
            && memory.active_job != Some(id)
        {
            memory.active_job = Some(id);
            tracked.end_attempts = 0;
        }
        if let Some(id) = current
            && tracked.job_detail.as_ref().map(|j| j.id) != Some(id)
        {
            match self.connect.job(uuid, id).await {
                Ok(job) => {
                    tracked.job_detail = Some(job);
                    tracked.succeeded("job", printer.display_name());
                }
                Err(e) => tracked.failed("job", printer.display_name(), &e),
            }
        }
    }

    /// Publishes the feed events newer than the printer's cursor, oldest first, each once.
    /// When Connect's clock is behind the cursor (it went back, or a jump forward was
    /// corrected), new events carry older times than the cursor: the feed is then re-read
    /// from Connect's "now" minus the time since the last read, and the events not published
    /// before are published; the cursor follows Connect's clock from there.
    async fn publish_events(
        &mut self,
        uuid: &str,
        tracked: &mut Tracked,
        memory: &mut PrinterMemory,
    ) -> Result<(), ConnectError> {
        let mut batch = self.connect.feed(uuid, memory.events_after).await?;
        let read_before = tracked.feed_read_at.replace(Instant::now());
        let Some(mut after) = memory.events_after else {
            // First look at this printer ever: start after the newest event, do not replay
            // history. An empty feed means everything that appears later is new (our clock
            // and Connect's may differ, so "now" would be a guess).
            let newest = batch.events.last().map(|e| e.created);
            memory.events_after = Some(newest.unwrap_or(0.0));
            memory.events_seen = batch
                .events
                .iter()
                .filter(|e| Some(e.created) == newest)
                .map(|e| e.key())
                .collect();
            for e in &batch.events {
                tracked.remember_event(e.key());
            }
            return Ok(());
        };
        let mut rewound = false;
        if let Some(now) = batch.server_now
            && now + 1.0 < after
        {
            let since = read_before.map_or(0.0, |t| t.elapsed().as_secs_f64());
            let from = now - (since + 60.0).min(86_400.0);
            tracing::warn!(
                "{}: Connect's clock ({}) is behind the feed position ({}): re-reading its \
                 feed from {}",
                tracked.printer.display_name(),
                iso(now).unwrap_or_default(),
                iso(after).unwrap_or_default(),
                iso(from).unwrap_or_default()
            );
            batch = self.connect.feed(uuid, Some(from)).await?;
            after = from;
            memory.events_after = Some(from);
            memory.events_seen.clear();
            rewound = true;
        }
        let topic = self.topics.event(&tracked.id);
        for event in batch.events {
            let key = event.key();
            // After a clock jump events stamped ahead of the cursor may be old ones: the keys
            // of what was published recently say which.
            let new = !tracked.recent_events.contains(&key)
                && if rewound {
                    event.created >= after
                } else {
                    event.created > after
                        || (event.created == after && !memory.events_seen.contains(&key))
                };
            if !new {
                continue;
            }
            if event.created > after {
                after = event.created;
                memory.events_seen.clear();
            }
            memory.events_seen.push(key.clone());
            memory.events_after = Some(after);
            tracked.remember_event(key);
            self.outbox
                .event(&topic, Value::Object(event.raw).to_string().into_bytes())
                .await;
        }
        Ok(())
    }

    /// Printers gone from the (filtered) list for long enough lose their topics and discovery.
    async fn forget_missing(&mut self, present: &BTreeMap<String, String>) {
        let known: std::collections::BTreeSet<String> = self
            .memory
            .printers
            .keys()
            .chain(self.printers.keys())
            .filter(|u| !present.contains_key(*u))
            // Unreadable this time is not gone: keep its entities (marked in bridge/info).
            .filter(|u| {
                !self
                    .rejected
                    .iter()
                    .any(|r| r.uuid.as_deref() == Some(u.as_str()))
            })
            .cloned()
            .collect();
        for uuid in known {
            let count = self.missing.entry(uuid.clone()).or_insert(0);
            *count += 1;
            if *count < REMOVE_AFTER_MISSING_POLLS {
                continue;
            }
            self.missing.remove(&uuid);
            let cameras = self
                .memory
                .printers
                .remove(&uuid)
                .map(|m| m.cameras)
                .unwrap_or_default();
            if let Some(discovery) = &self.discovery {
                for topic in discovery.printer_topics(&uuid, &cameras) {
                    self.outbox.clear(&topic).await;
                }
            }
            if let Some(tracked) = self.printers.remove(&uuid) {
                tracing::info!(
                    "printer {} is gone from Connect: removing it",
                    tracked.printer.display_name()
                );
                for topic in [
                    self.topics.state(&tracked.id),
                    self.topics.job(&tracked.id),
                    self.topics.availability(&tracked.id),
                ] {
                    self.outbox.clear(&topic).await;
                }
            } else {
                tracing::info!("printer {uuid} is no longer bridged: removing its discovery");
            }
        }
    }

    async fn publish_info(&mut self) {
        let printers: Vec<Value> = self
            .printers
            .iter()
            .map(|(uuid, t)| json!({"uuid": uuid, "id": t.id, "name": t.printer.name}))
            .collect();
        let info = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "printers": printers,
            "connect": {
                "url": self.connect.base_url().as_str(),
                "server_version": self.server_version.as_ref().and_then(|v| v.version.clone()),
                "server_commit": self.server_version.as_ref().and_then(|v| v.commit.clone()),
                "server_date": self.server_version.as_ref().and_then(|v| v.date.clone()),
                "reachable": self.health.reachable,
                "since": self.health.since,
                "last_error": self.health.last_error,
                "last_error_at": self.health.last_error_at,
            },
            "auth": self.connect.auth_status(),
            "notifications_unseen": self.unseen,
            "rejected_printers": self.rejected.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        });
        let topic = self.topics.bridge_info();
        self.outbox
            .retain(Kind::Data, &topic, info.to_string().into_bytes())
            .await;
    }

    /// Account-wide data read once and then rarely: printer types (model names and command
    /// limits) and Connect's version.
    async fn read_account_extras(&mut self) {
        let unknown_type = |types: &HashMap<String, PrinterType>| {
            self.printers.values().any(|t| {
                t.printer
                    .printer_type
                    .as_ref()
                    .is_some_and(|id| !types.contains_key(id))
            })
        };
        let (wanted, wait) = match &self.printer_types {
            None => (true, EXTRAS_RETRY),
            // A printer of a type not in the list: ask again, once an hour.
            Some(types) => (unknown_type(types), CAMERAS_RELIST),
        };
        let ask_types = wanted && self.types_asked_at.is_none_or(|t| t.elapsed() >= wait);
        if ask_types {
            self.types_asked_at = Some(Instant::now());
            match self.connect.printer_types().await {
                Ok(types) => {
                    self.printer_types = Some(
                        types
                            .printer_types
                            .into_iter()
                            .map(|t| (t.id.clone(), t))
                            .collect(),
                    );
                }
                Err(e) => tracing::warn!("cannot read Connect's printer types: {e}"),
            }
        }
        if self.version_due {
            match self.connect.version().await {
                Ok(v) => {
                    if self.server_version.as_ref() != Some(&v) {
                        tracing::info!(
                            "Prusa Connect version {}",
                            v.version.as_deref().unwrap_or("unknown")
                        );
                    }
                    self.server_version = Some(v);
                    self.version_due = false;
                }
                Err(e) => {
                    tracing::debug!("cannot read Connect's version: {e}");
                    self.version_due = false;
                }
            }
        }
    }

    /// Reads the unseen notifications count when a printer's state changed (Connect makes
    /// notifications of what printers do), at most every [`NOTIFICATIONS_EVERY_POLLS`]
    /// active polls; never while nothing happens, so an idle fleet costs no request for it.
    async fn read_notifications(&mut self) {
        let every = self.config.connect.active_poll_interval * NOTIFICATIONS_EVERY_POLLS;
        if !self.unseen_due || self.unseen_read_at.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.unseen_read_at = Some(Instant::now());
        match self.connect.unseen_notifications().await {
            Ok(n) => {
                self.unseen = Some(n.unseen);
                self.unseen_due = false;
            }
            Err(e) => tracing::debug!("cannot read the unseen notifications: {e}"),
        }
    }

    fn printer_type(&self, printer: &Printer) -> Option<&PrinterType> {
        let id = printer.printer_type.as_ref()?;
        self.printer_types.as_ref()?.get(id)
    }

    /// The model for the device info: Connect's name of the printer's type.
    fn model_name(&self, printer: &Printer) -> Option<String> {
        printer
            .printer_type_name
            .clone()
            .or_else(|| self.printer_type(printer).and_then(|t| t.name.clone()))
            .or_else(|| printer.printer_model.clone())
    }

    fn type_limits(&self, printer: &Printer) -> Vec<command::ArgLimit> {
        let Some(t) = self.printer_type(printer) else {
            return Vec::new();
        };
        let name = t
            .name
            .clone()
            .unwrap_or_else(|| format!("printer type {}", t.id));
        command::type_limits(t.parameters.as_ref(), &name)
    }

    /// Reads the printer's job queue and download queue when its state, job or
    /// `job_queue_count` changed since the last read (a failed read is tried again after
    /// [`EXTRAS_RETRY`]).
    async fn follow_queue(&mut self, printer: &Printer, signature: &str, tracked: &mut Tracked) {
        let key = format!("{signature}|{:?}", printer.queue_count());
        let retry = tracked
            .queue_failed_at
            .is_some_and(|t| t.elapsed() >= EXTRAS_RETRY);
        if tracked.queue_read_for.as_deref() == Some(key.as_str()) && !retry {
            return;
        }
        // Connect's list says no job is planned: both queues are empty (the download queue
        // holds planned jobs too), no need to read them.
        let empty = printer.queue_count() == Some(0);
        let cost = if empty { 0 } else { 2 };
        if self.extras_budget < cost {
            return; // next poll
        }
        self.extras_budget -= cost;
        tracked.queue_read_for = Some(key);
        let uuid = &printer.uuid;
        let read = async {
            if empty {
                return Ok(Default::default());
            }
            let queue = self.connect.queue(uuid).await?;
            let downloads = self.connect.download_queue(uuid).await?;
            Ok::<_, ConnectError>((queue, downloads))
        };
        match read.await {
            Ok((queue, downloads)) => {
                let count = |q: &crate::connect::model::Queue| {
                    q.pager.total.unwrap_or(q.planned_jobs.len() as u64)
                };
                tracked.queue = json!({
                    "queue_count": count(&queue),
                    "queue_next": queue.planned_jobs.first().and_then(|j| j.label()),
                    "download_queue_count": count(&downloads),
                    "download_queue_next": downloads.planned_jobs.first().and_then(|j| j.label()),
                });
                tracked.queue_failed_at = None;
                tracked.succeeded("queue", printer.display_name());
            }
            Err(e) => {
                tracked.queue_failed_at = Some(Instant::now());
                tracked.failed("queue", printer.display_name(), &e);
            }
        }
    }

    /// Lists the printer's cameras when first seen and when a new job starts (a print is
    /// when people look) if the last list is older than [`CAMERAS_RELIST`], unless cameras
    /// are disabled.
    async fn follow_cameras(
        &mut self,
        printer: &Printer,
        tracked: &mut Tracked,
        memory: &mut PrinterMemory,
    ) {
        if !self.config.camera.enabled {
            return;
        }
        let running_job = printer
            .job_info
            .as_ref()
            .and_then(|j| j.id)
            .filter(|_| payloads::job_running(printer));
        let new_job = running_job.is_some()
            && running_job != tracked.cameras_listed_for
            && tracked
                .cameras_listed_at
                .is_none_or(|t| t.elapsed() >= CAMERAS_RELIST);
        let retry = tracked
            .cameras_failed_at
            .is_some_and(|t| t.elapsed() >= EXTRAS_RETRY);
        if tracked.cameras.is_some() && !new_job && !retry {
            return;
        }
        if self.extras_budget == 0 {
            return; // next poll
        }
        self.extras_budget -= 1;
        tracked.cameras_listed_for = running_job;
        match self.connect.cameras(&printer.uuid).await {
            Ok(list) => {
                let old = tracked.cameras.take().unwrap_or_default();
                let cameras: Vec<CameraFeed> = list
                    .cameras
                    .iter()
                    .map(|c| {
                        let id = c.id_string();
                        old.iter()
                            .find(|o| o.id == id)
                            .cloned()
                            .unwrap_or_else(|| CameraFeed {
                                name: c.name.clone().unwrap_or_else(|| format!("Camera {id}")),
                                id,
                                etag: None,
                                last_modified: None,
                                fetched_at: None,
                                fetching: false,
                                image: None,
                                too_large: false,
                            })
                    })
                    .collect();
                memory.cameras = cameras
                    .iter()
                    .map(|c| (c.id.clone(), c.name.clone()))
                    .collect();
                tracked.cameras = Some(cameras);
                tracked.cameras_listed_at = Some(Instant::now());
                tracked.cameras_failed_at = None;
                tracked.succeeded("cameras", printer.display_name());
            }
            Err(e) => {
                // Keep the cameras known so far; look again later.
                tracked.cameras.get_or_insert_with(Vec::new);
                tracked.cameras_failed_at = Some(Instant::now());
                tracked.failed("cameras", printer.display_name(), &e);
            }
        }
    }

    /// Announces on `P/event` a dialog the printer shows (once per dialog, across restarts)
    /// and its closing, so an automation can tell someone.
    async fn follow_dialog(
        &mut self,
        printer: &Printer,
        tracked: &mut Tracked,
        memory: &mut PrinterMemory,
        now: f64,
    ) {
        let key = printer.dialog_info.as_ref().map(dialog_key);
        if key == memory.announced_dialog {
            return;
        }
        // (`tracked.printer` is still the previous poll's printer here.)
        let (event, dialog) = match &printer.dialog_info {
            Some(d) => ("DIALOG_SHOWN", Some(d)),
            None => ("DIALOG_CLOSED", tracked.printer.dialog_info.as_ref()),
        };
        let payload = json!({
            "event": event,
            "source": "GATEWAY",
            "state": printer.effective_state().as_str(),
            "created": now,
            "dialog": dialog,
        });
        tracing::info!(
            "{}: {} {}",
            printer.display_name(),
            if key.is_some() {
                "shows a dialog:"
            } else {
                "dialog closed:"
            },
            dialog
                .and_then(|d| d.title.as_deref())
                .unwrap_or("(untitled)")
        );
        self.outbox
            .event(
                &self.topics.event(&tracked.id),
                payload.to_string().into_bytes(),
            )
            .await;
        memory.announced_dialog = key;
    }

    /// Starts the snapshot fetches that are due: every `camera.interval` while the printer is
    /// busy, every `camera.idle_interval` otherwise; none while Connect is unreachable.
    fn start_snapshots(&mut self, set: &mut JoinSet<SnapshotDone>) {
        if !self.config.camera.enabled || !self.health.reachable {
            return;
        }
        let now = Instant::now();
        for (uuid, tracked) in &mut self.printers {
            let interval = if tracked.printer.effective_state().is_active() {
                self.config.camera.interval
            } else {
                self.config.camera.idle_interval
            };
            for camera in tracked.cameras.iter_mut().flatten() {
                if set.len() >= SNAPSHOT_FETCHES {
                    return;
                }
                let due = camera
                    .fetched_at
                    .is_none_or(|t| now.duration_since(t) >= interval);
                if camera.fetching || !due {
                    continue;
                }
                camera.fetching = true;
                camera.fetched_at = Some(now);
                let connect = self.connect.clone();
                let (uuid, id) = (uuid.clone(), camera.id.clone());
                let (etag, modified) = (camera.etag.clone(), camera.last_modified.clone());
                set.spawn(async move {
                    let result = connect
                        .snapshot(&id, &uuid, etag.as_deref(), modified.as_deref())
                        .await;
                    SnapshotDone {
                        uuid,
                        camera: id,
                        result,
                    }
                });
            }
        }
    }

    /// Publishes a new picture (an unchanged one came back as 304: nothing to send).
    async fn on_snapshot(&mut self, done: SnapshotDone) {
        let Some(tracked) = self.printers.get_mut(&done.uuid) else {
            return;
        };
        let name = tracked.printer.display_name().to_string();
        let Some(camera) = tracked
            .cameras
            .iter_mut()
            .flatten()
            .find(|c| c.id == done.camera)
        else {
            return;
        };
        camera.fetching = false;
        let topic = self.topics.camera(&tracked.id, &camera.id);
        match done.result {
            Ok(Snapshot::NotModified) => tracked.succeeded("camera", &name),
            Ok(Snapshot::Image {
                bytes,
                etag,
                last_modified,
            }) => {
                camera.etag = etag;
                camera.last_modified = last_modified;
                // The MQTT packet also holds the topic and a header.
                let fits = bytes.len() + topic.len() + 16 <= crate::mqtt::MAX_PACKET_BYTES;
                if !fits {
                    if !camera.too_large {
                        tracing::warn!(
                            "{name}: camera {} sent a {} byte picture, larger than an MQTT \
                             message may be ({} bytes): not published",
                            camera.name,
                            bytes.len(),
                            crate::mqtt::MAX_PACKET_BYTES
                        );
                    }
                    camera.too_large = true;
                    camera.image = None;
                    return;
                }
                camera.too_large = false;
                let image = Arc::new(bytes);
                camera.image = Some(image.clone());
                tracked.succeeded("camera", &name);
                self.outbox
                    .volatile(&topic, Arc::unwrap_or_clone(image))
                    .await;
            }
            Err(ConnectError::Api { status: 404, .. }) => {
                // The camera was removed: list the printer's cameras again next poll.
                tracing::info!("{name}: camera {} is gone from Connect", camera.name);
                tracked.cameras = None;
            }
            Err(e) => tracked.failed("camera", &name, &e),
        }
    }

    /// Camera messages are not retained: after a broker or Home Assistant restart the last
    /// pictures are sent again, so cameras do not stay blank until the next change.
    async fn resend_images(&mut self) {
        let images: Vec<(String, Arc<Vec<u8>>)> = self
            .printers
            .values()
            .flat_map(|t| {
                t.cameras.iter().flatten().filter_map(|c| {
                    let image = c.image.clone()?;
                    Some((self.topics.camera(&t.id, &c.id), image))
                })
            })
            .collect();
        for (topic, image) in images {
            self.outbox.volatile(&topic, image.to_vec()).await;
        }
    }

    fn save_memory(&mut self) {
        if let Err(e) = self.store.save(&self.memory) {
            tracing::warn!("cannot save the state file: {e:#}");
        }
    }
}

/// systemd's watchdog (`WatchdogSec=`): fed at half its period by the event loop, and between
/// printers during a long poll, so only a loop that really hangs gets the service restarted.
struct Watchdog {
    every: Option<Duration>,
    last: Instant,
}

impl Watchdog {
    fn from_env() -> Watchdog {
        Watchdog {
            // (At least 10 ms: a zero interval would panic on an absurd WATCHDOG_USEC.)
            every: sd_notify::watchdog_enabled()
                .map(|period| (period / 2).max(Duration::from_millis(10))),
            last: Instant::now(),
        }
    }

    fn feed(&mut self) {
        if self.every.is_some() {
            notify_systemd(&[sd_notify::NotifyState::Watchdog]);
            self.last = Instant::now();
        }
    }

    fn feed_if_due(&mut self) {
        if self.every.is_some_and(|every| self.last.elapsed() >= every) {
            self.feed();
        }
    }
}

/// Waits for the next watchdog tick; never, without a watchdog.
async fn tick_of(watchdog: &mut Option<tokio::time::Interval>) {
    match watchdog {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// A message for systemd (`Type=notify`); nothing when not run by systemd.
fn notify_systemd(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::debug!("cannot notify systemd: {e}");
    }
}

/// Lets the "Cancel object" select send an object's name: swaps `object_name` for Connect's
/// `object_id`.
fn resolve_object_name(req: &mut CommandRequest, job: Option<&Job>) -> Result<(), CommandError> {
    let Some(name) = req.kwargs.remove("object_name") else {
        return Ok(());
    };
    let objects = job
        .and_then(|j| j.cancelable.as_ref())
        .map(|c| c.objects.as_slice())
        .unwrap_or_default();
    let labels = crate::discovery::object_labels(objects);
    match labels
        .iter()
        .find(|(_, label)| Some(label.as_str()) == name.as_str())
    {
        Some((id, _)) => {
            req.kwargs.insert("object_id".into(), json!(id));
            Ok(())
        }
        None => Err(CommandError::new(
            ErrorCode::InvalidArgument,
            format!(
                "the current job has no object {name}; it has: {}",
                labels
                    .iter()
                    .map(|(_, l)| l.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
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

/// What identifies a dialog: Connect's id, else its title and text.
fn dialog_key(d: &DialogInfo) -> String {
    match &d.id {
        Some(id) => id.to_string(),
        None => format!(
            "{}|{}",
            d.title.as_deref().unwrap_or(""),
            d.text.as_deref().unwrap_or("")
        ),
    }
}

/// Copies the fields of the object `from` into the object `into`.
fn merge_object(into: &mut Value, from: &Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        for (k, v) in from {
            into.insert(k.clone(), v.clone());
        }
    }
}
