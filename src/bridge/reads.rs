//! The reads the core asks for and their results: plain data, carried out by the shell.

use crate::connect::client::{ConnectError, FeedBatch, Snapshot};
use crate::connect::model::{
    CameraList, Job, Notification, PrintFile, PrinterTypes, Queue, ServerVersion, Storage,
    SupportedCommands, Unseen,
};

/// A request to Connect that a decision needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    /// A job's record: the current job's detail, or how an ended job ended.
    Job {
        uuid: String,
        job: i64,
    },
    /// The printer's job list, newest first, down to job `after` (`None`: only the newest).
    Jobs {
        uuid: String,
        after: Option<i64>,
    },
    /// The printer's event feed from `from` (`rewound`: after Connect's clock went back).
    Feed {
        uuid: String,
        from: Option<f64>,
        rewound: bool,
    },
    /// The job queue and the download queue (one item each; the count is the pager's total).
    Queue {
        uuid: String,
    },
    Cameras {
        uuid: String,
    },
    /// The printer's `supported-commands`.
    Supported {
        uuid: String,
    },
    /// The files the printer can print.
    Files {
        uuid: String,
    },
    /// The printer's storages (free space).
    Storages {
        uuid: String,
    },
    /// Job `job`'s thumbnail, at Connect's `preview_url`.
    Preview {
        uuid: String,
        job: i64,
        url: String,
    },
    Snapshot {
        uuid: String,
        camera: String,
        etag: Option<String>,
        last_modified: Option<String>,
    },
    /// The camera's picture as job `job` ended (for `P/job/finished/picture`).
    EndPicture {
        uuid: String,
        camera: String,
        job: i64,
    },
    /// Connect's statistics of the printer from `from` to `to` (Unix seconds), to seed its
    /// totals.
    Stats {
        uuid: String,
        kind: StatsKind,
        from: i64,
        to: i64,
    },
    PrinterTypes,
    Version,
    Unseen,
    /// The account's notifications, newest first, down to id `after` (`None`: one page).
    Notifications {
        after: Option<i64>,
    },
}

impl Read {
    /// The printer the read is about, if any.
    pub fn uuid(&self) -> Option<&str> {
        match self {
            Read::Job { uuid, .. }
            | Read::Jobs { uuid, .. }
            | Read::Feed { uuid, .. }
            | Read::Queue { uuid }
            | Read::Cameras { uuid }
            | Read::Supported { uuid }
            | Read::Files { uuid }
            | Read::Storages { uuid }
            | Read::Preview { uuid, .. }
            | Read::Snapshot { uuid, .. }
            | Read::EndPicture { uuid, .. }
            | Read::Stats { uuid, .. } => Some(uuid),
            Read::PrinterTypes | Read::Version | Read::Unseen | Read::Notifications { .. } => None,
        }
    }
}

/// Connect's statistics of a printer, one endpoint each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StatsKind {
    /// Jobs by outcome per day (`jobs_success`).
    Jobs,
    /// Material used (`material_quantity`).
    Material,
    /// Time printing and not (`printing_not_printing`).
    Printing,
}

impl StatsKind {
    pub const ALL: [StatsKind; 3] = [StatsKind::Jobs, StatsKind::Material, StatsKind::Printing];

    /// The endpoint's last path segment.
    pub fn endpoint(self) -> &'static str {
        match self {
            StatsKind::Jobs => "jobs_success",
            StatsKind::Material => "material_quantity",
            StatsKind::Printing => "printing_not_printing",
        }
    }
}

/// What a read brought back.
#[derive(Debug)]
pub enum ReadResult {
    /// Boxed: a job's detail is far larger than the other results.
    Job(Box<Result<Job, ConnectError>>),
    /// Oldest first.
    Jobs(Result<Vec<Job>, ConnectError>),
    Feed(Result<FeedBatch, ConnectError>),
    Queue(Result<(Queue, Queue), ConnectError>),
    Cameras(Result<CameraList, ConnectError>),
    Supported(Result<SupportedCommands, ConnectError>),
    Files(Result<Vec<PrintFile>, ConnectError>),
    Storages(Result<Vec<Storage>, ConnectError>),
    Preview(Result<Vec<u8>, ConnectError>),
    Snapshot(Result<Snapshot, ConnectError>),
    /// Any JSON: its shape is not documented.
    Stats(Result<serde_json::Value, ConnectError>),
    PrinterTypes(Result<PrinterTypes, ConnectError>),
    Version(Result<ServerVersion, ConnectError>),
    Unseen(Result<Unseen, ConnectError>),
    Notifications(Result<Vec<Notification>, ConnectError>),
}

impl ReadResult {
    /// The failure of `read` (its task ended without an answer).
    pub fn failed(read: &Read, error: ConnectError) -> ReadResult {
        match read {
            Read::Job { .. } => ReadResult::Job(Box::new(Err(error))),
            Read::Jobs { .. } => ReadResult::Jobs(Err(error)),
            Read::Feed { .. } => ReadResult::Feed(Err(error)),
            Read::Queue { .. } => ReadResult::Queue(Err(error)),
            Read::Cameras { .. } => ReadResult::Cameras(Err(error)),
            Read::Supported { .. } => ReadResult::Supported(Err(error)),
            Read::Files { .. } => ReadResult::Files(Err(error)),
            Read::Storages { .. } => ReadResult::Storages(Err(error)),
            Read::Preview { .. } => ReadResult::Preview(Err(error)),
            Read::Snapshot { .. } | Read::EndPicture { .. } => ReadResult::Snapshot(Err(error)),
            Read::Stats { .. } => ReadResult::Stats(Err(error)),
            Read::PrinterTypes => ReadResult::PrinterTypes(Err(error)),
            Read::Version => ReadResult::Version(Err(error)),
            Read::Unseen => ReadResult::Unseen(Err(error)),
            Read::Notifications { .. } => ReadResult::Notifications(Err(error)),
        }
    }
}

/// A read and its result.
#[derive(Debug)]
pub struct ReadDone {
    pub read: Read,
    pub result: ReadResult,
}
