//! Home Assistant MQTT discovery: pure functions from printers to `(topic, payload)` pairs.
//!
//! Each entity is described once ([`printer_entities`]); mode `device` packs them into one
//! device-based message per printer, mode `entity` sends one message per entity. Discovery
//! topics and unique ids are built from the printer uuid, so renaming a printer (which changes
//! its topic id) updates its entities instead of orphaning them.

mod controls;
mod printer;

use serde_json::{Map, Value, json};

pub use controls::{Controls, MATERIALS, NO_DIALOG, NO_FILES};
pub use printer::TRIGGERS;

use crate::config::DiscoveryMode;
use crate::connect::model::CancelableObject;
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
    pub controls: Controls,
    pub features: Features,
}

/// Data only some printers send; their sensors exist only where it is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Features {
    pub chamber: bool,
    pub chamber_led: bool,
    pub fans: bool,
}

impl Features {
    pub fn of(p: &crate::connect::model::Printer) -> Features {
        Features {
            chamber: p.temp.as_ref().is_some_and(|t| t.temp_chamber.is_some()),
            chamber_led: p.chamber_led().is_some(),
            fans: p
                .active_tool()
                .is_some_and(|t| t.fan_hotend.is_some() || t.fan_print.is_some()),
        }
    }

    fn all() -> Features {
        Features {
            chamber: true,
            chamber_led: true,
            fans: true,
        }
    }
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
            controls: Controls::default(),
            features: Features::default(),
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
        let entities = self.printer_entities(p);
        let device = self.printer_device_info(p);
        self.pack(&node, device, Some(&p.id), entities)
    }

    /// Discovery topics of a printer with these cameras, for removing it (empty retained
    /// payloads) or the entities it no longer has.
    pub fn printer_topics(&self, uuid: &str, cameras: &[(String, String)]) -> Vec<String> {
        self.printer_topics_in(self.mode, uuid, cameras)
    }

    /// [`Discovery::printer_topics`] as mode `mode` publishes them (a mode switch migrates
    /// from those).
    pub fn printer_topics_in(
        &self,
        mode: DiscoveryMode,
        uuid: &str,
        cameras: &[(String, String)],
    ) -> Vec<String> {
        let node = node_id(uuid);
        match mode {
            DiscoveryMode::Device => vec![self.device_topic(&node)],
            DiscoveryMode::Entity => self
                .printer_entities(&PrinterDevice {
                    cameras: cameras.to_vec(),
                    controls: Controls::all(),
                    features: Features::all(),
                    ..PrinterDevice::bare(uuid, "_", "_")
                })
                .iter()
                .map(|e| self.entity_topic(e.component, &node, &e.object))
                .collect(),
        }
    }

    /// The bridge's discovery topics as mode `mode` publishes them.
    pub fn bridge_topics_in(&self, mode: DiscoveryMode) -> Vec<String> {
        let node = self.bridge_node();
        match mode {
            DiscoveryMode::Device => vec![self.device_topic(&node)],
            DiscoveryMode::Entity => self
                .bridge_entities()
                .iter()
                .map(|e| self.entity_topic(e.component, &node, &e.object))
                .collect(),
        }
    }

    /// What starts Home Assistant's move of entities between discovery schemas
    /// (`migrate_discovery`), published on the old topics before the new discovery: the
    /// entities keep their ids and history.
    pub fn migration_payload() -> Value {
        json!({"migrate_discovery": true})
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
        self.pack(&node, device, None, self.bridge_entities())
    }

    fn bridge_entities(&self) -> Vec<Entity> {
        let info = self.topics.bridge_info();
        vec![
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
                object: "live_updates".into(),
                component: "binary_sensor",
                options: json!({
                    "name": "Live updates",
                    "state_topic": info,
                    // Off also while `connect.live` is off (`live.enabled` says which).
                    "value_template": "{{ 'ON' if value_json is defined and value_json.live is defined and value_json.live.connected else 'OFF' }}",
                    "device_class": "connectivity",
                    "entity_category": "diagnostic",
                    "icon": "mdi:access-point-network",
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
        ]
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
            if e.component == "device_automation" {
                // A trigger is no entity: no id, no availability.
                return options;
            }
            if let Some(Value::Array(extra)) = options.get("availability").cloned()
                && let Value::Array(mut all) = common_availability.clone()
            {
                all.extend(extra);
                options["availability"] = Value::Array(all);
            }
            // The entity id Home Assistant gives a new entity: `default_entity_id` since
            // 2025.10 (which then ignores `object_id` without a warning), `object_id` before
            // (which drops the key it does not know). Both, in both modes: the same ids
            // whatever the version.
            let object_id = format!("{entity_id_prefix}_{}", e.object);
            merge(
                &mut options,
                json!({
                    "unique_id": format!("{node}_{}", e.object),
                    "default_entity_id": format!("{}.{object_id}", e.component),
                    "object_id": object_id,
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
                    let mut payload = if e.component == "device_automation" {
                        json!({})
                    } else {
                        common.clone()
                    };
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
    use crate::payloads::StatePayload;

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

    /// Device mode packs the entities into one map by object: no two may share one.
    #[test]
    fn no_two_entities_share_an_object_id() {
        let discovery = |mode| Discovery {
            prefix: "homeassistant".into(),
            mode,
            topics: Topics::new("pc"),
        };
        let device = PrinterDevice {
            cameras: vec![("1".into(), "Top".into())],
            controls: Controls::all(),
            features: Features::all(),
            ..PrinterDevice::bare("u", "p", "P")
        };
        let entities = discovery(DiscoveryMode::Entity).printer(&device).len();
        let packed = discovery(DiscoveryMode::Device).printer(&device);
        assert_eq!(
            packed[0].1["components"].as_object().unwrap().len(),
            entities
        );
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
