//! A printer's entities: what it shows (sensors, binary sensors, the firmware), the buttons
//! every printer has, its device triggers and cameras; the controls that depend on its
//! supported commands are in `controls.rs`.

use serde_json::{Value, json};

use super::{Discovery, Entity, Features, NO_OBJECTS, PrinterDevice, merge};
use crate::connect::model::{JobState, PrinterState};
use crate::payloads::StatePayload;

/// The device triggers of a printer: `(object, type, payload on P/trigger)`. Home Assistant's
/// automation editor offers them as "when <printer> <type>".
/// (The objects are prefixed: "print_finished" is also the event entity's.)
pub const TRIGGERS: &[(&str, &str)] = &[
    ("trigger_print_started", "print_started"),
    ("trigger_print_finished", "print_finished"),
    ("trigger_print_failed", "print_failed"),
    ("trigger_print_stopped", "print_stopped"),
    ("trigger_attention_needed", "attention_needed"),
];

impl Discovery {
    pub(super) fn printer_entities(&self, p: &PrinterDevice) -> Vec<Entity> {
        let (id, objects, cameras) = (p.id.as_str(), &p.objects, &p.cameras);
        let state = self.topics.state(id);
        let command = self.topics.command(id);
        let button = |object: &'static str,
                      name: &str,
                      press: &str,
                      icon: &str,
                      states: &[PrinterState]| {
            let allowed: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
            Entity {
                object: object.into(),
                component: "button",
                options: json!({
                    "name": name,
                    "command_topic": command,
                    "payload_press": press,
                    "icon": icon,
                    // Available only in the states where Connect accepts the command.
                    "availability": [{
                        "topic": state,
                        "value_template": format!(
                            "{{{{ 'online' if value_json is defined and value_json.state in {} else 'offline' }}}}",
                            serde_json::to_string(&allowed).unwrap_or_default()
                        ),
                    }],
                }),
            }
        };
        let finished = self.topics.job_finished(id);
        let sensor = |object: &'static str, name: &str, template: &str, extra: Value| {
            state_sensor(&state, object, name, template, extra)
        };
        // `{{ value_json.<field> }}` of a field `P/state` has. Every template tolerates an
        // empty payload (a state topic cleared as its printer goes): Home Assistant may still
        // hold the entity when the clear arrives, and `value_json` is then undefined (an
        // ERROR in its log). Numeric sensors ignore the empty value.
        let field = |name: &str| {
            format!(
                "{{{{ {} if value_json is defined else '' }}}}",
                StatePayload::template_field(name)
            )
        };
        // A timestamp that may be null: Home Assistant before 2024.10 warns about any value of
        // a timestamp sensor that is not a time, null included. While it is null the entity
        // is unavailable and the value (never shown) is a valid time.
        let timestamp = |object: &'static str, name: &str, key: &str| {
            let f = StatePayload::template_field(key);
            sensor(
                object,
                name,
                &format!(
                    "{{% if value_json is defined and {f} %}}{{{{ {f} }}}}{{% else %}}{{{{ now().isoformat() }}}}{{% endif %}}"
                ),
                json!({"device_class": "timestamp", "availability": [{
                    "topic": state,
                    "value_template": format!(
                        "{{{{ 'online' if value_json is defined and {f} else 'offline' }}}}"
                    ),
                }]}),
            )
        };
        let temperature = |object: &'static str, name: &str, key: &str| {
            sensor(
                object,
                name,
                &field(key),
                json!({"device_class": "temperature", "unit_of_measurement": "°C",
                       "state_class": "measurement", "suggested_display_precision": 1}),
            )
        };
        let camera_entities = cameras.iter().map(|(camera, name)| Entity {
            object: format!("camera_{}", crate::topics::slug(camera)).into(),
            component: "camera",
            options: json!({
                "name": name,
                "topic": self.topics.camera(id, camera),
                "icon": "mdi:cctv",
            }),
        });
        let mut states: Vec<&str> = PrinterState::KNOWN.to_vec();
        states.sort();
        let known_states = serde_json::to_string(&states).unwrap_or_default();
        let mut entities = vec![
            sensor(
                "state",
                "State",
                // An enum sensor rejects values outside its options: map new ones to UNKNOWN.
                &format!(
                    "{{{{ value_json.state if value_json is defined and value_json.state in {known_states} else 'UNKNOWN' }}}}"
                ),
                json!({"device_class": "enum", "options": states, "icon": "mdi:printer-3d"}),
            ),
            sensor(
                "progress",
                "Progress",
                &field("progress"),
                json!({"unit_of_measurement": "%", "state_class": "measurement",
                       "icon": "mdi:progress-clock", "suggested_display_precision": 0}),
            ),
            sensor(
                "time_remaining",
                "Time remaining",
                &field("time_remaining"),
                json!({"device_class": "duration", "unit_of_measurement": "s"}),
            ),
            sensor(
                "time_printing",
                "Time printing",
                &field("time_printing"),
                json!({"device_class": "duration", "unit_of_measurement": "s"}),
            ),
            timestamp("eta", "ETA", "eta"),
            timestamp("job_started", "Job started", "job_started"),
            sensor(
                "job_name",
                "Job name",
                &field("job_name"),
                json!({"icon": "mdi:file-document-outline"}),
            ),
            temperature("temp_nozzle", "Nozzle temperature", "temp_nozzle"),
            temperature("target_nozzle", "Nozzle target", "target_nozzle"),
            temperature("temp_bed", "Bed temperature", "temp_bed"),
            temperature("target_bed", "Bed target", "target_bed"),
            sensor(
                "material",
                "Material",
                &field("material"),
                json!({"icon": "mdi:printer-3d-nozzle"}),
            ),
            sensor(
                "speed",
                "Speed",
                &field("speed"),
                json!({"unit_of_measurement": "%", "icon": "mdi:speedometer"}),
            ),
            sensor(
                "z_height",
                "Z height",
                &field("axis_z"),
                json!({"device_class": "distance", "unit_of_measurement": "mm",
                       "state_class": "measurement", "suggested_display_precision": 1}),
            ),
            sensor(
                "queue_count",
                "Queued jobs",
                &field("queue_count"),
                json!({"state_class": "measurement", "icon": "mdi:tray-full"}),
            ),
            sensor(
                "queue_next",
                "Next queued job",
                &field("queue_next"),
                json!({"icon": "mdi:tray-arrow-up"}),
            ),
            sensor(
                "download_queue_count",
                "Downloads waiting",
                &field("download_queue_count"),
                json!({"state_class": "measurement", "icon": "mdi:tray-arrow-down"}),
            ),
            Entity {
                object: "printing".into(),
                component: "binary_sensor",
                options: json!({
                    "name": "Printing",
                    "state_topic": state,
                    "value_template": "{{ 'ON' if value_json is defined and value_json.printing else 'OFF' }}",
                    "device_class": "running",
                }),
            },
            Entity {
                object: "attention".into(),
                component: "binary_sensor",
                options: json!({
                    "name": "Needs attention",
                    "state_topic": state,
                    "value_template": "{{ 'ON' if value_json is defined and value_json.attention else 'OFF' }}",
                    "device_class": "problem",
                }),
            },
            button(
                "pause",
                "Pause",
                "PAUSE_PRINT",
                "mdi:pause",
                &[PrinterState::Printing],
            ),
            button(
                "resume",
                "Resume",
                "RESUME_PRINT",
                "mdi:play",
                &[PrinterState::Paused],
            ),
            button(
                "stop",
                "Stop",
                "STOP_PRINT",
                "mdi:stop",
                &[
                    PrinterState::Printing,
                    PrinterState::Paused,
                    PrinterState::Attention,
                ],
            ),
            button(
                "set_ready",
                "Set ready",
                "SET_PRINTER_READY",
                "mdi:check-circle-outline",
                &[
                    PrinterState::Idle,
                    PrinterState::Finished,
                    PrinterState::Stopped,
                    PrinterState::Ready,
                ],
            ),
            Entity {
                object: "cancel_object".into(),
                component: "select",
                options: json!({
                    "name": "Cancel object",
                    "command_topic": command,
                    "command_template": "{\"command\": \"CANCEL_OBJECT\", \"kwargs\": {\"object_name\": {{ value | tojson }}}}",
                    "options": if objects.is_empty() { vec![NO_OBJECTS.to_string()] } else { objects.to_vec() },
                    "icon": "mdi:cancel",
                    "availability": [{
                        "topic": self.topics.job(id),
                        "value_template": "{{ 'online' if value_json is defined and value_json.state in ['PRINTING', 'PAUSED'] and value_json.cancelable_objects | rejectattr('canceled') | list | length > 0 else 'offline' }}",
                    }],
                }),
            },
            Entity {
                object: "print_finished".into(),
                component: "event",
                options: json!({
                    "name": "Print finished",
                    "state_topic": finished,
                    "event_types": [
                        JobState::FinOk.as_str(),
                        JobState::FinError.as_str(),
                        JobState::FinStopped.as_str()
                    ],
                    "icon": "mdi:printer-3d",
                }),
            },
        ];
        entities.extend(self.feature_entities(id, &p.features));
        entities.extend(p.controls.entities(&self.topics, id));
        entities.extend(self.triggers(id));
        entities.extend(camera_entities);
        entities
    }

    /// Sensors of data only some printers send: created when Connect sends it.
    fn feature_entities(&self, id: &str, features: &Features) -> Vec<Entity> {
        let state = self.topics.state(id);
        let sensor = |object: &'static str, name: &str, key: &str, extra: Value| {
            let f = StatePayload::template_field(key);
            let template = format!("{{{{ {f} if value_json is defined else '' }}}}");
            state_sensor(&state, object, name, &template, extra)
        };
        let temperature = json!({"device_class": "temperature", "unit_of_measurement": "°C",
                                 "state_class": "measurement", "suggested_display_precision": 1});
        let fan = json!({"unit_of_measurement": "RPM", "state_class": "measurement",
                         "icon": "mdi:fan", "entity_category": "diagnostic"});
        let mut entities = Vec::new();
        if features.chamber {
            entities.push(sensor(
                "temp_chamber",
                "Chamber temperature",
                "temp_chamber",
                temperature.clone(),
            ));
            entities.push(sensor(
                "target_chamber",
                "Chamber target",
                "target_chamber",
                temperature,
            ));
        }
        if features.chamber_led {
            entities.push(sensor(
                "chamber_led_level",
                "Chamber light level",
                "chamber_led",
                json!({"unit_of_measurement": "%", "icon": "mdi:led-on"}),
            ));
        }
        if features.fans {
            entities.push(sensor(
                "fan_hotend",
                "Hotend fan",
                "fan_hotend",
                fan.clone(),
            ));
            entities.push(sensor("fan_print", "Print fan", "fan_print", fan));
        }
        entities.push(Entity {
            object: "job_preview".into(),
            component: "image",
            options: json!({
                "name": "Print preview",
                "image_topic": self.topics.job_preview(id),
                "content_type": "image/png",
                "icon": "mdi:image-outline",
            }),
        });
        let firmware = StatePayload::template_field("firmware");
        let latest = StatePayload::template_field("firmware_latest");
        entities.push(Entity {
            object: "firmware".into(),
            component: "update",
            options: json!({
                "name": "Firmware",
                "state_topic": state,
                // Installed: the printer's; latest: the type's stable release when Connect
                // lists one (no install action: firmware is flashed on the printer).
                "value_template": format!(
                    "{{{{ {{'installed_version': {firmware} or '', 'latest_version': ({latest} or {firmware} or '')}} | tojson if value_json is defined else '' }}}}"
                ),
                "device_class": "firmware",
                "entity_category": "diagnostic",
            }),
        });
        entities
    }

    /// The device triggers: messages on `P/trigger`.
    fn triggers(&self, id: &str) -> Vec<Entity> {
        TRIGGERS
            .iter()
            .map(|(object, payload)| Entity {
                object: (*object).into(),
                component: "device_automation",
                options: json!({
                    "automation_type": "trigger",
                    "topic": self.topics.trigger(id),
                    "type": payload,
                    "subtype": "printer",
                    "payload": payload,
                }),
            })
            .collect()
    }
}

/// A sensor of `P/state` (`state_topic`) with this template and options.
fn state_sensor(
    state_topic: &str,
    object: &'static str,
    name: &str,
    template: &str,
    extra: Value,
) -> Entity {
    let mut options = json!({
        "name": name,
        "state_topic": state_topic,
        "value_template": template,
    });
    merge(&mut options, extra);
    Entity {
        object: object.into(),
        component: "sensor",
        options,
    }
}
