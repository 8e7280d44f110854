//! The world as Connect's JSON. Pure functions of the data they are given.

use serde_json::{Value, json};

use super::files::FileInfo;
use super::world::{Camera, Job, Notice, PlannedJob, Printer, secs};

/// A number as Connect writes it: whole values without a fraction.
pub(crate) fn num(x: f64) -> Value {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 9.0e15 {
        json!(x as i64)
    } else if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

fn round_to(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f).round() / f
}

fn unix(us: i64) -> i64 {
    us.div_euclid(1_000_000)
}

/// One printer as in `/app/printers`; `detail` adds what `/app/printers/{uuid}` shows on top.
pub(crate) fn printer(p: &Printer, now_us: i64, detail: bool) -> Value {
    let last_online = if p.online { now_us } else { p.last_online_us };
    let printing = p.state == "PRINTING";
    let mut v = json!({
        "uuid": p.uuid,
        "name": p.name,
        "location": p.location,
        "sn": p.sn,
        "printer_model": p.model,
        "printer_type": p.printer_type,
        "printer_type_name": p.printer_type_name,
        "team_id": p.team_id,
        "team_name": p.team_name,
        "firmware": p.firmware,
        "printer_state": p.state,
        "connect_state": p.effective_state(),
        "state_reason": p.state_reason,
        "last_online": secs(last_online),
        "temp": {
            "temp_nozzle": round_to(p.temps.nozzle, 1),
            "temp_bed": round_to(p.temps.bed, 1),
            "target_nozzle": round_to(p.temps.target_nozzle, 1),
            "target_bed": round_to(p.temps.target_bed, 1),
        },
        "axis_x": round_to(p.axes.x, 2),
        "axis_y": round_to(p.axes.y, 2),
        "axis_z": round_to(p.axes.z, 2),
        "speed": p.speed,
        "flow": p.flow,
        "nozzle_diameter": p.nozzle_diameter,
        "filament": { "material": p.material },
        "tools": {
            "1": {
                "temp": round_to(p.temps.nozzle, 1),
                "active": true,
                "nozzle_diameter": p.nozzle_diameter,
                "material": p.material,
                "fan_hotend": if p.temps.nozzle > 50.0 { 7000 } else { 0 },
                "fan_print": if printing { 3200 } else { 0 },
            }
        },
        "dialog_info": p.dialog,
        "job_queue_count": p.queue.len(),
        "rights_r": true,
        "rights_w": true,
        "rights_u": true,
        // Not a Connect field: clients must ignore what they do not know.
        "sim_extra": 1,
    });
    if let (Some(job), Some(map)) = (p.info_job(), v.as_object_mut()) {
        map.insert("job_info".into(), job_info(job, p.team_id));
    }
    if let Some(chamber) = &p.chamber {
        v["temp"]["temp_chamber"] = json!(round_to(chamber.temp, 1));
        v["temp"]["target_chamber"] = json!(round_to(chamber.target, 1));
        v["chamber"] = json!({ "led_intensity": chamber.led_intensity });
    }
    if let (true, Some(map)) = (detail, v.as_object_mut()) {
        map.insert(
            "network_info".into(),
            json!({
                "lan_ipv4": format!("192.168.1.{}", 100 + p.number % 150),
                "hostname": format!("prusa-{}", p.model.to_lowercase()),
            }),
        );
        map.insert("queue_count".into(), json!(p.queue.len()));
    }
    if let Some(map) = v.as_object_mut() {
        map.extend(p.overrides.clone());
    }
    v
}

/// `job_info` inside a printer of team `team_id`.
pub(crate) fn job_info(job: &Job, team_id: i64) -> Value {
    let time_remaining = match (job.is_active(), job.time_remaining) {
        (false, _) => 0.0,
        (true, None) => -1.0,
        (true, Some(t)) => t.round(),
    };
    let mut v = json!({
        "id": job.id,
        "origin_id": job.id % 1000,
        "path": job.file.path,
        "state": job.state,
        "start": unix(job.started_us),
        "progress": num(round_to(job.progress, 1)),
        "time_printing": num(job.time_printing.round()),
        "time_remaining": num(time_remaining),
        "display_name": job.file.name,
        "preview_url": job.file.preview_url(team_id),
        "model_weight": job.weight_g,
        "weight_remaining": round_to(job.weight_g * (1.0 - job.progress / 100.0), 4),
    });
    if let (Some(end), Some(map)) = (job.ended_us, v.as_object_mut()) {
        map.insert("end".into(), json!(unix(end)));
    }
    v
}

/// A file on a printer of team `team_id`.
pub(crate) fn file(f: &FileInfo, team_id: i64) -> Value {
    json!({
        "name": f.name,
        "path": f.path,
        "display_name": f.display_name,
        "size": f.size,
        "m_time": f.m_time,
        "type": "PRINT_FILE",
        "preview_url": f.preview_url(team_id),
    })
}

/// One item of `/jobs` of a printer of team `team_id`.
pub(crate) fn job_item(job: &Job, team_id: i64) -> Value {
    let time_remaining = match job.time_remaining {
        Some(t) if job.is_active() => num(t.round()),
        _ => Value::Null,
    };
    let mut v = json!({
        "id": job.id,
        "state": job.state,
        "progress": num(round_to(job.progress, 1)),
        "time_printing": num(job.time_printing.round()),
        "time_remaining": time_remaining,
        "mode": job.mode,
        "source": "connect",
        "ts_started": unix(job.started_us),
        "ts_ended": job.ended_us.map(unix),
        "files": [file(&job.file, team_id)],
        "data": {
            "material": job.material,
            "weight": job.weight_g,
            "cost": round_to(job.weight_g * 0.025, 2),
            "tool": 0,
            "layer_height": 0.2,
        },
    });
    if let (Some(reason), Some(map)) = (&job.reason, v.as_object_mut()) {
        map.insert("reason".into(), reason.clone());
    }
    v
}

/// One entry of `/app/notifications` (the shape one public client reads).
pub(crate) fn notification(n: &Notice) -> Value {
    let mut data = json!({
        "printer_uuid": n.printer_uuid,
        "printer_name": n.printer_name,
    });
    if let (Some((id, name, state)), Some(map)) = (&n.job, data.as_object_mut()) {
        map.insert("job_id".into(), json!(id));
        map.insert("job_name".into(), json!(name));
        map.insert("job_state".into(), json!(state));
    }
    json!({
        "id": n.id,
        "category": n.category,
        "name": n.name,
        "severity": n.severity,
        "text": n.text,
        "data": data,
        "created": n.created_us.div_euclid(1_000_000),
        "seen": false,
    })
}

/// `/jobs/{id}`: the list item plus the file's objects and what can be canceled.
pub(crate) fn job_detail(job: &Job, team_id: i64) -> Value {
    let mut v = job_item(job, team_id);
    let preview_url = job.file.preview_url(team_id);
    let objects: Vec<Value> = job
        .objects
        .iter()
        .map(|o| json!({ "name": o.name, "polygon": o.polygon }))
        .collect();
    let cancelable: Vec<Value> = job
        .objects
        .iter()
        .enumerate()
        .map(|(i, o)| json!({ "id": i, "name": o.name, "polygon": o.polygon, "canceled": o.canceled }))
        .collect();
    if let Some(map) = v.as_object_mut() {
        map.insert(
            "file".into(),
            json!({
                "name": job.file.name,
                "display_name": job.file.display_name,
                "path": job.file.path,
                "size": job.file.size,
                "m_time": job.file.m_time,
                "preview_url": preview_url,
                "meta": {
                    "objects_info": { "objects": objects },
                    "estimated_print_time": num(job.duration_s.round()),
                    "filament_type": job.material,
                    "filament_used_g": job.weight_g,
                },
            }),
        );
        map.insert("cancelable".into(), json!({ "objects": cancelable }));
        map.insert("preview_url".into(), json!(preview_url));
        map.entry("reason").or_insert(Value::Null);
    }
    v
}

pub(crate) fn planned_job(p: &PlannedJob, position: usize, printer: &Printer) -> Value {
    json!({
        "id": p.id,
        "printer_uuid": printer.uuid,
        "path": p.file.path,
        "position": position,
        "set_ready": p.set_ready,
        "created": unix(p.created_us),
        "file": file(&p.file, printer.team_id),
    })
}

pub(crate) fn camera(c: &Camera) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "printer_uuid": c.printer_uuid,
        "config": {
            "name": c.name,
            "path": "private",
            "model": "Buddy3D",
            "resolution": { "width": 1920, "height": 1080 },
            "trigger_scheme": "THIRTY_SEC",
        },
        "capabilities": ["trigger_scheme"],
        "features": ["SocketCom", "UploadInterval", "TimelapseEn", "GetSnapshot", "CameraName", "FwUpdate"],
        "token": format!("sim-camera-{}", c.id),
        "registered": true,
    })
}

pub(crate) fn storages(p: &Printer) -> Value {
    let total: u64 = 7_818_182_656;
    let used: u64 = p.files.iter().map(|f| f.size).sum();
    json!({
        "storages": [{
            "name": "usb",
            "path": "/usb",
            "type": "USB",
            "read_only": false,
            "free_space": total.saturating_sub(used),
            "total_space": total,
        }]
    })
}

/// The printer types: id, name, nozzle and bed maximum, stable firmware, bed size (mm).
/// (The bed sizes as `axis_x`/`axis_y` ranges are this simulator's assumption of how Connect
/// would carry them; the captured types show only temperatures, flow, extrusion.)
type TypeRow = (
    &'static str,
    &'static str,
    u32,
    u32,
    &'static str,
    (u32, u32),
);
const PRINTER_TYPES: &[TypeRow] = &[
    (
        "1.3.1",
        "Original Prusa i3 MK3S",
        300,
        120,
        "5.1.2",
        (250, 210),
    ),
    (
        "2.1.0",
        "Original Prusa MINI+",
        280,
        100,
        "6.2.6",
        (180, 180),
    ),
    ("3.1.0", "Original Prusa XL", 300, 120, "6.2.6", (360, 360)),
    ("7.1.0", "Original Prusa MK4", 290, 120, "6.2.6", (250, 210)),
    ("7.2.0", "Prusa CORE One", 290, 120, "6.3.2", (250, 220)),
    ("8.1.0", "Prusa CORE One L", 290, 120, "6.5.2", (300, 330)),
];

/// The bed of a printer type (an MK4's for a type this simulator does not know).
pub(crate) fn bed_size(type_id: &str) -> (f64, f64) {
    let (_, _, _, _, _, (x, y)) = PRINTER_TYPES
        .iter()
        .find(|t| t.0 == type_id)
        .copied()
        .unwrap_or(PRINTER_TYPES[3]);
    (f64::from(x), f64::from(y))
}

pub(crate) fn printer_types() -> Value {
    let types: Vec<Value> = PRINTER_TYPES
        .iter()
        .map(|(id, name, nozzle_max, bed_max, stable, (x_max, y_max))| {
            let mut parts = id.split('.').map(|n| n.parse::<u32>().unwrap_or(0));
            let (t, v, s) = (parts.next(), parts.next(), parts.next());
            json!({
                "id": id,
                "type": t,
                "version": v,
                "subversion": s,
                "name": name,
                "parameters": {
                    "extrusion": { "max": 100, "min": -10, "default": 10 },
                    "print_flow": { "max": 999, "min": 10, "default": 100 },
                    "print_speed": { "max": 999, "min": 10, "default": 100 },
                    "temp_nozzle": { "max": nozzle_max, "min": 0 },
                    "temp_bed": { "max": bed_max, "min": 0 },
                    "axis_x": { "max": x_max, "min": 0 },
                    "axis_y": { "max": y_max, "min": 0 },
                },
                "fw_device_type_id": id,
                "support": { "stable": stable },
            })
        })
        .collect();
    json!({ "printer_types": types })
}
