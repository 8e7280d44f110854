//! The requests the simulator received, as tests read them.

use std::time::Duration;

use serde::Serialize;

use super::faults::Fault;

/// One HTTP request the simulator received (admin requests under `/_sim/` excluded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?`; empty when there is none.
    pub query: String,
    pub authorization: Option<String>,
    /// The body as text (invalid UTF-8 replaced).
    pub body: String,
    /// When it arrived, since the simulator was created (JSON: seconds as a float), so tests
    /// can measure a client's backoff.
    #[serde(serialize_with = "as_secs")]
    pub at: Duration,
    /// The Connect fault it was answered with, if any (the account server's are not shown).
    #[serde(serialize_with = "fault_json")]
    pub fault: Option<Fault>,
    /// The status it was answered with (`None` while it is being handled).
    pub status: Option<u16>,
    /// How long the simulator took to answer it, from the moment it was read (JSON: seconds).
    #[serde(serialize_with = "opt_secs")]
    pub took: Option<Duration>,
    /// Numbers requests in arrival order.
    pub seq: u64,
}

fn opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    d.map(|d| d.as_secs_f64()).serialize(s)
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn fault_json<S: serde::Serializer>(f: &Option<Fault>, s: S) -> Result<S::Ok, S::Error> {
    f.as_ref().map(Fault::to_json).serialize(s)
}
