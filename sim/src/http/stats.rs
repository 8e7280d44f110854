//! Connect's statistics of a printer (`/app/stats/printers/{uuid}/...`), in the shapes one
//! public SDK's models give (`connect-api-facts.md`): jobs by outcome per day, material used,
//! time printing and not. `from` and `to` are Unix seconds (both optional: the last 30 days).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::answer::{JsonResult, unix_now, with_printer};
use super::request::{Params, PathArgs};
use crate::Simulator;
use crate::world::{Job, Printer};

const DAY: i64 = 86_400;
/// The longest range answered.
const MAX_DAYS: i64 = 400;

/// The range asked for, and the ended jobs of `printer` in it (by their end).
fn ended_in(params: &Params) -> Result<(i64, i64), crate::error::ApiError> {
    let to = params.int("to")?.unwrap_or_else(unix_now);
    let from = params.int("from")?.unwrap_or(to.saturating_sub(30 * DAY));
    // A day a column: a range of years would be megabytes (and an endless loop for a range
    // of any i64).
    if to.saturating_sub(from) > MAX_DAYS * DAY || from > to {
        return Err(crate::error::ApiError::bad_request(
            "INVALID_RANGE",
            format!("from..to must be at most {MAX_DAYS} days, from before to"),
        ));
    }
    Ok((from, to))
}

fn jobs_ended(printer: &Printer, from: i64, to: i64) -> Vec<Job> {
    printer
        .jobs
        .iter()
        .map(|j| j.as_recorded().into_owned())
        .filter(|j| {
            j.ended_us
                .is_some_and(|end| (from..=to).contains(&end.div_euclid(1_000_000)))
        })
        .collect()
}

fn date(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix.div_euclid(DAY) * DAY)
        .map(|d| d.date().to_string())
        .unwrap_or_default()
}

/// Answers `{"from", "to", "name", "uuid", ...}` of the printer `uuid`, the rest of the
/// keys from `fill` (given the printer and the range).
fn statistics(
    sim: &Simulator,
    uuid: &str,
    params: &Params,
    fill: impl FnOnce(&Printer, i64, i64) -> Vec<(&'static str, Value)>,
) -> JsonResult {
    let (from, to) = ended_in(params)?;
    with_printer(sim, uuid, |p| {
        let mut body = serde_json::Map::new();
        body.insert("from".into(), json!(from));
        body.insert("to".into(), json!(to));
        body.insert("name".into(), json!(p.name));
        body.insert("uuid".into(), json!(p.uuid));
        for (key, value) in fill(p, from, to) {
            body.insert(key.into(), value);
        }
        Json(Value::Object(body))
    })
}

/// `{"from", "to", "name", "uuid", "xAxis": [dates], "time_shift", "series": [{"name":
/// "FIN_OK", "data": [count per date]}, ...]}`.
pub(super) async fn jobs_success(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    params: Params,
) -> JsonResult {
    statistics(&sim, &uuid, &params, |p, from, to| {
        let days: Vec<String> = (from.div_euclid(DAY)..=to.div_euclid(DAY))
            .map(|d| date(d * DAY))
            .collect();
        let jobs = jobs_ended(p, from, to);
        let ended_on = |job: &Job, state: &str, day: &str| {
            job.state == state
                && job
                    .ended_us
                    .map(|e| date(e.div_euclid(1_000_000)))
                    .as_deref()
                    == Some(day)
        };
        let series: Vec<Value> = ["FIN_OK", "FIN_ERROR", "FIN_STOPPED"]
            .iter()
            .map(|state| {
                let data: Vec<usize> = (days.iter())
                    .map(|day| jobs.iter().filter(|j| ended_on(j, state, day)).count())
                    .collect();
                json!({"name": state, "data": data})
            })
            .collect();
        vec![
            ("xAxis", json!(days)),
            ("time_shift", json!(0)),
            ("series", json!(series)),
        ]
    })
}

/// `{"from", "to", "name", "uuid", "data": [{"name": material, "value": grams}]}`.
pub(super) async fn material_quantity(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    params: Params,
) -> JsonResult {
    statistics(&sim, &uuid, &params, |p, from, to| {
        let mut grams: BTreeMap<String, f64> = BTreeMap::new();
        for job in jobs_ended(p, from, to) {
            *grams.entry(job.material.clone()).or_default() += job.weight_g;
        }
        let data: Vec<Value> = grams
            .into_iter()
            .map(|(name, value)| json!({"name": name, "value": value.round() as i64}))
            .collect();
        vec![("data", json!(data))]
    })
}

/// `{"from", "to", "name", "uuid", "data": [{"name": "printing", "value": seconds},
/// {"name": "not_printing", "value": seconds}]}` over the range.
pub(super) async fn printing_not_printing(
    State(sim): State<Simulator>,
    PathArgs(uuid): PathArgs<String>,
    params: Params,
) -> JsonResult {
    statistics(&sim, &uuid, &params, |p, from, to| {
        let printing: f64 = jobs_ended(p, from, to)
            .iter()
            .map(|j| j.time_printing)
            .sum();
        let printing = printing.round() as i64;
        let not_printing = (to - from - printing).max(0);
        let data = json!([{"name": "printing", "value": printing},
            {"name": "not_printing", "value": not_printing}]);
        vec![("data", data)]
    })
}
