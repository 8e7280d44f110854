//! The task that talks to Spoolman: it reads the spool list every `spoolman.interval`, and
//! reports the uses handed to it one at a time, in order, each exactly once (see
//! [`super::ledger`]), retrying with backoff while Spoolman does not answer.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::task::AbortOnDropHandle;

use super::ledger::{Ledger, Step, Use};
use super::{Spool, SpoolmanClient, SpoolmanError};
use crate::store::{Store, off_runtime};

/// The first wait before a report is tried again; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A spool list that could not be read is asked again this soon (or at the interval).
const LIST_RETRY: Duration = Duration::from_secs(30);

/// What the worker tells the bridge.
#[derive(Debug, Clone, PartialEq)]
pub enum SpoolmanEvent {
    /// The spool list as read now, or why it could not be read.
    Listed(Result<Vec<Spool>, String>),
    /// A use is settled.
    Reported(Report),
    /// Uses not settled yet, and why the first one waits (`None`: nothing went wrong).
    Pending { count: usize, error: Option<String> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub settled: Use,
    /// `None`: reported now or before (its answer was lost); otherwise why it was given up.
    pub given_up: Option<String>,
}

enum ToWorker {
    Use(Use),
    Sync(std::sync::mpsc::Sender<Result<(), String>>),
}

/// The bridge's handle on the worker; dropping it stops the worker.
pub struct SpoolmanLink {
    tx: mpsc::UnboundedSender<ToWorker>,
    pub events: mpsc::UnboundedReceiver<SpoolmanEvent>,
    _task: AbortOnDropHandle<()>,
}

/// See [`SpoolmanLink::sync`].
pub struct LedgerSync {
    rx: std::sync::mpsc::Receiver<Result<(), String>>,
}

impl LedgerSync {
    /// Blocks (off the runtime) until the ledger on disk holds every use handed over before
    /// [`SpoolmanLink::sync`]; an error when it could not be written within `limit`.
    pub fn wait(self, limit: Duration) -> anyhow::Result<()> {
        match self.rx.recv_timeout(limit) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => anyhow::bail!("cannot save the Spoolman ledger: {why}"),
            Err(e) => anyhow::bail!("the Spoolman ledger was not saved ({e})"),
        }
    }
}

impl SpoolmanLink {
    pub fn start(
        client: SpoolmanClient,
        store: Store<Ledger>,
        ledger: Ledger,
        interval: Duration,
    ) -> SpoolmanLink {
        let (tx, rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let worker = Worker {
            client,
            store: Some(store),
            ledger,
            events: events_tx,
            interval,
            backoff: FIRST_BACKOFF,
            report_at: Instant::now(),
        };
        let task = AbortOnDropHandle::new(tokio::spawn(worker.run(rx)));
        SpoolmanLink {
            tx,
            events,
            _task: task,
        }
    }

    /// Hands over the use of an ended job (a job handed over before is not reported again).
    pub fn report(&self, u: Use) {
        let _ = self.tx.send(ToWorker::Use(u));
    }

    /// Asks for the ledger to be on disk with every use handed over so far: the state file
    /// that records their jobs as announced must not be written before.
    pub fn sync(&self) -> LedgerSync {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.tx.send(ToWorker::Sync(tx.clone())).is_err() {
            let _ = tx.send(Err("the Spoolman worker stopped".into()));
        }
        LedgerSync { rx }
    }
}

/// A report's request in flight: reading the spool's used weight, or sending the use.
enum Attempt {
    Check(AbortOnDropHandle<Result<Spool, SpoolmanError>>),
    Send(AbortOnDropHandle<Result<(), SpoolmanError>>),
}

struct Worker {
    client: SpoolmanClient,
    /// Taken while a write runs off the runtime.
    store: Option<Store<Ledger>>,
    ledger: Ledger,
    events: mpsc::UnboundedSender<SpoolmanEvent>,
    interval: Duration,
    backoff: Duration,
    /// When the first use is tried (again).
    report_at: Instant,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<ToWorker>) {
        let mut list_at = Instant::now();
        let mut listing: Option<AbortOnDropHandle<Result<Vec<Spool>, SpoolmanError>>> = None;
        let mut attempt: Option<Attempt> = None;
        let mut listed_before: Option<bool> = None;
        // A use went through while a list was read: read it again at once after.
        let mut relist = false;
        self.tell_pending(None);
        loop {
            let can_report = attempt.is_none() && self.ledger.first().is_some();
            tokio::select! {
                msg = rx.recv() => match msg {
                    None => break,
                    Some(ToWorker::Use(u)) => {
                        if self.ledger.add(u) {
                            let saved = self.save().await;
                            self.tell_pending(saved.err());
                        }
                    }
                    Some(ToWorker::Sync(reply)) => {
                        let _ = reply.send(self.save().await);
                    }
                },
                _ = sleep_until(list_at), if listing.is_none() => {
                    relist = false;
                    let client = self.client.clone();
                    listing = Some(AbortOnDropHandle::new(tokio::spawn(async move {
                        client.spools().await
                    })));
                }
                listed = async { listing.as_mut().expect("guarded").await }, if listing.is_some() => {
                    listing = None;
                    let listed = joined(listed).map_err(|e| e.to_string());
                    // Said once each time it changes, not at every read.
                    match (&listed, listed_before) {
                        (Err(e), Some(true) | None) => {
                            tracing::warn!("Spoolman: cannot read the spool list: {e}");
                        }
                        (Ok(spools), Some(false) | None) => {
                            tracing::info!("Spoolman: {} spool(s) listed", spools.len());
                        }
                        _ => {}
                    }
                    listed_before = Some(listed.is_ok());
                    list_at = Instant::now()
                        + match (relist, listed.is_ok()) {
                            (true, _) => Duration::ZERO,
                            (false, true) => self.interval,
                            (false, false) => self.interval.min(LIST_RETRY),
                        };
                    let _ = self.events.send(SpoolmanEvent::Listed(listed));
                }
                _ = sleep_until(self.report_at), if can_report => {
                    attempt = Some(self.check());
                }
                done = next_attempt(&mut attempt), if attempt.is_some() => {
                    attempt = match done {
                        Done::Checked(result) => self.checked(result).await,
                        Done::Sent(result) => {
                            if self.sent(result).await {
                                // Its remaining weight shows at once.
                                list_at = Instant::now();
                                relist = true;
                            }
                            None
                        }
                    };
                }
            }
        }
    }

    /// Reads the first use's spool: its used weight says what to do.
    fn check(&self) -> Attempt {
        let client = self.client.clone();
        let spool = self.ledger.first().map(|u| u.spool).unwrap_or_default();
        Attempt::Check(AbortOnDropHandle::new(tokio::spawn(async move {
            client.spool(spool).await
        })))
    }

    /// The spool was read: the use is sent (its baseline saved first), or settled.
    async fn checked(&mut self, result: Result<Spool, SpoolmanError>) -> Option<Attempt> {
        let spool = match result {
            Ok(spool) => spool,
            Err(e) => {
                self.failed(e).await;
                return None;
            }
        };
        match self.ledger.step(spool.used_g)? {
            Step::AlreadyCounted => {
                tracing::info!(
                    "Spoolman: spool {} has used {} g: the report whose answer was lost went \
                     through, it is not sent again",
                    spool.id,
                    spool.used_g.unwrap_or_default()
                );
                self.settle(None).await;
                None
            }
            Step::Unknowable => {
                let why = format!(
                    "Spoolman shows no used weight for spool {}: whether the use went through \
                     cannot be told, so it is not sent (again)",
                    spool.id
                );
                self.settle(Some(why)).await;
                None
            }
            Step::Send => {
                // Sent only once its baseline is on disk: a crash after the request then
                // finds out whether it counted.
                if let Err(why) = self.save().await {
                    self.wait_longer(Some(why));
                    return None;
                }
                let u = self.ledger.first()?.clone();
                let client = self.client.clone();
                Some(Attempt::Send(AbortOnDropHandle::new(tokio::spawn(
                    async move { client.use_weight(u.spool, u.grams).await },
                ))))
            }
        }
    }

    /// The use was sent: settled, or tried again later. True when it counted.
    async fn sent(&mut self, result: Result<(), SpoolmanError>) -> bool {
        match result {
            Ok(()) => {
                self.settle(None).await;
                true
            }
            Err(e) => {
                self.failed(e).await;
                false
            }
        }
    }

    /// A request about the first use failed: given up when Spoolman refused it as made (no
    /// such spool, a body it does not take), otherwise tried again later.
    async fn failed(&mut self, e: SpoolmanError) {
        match e {
            SpoolmanError::NotFound(_) | SpoolmanError::Refused { .. } => {
                self.settle(Some(e.to_string())).await;
            }
            SpoolmanError::Unavailable(_) => self.wait_longer(Some(e.to_string())),
        }
    }

    fn wait_longer(&mut self, why: Option<String>) {
        if let Some(u) = self.ledger.first() {
            tracing::warn!(
                "Spoolman: {} g of job {} not reported to spool {} yet, trying again in {} s: {}",
                u.grams,
                u.job,
                u.spool,
                self.backoff.as_secs(),
                why.as_deref().unwrap_or("?")
            );
        }
        self.report_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.tell_pending(why);
    }

    /// The first use is done with (`given_up`: why it was not reported).
    async fn settle(&mut self, given_up: Option<String>) {
        let Some(settled) = self.ledger.finish_first() else {
            return;
        };
        match &given_up {
            None => tracing::info!(
                "Spoolman: {} g of job {} reported to spool {}",
                settled.grams,
                settled.job,
                settled.spool
            ),
            Some(why) => tracing::warn!(
                "Spoolman: {} g of job {} not reported to spool {}: {why}",
                settled.grams,
                settled.job,
                settled.spool
            ),
        }
        let saved = self.save().await;
        self.backoff = FIRST_BACKOFF;
        self.report_at = Instant::now();
        let _ = self
            .events
            .send(SpoolmanEvent::Reported(Report { settled, given_up }));
        self.tell_pending(saved.err());
    }

    fn tell_pending(&self, error: Option<String>) {
        let _ = self.events.send(SpoolmanEvent::Pending {
            count: self.ledger.pending.len(),
            error,
        });
    }

    /// Writes the ledger (when it changed), off the runtime.
    async fn save(&mut self) -> Result<(), String> {
        let Some(mut store) = self.store.take() else {
            return Err("the ledger is being written".into());
        };
        let ledger = self.ledger.clone();
        let written = off_runtime(move || {
            let saved = store.save(&ledger);
            (store, saved)
        })
        .await;
        match written {
            Ok((store, saved)) => {
                self.store = Some(store);
                saved.map_err(|e| format!("{e:#}"))
            }
            Err(e) => Err(format!("{e:#}")),
        }
    }
}

enum Done {
    Checked(Result<Spool, SpoolmanError>),
    Sent(Result<(), SpoolmanError>),
}

async fn next_attempt(attempt: &mut Option<Attempt>) -> Done {
    match attempt {
        Some(Attempt::Check(task)) => Done::Checked(joined(task.await)),
        Some(Attempt::Send(task)) => Done::Sent(joined(task.await)),
        None => std::future::pending().await,
    }
}

/// A request task's result (one that stopped is a request that got no answer).
fn joined<T>(
    result: Result<Result<T, SpoolmanError>, tokio::task::JoinError>,
) -> Result<T, SpoolmanError> {
    result.unwrap_or_else(|e| {
        Err(SpoolmanError::Unavailable(format!(
            "the request stopped: {e}"
        )))
    })
}
