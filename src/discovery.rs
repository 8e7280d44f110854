//! Home Assistant MQTT discovery: pure functions from printers to `(topic, payload)` pairs.
//!
//! Each entity is described once ([`printer_entities`]); mode `device` packs them into one
//! device-based message per printer, mode `entity` sends one message per entity. Discovery
//! topics and unique ids are built from the printer uuid, so renaming a printer (which changes
//! its topic id) updates its entities instead of orphaning them.

use serde_json::{Map, Value, json};

use crate::config::DiscoveryMode;
use crate::connect::model::{CancelableObject, JobState, PrinterState};
use crate::payloads::StatePayload;
use crate::topics::Topics;

/// What discovery needs to know about a printer.
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterDevice {
    pub uuid: String,
    /// The printer's topic id (`P`).
    pub id: String,
    pub name: String,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub firmware: Option<String>,
    pub configuration_url: Option<String>,
    /// Labels of the current job's objects not canceled yet (the "Cancel object" options).
    pub objects: Vec<String>,
    /// The printer's cameras in Connect: `(camera id, name)`.
    pub cameras: Vec<(String, String)>,
}

impl PrinterDevice {
    /// A printer known by its uuid, id and name only (no job, no cameras).
    pub fn bare(uuid: &str, id: &str, name: &str) -> PrinterDevice {
        PrinterDevice {
            uuid: uuid.to_string(),
            id: id.to_string(),
            name: name.to_string(),
            model: None,
            serial: None,
            firmware: None,
            configuration_url: None,
            objects: Vec::new(),
            cameras: Vec::new(),
        }
    }
}

/// Shown as the only option of "Cancel object" when the job has none (HA needs one).
pub const NO_OBJECTS: &str = "(no cancelable objects)";

/// A label per object, unique even when names repeat: `(object id, label)`.
pub fn object_labels(objects: &[CancelableObject]) -> Vec<(i64, String)> {
    let mut used = std::collections::HashSet::new();
    objects
        .iter()
        .map(|o| {
            let name = o.name.clone().unwrap_or_else(|| format!("Object {}", o.id));
            let repeated = objects.iter().filter(|x| x.name == o.name).count() > 1;
            let wanted = if repeated {
                format!("{name} (#{})", o.id)
            } else {
                name
            };
            // An object may be *named* like another's label ("a (#1)"): number the later one.
            let mut label = wanted.clone();
            let mut n = 1;
            while !used.insert(label.clone()) {
                n += 1;
                label = format!("{wanted} ({n})");
            }
            (o.id, label)
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct Discovery {
    pub prefix: String,
    pub mode: DiscoveryMode,
    pub topics: Topics,
}

/// One entity: its object id, platform and the platform-specific options.
struct Entity {
    object: std::borrow::Cow<'static, str>,
    component: &'static str,
    options: Value,
}

const ORIGIN_URL: &str = "https://github.com/prusa-connect-mqtt/prusa-connect-mqtt";

pub fn node_id(uuid: &str) -> String {
    format!("prusa_connect_{uuid}")
}

impl Discovery {
    fn bridge_node(&self) -> String {
        format!("{}_bridge", crate::topics::slug(self.topics.base()))
    }

    fn origin() -> Value {
        json!({
            "name": "prusa-connect-mqtt",
            "sw_version": env!("CARGO_PKG_VERSION"),
            "support_url": ORIGIN_URL,
        })
    }

    fn printer_entities(
        &self,
        id: &str,
        objects: &[String],
        cameras: &[(String, String)],
    ) -> Vec<Entity> {
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
            let mut options = json!({
                "name": name,
                "state_topic": state,
                "value_template": template,
            });
            merge(&mut options, extra);
            Entity {
                object: object.into(),
                component: "sensor",
                options,
            }
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
        entities.extend(camera_entities);
        entities
    }

    fn availability(&self, id: Option<&str>) -> Value {
        let mut list = vec![json!({"topic": self.topics.bridge_state()})];
        if let Some(id) = id {
            list.push(json!({"topic": self.topics.availability(id)}));
        }
        json!(list)
    }

    fn printer_device_info(&self, p: &PrinterDevice) -> Value {
        let mut dev = json!({
            "identifiers": [node_id(&p.uuid)],
            "name": p.name,
            "manufacturer": "Prusa Research",
            "via_device": self.bridge_node(),
        });
        let d = dev.as_object_mut().expect("object literal");
        for (key, value) in [
            ("model", &p.model),
            ("serial_number", &p.serial),
            ("sw_version", &p.firmware),
            ("configuration_url", &p.configuration_url),
        ] {
            if let Some(v) = value {
                d.insert(key.into(), json!(v));
            }
        }
        dev
    }

    /// Discovery messages of one printer.
    pub fn printer(&self, p: &PrinterDevice) -> Vec<(String, Value)> {
        let node = node_id(&p.uuid);
        let entities = self.printer_entities(&p.id, &p.objects, &p.cameras);
        let device = self.printer_device_info(p);
        self.pack(&node, device, Some(&p.id), entities)
    }

    /// Discovery topics of a printer with these cameras, for removing it (empty retained
    /// payloads) or the entities it no longer has.
    pub fn printer_topics(&self, uuid: &str, cameras: &[(String, String)]) -> Vec<String> {
        let node = node_id(uuid);
        match self.mode {
            DiscoveryMode::Device => vec![self.device_topic(&node)],
            DiscoveryMode::Entity => self
                .printer_entities("_", &[], cameras)
                .iter()
                .map(|e| self.entity_topic(e.component, &node, &e.object))
                .collect(),
        }
    }

    /// Discovery of the bridge's own device.
    pub fn bridge(&self) -> Vec<(String, Value)> {
        let node = self.bridge_node();
        let device = json!({
            "identifiers": [node],
            "name": "Prusa Connect MQTT bridge",
            "manufacturer": "prusa-connect-mqtt",
            "model": "Prusa Connect to MQTT bridge",
            "sw_version": env!("CARGO_PKG_VERSION"),
        });
        let info = self.topics.bridge_info();
        let entities = vec![
            Entity {
                object: "connect_reachable".into(),
                component: "binary_sensor",
                options: json!({
                    "name": "Connect reachable",
                    "state_topic": info,
                    "value_template": "{{ 'ON' if value_json is defined and value_json.connect.reachable else 'OFF' }}",
                    "device_class": "connectivity",
                    "entity_category": "diagnostic",
                }),
            },
            Entity {
                object: "printers".into(),
                component: "sensor",
                options: json!({
                    "name": "Printers",
                    "state_topic": info,
                    "value_template": "{{ value_json.printers | count if value_json is defined else '' }}",
                    "icon": "mdi:printer-3d",
                    "entity_category": "diagnostic",
                }),
            },
            Entity {
                object: "last_error".into(),
                component: "sensor",
                options: json!({
                    "name": "Last error",
                    "state_topic": info,
                    "value_template": "{{ (value_json.connect.last_error or 'none') if value_json is defined else '' }}",
                    "icon": "mdi:alert-circle-outline",
                    "entity_category": "diagnostic",
                }),
            },
            Entity {
                object: "notifications_unseen".into(),
                component: "sensor",
                options: json!({
                    "name": "Unseen notifications",
                    "state_topic": info,
                    // "None" (not read yet) is "unknown" to Home Assistant.
                    "value_template": "{{ value_json.notifications_unseen if value_json is defined else '' }}",
                    "state_class": "measurement",
                    "icon": "mdi:bell-badge-outline",
                }),
            },
            Entity {
                object: "notification".into(),
                component: "event",
                options: json!({
                    "name": "Connect notification",
                    "state_topic": self.topics.bridge_notification(),
                    "event_types": ["notification"],
                    "icon": "mdi:bell-ring-outline",
                }),
            },
        ];
        self.pack(&node, device, None, entities)
    }

    fn device_topic(&self, node: &str) -> String {
        format!("{}/device/{node}/config", self.prefix)
    }

    fn entity_topic(&self, component: &str, node: &str, object: &str) -> String {
        format!("{}/{component}/{node}/{object}/config", self.prefix)
    }

    fn pack(
        &self,
        node: &str,
        device: Value,
        printer_id: Option<&str>,
        entities: Vec<Entity>,
    ) -> Vec<(String, Value)> {
        let entity_id_prefix = printer_id
            .map(str::to_string)
            .unwrap_or_else(|| self.bridge_node());
        let common = json!({
            "availability": self.availability(printer_id),
            "availability_mode": "all",
        });
        let common_availability = self.availability(printer_id);
        let component = |e: &Entity| {
            let mut options = e.options.clone();
            if let Some(Value::Array(extra)) = options.get("availability").cloned()
                && let Value::Array(mut all) = common_availability.clone()
            {
                all.extend(extra);
                options["availability"] = Value::Array(all);
            }
            merge(
                &mut options,
                json!({
                    "unique_id": format!("{node}_{}", e.object),
                    "object_id": format!("{entity_id_prefix}_{}", e.object),
                }),
            );
            options
        };
        match self.mode {
            DiscoveryMode::Device => {
                let mut cmps = Map::new();
                for e in &entities {
                    let mut c = component(e);
                    merge(&mut c, json!({"platform": e.component}));
                    cmps.insert(e.object.to_string(), c);
                }
                let mut payload = json!({
                    "device": device,
                    "origin": Self::origin(),
                    "components": cmps,
                    "qos": 1,
                });
                merge(&mut payload, common);
                vec![(self.device_topic(node), payload)]
            }
            DiscoveryMode::Entity => entities
                .iter()
                .map(|e| {
                    let mut payload = common.clone();
                    merge(&mut payload, component(e));
                    merge(
                        &mut payload,
                        json!({"device": device, "origin": Self::origin(), "qos": 1}),
                    );
                    (self.entity_topic(e.component, node, &e.object), payload)
                })
                .collect(),
        }
    }
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        a.extend(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every template that reads `value_json` first checks it is there: a state topic emptied
    /// while Home Assistant still holds the entity must not make it log an error.
    #[test]
    fn every_template_tolerates_an_emptied_topic() {
        let topics = Topics::new("pc");
        let device = PrinterDevice::bare("u", "p", "P");
        for mode in [DiscoveryMode::Entity, DiscoveryMode::Device] {
            let discovery = Discovery {
                prefix: "homeassistant".into(),
                mode,
                topics: topics.clone(),
            };
            let mut all = discovery.printer(&device);
            all.extend(discovery.bridge());
            let text = serde_json::to_string(&all).unwrap();
            let mut checked = 0;
            for template in text.split("\"value_template\":\"").skip(1) {
                let template = template.split("\",\"").next().unwrap_or_default();
                if template.contains("value_json.") {
                    assert!(template.contains("value_json is defined"), "{template}");
                    checked += 1;
                }
            }
            assert!(checked > 25, "only {checked} templates");
        }
    }

    /// Every `value_json.<field>` a template reads from `P/state` is a field of the payload.
    #[test]
    fn templates_read_only_fields_the_state_payload_has() {
        let topics = Topics::new("pc");
        let keys = StatePayload::keys();
        let device = PrinterDevice::bare("u", "p", "P");
        let discovery = Discovery {
            prefix: "homeassistant".into(),
            mode: DiscoveryMode::Entity,
            topics: topics.clone(),
        };
        let mut checked = 0;
        for (_, config) in discovery.printer(&device) {
            let mut templates = Vec::new();
            if config["state_topic"] == topics.state("p") {
                templates.push(config["value_template"].clone());
            }
            for a in config["availability"].as_array().into_iter().flatten() {
                if a["topic"] == topics.state("p") {
                    templates.push(a["value_template"].clone());
                }
            }
            for template in templates {
                let text = template.as_str().unwrap_or_default();
                for part in text.split("value_json.").skip(1) {
                    let field: String = part
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    assert!(keys.contains(&field), "{field} is not in P/state: {text}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 20, "only {checked} fields checked");
    }
}
