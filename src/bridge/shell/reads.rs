//! The reads the core asks for, carried out concurrently (at most [`MAX_READS`] at a time).
//!
//! Under the request budget a farm's start-up reads take minutes, so the waiting reads go in
//! an order:
//! - the account's (printer types, Connect's version, notifications) first: `bridge/info`
//!   waits for them;
//! - then those that keep what is shown fresh (feeds, job records, pictures), in the order
//!   asked for;
//! - the ones that make a printer known (cameras, queues, supported commands, free space, its
//!   first job list) take every [`KNOWN_EVERY`]th turn, and the fresh ones' leftovers: printer
//!   by printer, in the order the printers first asked. So printers become fully known one
//!   after the other (instead of all at the very end), and still do when a busy farm's fresh
//!   reads alone would fill the budget;
//! - last, when nothing else waits, those that only look back (Connect's statistics seeding
//!   a printer's totals).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;

use tokio::task::{Id, JoinSet};

use crate::bridge::reads::{Read, ReadDone, ReadResult};
use crate::connect::client::{ConnectClient, ConnectError};

/// Reads to Connect in flight at the same time, at most: a farm whose printers all change at
/// once is served in parallel, without a burst of hundreds of requests.
pub const MAX_READS: usize = 8;

/// Reads in flight, each in a task of its own; more wait in line. A read whose task ends
/// without an answer (a panic) comes back as a failed read, so nothing waits for it forever.
pub(super) struct ReadRunner {
    connect: ConnectClient,
    tasks: JoinSet<ReadDone>,
    running: HashMap<Id, Read>,
    waiting: BTreeMap<(Turn, u64), Read>,
    /// Where each waiting job record read is in `waiting`, oldest first: the core withdraws
    /// them by the hundred at a farm's size, and the line can hold thousands.
    job_reads: HashMap<(String, i64), VecDeque<(Turn, u64)>>,
    /// Each printer's place among those with reads that make them known waiting (cleared
    /// when nothing waits).
    places: HashMap<String, u64>,
    /// First job lists of printers without a place yet, by printer (their `seq`): they wait
    /// at [`UNPLACED`] until their printer's first other start-up read gives it a place.
    parked: HashMap<String, u64>,
    seq: u64,
    /// Turns taken by fresh reads since the last one that makes a printer known.
    fresh_in_a_row: u32,
}

/// When reads of both kinds wait, every this many turns goes to one that makes a printer
/// known.
pub const KNOWN_EVERY: u32 = 3;

/// When a waiting read goes: see the module's documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Turn {
    Account,
    Fresh,
    Printer(u64),
    Backfill,
}

/// Where a first job list waits while its printer has no place: after every placed printer.
/// A farm's first poll asks every new printer's first job list at once (they are not paid for
/// by the poll's allowance), while the cameras and queues are asked a few printers a poll. With
/// places given in the order asked, the idle printers' job lists took the first 800 places of
/// 2,000 and every printer asked for later waited behind them: `known` stood still for a
/// quarter of an hour while they were read.
const UNPLACED: u64 = u64::MAX;

/// The part of the line that makes printers known.
const PRINTERS: std::ops::Range<(Turn, u64)> = (Turn::Printer(0), 0)..(Turn::Backfill, 0);

/// Whether `read` is one that makes a printer known rather than keeping it fresh.
fn makes_known(read: &Read) -> bool {
    matches!(
        read,
        Read::Cameras { .. }
            | Read::Queue { .. }
            | Read::Supported { .. }
            | Read::Storages { .. }
            | Read::Jobs { after: None, .. }
    )
}

impl ReadRunner {
    pub(super) fn new(connect: ConnectClient) -> ReadRunner {
        ReadRunner {
            connect,
            tasks: JoinSet::new(),
            running: HashMap::new(),
            waiting: BTreeMap::new(),
            job_reads: HashMap::new(),
            places: HashMap::new(),
            parked: HashMap::new(),
            seq: 0,
            fresh_in_a_row: 0,
        }
    }

    /// How many of the reads the poll's budget of extra reads pays for (cameras, queues,
    /// supported commands, storages) wait for their turn. A printer's first job list is not
    /// one: at a farm's start there are thousands of those, and counting them would hold
    /// back every other start-up read until they are all done.
    pub(super) fn extras_waiting(&self) -> usize {
        self.waiting
            .range(PRINTERS)
            .filter(|(_, read)| !matches!(read, Read::Jobs { .. }))
            .count()
    }

    pub(super) fn is_idle(&self) -> bool {
        self.tasks.is_empty()
    }

    pub(super) fn abort(&mut self) {
        self.waiting.clear();
        self.job_reads.clear();
        self.places.clear();
        self.parked.clear();
        self.tasks.abort_all();
    }

    /// Puts `read` in line; `known`: its printer is known already (a later read of its
    /// cameras or queue keeps it fresh rather than making it known, and does not go before
    /// other printers' start-up reads).
    pub(super) fn start(&mut self, read: Read, known: bool) {
        self.seq += 1;
        let turn = match read.uuid() {
            None => Turn::Account,
            Some(_) if matches!(read, Read::Stats { .. }) => Turn::Backfill,
            Some(uuid)
                if !known
                    && matches!(read, Read::Jobs { after: None, .. })
                    && !self.places.contains_key(uuid) =>
            {
                self.parked.insert(uuid.to_string(), self.seq);
                Turn::Printer(UNPLACED)
            }
            Some(uuid) if !known && makes_known(&read) => {
                let next = self.places.len() as u64;
                let place = *self.places.entry(uuid.to_string()).or_insert(next);
                self.unpark(uuid, place);
                Turn::Printer(place)
            }
            Some(_) => Turn::Fresh,
        };
        if let Read::Job { uuid, job } = &read {
            let at = self.job_reads.entry((uuid.clone(), *job)).or_default();
            at.push_back((turn, self.seq));
        }
        self.waiting.insert((turn, self.seq), read);
        self.fill();
    }

    /// Drops `read` if it still waits for its turn (the core no longer needs it: it withdraws
    /// only job record reads).
    pub(super) fn withdraw(&mut self, read: &Read) {
        let Read::Job { uuid, job } = read else {
            return;
        };
        let Some(key) = self.unindex(uuid, *job) else {
            return;
        };
        self.waiting.remove(&key);
        if self.waiting.is_empty() {
            self.places.clear();
        }
    }

    /// Moves printer `uuid`'s parked first job list, if any, to the printer's `place`.
    fn unpark(&mut self, uuid: &str, place: u64) {
        if let Some(seq) = self.parked.remove(uuid)
            && let Some(read) = self.waiting.remove(&(Turn::Printer(UNPLACED), seq))
        {
            self.waiting.insert((Turn::Printer(place), seq), read);
        }
    }

    /// Takes the oldest waiting read of job `job`'s record out of the index, with its place.
    fn unindex(&mut self, uuid: &str, job: i64) -> Option<(Turn, u64)> {
        let index = (uuid.to_string(), job);
        let at = self.job_reads.get_mut(&index)?;
        let key = at.pop_front();
        if at.is_empty() {
            self.job_reads.remove(&index);
        }
        key
    }

    /// The read whose turn it is.
    fn next_waiting(&mut self) -> Option<Read> {
        let first = *self.waiting.keys().next()?;
        let known = self.waiting.range(PRINTERS).next();
        let key = match (first.0, known) {
            (Turn::Fresh, Some((&key, _))) if self.fresh_in_a_row + 1 >= KNOWN_EVERY => key,
            _ => first,
        };
        match key.0 {
            Turn::Fresh => self.fresh_in_a_row += 1,
            Turn::Printer(_) => self.fresh_in_a_row = 0,
            Turn::Account | Turn::Backfill => {}
        }
        let read = self.waiting.remove(&key);
        if let (Turn::Printer(UNPLACED), Some(read)) = (key.0, &read)
            && let Some(uuid) = read.uuid()
        {
            self.parked.remove(uuid);
        }
        if let Some(Read::Job { uuid, job }) = &read {
            // Reads of one record are in the line oldest first, and the line takes the
            // oldest first too.
            self.unindex(uuid, *job);
        }
        if self.waiting.is_empty() {
            self.places.clear();
            self.parked.clear();
        }
        read
    }

    pub(super) fn fill(&mut self) {
        while self.tasks.len() < MAX_READS
            && let Some(read) = self.next_waiting()
        {
            let connect = self.connect.clone();
            let task = read.clone();
            self.spawn(read, async move { perform(&connect, task).await });
        }
    }

    pub(super) fn spawn(
        &mut self,
        read: Read,
        task: impl Future<Output = ReadDone> + Send + 'static,
    ) {
        let handle = self.tasks.spawn(task);
        self.running.insert(handle.id(), read);
    }

    /// The next read to finish.
    pub(super) async fn next(&mut self) -> Option<ReadDone> {
        let joined = self.tasks.join_next_with_id().await?;
        let done = match joined {
            Ok((id, done)) => {
                self.running.remove(&id);
                done
            }
            Err(e) => {
                let read = self.running.remove(&e.id())?;
                tracing::error!("a read of Connect failed unexpectedly ({read:?}): {e}");
                let error = ConnectError::Transport(format!("the read stopped: {e}"));
                ReadDone {
                    result: ReadResult::failed(&read, error),
                    read,
                }
            }
        };
        self.fill();
        Some(done)
    }
}

/// Carries out one read.
pub(super) async fn perform(connect: &ConnectClient, read: Read) -> ReadDone {
    let result = match &read {
        Read::Job { uuid, job } => ReadResult::Job(Box::new(connect.job(uuid, *job).await)),
        Read::Jobs { uuid, after } => ReadResult::Jobs(connect.jobs_after(uuid, *after).await),
        Read::Feed { uuid, from, .. } => ReadResult::Feed(connect.feed(uuid, *from).await),
        Read::Queue { uuid } => ReadResult::Queue(
            async {
                let queue = connect.queue(uuid).await?;
                let downloads = connect.download_queue(uuid).await?;
                Ok((queue, downloads))
            }
            .await,
        ),
        Read::Cameras { uuid } => ReadResult::Cameras(connect.cameras(uuid).await),
        Read::Supported { uuid } => ReadResult::Supported(connect.supported_commands(uuid).await),
        Read::Files { uuid } => ReadResult::Files(connect.print_files(uuid).await),
        Read::Storages { uuid } => ReadResult::Storages(connect.storage_list(uuid).await),
        Read::Preview { url, .. } => ReadResult::Preview(connect.preview(url).await),
        Read::Snapshot {
            uuid,
            camera,
            etag,
            last_modified,
        } => ReadResult::Snapshot(
            connect
                .snapshot(camera, uuid, etag.as_deref(), last_modified.as_deref())
                .await,
        ),
        Read::EndPicture { uuid, camera, .. } => {
            ReadResult::Snapshot(connect.snapshot(camera, uuid, None, None).await)
        }
        Read::Stats {
            uuid,
            kind,
            from,
            to,
        } => ReadResult::Stats(
            connect
                .printer_stats(uuid, kind.endpoint(), *from, *to)
                .await,
        ),
        Read::PrinterTypes => ReadResult::PrinterTypes(connect.printer_types().await),
        Read::Version => ReadResult::Version(connect.version().await),
        Read::Unseen => ReadResult::Unseen(connect.unseen_notifications().await),
        Read::Notifications { after } => {
            ReadResult::Notifications(connect.notifications_after(*after).await)
        }
    };
    ReadDone { read, result }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::connect::TokenSource;

    /// A runner whose reads would go nowhere (port 9).
    fn runner() -> ReadRunner {
        let connect = ConnectClient::new(
            "http://127.0.0.1:9",
            TokenSource::None,
            Duration::from_secs(1),
        )
        .unwrap();
        ReadRunner::new(connect)
    }

    #[tokio::test]
    pub(super) async fn a_read_whose_task_panics_comes_back_failed() {
        let mut reads = runner();
        let read = Read::Snapshot {
            uuid: "u".into(),
            camera: "5".into(),
            etag: None,
            last_modified: None,
        };
        reads.spawn(read.clone(), async { panic!("a bug in a read") });
        let done = reads.next().await.expect("the read comes back");
        assert_eq!(done.read, read);
        assert!(matches!(
            done.result,
            ReadResult::Snapshot(Err(ConnectError::Transport(_)))
        ));
        assert!(reads.is_idle());
    }

    #[tokio::test]
    async fn reads_go_account_first_then_fresh_and_every_third_turn_printer_by_printer() {
        let mut reads = runner();
        let busy = Read::Version;
        for _ in 0..MAX_READS {
            reads.spawn(busy.clone(), std::future::pending());
        }
        let uuid = |p: &str| p.to_string();
        let cameras = |p: &str| Read::Cameras { uuid: uuid(p) };
        let queue = |p: &str| Read::Queue { uuid: uuid(p) };
        let feed = |p: &str| Read::Feed {
            uuid: uuid(p),
            from: None,
            rewound: false,
        };
        let catch_up = Read::Jobs {
            uuid: uuid("b"),
            after: Some(3),
        };
        let asked = [
            cameras("a"),
            cameras("b"),
            feed("a"),
            queue("b"),
            queue("a"),
            catch_up.clone(),
            cameras("c"),
            feed("c"),
            Read::Jobs {
                uuid: uuid("b"),
                after: None,
            },
            Read::Unseen,
        ];
        for read in asked.iter().cloned() {
            reads.start(read, false);
        }
        // Cameras and queues of a, b and c; b's first job list is not paid for by the budget.
        assert_eq!(reads.extras_waiting(), 5);
        let order: Vec<Read> = std::iter::from_fn(|| reads.next_waiting()).collect();
        let expected = vec![
            Read::Unseen,
            feed("a"),
            catch_up,
            cameras("a"),
            feed("c"),
            queue("a"),
            cameras("b"),
            queue("b"),
            Read::Jobs {
                uuid: uuid("b"),
                after: None,
            },
            cameras("c"),
        ];
        assert_eq!(order, expected);
        // Once nothing waits, the printers' places start again from the next one asked.
        assert!(reads.places.is_empty());
        reads.start(cameras("c"), false);
        assert_eq!(reads.places.get("c"), Some(&0));
        // A known printer's later reads of the same kinds keep it fresh: they go first.
        reads.start(queue("d"), true);
        assert_eq!(reads.next_waiting(), Some(queue("d")));
    }

    #[tokio::test]
    async fn a_first_job_list_waits_behind_placed_printers_until_its_printer_has_a_place() {
        let mut reads = runner();
        for _ in 0..MAX_READS {
            reads.spawn(Read::Version, std::future::pending());
        }
        let jobs = |p: &str| Read::Jobs {
            uuid: p.into(),
            after: None,
        };
        let cameras = |p: &str| Read::Cameras { uuid: p.into() };
        // Printers a and c only ask their job lists (their cameras wait for the allowance).
        reads.start(jobs("a"), false);
        reads.start(cameras("b"), false);
        reads.start(jobs("b"), false);
        reads.start(jobs("c"), false);
        reads.start(cameras("a"), false);
        let order: Vec<Read> = std::iter::from_fn(|| reads.next_waiting()).collect();
        assert_eq!(
            order,
            [cameras("b"), jobs("b"), jobs("a"), cameras("a"), jobs("c")]
        );
        assert!(reads.parked.is_empty() && reads.places.is_empty());
        // A later job list (not the first) of an unknown printer is a fresh read, not parked.
        let later = Read::Jobs {
            uuid: "d".into(),
            after: Some(3),
        };
        reads.start(jobs("e"), false);
        reads.start(later.clone(), false);
        assert_eq!(reads.next_waiting(), Some(later));
    }

    #[tokio::test]
    async fn statistics_go_when_nothing_else_waits_and_are_no_extras() {
        let mut reads = runner();
        for _ in 0..MAX_READS {
            reads.spawn(Read::Version, std::future::pending());
        }
        let stats = Read::Stats {
            uuid: "a".into(),
            kind: crate::bridge::reads::StatsKind::Jobs,
            from: 0,
            to: 1,
        };
        let cameras = Read::Cameras { uuid: "b".into() };
        let feed = Read::Feed {
            uuid: "c".into(),
            from: None,
            rewound: false,
        };
        for read in [stats.clone(), cameras.clone(), feed.clone()] {
            reads.start(read, false);
        }
        assert_eq!(reads.extras_waiting(), 1, "the cameras only");
        let order: Vec<Read> = std::iter::from_fn(|| reads.next_waiting()).collect();
        assert_eq!(order, [feed, cameras, stats]);
    }

    #[tokio::test]
    async fn a_withdrawn_read_leaves_the_line_and_only_it() {
        let mut reads = runner();
        for _ in 0..MAX_READS {
            reads.spawn(Read::Version, std::future::pending());
        }
        let record = |job| Read::Job {
            uuid: "a".into(),
            job,
        };
        let cameras = Read::Cameras { uuid: "a".into() };
        for read in [record(1), record(2), cameras.clone()] {
            reads.start(read, false);
        }
        reads.withdraw(&record(1));
        // Not waiting (any more): nothing happens.
        reads.withdraw(&record(1));
        reads.withdraw(&record(3));
        let order: Vec<Read> = std::iter::from_fn(|| reads.next_waiting()).collect();
        assert_eq!(order, [record(2), cameras]);
        // A read taken from the line leaves the index too: asked for twice, one withdrawn
        // after the first went, the second is the one withdrawn.
        reads.start(record(4), false);
        reads.start(record(4), false);
        assert_eq!(reads.next_waiting(), Some(record(4)));
        reads.withdraw(&record(4));
        assert_eq!(reads.next_waiting(), None);
        assert!(reads.job_reads.is_empty());
    }
}
