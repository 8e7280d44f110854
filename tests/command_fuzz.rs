//! Property tests: whatever bytes or JSON arrive on a command topic, the parser and the
//! validator never panic and always produce one well-formed reply.

use proptest::prelude::*;
use prusa_connect_mqtt::command::{self, CommandReply};
use prusa_connect_mqtt::config::DEFAULT_ALLOWED_COMMANDS;
use prusa_connect_mqtt::connect::model::{PrinterState, SupportedCommands};
use serde_json::{Value, json};

fn supported() -> SupportedCommands {
    serde_json::from_value(json!({"commands": [
        {"command": "PAUSE_PRINT", "executable_from_state": ["PRINTING"]},
        {"command": "MOVE", "args": [
            {"name": "x", "type": "number", "required": false, "min_limit": 0, "max_limit": 250},
            {"name": "feedrate", "type": "integer", "required": true, "max_limit": 3000}],
         "executable_from_state": ["IDLE"]},
        {"command": "CANCEL_OBJECT", "args": [{"name": "object_id", "type": "integer", "required": true}]},
        {"command": "SEND_GCODE", "args": ["gcode"]}
    ]}))
    .unwrap()
}

/// The reply a message gets, as the bridge builds it before talking to Connect.
fn reply_for(payload: &[u8], state: &PrinterState) -> Value {
    let allow: Vec<String> = DEFAULT_ALLOWED_COMMANDS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let reply = match command::parse(payload) {
        Err(reply) => reply,
        Ok(req) => match command::validate(&req, &allow, &supported().commands, state) {
            Ok(()) => CommandReply::ok(&req, Some(1)),
            Err(e) => CommandReply::error(&req, e),
        },
    };
    reply.to_json()
}

fn well_formed(reply: &Value) -> bool {
    let Some(o) = reply.as_object() else {
        return false;
    };
    match o.get("status").and_then(Value::as_str) {
        Some("ok") => !o.contains_key("code"),
        Some("error") => {
            o.get("error")
                .and_then(Value::as_str)
                .is_some_and(|e| !e.is_empty())
                && o.get("code").and_then(Value::as_str).is_some()
        }
        _ => false,
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        ".{0,20}".prop_map(Value::from),
        prop_oneof![
            Just("MOVE"),
            Just("pause"),
            Just("CANCEL_OBJECT"),
            Just("SEND_GCODE"),
            Just("x"),
            Just("feedrate"),
            Just("object_id")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("command".to_string()),
                    Just("kwargs".to_string()),
                    Just("transaction".to_string()),
                    Just("x".to_string()),
                    Just("feedrate".to_string()),
                    ".{0,8}".prop_map(|s| s)
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_get_one_well_formed_reply(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for state in [PrinterState::Idle, PrinterState::Printing, PrinterState::Other("X".into())] {
            let reply = reply_for(&bytes, &state);
            prop_assert!(well_formed(&reply), "{reply}");
        }
    }

    #[test]
    fn arbitrary_json_gets_one_well_formed_reply(v in json_value()) {
        let bytes = serde_json::to_vec(&v).unwrap();
        let reply = reply_for(&bytes, &PrinterState::Idle);
        prop_assert!(well_formed(&reply), "{v} -> {reply}");
    }

    #[test]
    fn moves_outside_the_limits_are_never_ok(x in -1e6f64..1e6, feedrate in -10_000i64..10_000) {
        let payload = json!({"command": "MOVE", "kwargs": {"x": x, "feedrate": feedrate}}).to_string();
        let reply = reply_for(payload.as_bytes(), &PrinterState::Idle);
        let inside = (0.0..=250.0).contains(&x) && (1..=3000).contains(&feedrate);
        prop_assert_eq!(reply["status"] == "ok", inside, "{}", reply);
    }
}
