//! The I/O shell around the core: one loop that polls Connect's printer list, carries out
//! the reads the core asks for (concurrently, at most [`MAX_READS`] at a time), runs commands
//! (one at a time per printer, in order), hands messages to the MQTT session, and stops
//! cleanly.

mod reads;
mod runner;
mod stop;
mod systemd;
mod throttle;

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};
use tokio_util::task::AbortOnDropHandle;

use crate::bridge::commands::{CommandDone, Inbound, Prepared};
use crate::bridge::core::Core;
use crate::bridge::registry::StateFile;
use crate::bridge::shell::reads::ReadRunner;
use crate::bridge::shell::runner::CommandRunner;
use crate::bridge::shell::systemd::{Watchdog, notify_systemd, tick_of};
use crate::bridge::shell::throttle::Throttle;
use crate::command::ErrorCode;
use crate::connect::client::{ConnectClient, ConnectError, RejectedPrinter};
use crate::connect::live::{LiveEvent, LiveLink};
use crate::connect::model::Printer;
use crate::message::Incoming;
use crate::mqtt::{Link, Publisher};
use crate::payloads::now_unix;
use crate::spoolman::SpoolmanLink;
use crate::store::Store;

pub use stop::STOP_GRACE;
use stop::on_disk_first;

type ListResult = Result<(Vec<Printer>, Vec<RejectedPrinter>), ConnectError>;

/// The fleet list request in flight: when it was sent, and its task.
struct Listing {
    requested: Instant,
    task: AbortOnDropHandle<ListResult>,
}

/// Command messages waiting (not yet running) at most; more are answered `RATE_LIMITED`.
pub const MAX_WAITING_COMMANDS: usize = 1024;
pub struct Shell {
    core: Core,
    connect: ConnectClient,
    publisher: Publisher,
    store: Store<StateFile>,
    watchdog: Watchdog,
    reads: ReadRunner,
    commands: CommandRunner,
    /// The MQTT connection's state: a command must have come on the current connection to
    /// run (see [`Incoming::generation`]).
    link: Option<watch::Receiver<Link>>,
    /// The link as last looked at: a new connection or birth message renders discovery again.
    link_seen: Link,
    /// Remove every retained topic on the way out (`demo`).
    clear_retained_on_exit: bool,
    next_poll: Instant,
    /// A command's effect shows at the poll after it; a list request in flight started
    /// before the command, so another one follows it.
    poll_after_command: Option<Instant>,
    /// Connect's live channel (`connect.live`).
    live: Option<LiveLink>,
    /// The web page's view of what the broker was told (`web.listen`).
    board: Option<watch::Sender<crate::web::Board>>,
    /// Polls at once when notified (the web page after a login or log-out).
    poll_now: Option<std::sync::Arc<tokio::sync::Notify>>,
    /// When printers waiting for their first reads are published anyway.
    introduce_at: Option<Instant>,
    /// The Spoolman worker (`spoolman.url`).
    spoolman: Option<SpoolmanLink>,
}

/// Runtime events handled in one go before the loop looks at anything else.
const LIVE_BATCH: usize = 4096;

impl Shell {
    pub fn new(
        core: Core,
        connect: ConnectClient,
        publisher: Publisher,
        store: Store<StateFile>,
        clear_retained_on_exit: bool,
        live: Option<LiveLink>,
    ) -> Shell {
        Shell {
            reads: ReadRunner::new(connect.clone()),
            commands: CommandRunner::new(
                connect.clone(),
                publisher.clone(),
                Throttle::new(
                    core.settings.commands_per_second,
                    core.settings.commands_burst,
                ),
            ),
            core,
            connect,
            publisher,
            store,
            watchdog: Watchdog::from_env(),
            link: None,
            link_seen: Link::default(),
            clear_retained_on_exit,
            next_poll: Instant::now(),
            poll_after_command: None,
            live,
            board: None,
            poll_now: None,
            introduce_at: None,
            spoolman: None,
        }
    }

    /// Hands ended jobs' filament to Spoolman's worker, and its spool list to the core.
    pub fn with_spoolman(mut self, link: SpoolmanLink) -> Shell {
        self.spoolman = Some(link);
        self
    }

    /// Shows every message handed to the broker to `board` too (the web page's status).
    pub fn with_board(mut self, board: watch::Sender<crate::web::Board>) -> Shell {
        self.board = Some(board);
        self
    }

    /// Publishes the printers whose first reads are late, one by one with the messages sent
    /// between two (a farm's 2,000 discoveries at once were 50 MB in flight, and the heap
    /// kept that size), serving commands between them when `serve`.
    async fn introduce_overdue(
        &mut self,
        incoming: &mut mpsc::UnboundedReceiver<Incoming>,
        serve: bool,
    ) {
        let waiting = self.core.waiting_printers();
        self.render_each(waiting, incoming, serve).await;
    }

    /// Renders `printers` one by one, the messages of each sent before the next (see
    /// [`Shell::introduce_overdue`]).
    async fn render_each(
        &mut self,
        printers: Vec<String>,
        incoming: &mut mpsc::UnboundedReceiver<Incoming>,
        serve: bool,
    ) {
        for uuid in printers {
            self.watchdog.feed_if_due();
            self.core.introduce(&uuid, now_unix());
            self.flush();
            if serve {
                self.serve_between(incoming).await;
            } else {
                tokio::task::yield_now().await;
            }
        }
        self.core.introduced();
        self.flush();
        self.arm_introduce();
    }

    /// [`Shell::flush`], then the printers the core asked to render again, one by one.
    async fn flush_and_render(
        &mut self,
        incoming: &mut mpsc::UnboundedReceiver<Incoming>,
        serve: bool,
    ) {
        self.flush();
        let renders = self.core.take_renders();
        if !renders.is_empty() {
            self.render_each(renders, incoming, serve).await;
        }
    }

    /// Places the publication of the printers whose first reads are late (they wait for the
    /// request budget); printers are first seen only in a poll, so after each one.
    fn arm_introduce(&mut self) {
        self.introduce_at = self
            .core
            .introduce_due(now_unix())
            .map(|wait| Instant::now() + wait);
    }

    /// Polls Connect at once (not at the next poll) whenever `poll_now` is notified.
    pub fn with_poll_now(mut self, poll_now: std::sync::Arc<tokio::sync::Notify>) -> Shell {
        self.poll_now = Some(poll_now);
        self
    }

    /// Runs until `shutdown` resolves. Commands running then finish and reply (the caller
    /// abandons Connect requests after [`STOP_GRACE`]); commands waiting are answered without
    /// being sent; then `offline` is handed to the session, which delivers what is owed and
    /// disconnects. Tells systemd when it is ready and feeds its watchdog from this loop, so
    /// a loop that hangs gets the service restarted.
    pub async fn run(
        mut self,
        mut link: watch::Receiver<Link>,
        mut incoming: mpsc::UnboundedReceiver<Incoming>,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        self.link = Some(link.clone());
        self.core.start();
        self.flush();
        let mut watchdog = self.watchdog.interval();
        notify_systemd(&[sd_notify::NotifyState::Ready]);
        // The fleet list request in flight, if any: a task of its own, so neither the request
        // nor the parsing of its pages holds up commands.
        let mut listing: Option<Listing> = None;
        // Until the first poll is done no printer is known: messages wait for it.
        let mut held: Option<VecDeque<Incoming>> = Some(VecDeque::new());
        let poll_now = self.poll_now.clone();
        loop {
            let introduce_at = self.introduce_at;
            // A printer whose commands wait for `commands.max_per_second`.
            let wake = self.commands.next_wake();
            // Printers whose pushed values are to be looked at.
            let live_due = self.core.live_due();
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                _ = tick_of(&mut watchdog) => self.watchdog.feed(),
                changed = link.changed() => {
                    if changed.is_err() {
                        anyhow::bail!("the MQTT session ended unexpectedly");
                    }
                    let now = *link.borrow_and_update();
                    let seen = std::mem::replace(&mut self.link_seen, now);
                    if now.wants_discovery(&seen) {
                        let printers = self.core.discovery_again();
                        self.flush();
                        self.render_each(printers, &mut incoming, held.is_none()).await;
                    }
                }
                Some(msg) = incoming.recv() => match held.as_mut() {
                    Some(held) if held.len() < MAX_WAITING_COMMANDS => held.push_back(msg),
                    Some(_) => self.refuse(&msg, ErrorCode::RateLimited, &busy()),
                    None => self.on_incoming(msg),
                },
                Some(done) = self.commands.next(), if !self.commands.is_idle() => {
                    self.on_command_done(done);
                }
                _ = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                    self.commands.wake_due(Instant::now());
                    self.start_commands();
                }
                _ = sleep_until(introduce_at.unwrap_or_else(Instant::now)), if introduce_at.is_some() => {
                    self.introduce_overdue(&mut incoming, held.is_none()).await;
                }
                Some(event) = next_of(self.live.as_mut().map(|l| &mut l.events)) => self.on_live(event),
                Some(event) = next_of(self.spoolman.as_mut().map(|l| &mut l.events)) => {
                    self.core.on_spoolman(event);
                    self.flush_and_render(&mut incoming, held.is_none()).await;
                }
                _ = sleep_until(live_due.unwrap_or_else(Instant::now)), if live_due.is_some() => {
                    self.core.live_flush(Instant::now(), now_unix());
                    self.flush();
                }
                Some(done) = self.reads.next(), if !self.reads.is_idle() => {
                    self.core.on_read(done, Instant::now(), now_unix());
                    self.flush_and_render(&mut incoming, held.is_none()).await;
                }
                _ = async { poll_now.as_ref().expect("guarded").notified().await }, if poll_now.is_some() => {
                    // A poll in flight may predate the change: the next one follows it.
                    self.next_poll = Instant::now();
                }
                _ = sleep_until(self.next_poll), if listing.is_none() => {
                    listing = Some(self.start_listing());
                }
                listed = async { (&mut listing.as_mut().expect("guarded").task).await }, if listing.is_some() => {
                    let requested = listing.take().expect("guarded").requested;
                    let listed = listed.unwrap_or_else(|e| {
                        Err(ConnectError::Transport(format!("the list request stopped: {e}")))
                    });
                    self.list_done(requested, listed, &mut incoming, &mut held).await;
                }
            }
        }
        drop(listing);
        self.stop(incoming, held.unwrap_or_default()).await;
        Ok(())
    }

    /// Sends the fleet list request, in a task of its own.
    fn start_listing(&self) -> Listing {
        let connect = self.connect.clone();
        // Taken before the request goes: what the live channel says from now on may be newer
        // than the list (see `Pushed::list_requested`).
        let requested = Instant::now();
        let task = AbortOnDropHandle::new(tokio::spawn(async move { connect.printers().await }));
        Listing { requested, task }
    }

    /// A poll is done: its result goes to the core, the messages held until the first poll
    /// are taken, and the next poll is placed.
    async fn list_done(
        &mut self,
        requested: Instant,
        listed: ListResult,
        incoming: &mut mpsc::UnboundedReceiver<Incoming>,
        held: &mut Option<VecDeque<Incoming>>,
    ) {
        let wait = self
            .on_listed(requested, listed, incoming, held.is_none())
            .await;
        self.arm_introduce();
        if let Some(held) = held.take() {
            for msg in held {
                self.on_incoming(msg);
            }
        }
        let now = Instant::now();
        self.next_poll = match self.poll_after_command.take() {
            // A list request in flight when a command was accepted showed the printer
            // before it: the next one comes at once, if it is due.
            Some(soon) => (now + wait).min(soon.max(now)),
            None => now + wait,
        };
    }

    /// One poll's result (its request sent at `requested`), printer by printer. Between
    /// printers the MQTT tasks get to run and waiting commands are served (when `serve`), so
    /// a farm's poll does not hold them up.
    async fn on_listed(
        &mut self,
        requested: Instant,
        listed: ListResult,
        incoming: &mut mpsc::UnboundedReceiver<Incoming>,
        serve: bool,
    ) -> Duration {
        let wait = match listed {
            Err(e) => self
                .core
                .list_failed(now_unix(), e, self.connect.auth_status(), jitter()),
            Ok((printers, rejected)) => {
                self.core.reads_waiting(self.reads.extras_waiting());
                let printers =
                    self.core
                        .list_begin(Instant::now(), now_unix(), requested, printers, rejected);
                for printer in printers {
                    self.watchdog.feed_if_due();
                    self.core.observe(Instant::now(), now_unix(), printer);
                    self.flush();
                    if serve {
                        self.serve_between(incoming).await;
                    }
                }
                self.core
                    .list_end(Instant::now(), self.connect.auth_status())
            }
        };
        self.flush();
        if let Some(live) = &self.live {
            let wanted = self.core.live_printers();
            live.printers.send_if_modified(|following| {
                let changed = *following != wanted;
                *following = wanted;
                changed
            });
        }
        if serve {
            self.serve_between(incoming).await;
        }
        let (publisher, spoolman) = (&self.publisher, self.spoolman.as_ref());
        let saved = self.store.save_soon_after(&self.core.state_view(), || {
            on_disk_first(publisher, spoolman)
        });
        if let Err(e) = saved {
            tracing::warn!("cannot save the state file: {e:#}");
        }
        wait
    }

    /// Lets the MQTT tasks and command tasks run, then serves the commands that came in and
    /// the replies that are back.
    async fn serve_between(&mut self, incoming: &mut mpsc::UnboundedReceiver<Incoming>) {
        tokio::task::yield_now().await;
        while let Ok(msg) = incoming.try_recv() {
            self.on_incoming(msg);
        }
        while let Some(done) = self.commands.try_next() {
            self.on_command_done(done);
        }
    }

    /// What the live channel said, and whatever else it said meanwhile.
    fn on_live(&mut self, first: LiveEvent) {
        let now = Instant::now();
        let wall = now_unix();
        let mut event = Some(first);
        let mut handled = 0;
        while let Some(e) = event.take() {
            if let Some(wait) = self.core.live_event(now, wall, e) {
                // The channel dropped: busy printers are polled fast again from now on.
                self.next_poll = self.next_poll.min(now + wait);
            }
            handled += 1;
            // A full batch: the rest next time round the loop, after the others' turn.
            if handled < LIVE_BATCH {
                event = self.live.as_mut().and_then(|l| l.events.try_recv().ok());
            }
        }
        self.core.live_flush(now, wall);
        self.flush();
    }

    /// Hands the core's messages to the session and starts the reads it asked for.
    fn flush(&mut self) {
        let mut messages = self.core.take_messages();
        if let Some(board) = &self.board {
            board.send_if_modified(|b| b.observe(&messages));
        }
        self.publisher.publish_all(messages.drain(..));
        self.core.recycle_messages(messages);
        let cameras = self.core.settings.camera.enabled;
        for read in self.core.take_reads() {
            let registry = self.core.registry();
            let known = read
                .uuid()
                .is_some_and(|uuid| registry.is_known(uuid, cameras));
            self.reads.start(read, known);
        }
        for read in self.core.take_withdrawn() {
            self.reads.withdraw(&read);
        }
        let uses = self.core.take_spool_uses();
        if let Some(link) = &self.spoolman {
            for used in uses {
                link.report(used);
            }
        }
    }

    /// A message from the broker: a command waits for its printer's earlier ones.
    fn on_incoming(&mut self, msg: Incoming) {
        let printer_id = match self.core.classify(&msg.topic) {
            Inbound::Command { printer_id } | Inbound::JobReason { printer_id } => printer_id,
            Inbound::PrintFile { printer_id } => {
                // A choice, not a request to Connect: taken at once, never throttled.
                if !msg.payload.is_empty() {
                    self.core
                        .select_file(&printer_id, &msg.payload, crate::payloads::now_unix());
                    self.flush();
                }
                return;
            }
            Inbound::Spool { printer_id } => {
                // Empty too: a retained choice removed, no spool.
                self.core
                    .select_spool(&printer_id, &msg.payload, crate::payloads::now_unix());
                self.flush();
                return;
            }
            Inbound::Other => return,
        };
        if !self.core.answers_for(&printer_id) {
            // Another shard's printer: that shard answers.
            return;
        }
        if self.commands.waiting() >= MAX_WAITING_COMMANDS {
            self.refuse(&msg, ErrorCode::RateLimited, &busy());
            return;
        }
        if let Some((refused, why)) = self.commands.enqueue(printer_id, msg) {
            self.refuse(&refused, ErrorCode::RateLimited, &why);
        }
        self.start_commands();
    }

    /// Starts the commands whose printer has none running.
    fn start_commands(&mut self) {
        // Printers whose wait for `commands.max_per_second` is over (the loop's timer branch
        // may not run while a flood keeps the others busy).
        self.commands.wake_due(Instant::now());
        while let Some((printer_id, msg)) = self.commands.next_startable(Instant::now()) {
            let generation = self.link.as_ref().map(|l| l.borrow().generation);
            if generation.is_some_and(|g| g != msg.generation) {
                // Commands are never queued by the broker for the gateway; neither are they
                // kept across a reconnect: one that waited through it is not run.
                self.refuse(
                    &msg,
                    ErrorCode::Expired,
                    "the MQTT connection dropped after the command came and before it ran: it \
                     was not sent; send it again",
                );
                self.commands.finished_waiting(&printer_id);
                continue;
            }
            match self.core.prepare(&msg) {
                Prepared::Ignore => self.commands.finished_waiting(&printer_id),
                Prepared::Reply(reply) => {
                    self.publisher.publish(reply);
                    self.commands.finished_waiting(&printer_id);
                }
                Prepared::Run(job) => self.commands.run(msg, job),
            }
        }
    }

    fn on_command_done(&mut self, done: CommandDone) {
        if let Some(soon) = self.core.command_done(done, Instant::now()) {
            self.next_poll = self.next_poll.min(soon);
            self.poll_after_command = Some(soon);
        }
        self.flush();
        self.start_commands();
    }

    fn refuse(&mut self, msg: &Incoming, code: ErrorCode, why: &str) {
        if let Some(reply) = self.core.refuse(msg, code, why) {
            self.publisher.publish(reply);
        }
    }
}

fn busy() -> String {
    format!(
        "the gateway has {MAX_WAITING_COMMANDS} command messages waiting: this one was not run; \
         send it again later"
    )
}

/// The next event of `events` (the live channel's, the Spoolman worker's); never, without
/// them (or once they are gone).
async fn next_of<T>(events: Option<&mut mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match events {
        Some(events) => match events.recv().await {
            Some(e) => Some(e),
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// The factor a failed poll's backoff is spread by, so a fleet of gateways that lost
/// Connect together does not come back together.
fn jitter() -> f64 {
    use rand::Rng;
    rand::rng().random_range(0.8..1.2)
}
