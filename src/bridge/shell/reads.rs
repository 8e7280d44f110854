//! The reads the core asks for, carried out concurrently (at most [`MAX_READS`] at a time).

use std::collections::{HashMap, VecDeque};
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
    waiting: VecDeque<Read>,
}

impl ReadRunner {
    pub(super) fn new(connect: ConnectClient) -> ReadRunner {
        ReadRunner {
            connect,
            tasks: JoinSet::new(),
            running: HashMap::new(),
            waiting: VecDeque::new(),
        }
    }

    pub(super) fn is_idle(&self) -> bool {
        self.tasks.is_empty()
    }

    pub(super) fn abort(&mut self) {
        self.waiting.clear();
        self.tasks.abort_all();
    }

    pub(super) fn start(&mut self, read: Read) {
        self.waiting.push_back(read);
        self.fill();
    }

    pub(super) fn fill(&mut self) {
        while self.tasks.len() < MAX_READS
            && let Some(read) = self.waiting.pop_front()
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

    #[tokio::test]
    pub(super) async fn a_read_whose_task_panics_comes_back_failed() {
        let connect = ConnectClient::new(
            "http://127.0.0.1:9",
            TokenSource::None,
            Duration::from_secs(1),
        )
        .unwrap();
        let mut reads = ReadRunner::new(connect);
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
}
