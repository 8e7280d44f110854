use super::*;
use crate::connect::model::JobState;

fn printing() -> Printer {
    serde_json::from_value(json!({
        "uuid": "u1", "name": "Busy MK4", "printer_state": "PRINTING", "connect_state": "PRINTING",
        "temp": {"temp_nozzle": 214.96, "temp_bed": 59.94, "target_nozzle": 215, "target_bed": 60},
        "axis_z": 1.2, "speed": 100, "flow": 95, "filament": {"material": "PLA"},
        "job_info": {"id": 7, "state": "PRINTING", "start": 1_700_000_000, "progress": 42.0,
                     "time_printing": 600, "time_remaining": 900, "display_name": "cube.bgcode"}
    }))
    .unwrap()
}

/// `iso` writes what `time`'s RFC 3339 formatter writes, for seconds across the range.
#[test]
fn iso_is_rfc3339_as_time_writes_it() {
    use time::format_description::well_known::Rfc3339;
    let mut seconds: Vec<f64> = vec![
        1.0,
        59.999,
        951_782_400.0,     // 2000-02-29
        1_700_000_000.5,   // 2023-11-14T22:13:20
        4_107_542_399.0,   // 2100-02-28T23:59:59 (not a leap year)
        253_402_300_799.0, // 9999-12-31T23:59:59
    ];
    // A day and a bit at a time over a few centuries: every month, day and hour.
    seconds.extend((0..40_000).map(|i| 1.0 + f64::from(i) * 90_061.7));
    for unix in seconds {
        let expected = OffsetDateTime::from_unix_timestamp(unix.floor() as i64)
            .unwrap()
            .format(&Rfc3339)
            .unwrap();
        assert_eq!(iso(unix).as_deref(), Some(expected.as_str()), "{unix}");
    }
    for nonsense in [0.0, -5.0, f64::NAN, f64::INFINITY, 253_402_300_800.0, 1e300] {
        assert_eq!(iso(nonsense), None, "{nonsense}");
    }
}

#[test]
fn state_of_a_printing_printer() {
    let s = state(&printing(), 1_700_000_600.0, &QueueFields::default()).to_value();
    assert_eq!(s["state"], "PRINTING");
    assert_eq!(s["printing"], true);
    assert_eq!(s["temp_nozzle"], 215.0);
    assert_eq!(s["progress"], 42.0);
    assert_eq!(s["time_remaining"], 900);
    assert_eq!(s["job_name"], "cube.bgcode");
    assert_eq!(s["job_started"], "2023-11-14T22:13:20Z");
    assert_eq!(s["eta"], "2023-11-14T22:38:00Z");
    assert_eq!(s["dialog"], Value::Null);
}

/// `P/state` is written straight from the struct; its bytes are what the sorted `Value`
/// form always gave (keys in byte order), with every field set.
#[test]
fn state_json_has_its_keys_sorted_as_before() {
    let queue = QueueFields {
        queue_count: Some(2),
        queue_next: Some("next.bgcode".into()),
        download_queue_count: Some(1),
        download_queue_next: Some("dl.bgcode".into()),
    };
    let printer = printing();
    let mut s = state(&printer, 1_700_000_600.0, &queue);
    s.dialog = Some(json!({"title": "T", "code": 7, "text": "x"}));
    s.updated = Some("2023-11-14T22:23:20Z".into());
    s.firmware_latest = Some("6.2.0");
    s.print_file = Some("a.bgcode".into());
    s.storage_free = Some(10);
    s.storage_total = Some(20);
    s.temp_chamber = Some(30.5);
    let sorted = s.to_value().to_string().into_bytes();
    assert_eq!(
        String::from_utf8(s.to_json()).unwrap(),
        String::from_utf8(sorted).unwrap()
    );
    // With `updated` set on the bytes without it: the same as set on the struct.
    let time = s.updated.take();
    let spliced = s.json_updated(&s.to_json(), time.clone());
    s.updated = time;
    assert_eq!(
        String::from_utf8(spliced).unwrap(),
        String::from_utf8(s.to_json()).unwrap()
    );
}

/// `P/job` is written straight from its struct, keys in byte order like the `Value` form.
#[test]
fn job_json_has_its_keys_sorted() {
    let p = printing();
    let detail = Job {
        id: p.job_info.as_ref().and_then(|j| j.id).unwrap(),
        state: Some(JobState::Printing),
        ts_started: Some(100.0),
        data: Some(crate::connect::model::JobData {
            material: Some("PETG".into()),
            weight: Some(12.5),
            ..Default::default()
        }),
        cancelable: Some(crate::connect::model::Cancelable {
            objects: vec![crate::connect::model::CancelableObject {
                id: 3,
                name: Some("Cube \"A\"".into()),
                canceled: true,
            }],
        }),
        ..Default::default()
    };
    let job = job(p.job_info.as_ref(), Some(&detail)).unwrap();
    let value = serde_json::to_value(&job).unwrap();
    assert_eq!(value["material"], "PETG");
    assert_eq!(value["cancelable_objects"][0]["name"], "Cube \"A\"");
    assert_eq!(String::from_utf8(job.to_json()).unwrap(), value.to_string());
}

/// The payloads write their keys themselves: the bytes are serde's for the same struct,
/// whatever the values (none set, strings to escape, numbers JSON has no form for).
#[test]
fn payloads_write_what_serde_writes() {
    let mut odd = StatePayload {
        state: "a \"quoted\"\nline\u{1} é ✓".into(),
        job_name: Some("\\back\tslash"),
        axis_x: Some(f64::NAN),
        temp_bed: Some(f64::INFINITY),
        fan_print: Some(-0.0),
        speed: Some(1e21),
        flow: Some(0.1 + 0.2),
        job_id: Some(i64::MIN),
        spool_id: Some(u64::MAX),
        dialog: Some(json!({"b": [1, null], "a": "x"})),
        ..Default::default()
    };
    for s in [StatePayload::default(), odd.clone()] {
        assert_eq!(
            String::from_utf8(s.to_json()).unwrap(),
            serde_json::to_string(&s).unwrap()
        );
    }
    odd.updated = Some("2023-11-14T22:23:20Z".into());
    assert_eq!(
        String::from_utf8(odd.to_json()).unwrap(),
        serde_json::to_string(&odd).unwrap()
    );
    let objects = vec![
        JobObject {
            canceled: false,
            id: -1,
            name: None,
        },
        JobObject {
            canceled: true,
            id: 2,
            name: Some("\"},{\""),
        },
    ];
    for cancelable_objects in [Vec::new(), objects] {
        let job = JobPayload {
            cancelable_objects,
            ended: None,
            file: Some("ü\u{7f}"),
            id: 0,
            material: None,
            path: Some("/usb/a b.bgcode"),
            progress: Some(f64::NEG_INFINITY),
            started: Some("2023-11-14T22:13:20Z".into()),
            state: None,
            time_printing: Some(-3),
            time_remaining: None,
            weight: Some(12.5),
        };
        assert_eq!(
            String::from_utf8(job.to_json()).unwrap(),
            serde_json::to_string(&job).unwrap()
        );
    }
}

#[test]
fn no_estimate_means_null_and_offline_wins() {
    let mut p = printing();
    p.job_info.as_mut().unwrap().time_remaining = Some(-1.0);
    p.connect_state = Some(PrinterState::Offline);
    let s = state(&p, 0.0, &QueueFields::default()).to_value();
    assert_eq!(s["state"], "OFFLINE");
    assert_eq!(s["printer_state"], "PRINTING");
    assert_eq!(s["time_remaining"], Value::Null);
    assert_eq!(s["eta"], Value::Null);
}

#[test]
fn finished_payload_only_for_final_states() {
    let p = printing();
    let mut j = Job {
        id: 7,
        state: Some(JobState::FinError),
        ts_started: Some(100.0),
        ts_ended: Some(160.0),
        ..Default::default()
    };
    let f = job_finished(&p, "busy_mk4", &j).unwrap();
    assert_eq!(f["event_type"], "FIN_ERROR");
    assert_eq!(f["duration"], 60);
    assert_eq!(f["duration_s"], 60);
    // Nothing of the record's data or file: null, never guessed.
    for key in ["material", "filament_g", "cost", "layer_height", "file"] {
        assert_eq!(f[key], Value::Null, "{key}");
    }
    j.data = Some(crate::connect::model::JobData {
        material: Some("PETG".into()),
        weight: Some(12.34),
        cost: Some(f64::NAN),
        layer_height: Some(0.2),
        ..Default::default()
    });
    j.files = vec![crate::connect::model::JobFile {
        name: Some("cube.bgcode".into()),
        display_name: Some("Cube".into()),
        path: Some("/usb/cube.bgcode".into()),
        size: Some(1234),
        ..Default::default()
    }];
    let f = job_finished(&p, "busy_mk4", &j).unwrap();
    assert_eq!(f["material"], "PETG");
    assert_eq!(f["filament_g"], 12.34);
    assert_eq!(f["cost"], Value::Null, "not a number");
    assert_eq!(f["layer_height"], 0.2);
    assert_eq!(
        f["file"],
        json!({"name": "Cube", "path": "/usb/cube.bgcode", "size": 1234})
    );
    // A negative print time from Connect is no duration (the fuzz test found one).
    j.time_printing = Some(-1e30);
    assert_eq!(
        job_finished(&p, "busy_mk4", &j).unwrap()["duration"],
        Value::Null
    );
    j.state = Some(JobState::Printing);
    assert!(job_finished(&p, "busy_mk4", &j).is_none());
}
