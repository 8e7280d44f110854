//! Home Assistant MQTT discovery: pure functions from printers to `(topic, payload)` pairs.
//!
//! Each entity is described once, typed by its platform (`platform.rs`): the printer's in
//! `printer.rs` and `controls.rs`, the bridge's in `bridge.rs`. `message.rs` packs them: mode
//! `device` into one device-based message per device, mode `entity` into one message per
//! entity, with Home Assistant's abbreviated keys and `~` base topic. Discovery topics and
//! unique ids are built from the printer uuid, so renaming a printer (which changes its topic
//! id) updates its entities instead of orphaning them.

mod bridge;
mod controls;
pub mod long_form;
mod message;
mod platform;
mod printer;
mod stats;

use serde_json::{Value, json};

pub use controls::{Controls, MATERIALS, NO_DIALOG, NO_FILES};
pub use printer::TRIGGERS;

use message::{Device, DeviceInfo};
use platform::{Availability, Entity, Platform};

use crate::config::DiscoveryMode;
use crate::connect::model::CancelableObject;
use crate::topics::Topics;

/// What discovery needs to know about a printer.
#[derive(Debug, Clone, PartialEq, Hash)]
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
    /// With Spoolman (`spoolman.url`): the spools' labels, the "Spool" select's options.
    pub spools: Option<Vec<String>>,
}

/// Data only some printers send; their sensors exist only where it is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Hash)]
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
            spools: None,
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

pub fn node_id(uuid: &str) -> String {
    format!("prusa_connect_{uuid}")
}

impl Discovery {
    fn printer_device(&self, p: &PrinterDevice) -> Device {
        Device {
            node: node_id(&p.uuid),
            info: DeviceInfo {
                identifiers: vec![node_id(&p.uuid)],
                name: p.name.clone(),
                manufacturer: "Prusa Research",
                model: p.model.clone(),
                serial_number: p.serial.clone(),
                sw_version: p.firmware.clone(),
                configuration_url: p.configuration_url.clone(),
                via_device: Some(self.bridge_node()),
            },
            entity_prefix: p.id.clone(),
            base: self.topics.printer(&p.id),
            availability: vec![
                Availability::topic(self.topics.bridge_state()),
                Availability::topic(self.topics.availability(&p.id)),
            ],
        }
    }

    fn printer_entities(&self, p: &PrinterDevice) -> Vec<Entity> {
        printer::entities(&self.topics, p)
    }

    /// Discovery messages of one printer.
    pub fn printer(&self, p: &PrinterDevice) -> Vec<(String, Value)> {
        let entities = self.printer_entities(p);
        self.written(&self.printer_device(p), &entities, |m| m.value())
    }

    /// [`Discovery::printer`]'s messages as the JSON they are published as.
    pub fn printer_json(&self, p: &PrinterDevice) -> Vec<(String, Vec<u8>)> {
        let entities = self.printer_entities(p);
        self.written(&self.printer_device(p), &entities, |m| m.bytes())
    }

    /// A device's messages, each written by `write`.
    fn written<T>(
        &self,
        device: &Device,
        entities: &[Entity],
        write: fn(&message::Packed) -> T,
    ) -> Vec<(String, T)> {
        message::pack(&self.prefix, self.mode, device, entities)
            .into_iter()
            .map(|(topic, message)| (topic, write(&message)))
            .collect()
    }

    /// The entity ids Home Assistant gives printer `p`'s new entities (`default_entity_id`),
    /// in the order of its per-entity messages.
    pub fn entity_ids(&self, p: &PrinterDevice) -> Vec<String> {
        self.printer_entities(p)
            .iter()
            .filter(|e| e.platform() != Platform::DeviceAutomation)
            .map(|e| format!("{}.{}_{}", e.platform().as_str(), p.id, e.object))
            .collect()
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
            DiscoveryMode::Device => vec![message::device_topic(&self.prefix, &node)],
            DiscoveryMode::Entity => self
                .printer_entities(&PrinterDevice {
                    cameras: cameras.to_vec(),
                    controls: Controls::all(),
                    features: Features::all(),
                    spools: Some(Vec::new()),
                    ..PrinterDevice::bare(uuid, "_", "_")
                })
                .iter()
                .map(|e| message::entity_topic(&self.prefix, e.platform(), &node, &e.object))
                .collect(),
        }
    }

    /// The bridge's discovery topics as mode `mode` publishes them.
    pub fn bridge_topics_in(&self, mode: DiscoveryMode) -> Vec<String> {
        let node = self.bridge_node();
        match mode {
            DiscoveryMode::Device => vec![message::device_topic(&self.prefix, &node)],
            DiscoveryMode::Entity => self
                .bridge_entities()
                .iter()
                .map(|e| message::entity_topic(&self.prefix, e.platform(), &node, &e.object))
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
        let entities = self.bridge_entities();
        self.written(&self.bridge_device(), &entities, |m| m.value())
    }
}

#[cfg(test)]
mod tests {
    use super::long_form::long_form;
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
            let all: Vec<Value> = all.iter().map(|(_, p)| long_form(p)).collect();
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

    /// What is published (written straight from the messages) is what the golden files and
    /// every other test read as values, in both modes, for a bare printer and a full one.
    #[test]
    fn published_json_is_the_messages_as_values() {
        let mut full = PrinterDevice::bare("u", "p", "P");
        full.objects = vec!["Cube \"A\"".into(), "Ünïcode".into()];
        full.cameras = vec![("c1".into(), "Camera".into())];
        for mode in [DiscoveryMode::Entity, DiscoveryMode::Device] {
            let discovery = Discovery {
                prefix: "homeassistant".into(),
                mode,
                topics: Topics::new("pc"),
            };
            for device in [PrinterDevice::bare("u", "p", "P"), full.clone()] {
                let values = discovery.printer(&device);
                let published: Vec<(String, Value)> = discovery
                    .printer_json(&device)
                    .into_iter()
                    .map(|(topic, json)| (topic, serde_json::from_slice(&json).unwrap()))
                    .collect();
                assert!(!values.is_empty());
                assert_eq!(published, values, "{mode:?}");
            }
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
            long_form(&packed[0].1)["components"]
                .as_object()
                .unwrap()
                .len(),
            entities
        );
    }

    /// The statistics sensors (a printer's and the fleet's) read fields `P/stats` has.
    #[test]
    fn statistics_templates_read_fields_the_totals_have() {
        let topics = Topics::new("pc");
        let totals = crate::bridge::printer::stats::Totals::default().payload();
        let discovery = Discovery {
            prefix: "homeassistant".into(),
            mode: DiscoveryMode::Entity,
            topics: topics.clone(),
        };
        let mut all = discovery.printer(&PrinterDevice::bare("u", "p", "P"));
        all.extend(discovery.bridge());
        let mut checked = Vec::new();
        for (_, config) in all {
            let config = long_form(&config);
            let topic = config["state_topic"].as_str().unwrap_or_default();
            if topic != topics.stats("p") && topic != topics.bridge_stats() {
                continue;
            }
            let text = config["value_template"].as_str().unwrap_or_default();
            let field: String = text
                .split("value_json.")
                .nth(1)
                .unwrap_or_default()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                .collect();
            let known = field.split('.').try_fold(&totals, |v, key| v.get(key));
            assert!(known.is_some(), "{field} is not in P/stats");
            assert!(config["state_class"].is_string(), "{config}");
            checked.push(field);
        }
        assert_eq!(checked.len(), 20, "ten sensors each: {checked:?}");
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
            let config = long_form(&config);
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
