//! Connect's JSON as captured, parsed tolerantly.

use super::*;
use serde_json::json;

#[test]
fn printer_from_facts_file_parses() {
    let v: serde_json::Value = serde_json::from_str(include_str!(
        "../../../tests/fixtures/printer_from_facts.json"
    ))
    .unwrap();
    let p: Printer = serde_json::from_value(v).unwrap();
    assert_eq!(p.effective_state(), PrinterState::Printing);
    assert_eq!(p.temp.as_ref().unwrap().target_bed, Some(85.0));
    let job = p.job_info.unwrap();
    assert_eq!(job.id, Some(85));
    assert_eq!(job.state, Some(JobState::Printing));
    assert_eq!(p.speed, Some(100.0));
}

#[test]
fn offline_printer_keeps_stale_state_but_is_offline() {
    let p: Printer = serde_json::from_value(json!({
        "uuid": "u", "printer_state": "PRINTING", "connect_state": "OFFLINE"
    }))
    .unwrap();
    assert_eq!(p.effective_state(), PrinterState::Offline);
}

#[test]
fn unknown_enum_values_are_kept() {
    let p: Printer = serde_json::from_value(json!({
        "uuid": "u", "printer_state": "LEVITATING", "connect_state": "LEVITATING",
        "brand_new_field": {"x": 1}
    }))
    .unwrap();
    assert_eq!(
        p.effective_state(),
        PrinterState::Other("LEVITATING".into())
    );
    assert_eq!(p.effective_state().as_str(), "LEVITATING");
}

#[test]
fn job_detail_from_notes_parses() {
    let v = json!({
      "id": 319,
      "state": "FIN_OK",
      "cancelable": {"objects": [
          {"id": 0, "name": "Object Name", "polygon": [[126.7, 87.5]], "canceled": false}
      ]},
      "file": {"name": "filename.bgcode",
               "meta": {"objects_info": {"objects": [{"name": "Object Name", "polygon": []}]}}}
    });
    let j: Job = serde_json::from_value(v).unwrap();
    assert_eq!(j.state, Some(JobState::FinOk));
    assert_eq!(
        j.cancelable.unwrap().objects[0].name.as_deref(),
        Some("Object Name")
    );
    assert_eq!(j.file.unwrap().name.as_deref(), Some("filename.bgcode"));
}

#[test]
fn jobs_list_from_notes_parses() {
    let v = json!({
      "jobs": [{
          "id": 1690023, "state": "FIN_OK", "progress": 100, "time_printing": 7562,
          "time_remaining": null, "mode": "MK4S", "source": "connect",
          "ts_started": 1769805961, "ts_ended": 1769813523,
          "files": [{"name": "corner-bracket_x2.bgcode", "path": "/usb/corner-bracket_x2.bgcode",
                     "display_name": "corner-bracket_x2", "size": 42589, "m_time": 1769792040,
                     "preview_url": "..."}],
          "data": {"material": "PETG", "weight": 12.34, "cost": 0.5, "tool": 0, "layer_height": 0.2}
      }],
      "pager": {"limit": 3, "offset": 0, "total": 5, "from": 1769805961, "to": 1770090594}
    });
    let l: JobList = serde_json::from_value(v).unwrap();
    assert_eq!(l.jobs[0].file_name(), Some("corner-bracket_x2"));
    assert_eq!(l.jobs[0].data.as_ref().unwrap().weight, Some(12.34));
    assert_eq!(l.pager.total, Some(5));
}

#[test]
fn events_from_notes_parse() {
    let v = json!({
      "events": [{"server_time": 1770092716.366299, "event": "STATE_CHANGED", "source": "UNKNOWN",
                  "transfer_id": 1036477693, "command": "SET_PRINTER_READY", "command_id": 1075307,
                  "state": "READY", "created": 1770092716.34737}],
      "pager": {"limit": 5, "offset": 0, "from": 1770006393, "to": 1770092794}
    });
    let page: EventPage = serde_json::from_value(v).unwrap();
    let e = FeedEvent::from_value(page.events[0].clone()).unwrap();
    assert_eq!(e.event, "STATE_CHANGED");
    assert_eq!(e.created, 1770092716.34737);
    assert!(FeedEvent::from_value(json!({"event": "X"})).is_none());
    assert!(FeedEvent::from_value(json!("nonsense")).is_none());
}

#[test]
fn supported_commands_both_forms_parse() {
    let v = json!({"commands": [
        {"command": "SEND_GCODE", "args": ["gcode"], "template": "M997 {path}"},
        {"command": "PAUSE_PRINT", "template": "M25"},
        {"command": "MOVE", "args": [
            {"name": "feedrate", "type": "integer", "required": false, "max_limit": 3000, "unit": "mm/min"},
            {"name": "x", "type": "number", "required": false, "min_limit": 0, "max_limit": 250}],
         "executable_from_state": ["IDLE", "READY", "SOMETHING_NEW"]}
    ]});
    let s: SupportedCommands = serde_json::from_value(v).unwrap();
    assert_eq!(s.commands[0].args[0].name, "gcode");
    assert!(s.commands[0].args[0].required);
    let mv = &s.commands[2];
    assert_eq!(mv.args[0].max, Some(3000.0));
    assert!(!mv.args[0].required);
    assert_eq!(
        mv.executable_from_state.as_ref().unwrap()[2],
        PrinterState::Other("SOMETHING_NEW".into())
    );
}

#[test]
fn command_result_from_notes_parses() {
    let v = json!({
      "command": {"id": 1075350, "state": "CREATED", "command": "STOP_PRINT",
                  "received": 1770096073, "source": "CONNECT_USER", "kwargs": {}},
      "event": {"event": "FINISHED", "command": "STOP_PRINT", "state": "PRINTING",
                "created": 1770096074.410354}
    });
    let r: CommandResult = serde_json::from_value(v).unwrap();
    assert_eq!(r.command.id, 1075350);
}

#[test]
fn small_endpoints_from_notes_parse() {
    let q: Queue = serde_json::from_value(json!({"planned_jobs": [],
        "pager": {"limit": 1, "offset": 0, "total": 0, "from": 1770090594}}))
    .unwrap();
    assert!(q.planned_jobs.is_empty());
    let c: CameraList = serde_json::from_value(json!({"cameras": [{
        "id": 414362, "name": "Buddy3D Camera",
        "config": {"name": "Buddy3D Camera", "path": "private", "model": "Buddy3D",
                   "resolution": {"width": 1920, "height": 1080}, "trigger_scheme": "THIRTY_SEC"},
        "capabilities": ["trigger_scheme"], "features": ["SocketCom", "GetSnapshot"],
        "token": "...", "registered": true}],
        "pager": {"limit": 20, "offset": 0, "total": 1}}))
    .unwrap();
    assert_eq!(c.cameras[0].id_string(), "414362");
    let v: ServerVersion = serde_json::from_value(json!(
        {"commit": "baef7db3", "version": "baef7db3", "date": "2026-02-02T11:49:56.846Z"}))
    .unwrap();
    assert_eq!(v.version.as_deref(), Some("baef7db3"));
    let u: Unseen = serde_json::from_value(json!({"unseen": 1})).unwrap();
    assert_eq!(u.unseen, 1);
    let t: PrinterTypes = serde_json::from_value(json!({"printer_types": [{
        "id": "1.2.5", "type": 1, "version": 2, "subversion": 5, "name": "Original Prusa i3 MK2.5",
        "parameters": {"extrusion": {"max": 100, "min": -10, "default": 10}},
        "fw_device_type_id": "1.2.5", "support": {"stable": "0.8.1"}}]}))
    .unwrap();
    assert_eq!(
        t.printer_types[0].name.as_deref(),
        Some("Original Prusa i3 MK2.5")
    );
    let e: ApiError = serde_json::from_value(json!(
        {"code": "UNAUTHORIZED", "message": "Missing or invalid security token"}))
    .unwrap();
    assert_eq!(e.code.as_deref(), Some("UNAUTHORIZED"));
}
