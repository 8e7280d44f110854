//! Pure functions from Connect data to the JSON payloads of `P/state`, `P/job` and
//! `P/job/finished`. No I/O: the bridge decides when to call them and what to publish.

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::connect::model::{Job, JobInfo, Printer, PrinterState};

/// ISO 8601 (RFC 3339, UTC) of Unix seconds, `2024-03-01T12:00:05Z`; `None` for nonsense
/// values (and years past 9999, which RFC 3339 cannot write). Written digit by digit: a
/// farm's looks write thousands a second, and `time`'s general formatter took about 6 % of a
/// look (a test holds it to that formatter's output).
pub fn iso(unix: f64) -> Option<String> {
    if !unix.is_finite() || unix <= 0.0 {
        return None;
    }
    let t = OffsetDateTime::from_unix_timestamp(unix.floor() as i64).ok()?;
    let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
    let mut out = String::with_capacity(20);
    let parts = [
        (year, 4, '-'),
        (u8::from(t.month()).into(), 2, '-'),
        (t.day().into(), 2, 'T'),
        (t.hour().into(), 2, ':'),
        (t.minute().into(), 2, ':'),
        (t.second().into(), 2, 'Z'),
    ];
    for (value, width, then) in parts {
        for place in (0..width).rev() {
            let digit = value / 10u32.pow(place) % 10;
            out.push(char::from(b'0' + digit as u8));
        }
        out.push(then);
    }
    Some(out)
}

/// A payload's fingerprint (its JSON hashed, written straight into the hasher): what was
/// published is remembered by it, not kept whole beside the outbox's copy. A job's JSON as a
/// `Value` took about 3 KB a printer, the state about 1.5 KB, `bridge/info` of 2,000 printers
/// 200 KB.
pub fn fingerprint(payload: &impl Serialize) -> u64 {
    use std::hash::Hasher;
    struct Hashing(Fingerprint);
    impl std::io::Write for Hashing {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.write(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut hashing = Hashing(Default::default());
    // Writing a payload into a sink that takes everything cannot fail (they have string keys).
    let _ = serde_json::to_writer(&mut hashing, payload);
    hashing.0.finish()
}

pub fn now_unix() -> f64 {
    OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9
}

/// Connect says 0 or -1 when it has no estimate yet.
fn remaining(job: Option<&JobInfo>) -> Option<f64> {
    job.and_then(|j| j.time_remaining)
        .filter(|t| t.is_finite() && *t > 0.0)
}

/// Whether the printer's current job is running (printing or paused).
pub fn job_running(p: &Printer) -> bool {
    match p.job_info.as_ref().and_then(|j| j.state.as_ref()) {
        Some(state) => state.is_running(),
        None => {
            p.job_info.as_ref().and_then(|j| j.id).is_some()
                && matches!(
                    p.printer_state,
                    Some(PrinterState::Printing | PrinterState::Paused | PrinterState::Attention)
                )
        }
    }
}

/// A printer's job queue and download queue, as `P/state` shows them (null until read).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueFields {
    pub queue_count: Option<u64>,
    pub queue_next: Option<String>,
    pub download_queue_count: Option<u64>,
    pub download_queue_next: Option<String>,
}

/// `P/state`: one flat snapshot of a printer. Discovery's templates read these fields, and
/// the README documents them ([`StatePayload::keys`] is the list both are checked against).
/// The fields are in the byte order of their names: the payload is written straight from
/// the struct, with its keys sorted as they always were (a test compares it with the
/// sorted form).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatePayload<'a> {
    pub attention: bool,
    pub axis_x: Option<f64>,
    pub axis_y: Option<f64>,
    pub axis_z: Option<f64>,
    /// %.
    pub chamber_led: Option<f64>,
    pub connect_state: Option<&'a str>,
    pub dialog: Option<Value>,
    pub download_queue_count: Option<u64>,
    pub download_queue_next: Option<&'a str>,
    /// ISO 8601, rounded to the minute; null while there is no estimate.
    pub eta: Option<String>,
    /// The active tool's fans, RPM.
    pub fan_hotend: Option<f64>,
    pub fan_print: Option<f64>,
    pub firmware: Option<&'a str>,
    /// The printer type's stable firmware, when Connect lists one.
    pub firmware_latest: Option<&'a str>,
    pub flow: Option<f64>,
    pub job_id: Option<i64>,
    pub job_name: Option<&'a str>,
    /// ISO 8601.
    pub job_started: Option<String>,
    pub job_state: Option<&'a str>,
    pub material: Option<&'a str>,
    pub nozzle_diameter: Option<f64>,
    /// The file "Start print" prints (chosen in "File to print").
    pub print_file: Option<String>,
    pub printer_state: Option<&'a str>,
    pub printing: bool,
    /// 0-100.
    pub progress: Option<f64>,
    /// The job queue's length and next job (null until read); `download_queue_*` the same
    /// of the download queue.
    pub queue_count: Option<u64>,
    pub queue_next: Option<&'a str>,
    pub speed: Option<f64>,
    /// The Spoolman spool's label (when Spoolman lists it), id and grams left
    /// (`spoolman.url`).
    pub spool: Option<&'a str>,
    pub spool_id: Option<u64>,
    pub spool_remaining_g: Option<f64>,
    /// Effective: OFFLINE when Connect lost the printer, else the printer's state.
    pub state: String,
    /// Bytes free and in all on the printer's writable storages (USB, flash), when read.
    pub storage_free: Option<u64>,
    pub storage_total: Option<u64>,
    pub target_bed: Option<f64>,
    pub target_chamber: Option<f64>,
    pub target_nozzle: Option<f64>,
    pub temp_bed: Option<f64>,
    /// Printers with a chamber only.
    pub temp_chamber: Option<f64>,
    pub temp_nozzle: Option<f64>,
    pub time_printing: Option<i64>,
    /// Seconds; null while there is no estimate.
    pub time_remaining: Option<i64>,
    /// When the rest last changed (ISO 8601); `None` while comparing.
    pub updated: Option<String>,
}

impl StatePayload<'_> {
    /// Every key of the JSON, in order.
    pub fn keys() -> Vec<String> {
        match serde_json::to_value(StatePayload::default()) {
            Ok(Value::Object(o)) => o.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// `value_json.<field>` for a Home Assistant template; `field` must be a key of the
    /// payload (checked by a test of every template).
    pub fn template_field(field: &str) -> String {
        debug_assert!(
            Self::keys().iter().any(|k| k == field),
            "{field} is not a field of P/state"
        );
        format!("value_json.{field}")
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The payload's JSON, written straight from the struct (no `Value` tree in between).
    pub fn to_json(&self) -> Vec<u8> {
        let mut json = Vec::new();
        self.write_json(&mut json);
        json
    }

    /// [`StatePayload::to_json`] into `out` (see [`write_fields`]).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        write_fields!(
            out,
            self,
            StatePayload {
                attention,
                axis_x,
                axis_y,
                axis_z,
                chamber_led,
                connect_state,
                dialog,
                download_queue_count,
                download_queue_next,
                eta,
                fan_hotend,
                fan_print,
                firmware,
                firmware_latest,
                flow,
                job_id,
                job_name,
                job_started,
                job_state,
                material,
                nozzle_diameter,
                print_file,
                printer_state,
                printing,
                progress,
                queue_count,
                queue_next,
                speed,
                spool,
                spool_id,
                spool_remaining_g,
                state,
                storage_free,
                storage_total,
                target_bed,
                target_chamber,
                target_nozzle,
                temp_bed,
                temp_chamber,
                temp_nozzle,
                time_printing,
                time_remaining,
                updated,
            }
        );
    }

    /// `json`, this payload's bytes without `updated`, with `updated` set: `updated` is the
    /// last key, so only the end changes. The bytes are allocated once, at their length.
    pub fn json_updated(&self, json: &[u8], updated: Option<String>) -> Vec<u8> {
        const UNSET: &[u8] = b"\"updated\":null}";
        match (&updated, json.ends_with(UNSET) && self.updated.is_none()) {
            (Some(time), true) => {
                let kept = &json[..json.len() - UNSET.len()];
                // The time is an ISO 8601 string: nothing in it is escaped.
                let mut out = Vec::with_capacity(kept.len() + time.len() + 13);
                out.extend_from_slice(kept);
                out.extend_from_slice(b"\"updated\":");
                // A string always serializes.
                serde_json::to_writer(&mut out, time).unwrap_or_default();
                out.push(b'}');
                out
            }
            (None, true) => json.to_vec(),
            _ => StatePayload {
                updated,
                ..self.clone()
            }
            .to_json(),
        }
    }
}

/// A payload's bytes hashed, to tell whether they changed.
pub fn print_of(json: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = Fingerprint::default();
    h.write(json);
    h.finish()
}

/// The hasher of fingerprints: aHash with its fixed keys. A farm's gateway fingerprints
/// every printer's `P/state` once a second; std's SipHash (made to resist chosen keys, which
/// a fingerprint of our own bytes does not need) was 2 % of its CPU there, aHash is several
/// times faster with the same 64-bit spread.
pub type Fingerprint = ahash::AHasher;

fn round1(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite())
        .map(|v| (v * 10.0).round() / 10.0)
}

/// The `P/state` snapshot, without `updated` (the bridge adds it when the rest changed).
/// `now` anchors the ETA; it is rounded to the minute so a steady estimate does not churn.
pub fn state<'a>(p: &'a Printer, now: f64, queue: &'a QueueFields) -> StatePayload<'a> {
    let effective = p.effective_state();
    let job = p.job_info.as_ref();
    let temp = p.temp.clone().unwrap_or_default();
    let running = job_running(p);
    let time_remaining = remaining(job).filter(|_| running);
    StatePayload {
        state: effective.as_str().to_string(),
        connect_state: p.connect_state.as_ref().map(|s| s.as_str()),
        printer_state: p.printer_state.as_ref().map(|s| s.as_str()),
        printing: matches!(effective, PrinterState::Printing),
        attention: matches!(effective, PrinterState::Attention | PrinterState::Error)
            || p.dialog_info.is_some(),
        temp_nozzle: round1(temp.temp_nozzle),
        target_nozzle: round1(temp.target_nozzle),
        temp_bed: round1(temp.temp_bed),
        target_bed: round1(temp.target_bed),
        axis_x: round1(p.axis_x),
        axis_y: round1(p.axis_y),
        axis_z: round1(p.axis_z),
        speed: round1(p.speed),
        spool: None,
        spool_id: None,
        spool_remaining_g: None,
        flow: round1(p.flow),
        material: p.filament.as_ref().and_then(|f| f.material.as_deref()),
        nozzle_diameter: p.nozzle_diameter.filter(|d| d.is_finite()),
        temp_chamber: round1(temp.temp_chamber),
        target_chamber: round1(temp.target_chamber),
        chamber_led: round1(p.chamber_led()),
        fan_hotend: round1(p.active_tool().and_then(|t| t.fan_hotend)),
        fan_print: round1(p.active_tool().and_then(|t| t.fan_print)),
        firmware: p.firmware.as_deref(),
        firmware_latest: None,
        print_file: None,
        storage_free: None,
        storage_total: None,
        progress: round1(job.and_then(|j| j.progress).map(|v| v.clamp(0.0, 100.0))),
        time_remaining: time_remaining.map(|t| t.round() as i64),
        time_printing: job
            .and_then(|j| j.time_printing)
            .filter(|t| t.is_finite() && *t >= 0.0)
            .map(|t| t.round() as i64),
        job_id: job.and_then(|j| j.id),
        job_name: job.and_then(|j| j.display_name.as_deref().or(j.path.as_deref())),
        job_state: job.and_then(|j| j.state.as_ref().map(|s| s.as_str())),
        job_started: job.and_then(|j| j.start).and_then(iso),
        eta: time_remaining.and_then(|r| iso(((now + r) / 60.0).round() * 60.0)),
        dialog: p
            .dialog_info
            .as_ref()
            .map(|d| serde_json::to_value(d).unwrap_or(Value::Null)),
        queue_count: queue.queue_count,
        queue_next: queue.queue_next.as_deref(),
        download_queue_count: queue.download_queue_count,
        download_queue_next: queue.download_queue_next.as_deref(),
        updated: None,
    }
}

/// The `P/job` payload: the live `job_info` merged with the job's detail (file, material,
/// cancelable objects) when the detail is of the same job.
pub fn job<'a>(info: Option<&'a JobInfo>, detail: Option<&'a Job>) -> Option<JobPayload<'a>> {
    let id = info.and_then(|j| j.id).or(detail.map(|d| d.id))?;
    let detail = detail.filter(|d| d.id == id);
    let state = info
        .and_then(|j| j.state.as_ref())
        .or_else(|| detail.and_then(|d| d.state.as_ref()));
    let file = detail
        .and_then(|d| d.file_name())
        .or_else(|| info.and_then(|j| j.display_name.as_deref()));
    let path = info
        .and_then(|j| j.path.as_deref())
        .or_else(|| detail.and_then(|d| d.file().and_then(|f| f.path.as_deref())));
    let pick = |live: Option<f64>, stored: Option<f64>| live.or(stored).filter(|v| v.is_finite());
    let cancelable_objects = detail
        .and_then(|d| d.cancelable.as_ref())
        .map(|c| {
            c.objects
                .iter()
                .map(|o| JobObject {
                    canceled: o.canceled,
                    id: o.id,
                    name: o.name.as_deref(),
                })
                .collect()
        })
        .unwrap_or_default();
    let data = detail.and_then(|d| d.data.as_ref());
    Some(JobPayload {
        cancelable_objects,
        ended: pick(info.and_then(|j| j.end), detail.and_then(|d| d.ts_ended)).and_then(iso),
        file,
        id,
        material: data.and_then(|d| d.material.as_deref()),
        path,
        progress: round1(pick(
            info.and_then(|j| j.progress),
            detail.and_then(|d| d.progress),
        )),
        started: pick(
            info.and_then(|j| j.start),
            detail.and_then(|d| d.ts_started),
        )
        .and_then(iso),
        state: state.map(|s| s.as_str()),
        time_printing: pick(
            info.and_then(|j| j.time_printing),
            detail.and_then(|d| d.time_printing),
        )
        .map(|t| t.round() as i64),
        time_remaining: remaining(info)
            .or_else(|| detail.and_then(|d| d.time_remaining).filter(|t| *t > 0.0))
            .map(|t| t.round() as i64),
        weight: data
            .and_then(|d| d.weight)
            .or_else(|| info.and_then(|j| j.model_weight)),
    })
}

/// `P/job`. Its fields are declared in byte order, so the JSON has its keys sorted (as the
/// `Value` form it replaced had). It borrows the job's strings: it is written and dropped.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobPayload<'a> {
    pub cancelable_objects: Vec<JobObject<'a>>,
    pub ended: Option<String>,
    pub file: Option<&'a str>,
    pub id: i64,
    pub material: Option<&'a str>,
    pub path: Option<&'a str>,
    pub progress: Option<f64>,
    pub started: Option<String>,
    pub state: Option<&'a str>,
    pub time_printing: Option<i64>,
    pub time_remaining: Option<i64>,
    pub weight: Option<f64>,
}

/// One of `P/job`'s `cancelable_objects`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobObject<'a> {
    pub canceled: bool,
    pub id: i64,
    pub name: Option<&'a str>,
}

impl JobPayload<'_> {
    pub fn to_json(&self) -> Vec<u8> {
        let mut json = Vec::new();
        self.write_json(&mut json);
        json
    }

    /// [`JobPayload::to_json`] into `out` (see [`write_fields`]).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        write_fields!(
            out,
            self,
            JobPayload {
                cancelable_objects,
                ended,
                file,
                id,
                material,
                path,
                progress,
                started,
                state,
                time_printing,
                time_remaining,
                weight,
            }
        );
    }
}

/// A payload's JSON into `out` (cleared first), as serde writes the struct (a test compares
/// the two) but with each key written as it is named: serde scans every key for characters
/// to escape, and field names have none. A buffer used again for every printer costs no
/// allocation when the payload did not change. The destructuring names every field: one
/// added to the struct and not here does not compile.
macro_rules! write_fields {
    ($out:expr, $payload:expr, $ty:ident { $first:ident $(, $field:ident)* $(,)? }) => {{
        let $ty { $first, $($field),* } = $payload;
        let out: &mut Vec<u8> = $out;
        out.clear();
        out.extend_from_slice(concat!("{\"", stringify!($first), "\":").as_bytes());
        write_value(out, $first);
        $(
            out.extend_from_slice(concat!(",\"", stringify!($field), "\":").as_bytes());
            write_value(out, $field);
        )*
        out.push(b'}');
    }};
}
use write_fields;

/// One value's JSON onto `out`.
fn write_value(out: &mut Vec<u8>, value: &impl Serialize) {
    // Plain values (numbers, strings, options of them, a `Value`) always serialize.
    serde_json::to_writer(out, value).unwrap_or_default();
}

/// The `P/job/finished` payload for a job Connect reports in a final state.
pub fn job_finished(printer: &Printer, printer_id: &str, job: &Job) -> Option<Value> {
    let state = job.state.as_ref().filter(|s| s.is_final())?;
    let duration = job.time_printing.or(match (job.ts_started, job.ts_ended) {
        (Some(a), Some(b)) if b >= a => Some(b - a),
        _ => None,
    });
    let duration = duration
        .filter(|d| d.is_finite() && *d >= 0.0)
        .map(|d| d.round() as i64);
    let data = job.data.as_ref();
    // What Connect says, as it says it; a value that is no number (or a negative amount) is
    // null, never guessed.
    let amount = |v: Option<f64>| v.filter(|v| v.is_finite() && *v >= 0.0);
    let file = job.file().map(|f| {
        json!({
            "name": f.display_name.as_ref().or(f.name.as_ref()),
            "path": f.path,
            "size": f.size,
        })
    });
    Some(json!({
        "event_type": state.as_str(),
        "job_id": job.id,
        "job_name": job.file_name(),
        "printer": printer_id,
        "printer_name": printer.name,
        "printer_uuid": printer.uuid,
        "progress": round1(job.progress),
        "duration": duration,
        "duration_s": duration,
        "started": job.ts_started.and_then(iso),
        "ended": job.ts_ended.and_then(iso),
        "material": data.and_then(|d| d.material.clone()),
        "filament_g": amount(data.and_then(|d| d.weight)),
        "cost": amount(data.and_then(|d| d.cost)),
        "layer_height": amount(data.and_then(|d| d.layer_height)),
        "file": file,
        "reason": job.reason,
    }))
}

#[cfg(test)]
mod tests;
