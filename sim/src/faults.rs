//! Misbehaviours of the server: a fault, and the rules that say which requests get it.

use std::time::Duration;

/// A misbehaviour of the server. Connect's faults are set with
/// [`Simulator::set_fault`](crate::Simulator::set_fault) (every `/app/` request) or
/// [`Simulator::add_fault`](crate::Simulator::add_fault) (some of them, see [`FaultRule`]); the
/// account server has its own switch,
/// [`Simulator::set_account_fault`](crate::Simulator::set_account_fault).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and a JSON error body; the request has no effect.
    Status(u16),
    /// Answer 429 with `Retry-After`; the request has no effect.
    TooManyRequests { retry_after_s: u64 },
    /// Sleep this long, then answer normally (a client with a shorter timeout gives up first).
    Delay(Duration),
    /// Answer 200 with `{"printers": [oops`; the request has no effect.
    MalformedJson,
    /// Answer normally but with only the first half of the body.
    TruncatedJson,
    /// Close the connection without answering: not even a status line is sent, so the client
    /// sees a transport error ("connection closed before message completed"). The request
    /// has no effect.
    ConnectionReset,
}

impl Fault {
    /// The fault as `/_sim/fault` takes it, e.g. `{"kind": "status", "status": 503}`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Fault::Status(status) => json!({ "kind": "status", "status": status }),
            Fault::TooManyRequests { retry_after_s } => {
                json!({ "kind": "too_many_requests", "retry_after_s": retry_after_s })
            }
            Fault::Delay(d) => {
                json!({ "kind": "delay", "ms": u64::try_from(d.as_millis()).unwrap_or(u64::MAX) })
            }
            Fault::MalformedJson => json!({ "kind": "malformed_json" }),
            Fault::TruncatedJson => json!({ "kind": "truncated_json" }),
            Fault::ConnectionReset => json!({ "kind": "connection_reset" }),
        }
    }
}

/// Which `/app/` requests a [`FaultRule`] hits, by path (the query string is not looked at).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PathFilter {
    /// Every `/app/` request.
    #[default]
    Any,
    /// Only this exact path, e.g. `/app/printers` (the fleet list, not a printer's pages).
    Exactly(String),
    /// Paths containing this text, e.g. `/events` (every printer's feed).
    Containing(String),
}

impl PathFilter {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathFilter::Any => true,
            PathFilter::Exactly(p) => path == p,
            PathFilter::Containing(part) => path.contains(part.as_str()),
        }
    }
}

/// A fault for some of Connect's requests: "the next 3 list requests", "every feed request".
/// `FaultRule::new(Fault::Status(503)).on_path("/app/printers").times(3)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    pub fault: Fault,
    pub paths: PathFilter,
    /// How many more requests it hits; `None`: until it is cleared. A rule that reaches 0 is
    /// dropped.
    pub remaining: Option<u32>,
}

impl FaultRule {
    /// Every `/app/` request, until cleared.
    pub fn new(fault: Fault) -> FaultRule {
        FaultRule {
            fault,
            paths: PathFilter::Any,
            remaining: None,
        }
    }

    /// Only requests for exactly `path` (e.g. `/app/printers`).
    pub fn on_path(mut self, path: &str) -> FaultRule {
        self.paths = PathFilter::Exactly(path.to_string());
        self
    }

    /// Only requests whose path contains `part` (e.g. `/events`).
    pub fn on_paths_containing(mut self, part: &str) -> FaultRule {
        self.paths = PathFilter::Containing(part.to_string());
        self
    }

    /// Only the next `n` matching requests.
    pub fn times(mut self, n: u32) -> FaultRule {
        self.remaining = Some(n);
        self
    }

    /// Whether it hits a request for `path`; counts the hit down when it does.
    pub(crate) fn hit(&mut self, path: &str) -> bool {
        if self.remaining == Some(0) || !self.paths.matches(path) {
            return false;
        }
        if let Some(n) = &mut self.remaining {
            *n -= 1;
        }
        true
    }
}
