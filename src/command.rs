//! Commands from MQTT, pure: `(payload) -> CommandRequest` and validation against the allow
//! list, the printer's `supported-commands` and its state. Every outcome becomes exactly one
//! [`CommandReply`].

mod job_reason;
mod parse;
mod request;
mod validate;

pub use job_reason::{JobReason, REASON_TAGS, SET_JOB_REASON, parse_job_reason};
pub use parse::parse;
pub use request::{CommandError, CommandReply, CommandRequest, ErrorCode};
pub use validate::{ArgLimit, type_limits, validate, validate_with_limits};

pub use crate::message::MAX_COMMAND_BYTES;

#[cfg(test)]
mod tests;
