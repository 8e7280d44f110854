//! Spoolman (a self-hosted filament inventory, `spoolman.url`): the spools a printer can be
//! given (`P/spool`, the "Spool" select), and the filament each ended job used, reported to
//! its printer's spool exactly once ([`ledger`], [`worker`]).
//!
//! Spoolman's API as its source has it: `GET /api/v1/spool` lists the spools not archived,
//! `GET /api/v1/spool/{id}` reads one, `PUT /api/v1/spool/{id}/use` with `{"use_weight": g}`
//! adds to its used weight and answers the spool. Fields it has no value for are left out.

pub mod client;
pub mod ledger;
pub mod worker;

use serde_json::Value;

pub use client::{SpoolmanClient, SpoolmanError};
pub use ledger::{Ledger, Use};
pub use worker::{Report, SpoolmanEvent, SpoolmanLink};

/// Spools offered in the select at most (the lowest ids): every printer's discovery carries
/// the list, and a select of hundreds is no use on a phone.
pub const MAX_SPOOLS: usize = 100;
/// A spool's label is cut to this many characters.
const MAX_LABEL_CHARS: usize = 60;
/// The select's option that leaves a printer without a spool.
pub const NO_SPOOL: &str = "No spool";

/// A spool as the gateway shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Spool {
    pub id: u64,
    /// `#<id> <vendor> <filament name> (<material>)`: stable while the spool is used (its
    /// remaining weight is not in it), so using a spool does not change every printer's
    /// discovery.
    pub label: String,
    pub remaining_g: Option<f64>,
    /// Grams used so far: what tells whether a report whose answer was lost went through.
    pub used_g: Option<f64>,
}

impl Spool {
    /// One spool of Spoolman's JSON; `None` without a positive integer `id`. Every other
    /// field may be missing or of another type.
    pub fn parse(v: &Value) -> Option<Spool> {
        let id = v.get("id")?.as_u64().filter(|id| *id > 0)?;
        let grams = |key: &str| v.get(key).and_then(Value::as_f64).filter(|g| g.is_finite());
        Some(Spool {
            id,
            label: label(id, v.get("filament")),
            remaining_g: grams("remaining_weight").map(|g| g.max(0.0)),
            used_g: grams("used_weight"),
        })
    }

    /// `GET /api/v1/spool`'s array: the spools by id, at most [`MAX_SPOOLS`]. Anything else
    /// than an array is an error; an item without an id is left out.
    pub fn parse_list(body: &Value) -> Result<Vec<Spool>, String> {
        let items = body
            .as_array()
            .ok_or_else(|| format!("the spool list is not a JSON array but {}", kind(body)))?;
        let mut spools: Vec<Spool> = items.iter().filter_map(Spool::parse).collect();
        spools.sort_by_key(|s| s.id);
        spools.dedup_by_key(|s| s.id);
        spools.truncate(MAX_SPOOLS);
        Ok(spools)
    }

    /// The id a select option or a `P/spool` payload names: `12`, `"12"`, `#12 ...`; `Ok(None)`
    /// for none (empty, `none`, `null`, `0`, [`NO_SPOOL`]).
    pub fn id_of(payload: &str) -> Result<Option<u64>, String> {
        let text = payload.trim().trim_matches('"').trim();
        if text.is_empty()
            || text == "0"
            || text.eq_ignore_ascii_case("none")
            || text.eq_ignore_ascii_case("null")
            || text == NO_SPOOL
        {
            return Ok(None);
        }
        let digits = match text.strip_prefix('#') {
            Some(rest) => rest.split_whitespace().next().unwrap_or_default(),
            None => text,
        };
        match digits.parse::<u64>() {
            Ok(id) if id > 0 => Ok(Some(id)),
            _ => {
                let shown: String = payload.chars().take(60).collect();
                Err(format!(
                    "{shown:?} is not a Spoolman spool id (a whole number like 12; empty or \
                     \"none\" for no spool)"
                ))
            }
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// See [`Spool::label`].
fn label(id: u64, filament: Option<&Value>) -> String {
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|s| !s.is_empty())
    };
    let vendor = text(
        filament
            .and_then(|f| f.get("vendor"))
            .and_then(|v| v.get("name")),
    );
    let name = text(filament.and_then(|f| f.get("name")));
    let material = text(filament.and_then(|f| f.get("material")));
    let mut label = format!("#{id}");
    for part in [&vendor, &name].into_iter().flatten() {
        label.push(' ');
        label.push_str(part);
    }
    match (&material, &name) {
        // "PLA Galaxy Black" says its material already ("PETG Black" is no PET).
        (Some(m), Some(n)) if n.split(' ').any(|word| word.eq_ignore_ascii_case(m)) => {}
        (Some(m), _) => label.push_str(&format!(" ({m})")),
        (None, _) => {}
    }
    if label.chars().count() > MAX_LABEL_CHARS {
        label = label.chars().take(MAX_LABEL_CHARS - 1).collect::<String>() + "…";
    }
    label
}

/// Grams of filament a job used, as Spoolman is to be told: Connect's weight is the whole
/// file's, so a job that did not finish used about its progress' share of it. `None` when
/// there is nothing to report.
pub fn grams_used(finished: &Value) -> Option<f64> {
    let weight = finished["filament_g"].as_f64().filter(|g| *g > 0.0)?;
    let share = match finished["event_type"].as_str()? {
        "FIN_OK" => 1.0,
        _ => finished["progress"].as_f64()?.clamp(0.0, 100.0) / 100.0,
    };
    let grams = (weight * share * 100.0).round() / 100.0;
    (grams.is_finite() && grams > 0.0).then_some(grams)
}

#[cfg(test)]
mod tests;
