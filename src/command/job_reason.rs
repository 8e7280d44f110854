//! A job's failure reason from `B/P/job/reason`: tags Connect knows and a comment.

use serde_json::{Map, Value, json};

use super::request::{CommandError, CommandReply, CommandRequest, ErrorCode};
use crate::message::MAX_COMMAND_BYTES;

/// Failure reasons Connect accepts on a job (`PATCH /jobs/{id}`).
pub const REASON_TAGS: &[&str] = &[
    "CLOGGED_NOZZLE",
    "NON_ADHERENT_BED",
    "UNDER_EXTRUSION",
    "OVER_EXTRUSION",
    "STRINGING_OR_OOZING",
    "GAPS_IN_THIN_WALLS",
    "OVERHEATING",
    "LAYER_SHIFTING",
    "SPAGHETTI_MONSTER",
    "LAYER_SEPARATION",
    "WARPING",
    "POOR_BRIDGING",
    "OTHER",
];

/// The name replies to `B/P/job/reason` carry.
pub const SET_JOB_REASON: &str = "SET_JOB_REASON";

/// A message on `B/P/job/reason`: `{"job_id": optional, "tags": [...], "other": "..."}`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobReason {
    pub job_id: Option<i64>,
    pub reason: Value,
    pub request: CommandRequest,
}

pub fn parse_job_reason(payload: &[u8]) -> Result<JobReason, CommandReply> {
    let mut request = CommandRequest {
        command: SET_JOB_REASON.into(),
        kwargs: Map::new(),
        transaction: None,
    };
    let fail = |request: &CommandRequest, code, msg: String| {
        CommandReply::error(request, CommandError::new(code, msg))
    };
    if payload.len() > MAX_COMMAND_BYTES {
        return Err(fail(
            &request,
            ErrorCode::InvalidPayload,
            "the message is too large".into(),
        ));
    }
    let Ok(Value::Object(mut o)) = serde_json::from_slice::<Value>(payload) else {
        return Err(fail(
            &request,
            ErrorCode::InvalidPayload,
            "send JSON like {\"tags\": [\"WARPING\"], \"other\": \"comment\", \"job_id\": 123}"
                .into(),
        ));
    };
    request.transaction = o
        .remove("transaction")
        .filter(|t| t.is_string() || t.is_number());
    let refuse = |e: CommandError| CommandReply::error(&request, e);
    let job_id = take_job_id(&mut o).map_err(refuse)?;
    let tags = take_tags(&mut o).map_err(refuse)?;
    let other = take_other(&mut o).map_err(refuse)?;
    if let Some(extra) = o.keys().next() {
        return Err(fail(
            &request,
            ErrorCode::InvalidPayload,
            format!("unknown field {extra:?}: use job_id, tags, other and transaction"),
        ));
    }
    if tags.is_empty() && other.is_none() {
        return Err(fail(
            &request,
            ErrorCode::InvalidArgument,
            "give at least one tag or an \"other\" comment".into(),
        ));
    }
    let mut reason = json!({"tag": tags});
    if let Some(other) = other {
        reason["other"] = json!(other);
    }
    request.kwargs.insert("reason".into(), reason.clone());
    Ok(JobReason {
        job_id,
        reason,
        request,
    })
}

fn invalid_argument(message: &str) -> CommandError {
    CommandError::new(ErrorCode::InvalidArgument, message)
}

/// `job_id`: a whole number, or absent for the printer's last job.
fn take_job_id(o: &mut Map<String, Value>) -> Result<Option<i64>, CommandError> {
    match o.remove("job_id") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(id) => Ok(Some(id)),
            None => Err(invalid_argument("\"job_id\" must be a whole number")),
        },
    }
}

/// `tags`: a list of [`REASON_TAGS`] in any case, upper-cased.
fn take_tags(o: &mut Map<String, Value>) -> Result<Vec<Value>, CommandError> {
    let tags = match o.remove("tags") {
        Some(Value::Array(tags)) => tags,
        None => Vec::new(),
        Some(_) => return Err(invalid_argument("\"tags\" must be a list")),
    };
    let mut checked = Vec::new();
    for tag in tags {
        match tag.as_str().map(str::to_ascii_uppercase) {
            Some(t) if REASON_TAGS.contains(&t.as_str()) => checked.push(Value::String(t)),
            _ => {
                return Err(invalid_argument(&format!(
                    "unknown tag {tag}; tags are {}",
                    REASON_TAGS.join(", ")
                )));
            }
        }
    }
    Ok(checked)
}

/// `other`: the comment, as text.
fn take_other(o: &mut Map<String, Value>) -> Result<Option<String>, CommandError> {
    match o.remove("other") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid_argument("\"other\" must be text")),
    }
}
