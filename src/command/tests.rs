//! The command parser and validator, in-process.
use serde_json::json;

use super::*;
use crate::connect::model::{PrinterState, SupportedCommand, SupportedCommands};

fn supported() -> Vec<SupportedCommand> {
    let v = json!({"commands": [
        {"command": "PAUSE_PRINT", "executable_from_state": ["PRINTING"]},
        {"command": "STOP_PRINT", "executable_from_state": ["PRINTING", "PAUSED", "ATTENTION"]},
        {"command": "MOVE", "args": [
            {"name": "x", "type": "number", "required": false, "min_limit": 0, "max_limit": 250},
            {"name": "y", "type": "number", "required": false, "min_limit": 0, "max_limit": 210},
            {"name": "feedrate", "type": "integer", "required": false}],
         "executable_from_state": ["IDLE", "READY", "FINISHED", "STOPPED"]},
        {"command": "SEND_GCODE", "args": ["gcode"]}
    ]});
    serde_json::from_value::<SupportedCommands>(v)
        .unwrap()
        .commands
}

fn allow() -> Vec<String> {
    crate::config::DEFAULT_ALLOWED_COMMANDS
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn bare_names_and_aliases() {
    assert_eq!(parse(b"PAUSE_PRINT").unwrap().command, "PAUSE_PRINT");
    assert_eq!(parse(b" pause \n").unwrap().command, "PAUSE_PRINT");
    assert_eq!(parse(b"\"stop\"").unwrap().command, "STOP_PRINT");
    assert_eq!(parse(b"ready").unwrap().command, "SET_PRINTER_READY");
    assert_eq!(parse(b"resume").unwrap().command, "RESUME_PRINT");
}

#[test]
fn json_with_transaction_and_kwargs() {
    let r = parse(
        br#"{"command":"MOVE","kwargs":{"x":131,"y":134,"feedrate":3000},"transaction":"abc"}"#,
    )
    .unwrap();
    assert_eq!(r.command, "MOVE");
    assert_eq!(r.kwargs["x"], 131);
    assert_eq!(r.transaction, Some(json!("abc")));
}

#[test]
fn bad_payloads_echo_what_they_can() {
    for (payload, needle) in [
        (&b""[..], "empty"),
        (b"\xff\xfe", "UTF-8"),
        (b"{\"command\": 5}", "must be a string"),
        (b"{\"transaction\": 1}", "no \"command\""),
        (b"{\"command\": \"MOVE\", \"kwargs\": [1]}", "kwargs"),
        (b"{\"command\": \"MOVE\", \"kwarg\": {}}", "unknown field"),
        (b"[1,2]", "JSON object"),
        (b"pause now", "not a command name"),
    ] {
        let reply = parse(payload).unwrap_err();
        let err = reply.outcome.clone().unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidPayload);
        assert!(err.message.contains(needle), "{payload:?}: {}", err.message);
    }
    let reply = parse(b"{\"transaction\": \"t1\", \"command\": \"X\", \"kwargs\": 3}").unwrap_err();
    assert_eq!(reply.transaction, Some(json!("t1")));
    assert_eq!(reply.command.as_deref(), Some("X"));
}

#[test]
fn validation_codes() {
    let s = supported();
    let idle = PrinterState::Idle;
    let req = |p: &[u8]| parse(p).unwrap();
    let code = |r: Result<(), CommandError>| r.unwrap_err().code;
    assert_eq!(
        code(validate(&req(b"pause"), &allow(), &s, &idle)),
        ErrorCode::PrinterState
    );
    assert!(validate(&req(b"pause"), &allow(), &s, &PrinterState::Printing).is_ok());
    assert_eq!(
        code(validate(&req(b"FLY"), &allow(), &s, &idle)),
        ErrorCode::UnknownCommand
    );
    assert_eq!(
        code(validate(
            &req(br#"{"command":"SEND_GCODE","kwargs":{"gcode":"M112"}}"#),
            &allow(),
            &s,
            &idle
        )),
        ErrorCode::NotAllowed
    );
    let out = validate(
        &req(br#"{"command":"MOVE","kwargs":{"x":300}}"#),
        &allow(),
        &s,
        &idle,
    )
    .unwrap_err();
    assert_eq!(out.code, ErrorCode::InvalidArgument);
    assert!(out.message.contains("maximum of 250"), "{}", out.message);
    let fast = validate(
        &req(br#"{"command":"MOVE","kwargs":{"feedrate":5000}}"#),
        &allow(),
        &s,
        &idle,
    )
    .unwrap_err();
    assert!(fast.message.contains("3000"), "{}", fast.message);
    assert_eq!(
        code(validate(
            &req(br#"{"command":"MOVE","kwargs":{"x":"10"}}"#),
            &allow(),
            &s,
            &idle
        )),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(validate(
            &req(br#"{"command":"MOVE","kwargs":{"z":1}}"#),
            &allow(),
            &s,
            &idle
        )),
        ErrorCode::InvalidArgument
    );
    assert!(
        validate(
            &req(br#"{"command":"MOVE","kwargs":{"x":10,"y":20,"feedrate":3000}}"#),
            &allow(),
            &s,
            &idle
        )
        .is_ok()
    );
    let state = validate(&req(b"stop"), &allow(), &s, &idle).unwrap_err();
    assert!(
        state.message.contains("PRINTING, PAUSED or ATTENTION"),
        "{}",
        state.message
    );
}

#[test]
fn move_is_relative_so_an_axis_bounds_it_both_ways() {
    // Connect's document gives MOVE's x and y no limits; the type's axis ranges do.
    let v = json!({"commands": [{"command": "MOVE", "args": [
        {"name": "x", "type": "number", "required": false, "unit": "mm"},
        {"name": "y", "type": "number", "required": false, "unit": "mm"},
        {"name": "feedrate", "type": "integer", "required": true, "max_limit": 3000}],
        "executable_from_state": ["IDLE"]}]});
    let s = serde_json::from_value::<SupportedCommands>(v)
        .unwrap()
        .commands;
    let params = json!({"axis_x": {"min": 0, "max": 250}, "axis_y": {"min": 0, "max": 210}});
    let limits = type_limits(Some(&params), "Original Prusa MK4");
    let y = limits.iter().find(|l| l.arg == "y").unwrap();
    assert_eq!((y.min, y.max), (Some(-210.0), Some(210.0)));
    let check = |kwargs: &str| {
        let payload = format!(r#"{{"command":"MOVE","kwargs":{kwargs}}}"#);
        validate_with_limits(
            &parse(payload.as_bytes()).unwrap(),
            &allow(),
            &s,
            &PrinterState::Idle,
            &limits,
        )
    };
    assert!(check(r#"{"y":-10,"feedrate":3000}"#).is_ok());
    assert!(check(r#"{"x":-250,"y":210,"feedrate":3000}"#).is_ok());
    let far = check(r#"{"y":400,"feedrate":3000}"#).unwrap_err();
    assert_eq!(far.code, ErrorCode::InvalidArgument);
    assert!(
        far.message.contains("210") && far.message.contains("MK4"),
        "{}",
        far.message
    );
    let back = check(r#"{"y":-211,"feedrate":3000}"#).unwrap_err();
    assert!(back.message.contains("-210"), "{}", back.message);
}

#[test]
fn job_reasons() {
    let r = parse_job_reason(
        br#"{"tags":["warping","OTHER"],"other":"corner lifted","transaction":"t"}"#,
    )
    .unwrap();
    assert_eq!(
        r.reason,
        json!({"tag": ["WARPING", "OTHER"], "other": "corner lifted"})
    );
    assert_eq!(r.job_id, None);
    let bad = parse_job_reason(br#"{"tags":["GREMLINS"]}"#)
        .unwrap_err()
        .outcome
        .unwrap_err();
    assert_eq!(bad.code, ErrorCode::InvalidArgument);
    assert!(bad.message.contains("GREMLINS"));
    assert!(parse_job_reason(b"warping").is_err());
    assert!(parse_job_reason(br#"{"job_id":"x","tags":["OTHER"]}"#).is_err());
}

#[test]
fn replies_are_well_formed() {
    let r = parse(br#"{"command":"PAUSE_PRINT","transaction":7}"#).unwrap();
    assert_eq!(
        CommandReply::ok(&r, Some(1075350)).to_json(),
        json!({"transaction": 7, "command": "PAUSE_PRINT", "status": "ok", "connect_command_id": 1075350})
    );
    let e = CommandReply::error(&r, CommandError::new(ErrorCode::PrinterState, "no")).to_json();
    assert_eq!(e["code"], "PRINTER_STATE");
    assert_eq!(e["status"], "error");
}

#[test]
fn reason_tags_match_the_simulators() {
    // Both lists copy Connect's; a tag added to one only would pass here and fail on Connect
    // (or the other way round).
    assert_eq!(REASON_TAGS, prusa_connect_sim::REASON_TAGS);
}
