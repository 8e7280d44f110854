//! Command messages per printer, in order, one at a time, at most `commands.max_per_second`
//! of them reaching Connect ([`Throttle`]); each in a task of its own that publishes its reply.

use std::collections::{HashMap, VecDeque};

use tokio::task::{Id, JoinSet};
use tokio::time::Instant;

use crate::bridge::commands::{self, CommandDone, CommandJob, CommandTask, Outcome};
use crate::bridge::shell::throttle::{self, Throttle};
use crate::command::{self, CommandError, CommandReply, ErrorCode};
use crate::connect::client::ConnectClient;
use crate::message::{Incoming, Message};
use crate::mqtt::Publisher;

/// Command messages per printer, in order; one command runs per printer at a time.
pub(crate) struct CommandRunner {
    connect: ConnectClient,
    publisher: Publisher,
    queues: HashMap<String, VecDeque<Incoming>>,
    /// Printers with a command running, and which message each task answers.
    busy: HashMap<String, Id>,
    running: HashMap<Id, (String, Incoming)>,
    tasks: JoinSet<CommandDone>,
    waiting: usize,
    /// Printers whose queue may have a command that can start.
    ready: VecDeque<String>,
    /// `commands.max_per_second`, and when printers waiting for it may go on.
    throttle: Throttle,
    wake: HashMap<String, Instant>,
}

/// The command name of a message, for replacing a waiting value by a newer one.
fn command_name(msg: &Incoming) -> Option<String> {
    command::parse(&msg.payload).ok().map(|req| req.command)
}

const REPLACED: &str = "a newer value of the same setting came before this one was sent to \
                        Connect: only the newer one is sent";

fn queue_full(per_second: usize) -> String {
    format!(
        "more commands for this printer than commands.max_per_second lets through in the next \
         few seconds ({per_second} may wait): this one was not sent; send it again later"
    )
}

impl CommandRunner {
    pub(crate) fn new(
        connect: ConnectClient,
        publisher: Publisher,
        throttle: Throttle,
    ) -> CommandRunner {
        CommandRunner {
            connect,
            publisher,
            queues: HashMap::new(),
            busy: HashMap::new(),
            running: HashMap::new(),
            tasks: JoinSet::new(),
            waiting: 0,
            ready: VecDeque::new(),
            throttle,
            wake: HashMap::new(),
        }
    }

    /// The first time a printer waiting for `commands.max_per_second` may go on.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        self.wake.values().min().copied()
    }

    /// Printers whose wait for a token is over may start their next command.
    pub(crate) fn wake_due(&mut self, now: Instant) {
        let due: Vec<String> = self
            .wake
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(p, _)| p.clone())
            .collect();
        for printer_id in due {
            self.wake.remove(&printer_id);
            self.ready.push_back(printer_id);
        }
        self.throttle.forget_idle(now);
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.tasks.is_empty()
    }

    pub(crate) fn waiting(&self) -> usize {
        self.waiting
    }

    /// Queues a message behind its printer's earlier ones. Returns a message to answer
    /// `RATE_LIMITED` at once, and why: the waiting value of the same setting this one
    /// replaces, or this one when its printer has as many waiting as its rate lets through in
    /// a few seconds.
    pub(crate) fn enqueue(
        &mut self,
        printer_id: String,
        msg: Incoming,
    ) -> Option<(Incoming, String)> {
        let queue = self.queues.entry(printer_id.clone()).or_default();
        if let Some(name) = command_name(&msg).filter(|n| throttle::sets_a_value(n))
            && let Some(at) = queue
                .iter()
                .position(|m| command_name(m).as_deref() == Some(name.as_str()))
            && let Some(old) = queue.remove(at)
        {
            queue.push_back(msg);
            return Some((old, REPLACED.to_string()));
        }
        let limit = self.throttle.max_waiting();
        if queue.len() >= limit {
            return Some((msg, queue_full(limit)));
        }
        self.waiting += 1;
        queue.push_back(msg);
        self.ready.push_back(printer_id);
        None
    }

    /// The next message whose printer has no command running and may send one now
    /// (`commands.max_per_second`); counts as waiting until [`CommandRunner::run`] or
    /// [`CommandRunner::finished_waiting`].
    pub(crate) fn next_startable(&mut self, now: Instant) -> Option<(String, Incoming)> {
        while let Some(printer_id) = self.ready.pop_front() {
            if self.busy.contains_key(&printer_id) || self.wake.contains_key(&printer_id) {
                continue;
            }
            let Some(queue) = self.queues.get_mut(&printer_id) else {
                continue;
            };
            if queue.is_empty() {
                self.queues.remove(&printer_id);
                continue;
            }
            if let Err(wait) = self.throttle.take(&printer_id, now) {
                self.wake.insert(printer_id, now + wait);
                continue;
            }
            let msg = queue.pop_front().expect("not empty");
            if queue.is_empty() {
                self.queues.remove(&printer_id);
            } else {
                self.ready.push_back(printer_id.clone());
            }
            return Some((printer_id, msg));
        }
        None
    }

    /// A message taken by [`CommandRunner::next_startable`] that did not go to Connect: its
    /// token is given back.
    pub(crate) fn finished_waiting(&mut self, printer_id: &str) {
        self.waiting -= 1;
        self.throttle.give_back(printer_id, Instant::now());
    }

    pub(crate) fn run(&mut self, msg: Incoming, job: CommandJob) {
        self.waiting -= 1;
        let connect = self.connect.clone();
        let publisher = self.publisher.clone();
        let printer_id = job.printer_id.clone();
        let handle = self.tasks.spawn(async move {
            let reply_topic = job.reply_topic.clone();
            let mut done = execute(&connect, job).await;
            // Straight to the session: the reply does not wait for the bridge's loop.
            let payload = done.reply.to_json().to_string();
            publisher.publish(Message::event(reply_topic, payload));
            done.replied = true;
            done
        });
        self.busy.insert(printer_id.clone(), handle.id());
        self.running.insert(handle.id(), (printer_id, msg));
    }

    pub(crate) fn take_waiting(&mut self) -> Vec<Incoming> {
        self.waiting = 0;
        self.ready.clear();
        self.wake.clear();
        self.queues.drain().flat_map(|(_, q)| q).collect()
    }

    pub(crate) fn joined(
        &mut self,
        joined: Result<(Id, CommandDone), tokio::task::JoinError>,
    ) -> Option<CommandDone> {
        let id = match &joined {
            Ok((id, _)) => *id,
            Err(e) => e.id(),
        };
        let (printer_id, msg) = self.running.remove(&id)?;
        self.busy.remove(&printer_id);
        self.ready.push_back(printer_id.clone());
        match joined {
            Ok((_, done)) => Some(done),
            Err(e) => {
                tracing::error!("a command for {printer_id} failed unexpectedly: {e}");
                let error = CommandError::new(
                    ErrorCode::ConnectError,
                    format!("the command stopped unexpectedly ({e}); it may have been sent"),
                );
                let reply = match command::parse(&msg.payload) {
                    Ok(req) => CommandReply::error(&req, error),
                    Err(reply) => CommandReply {
                        outcome: Err(error),
                        ..reply
                    },
                };
                Some(CommandDone {
                    printer_id,
                    uuid: String::new(),
                    reply,
                    replied: false,
                    supported: None,
                    outcome: Outcome::Other,
                })
            }
        }
    }

    pub(crate) async fn next(&mut self) -> Option<CommandDone> {
        loop {
            let joined = self.tasks.join_next_with_id().await?;
            if let Some(done) = self.joined(joined) {
                return Some(done);
            }
        }
    }

    pub(crate) fn try_next(&mut self) -> Option<CommandDone> {
        loop {
            let joined = self.tasks.try_join_next_with_id()?;
            if let Some(done) = self.joined(joined) {
                return Some(done);
            }
        }
    }
}

/// Runs one command (or failure reason) against Connect. Never retried: MOVE twice moves
/// twice.
async fn execute(connect: &ConnectClient, job: CommandJob) -> CommandDone {
    let (printer_id, uuid) = (&job.printer_id, &job.uuid);
    let done = |reply, supported, outcome| CommandDone::of(&job, reply, supported, outcome);
    match &job.task {
        CommandTask::Command {
            req,
            state,
            limits,
            supported,
            allow,
        } => {
            let (list, fetched) = match supported {
                Some(s) => (s.clone(), None),
                None => match connect.supported_commands(uuid).await {
                    Ok(s) => (s.commands.clone(), Some(s.commands)),
                    Err(e) => {
                        let error = CommandError::new(
                            ErrorCode::ConnectError,
                            format!("cannot read the printer's supported commands: {e}"),
                        );
                        return done(CommandReply::error(req, error), None, Outcome::Other);
                    }
                },
            };
            if let Err(e) = command::validate_with_limits(req, allow, &list, state, limits) {
                return done(CommandReply::error(req, e), fetched, Outcome::Other);
            }
            match connect.execute(uuid, &req.command, &req.kwargs).await {
                Ok(result) => {
                    tracing::info!(
                        "{printer_id}: {} accepted by Connect (command id {})",
                        req.command,
                        result.command.id
                    );
                    let reply = CommandReply::ok(req, Some(result.command.id));
                    done(reply, fetched, Outcome::Accepted)
                }
                Err(e) => {
                    let (error, outcome) = commands::connect_refusal(&req.command, printer_id, &e);
                    done(CommandReply::error(req, error), fetched, outcome)
                }
            }
        }
        CommandTask::JobReason {
            req,
            job_id,
            reason,
        } => match connect.set_job_reason(uuid, *job_id, reason).await {
            Ok(()) => done(CommandReply::ok(req, None), None, Outcome::Other),
            Err(e) => {
                let error = commands::reason_refusal(*job_id, e);
                done(CommandReply::error(req, error), None, Outcome::Other)
            }
        },
    }
}
