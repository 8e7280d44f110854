//! A printer's totals (`P/stats`): every job announced on `P/job/finished` counted once,
//! from the very payload announced, and persisted with the record that says it was
//! announced. So a job is counted exactly when it is announced: a crash before the state
//! file is written loses both (the job is announced and counted again after the restart),
//! never one without the other.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::bridge::printer::days::Days;
use crate::bridge::reads::StatsKind;

/// The bucket of filament whose job named no material.
pub const UNKNOWN_MATERIAL: &str = "unknown";
/// Materials kept apart at most; the filament of any further one goes under
/// [`OTHER_MATERIALS`] (a Connect that names a new material with every job must not grow
/// the state file and `P/stats` without end).
const MAX_MATERIALS: usize = 32;
pub const OTHER_MATERIALS: &str = "other";
/// A material's name is cut to this many characters.
const MAX_MATERIAL_CHARS: usize = 40;

/// What is persisted of a printer's totals.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Totals {
    /// When counting began (ISO 8601, UTC): the first time this gateway saw the printer, or
    /// its first start with totals for a printer it knew before.
    pub since: Option<String>,
    pub ok: u64,
    pub failed: u64,
    pub stopped: u64,
    /// Seconds of printing of the jobs counted (a job whose duration Connect did not give
    /// adds none).
    pub print_s: u64,
    /// Grams, total and by material (jobs without a material under [`UNKNOWN_MATERIAL`]).
    pub filament_g: f64,
    pub filament_by_material: BTreeMap<String, f64>,
    /// In Connect's unit (it names no currency).
    pub cost: f64,
    /// `FIN_OK`, `FIN_ERROR` or `FIN_STOPPED`.
    pub last_outcome: Option<String>,
    /// Time per state today and yesterday (UTC days).
    pub days: Days,
    /// What was read of Connect's own statistics to seed the totals (`None`: not seeded).
    pub seeded: Option<Seed>,
}

/// The totals seeded from Connect's statistics of `from..to` (ISO 8601; `to` is the last
/// second before the day counting began, so no job is in both). `read`: the endpoints taken
/// (or that Connect does not have); the others are asked again at the next start.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Seed {
    pub from: Option<String>,
    pub to: Option<String>,
    pub from_unix: i64,
    pub to_unix: i64,
    pub read: Vec<String>,
}

impl Totals {
    /// Counting begins now (`since`, ISO 8601), unless it began before.
    pub fn begin(&mut self, since: Option<String>) {
        if self.since.is_none() {
            self.since = since;
        }
    }

    /// Counts the job `finished` announces (a `P/job/finished` payload). Returns false for a
    /// payload with no outcome this counts (nothing is counted then).
    pub fn count(&mut self, finished: &Value) -> bool {
        let outcome = finished["event_type"].as_str().unwrap_or_default();
        let jobs = match outcome {
            "FIN_OK" => &mut self.ok,
            "FIN_ERROR" => &mut self.failed,
            "FIN_STOPPED" => &mut self.stopped,
            _ => return false,
        };
        *jobs = jobs.saturating_add(1);
        self.last_outcome = Some(outcome.to_string());
        let amount = |key: &str| {
            finished[key]
                .as_f64()
                .filter(|v| v.is_finite() && *v >= 0.0)
        };
        if let Some(seconds) = finished["duration_s"].as_u64() {
            self.print_s = self.print_s.saturating_add(seconds);
        }
        if let Some(grams) = amount("filament_g") {
            self.add_filament(finished["material"].as_str(), grams);
        }
        if let Some(cost) = amount("cost") {
            self.cost += cost;
        }
        true
    }

    /// The reads of Connect's statistics still to make to seed the totals (going back
    /// `backfill` from when counting began, `since`; `now` when that is unknown). Nothing
    /// with `backfill` zero, or once every one was read.
    pub fn seed_reads(
        &mut self,
        backfill: std::time::Duration,
        now: f64,
    ) -> Vec<(StatsKind, i64, i64)> {
        if backfill.is_zero() && self.seeded.is_none() {
            return Vec::new();
        }
        let since = self
            .since
            .as_deref()
            .and_then(unix_of)
            .unwrap_or(now as i64);
        let seed = self.seeded.get_or_insert_with(|| {
            // Whole (UTC) days before the day counting began: Connect's statistics are by
            // day, and a job in both the seed and the count would count twice. The first
            // day's jobs before the gateway saw the printer are in neither.
            let day = 86_400;
            let to = since.div_euclid(day) * day - 1;
            let back = backfill.as_secs().div_ceil(day as u64).max(1);
            let from = (to + 1).saturating_sub(back.min(i64::MAX as u64 / 2) as i64 * day);
            Seed {
                from: crate::payloads::iso(from as f64),
                to: crate::payloads::iso(to as f64),
                from_unix: from,
                to_unix: to,
                read: Vec::new(),
            }
        });
        StatsKind::ALL
            .into_iter()
            .filter(|k| !seed.read.iter().any(|r| r == k.endpoint()))
            .map(|k| (k, seed.from_unix, seed.to_unix))
            .collect()
    }

    /// Adds what Connect's statistics `kind` say (`body`; `None`: Connect does not have
    /// them). Returns false when the body says nothing this understands (nothing added; the
    /// endpoint counts as read, so it is not asked again).
    pub fn seed_with(&mut self, kind: StatsKind, body: Option<&Value>) -> bool {
        let Some(seed) = self.seeded.as_mut() else {
            return false;
        };
        if seed.read.iter().any(|r| r == kind.endpoint()) {
            return true; // taken already (a read asked twice)
        }
        seed.read.push(kind.endpoint().to_string());
        let Some(body) = body else {
            return true;
        };
        match kind {
            StatsKind::Jobs => self.seed_jobs(body),
            StatsKind::Material => self.seed_material(body),
            StatsKind::Printing => self.seed_printing(body),
        }
    }

    /// `series: [{name: FIN_OK | FIN_ERROR | FIN_STOPPED, data: [count per day]}]`.
    fn seed_jobs(&mut self, body: &Value) -> bool {
        for series in body["series"].as_array().into_iter().flatten() {
            let count: u64 = (series["data"].as_array().into_iter().flatten())
                .filter_map(Value::as_u64)
                .fold(0, u64::saturating_add);
            let jobs = match series["name"].as_str() {
                Some("FIN_OK") => &mut self.ok,
                Some("FIN_ERROR") => &mut self.failed,
                Some("FIN_STOPPED") => &mut self.stopped,
                _ => continue,
            };
            *jobs = jobs.saturating_add(count);
        }
        body["series"].is_array()
    }

    /// `data: [{name: material, value: grams}]`.
    fn seed_material(&mut self, body: &Value) -> bool {
        for item in body["data"].as_array().into_iter().flatten() {
            let name = item["name"].as_str().or(item["material"].as_str());
            let grams = item["value"].as_f64().or(item["weight"].as_f64());
            let (Some(name), Some(grams)) = (name, grams.filter(|g| g.is_finite() && *g >= 0.0))
            else {
                continue;
            };
            self.add_filament(Some(name), grams);
        }
        body["data"].is_array()
    }

    /// `data: [{name: "printing", value: seconds}, {name: "not_printing", ...}]`.
    fn seed_printing(&mut self, body: &Value) -> bool {
        let items = body["data"].as_array().into_iter().flatten();
        let printing = items
            .filter(|i| {
                i["name"].as_str().map(str::to_ascii_lowercase).as_deref() == Some("printing")
            })
            .find_map(|i| i["value"].as_u64());
        if let Some(seconds) = printing {
            self.print_s = self.print_s.saturating_add(seconds);
        }
        printing.is_some()
    }

    /// `grams` of `material` (none or empty: [`UNKNOWN_MATERIAL`]).
    fn add_filament(&mut self, material: Option<&str>, grams: f64) {
        self.filament_g += grams;
        let name: String = (material.map(str::trim).filter(|m| !m.is_empty()))
            .unwrap_or(UNKNOWN_MATERIAL)
            .chars()
            .take(MAX_MATERIAL_CHARS)
            .collect();
        self.material_grams(name, grams);
    }

    /// Adds `grams` to `name`'s (or, beyond [`MAX_MATERIALS`], to [`OTHER_MATERIALS`]).
    fn material_grams(&mut self, name: String, grams: f64) {
        let known = self.filament_by_material.contains_key(&name);
        let name = if known || self.filament_by_material.len() < MAX_MATERIALS - 1 {
            name
        } else {
            OTHER_MATERIALS.to_string()
        };
        *self.filament_by_material.entry(name).or_default() += grams;
    }

    /// The counts and amounts, to tell a change.
    pub fn numbers(&self) -> (u64, u64, u64, u64, f64, f64) {
        (
            self.ok,
            self.failed,
            self.stopped,
            self.print_s,
            self.filament_g,
            self.cost,
        )
    }

    pub fn jobs(&self) -> u64 {
        self.ok
            .saturating_add(self.failed)
            .saturating_add(self.stopped)
    }

    /// Finished jobs among those counted, in percent (one decimal); `None` before any job.
    pub fn success_rate(&self) -> Option<f64> {
        let jobs = self.jobs();
        (jobs > 0).then(|| round(self.ok as f64 * 100.0 / jobs as f64, 1))
    }

    /// The sum of `all`: the bridge's fleet totals (`since`: the earliest).
    pub fn sum<'a>(all: impl IntoIterator<Item = &'a Totals>) -> Totals {
        let all: Vec<&Totals> = all.into_iter().collect();
        let mut sum = Totals::default();
        for t in &all {
            sum.since = match (sum.since.take(), &t.since) {
                (Some(a), Some(b)) => Some(a.min(b.clone())),
                (a, b) => a.or(b.clone()),
            };
            sum.ok = sum.ok.saturating_add(t.ok);
            sum.failed = sum.failed.saturating_add(t.failed);
            sum.stopped = sum.stopped.saturating_add(t.stopped);
            sum.print_s = sum.print_s.saturating_add(t.print_s);
            sum.filament_g += t.filament_g;
            for (material, grams) in &t.filament_by_material {
                sum.material_grams(material.clone(), *grams);
            }
            sum.cost += t.cost;
        }
        // The days of the newest day any printer counted (a printer known only from the state
        // file may hold older ones).
        if let Some(newest) = all.iter().filter_map(|t| t.days.today.date.clone()).max() {
            sum.days.today.date = Some(newest.clone());
            sum.days.yesterday.date = all
                .iter()
                .find(|t| t.days.today.date.as_ref() == Some(&newest))
                .and_then(|t| t.days.yesterday.date.clone());
            for t in &all {
                sum.days.today.merge(&t.days.today);
                sum.days.yesterday.merge(&t.days.yesterday);
            }
        }
        sum
    }

    /// The `P/stats` payload (and the bridge's `bridge/stats`, without `last_outcome`).
    pub fn payload(&self) -> Value {
        let (today, yesterday) = self.days.payload();
        let by_material: BTreeMap<&str, f64> = self
            .filament_by_material
            .iter()
            .map(|(m, g)| (m.as_str(), round(*g, 2)))
            .collect();
        json!({
            "since": self.since,
            "jobs": self.jobs(),
            "ok": self.ok,
            "failed": self.failed,
            "stopped": self.stopped,
            "success_rate": self.success_rate(),
            "print_s": self.print_s,
            "print_hours": round(self.print_s as f64 / 3600.0, 2),
            "filament_g": round(self.filament_g, 2),
            "filament_by_material": by_material,
            "cost": round(self.cost, 2),
            "last_outcome": self.last_outcome,
            "today": today,
            "yesterday": yesterday,
            "seeded": self.seeded.as_ref().map(|s| json!({"from": s.from, "to": s.to, "read": s.read})),
        })
    }
}

/// Unix seconds of an ISO 8601 time.
fn unix_of(iso: &str) -> Option<i64> {
    let parsed = time::OffsetDateTime::parse(iso, &time::format_description::well_known::Rfc3339);
    parsed.ok().map(|t| t.unix_timestamp())
}

pub(super) fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(
        outcome: &str,
        seconds: Value,
        grams: Value,
        material: Value,
        cost: Value,
    ) -> Value {
        json!({"event_type": outcome, "duration_s": seconds, "filament_g": grams,
               "material": material, "cost": cost})
    }

    #[test]
    fn each_outcome_is_counted_with_what_the_job_gave() {
        let mut t = Totals::default();
        assert!(t.count(&finished(
            "FIN_OK",
            json!(3600),
            json!(12.5),
            json!("PLA"),
            json!(0.4)
        )));
        assert!(t.count(&finished(
            "FIN_ERROR",
            json!(600),
            json!(2.25),
            json!("PETG"),
            json!(null)
        )));
        assert!(t.count(&finished(
            "FIN_STOPPED",
            json!(null),
            json!(1.0),
            json!(null),
            json!(0.1)
        )));
        assert!(t.count(&finished(
            "FIN_OK",
            json!(1800),
            json!(null),
            json!("PLA"),
            json!(-1.0)
        )));
        let p = t.payload();
        assert_eq!(p["jobs"], 4);
        assert_eq!(
            (p["ok"].clone(), p["failed"].clone(), p["stopped"].clone()),
            (json!(2), json!(1), json!(1))
        );
        assert_eq!(p["success_rate"], 50.0);
        assert_eq!(p["print_s"], 6000);
        assert_eq!(p["print_hours"], 1.67);
        assert_eq!(p["filament_g"], 15.75);
        assert_eq!(
            p["filament_by_material"],
            json!({"PLA": 12.5, "PETG": 2.25, "unknown": 1.0})
        );
        assert_eq!(p["cost"], 0.5);
        assert_eq!(p["last_outcome"], "FIN_OK");
    }

    #[test]
    fn a_new_material_with_every_job_does_not_grow_the_totals_without_end() {
        let mut t = Totals::default();
        for n in 0..100 {
            let material = json!(format!("{n}-{}", "X".repeat(60)));
            t.count(&finished(
                "FIN_OK",
                json!(1),
                json!(1.0),
                material,
                json!(null),
            ));
        }
        assert_eq!(t.filament_by_material.len(), MAX_MATERIALS);
        assert_eq!(t.filament_by_material.get(OTHER_MATERIALS), Some(&69.0));
        assert!(
            t.filament_by_material
                .keys()
                .all(|m| m.chars().count() <= 40)
        );
        assert_eq!(t.filament_g, 100.0);
    }

    #[test]
    fn nothing_is_counted_without_a_known_outcome_and_no_rate_before_a_job() {
        let mut t = Totals::default();
        assert!(!t.count(&json!({"event_type": "FIN_SOMEHOW", "duration_s": 60})));
        assert!(!t.count(&json!("not an object")));
        assert_eq!(t, Totals::default());
        assert_eq!(t.payload()["success_rate"], Value::Null);
        assert_eq!(t.payload()["last_outcome"], Value::Null);
    }

    #[test]
    fn connects_statistics_seed_the_totals_once_each_whatever_their_shape() {
        let ninety_days = std::time::Duration::from_secs(90 * 86_400);
        let mut t = Totals::default();
        t.begin(Some("2027-01-15T08:00:00Z".into()));
        let reads = t.seed_reads(ninety_days, 0.0);
        // The 90 whole days before the day counting began (2027-01-15).
        let to = MIDNIGHT as i64 - 1;
        let from = MIDNIGHT as i64 - 90 * 86_400;
        assert_eq!(reads, StatsKind::ALL.map(|k| (k, from, to)).to_vec());
        let jobs = json!({"series": [{"name": "FIN_OK", "data": [1, 0, 2]},
            {"name": "FIN_ERROR", "data": [1, "x", -3]}, {"name": "FIN_SOMEHOW", "data": [9]}]});
        assert!(t.seed_with(StatsKind::Jobs, Some(&jobs)));
        // Taken once: the same answer again adds nothing.
        assert!(t.seed_with(StatsKind::Jobs, Some(&jobs)));
        assert_eq!((t.ok, t.failed, t.stopped), (3, 1, 0));
        let material = json!({"data": [{"name": "PLA", "value": 120}, {"name": "", "value": 5.5},
            {"name": "PETG", "value": -1}, {"value": 7}, "junk"]});
        assert!(t.seed_with(StatsKind::Material, Some(&material)));
        assert_eq!(t.filament_g, 125.5);
        assert_eq!(t.filament_by_material.get("unknown"), Some(&5.5));
        // Only the printing time is left, and Connect does not have it (404).
        assert_eq!(
            t.seed_reads(ninety_days, 0.0),
            [(StatsKind::Printing, from, to)]
        );
        assert!(t.seed_with(StatsKind::Printing, None));
        assert!(t.seed_reads(ninety_days, 0.0).is_empty());
        let seeded = &t.payload()["seeded"];
        assert_eq!(seeded["from"], "2026-10-17T00:00:00Z");
        assert_eq!(seeded["to"], "2027-01-14T23:59:59Z");
        assert_eq!(
            seeded["read"],
            json!(["jobs_success", "material_quantity", "printing_not_printing"])
        );
        // A shape it does not know: said so, nothing added.
        let mut u = Totals::default();
        u.seed_reads(ninety_days, 1_800_000_000.0);
        assert!(!u.seed_with(StatsKind::Jobs, Some(&json!({"series": "all of them"}))));
        assert!(!u.seed_with(
            StatsKind::Printing,
            Some(&json!({"data": [{"name": "printing", "value": -5}]}))
        ));
        assert_eq!(u.print_s, 0);
        assert_eq!(u.jobs(), 0);
        // `stats.backfill = "0s"`: not seeded, nothing read.
        let mut off = Totals::default();
        assert!(
            off.seed_reads(std::time::Duration::ZERO, 1_800_000_000.0)
                .is_empty()
        );
        assert_eq!(off.payload()["seeded"], Value::Null);
    }

    /// 2027-01-15T00:00:00Z.
    const MIDNIGHT: f64 = 1_800_000_000.0 - 8.0 * 3600.0;

    #[test]
    fn the_fleet_sum_adds_every_printer_and_begins_with_the_earliest() {
        let mut a = Totals::default();
        a.begin(Some("2026-12-06T10:00:00Z".into()));
        a.begin(Some("2026-12-07T10:00:00Z".into()));
        a.count(&finished(
            "FIN_OK",
            json!(60),
            json!(1.5),
            json!("PLA"),
            json!(1.0),
        ));
        let mut b = Totals::default();
        b.begin(Some("2026-12-01T08:00:00Z".into()));
        b.count(&finished(
            "FIN_ERROR",
            json!(30),
            json!(2.0),
            json!("PLA"),
            json!(null),
        ));
        let sum = Totals::sum([&a, &b]).payload();
        assert_eq!(a.since.as_deref(), Some("2026-12-06T10:00:00Z"));
        assert_eq!(sum["since"], "2026-12-01T08:00:00Z");
        assert_eq!(sum["jobs"], 2);
        assert_eq!(sum["print_s"], 90);
        assert_eq!(sum["filament_by_material"], json!({"PLA": 3.5}));
        assert_eq!(sum["success_rate"], 50.0);
    }
}
