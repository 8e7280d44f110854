//! Serde types for Prusa Connect's `/app` API, parsed tolerantly: every field is optional
//! unless a response is useless without it, unknown fields are ignored, and unknown enum
//! values are kept as `Other(String)` instead of failing the whole response.

// Declared first: the files after it use the macro.
#[macro_use]
mod connect_enum;

mod account;
mod commands;
mod envelope;
mod feed;
mod files;
mod job;
mod printer;

pub use account::{
    Notification, NotificationPage, PrinterType, PrinterTypes, ServerVersion, Unseen,
};
pub use commands::{CommandArg, CommandRecord, CommandResult, SupportedCommand, SupportedCommands};
pub use envelope::{ApiError, Pager};
pub use feed::{EventPage, FeedEvent};
pub use files::{Camera, CameraList, Opaque, PrintFile, Storage, print_files, storages};
pub use job::{
    Cancelable, CancelableObject, Job, JobData, JobFile, JobList, JobState, PlannedJob, Queue,
};
pub use printer::{
    Chamber, DialogInfo, Filament, JobInfo, Printer, PrinterState, Temperatures, Tool,
};

#[cfg(test)]
mod tests;
