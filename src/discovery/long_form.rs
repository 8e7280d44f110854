//! A discovery payload as Home Assistant reads it: the abbreviated keys spelled out and `~`
//! replaced, the way its `discovery.py` does (2024.3.3 and 2026.2.3 alike). The gateway never
//! needs it; the tests read discovery through it, so what they assert does not depend on how
//! the payload is abbreviated.

use serde_json::{Map, Value};

/// The abbreviations of an entity's keys (and of an availability entry's) the gateway uses,
/// from Home Assistant's `ABBREVIATIONS`.
const KEYS: &[(&str, &str)] = &[
    ("atype", "automation_type"),
    ("avty", "availability"),
    ("avty_mode", "availability_mode"),
    ("cmd_t", "command_topic"),
    ("cmd_tpl", "command_template"),
    ("cmps", "components"),
    ("cont_type", "content_type"),
    ("def_ent_id", "default_entity_id"),
    ("dev", "device"),
    ("dev_cla", "device_class"),
    ("ent_cat", "entity_category"),
    ("evt_typ", "event_types"),
    ("ic", "icon"),
    ("img_t", "image_topic"),
    ("o", "origin"),
    ("obj_id", "object_id"),
    ("ops", "options"),
    ("p", "platform"),
    ("pl", "payload"),
    ("pl_prs", "payload_press"),
    ("stat_cla", "state_class"),
    ("stat_t", "state_topic"),
    ("stype", "subtype"),
    ("sug_dsp_prc", "suggested_display_precision"),
    ("t", "topic"),
    ("uniq_id", "unique_id"),
    ("unit_of_meas", "unit_of_measurement"),
    ("val_tpl", "value_template"),
];

/// `DEVICE_ABBREVIATIONS`.
const DEVICE_KEYS: &[(&str, &str)] = &[
    ("cu", "configuration_url"),
    ("ids", "identifiers"),
    ("mdl", "model"),
    ("mf", "manufacturer"),
    ("sn", "serial_number"),
    ("sw", "sw_version"),
];

/// `ORIGIN_ABBREVIATIONS`.
const ORIGIN_KEYS: &[(&str, &str)] = &[("sw", "sw_version"), ("url", "support_url")];

/// `payload` with its keys spelled out and `~` replaced. A device-based payload's components
/// are read one by one, each with its own `~`; a `~` at a device-based payload's top is left
/// in place (Home Assistant refuses such a payload).
pub fn long_form(payload: &Value) -> Value {
    let mut payload = payload.clone();
    let Some(top) = payload.as_object_mut() else {
        return payload;
    };
    expand(top, KEYS);
    if let Some(Value::Object(device)) = top.get_mut("device") {
        expand(device, DEVICE_KEYS);
    }
    if let Some(Value::Object(origin)) = top.get_mut("origin") {
        expand(origin, ORIGIN_KEYS);
    }
    expand_availability(top);
    match top.get_mut("components") {
        Some(Value::Object(components)) => {
            for component in components.values_mut() {
                if let Some(component) = component.as_object_mut() {
                    expand(component, KEYS);
                    expand_availability(component);
                    replace_base(component);
                }
            }
        }
        _ => replace_base(top),
    }
    payload
}

fn expand(map: &mut Map<String, Value>, keys: &[(&str, &str)]) {
    for (short, long) in keys {
        if let Some(value) = map.remove(*short) {
            map.insert(long.to_string(), value);
        }
    }
}

fn expand_availability(map: &mut Map<String, Value>) {
    if let Some(Value::Array(list)) = map.get_mut("availability") {
        for entry in list.iter_mut().filter_map(Value::as_object_mut) {
            expand(entry, KEYS);
        }
    }
}

/// Home Assistant's `_replace_topic_base`: in keys ending in `topic` and in availability
/// entries, a leading `~` becomes the base, and so does a trailing one.
fn replace_base(map: &mut Map<String, Value>) {
    let Some(Value::String(base)) = map.remove("~") else {
        return;
    };
    let with_base = |topic: &mut Value| {
        if let Value::String(t) = topic {
            if let Some(rest) = t.strip_prefix('~') {
                *t = format!("{base}{rest}");
            } else if let Some(rest) = t.strip_suffix('~') {
                *t = format!("{rest}{base}");
            }
        }
    };
    for (key, value) in map.iter_mut() {
        if key.ends_with("topic") {
            with_base(value);
        }
    }
    if let Some(Value::Array(list)) = map.get_mut("availability") {
        for entry in list.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(topic) = entry.get_mut("topic") {
                with_base(topic);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_and_base_are_spelled_out() {
        let short = json!({
            "~": "b/p",
            "stat_t": "~/state",
            "cmd_t": "x/command",
            "avty": [{"t": "~/availability"}, {"t": "b/bridge/state", "val_tpl": "{{ 1 }}"}],
            "dev": {"ids": ["n"], "mf": "M", "name": "N", "via_device": "v"},
            "o": {"name": "o", "sw": "1", "url": "u"},
            "name": "~/not a topic",
        });
        assert_eq!(
            long_form(&short),
            json!({
                "state_topic": "b/p/state",
                "command_topic": "x/command",
                "availability": [
                    {"topic": "b/p/availability"},
                    {"topic": "b/bridge/state", "value_template": "{{ 1 }}"},
                ],
                "device": {"identifiers": ["n"], "manufacturer": "M", "name": "N", "via_device": "v"},
                "origin": {"name": "o", "sw_version": "1", "support_url": "u"},
                "name": "~/not a topic",
            })
        );
    }

    #[test]
    fn each_component_has_its_own_base() {
        let short = json!({
            "~": "top",
            "cmps": {
                "a": {"p": "sensor", "~": "b/a", "stat_t": "~/state"},
                "b": {"p": "sensor", "stat_t": "~/state"},
            },
        });
        assert_eq!(
            long_form(&short),
            json!({
                "~": "top",
                "components": {
                    "a": {"platform": "sensor", "state_topic": "b/a/state"},
                    "b": {"platform": "sensor", "state_topic": "~/state"},
                },
            })
        );
    }
}
