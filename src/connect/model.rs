//! Serde types for Prusa Connect's `/app` API, parsed tolerantly: every field is optional
//! unless a response is useless without it, unknown fields are ignored, and unknown enum
//! values are kept as `Other(String)` instead of failing the whole response.

use serde::Deserialize;
use serde_json::Value;

/// An enum of Connect strings that keeps values it does not know.
macro_rules! connect_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)+
            /// A value this version does not know; kept as Connect sent it.
            Other(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Other(s) => s,
                }
            }

            pub fn parse(s: &str) -> Self {
                match s {
                    $($text => Self::$variant,)+
                    other => Self::Other(other.to_string()),
                }
            }

            /// Every known value, in declaration order.
            pub const KNOWN: &'static [&'static str] = &[$($text),+];
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as ::serde::Deserialize>::deserialize(d)?;
                Ok(Self::parse(&s))
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

mod account;
mod commands;
mod feed;
mod files;
mod job;
mod printer;

pub use account::{
    Notification, NotificationPage, PrinterType, PrinterTypes, ServerVersion, Unseen,
};
pub use commands::{CommandArg, CommandRecord, CommandResult, SupportedCommand, SupportedCommands};
pub use feed::{EventPage, FeedEvent};
pub use files::{Camera, CameraList, Opaque, PrintFile, print_files};
pub use job::{
    Cancelable, CancelableObject, Job, JobData, JobFile, JobList, JobState, PlannedJob, Queue,
};
pub use printer::{
    Chamber, DialogInfo, Filament, JobInfo, Printer, PrinterState, Temperatures, Tool,
};

/// `{"<key>": [...], "pager": {...}}`: every collection has this shape.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Pager {
    pub limit: Option<u64>,
    pub offset: Option<u64>,
    pub total: Option<u64>,
    pub from: Option<f64>,
    pub to: Option<f64>,
}

/// Connect's JSON error body: `{"code": "UNAUTHORIZED", "message": "..."}`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ApiError {
    pub code: Option<String>,
    pub message: Option<String>,
    pub reason: Option<Value>,
}

#[cfg(test)]
mod tests;
