//! The bridge's own device: Connect's reachability, the live channel, the printers bridged,
//! the last error and Connect's notifications.

use super::Discovery;
use super::message::{Device, DeviceInfo};
use super::platform::{
    Availability, BinarySensor, BinarySensorClass, Entity, Event, Sensor, Shown, StateClass,
};

impl Discovery {
    /// The bridge device's node id: one device per shard (`connect.shard`).
    pub(super) fn bridge_node(&self) -> String {
        let base = crate::topics::slug(self.topics.base());
        match self.topics.shard() {
            Some(k) => format!("{base}_bridge_{k}"),
            None => format!("{base}_bridge"),
        }
    }

    pub(super) fn bridge_device(&self) -> Device {
        let node = self.bridge_node();
        Device {
            info: DeviceInfo {
                identifiers: vec![node.clone()],
                name: match self.topics.shard() {
                    Some(k) => format!("Prusa Connect MQTT bridge {k}"),
                    None => "Prusa Connect MQTT bridge".into(),
                },
                manufacturer: "prusa-connect-mqtt",
                model: Some("Prusa Connect to MQTT bridge".into()),
                serial_number: None,
                sw_version: Some(env!("CARGO_PKG_VERSION").into()),
                configuration_url: None,
                via_device: None,
            },
            entity_prefix: node.clone(),
            node,
            base: self.topics.bridge(),
            availability: vec![Availability::topic(self.topics.bridge_state())],
        }
    }

    pub(super) fn bridge_entities(&self) -> Vec<Entity> {
        let info = self.topics.bridge_info();
        let connectivity = |name: &str, icon, template: &str| BinarySensor {
            shown: Shown::new(name, icon).diagnostic(),
            state_topic: info.clone(),
            value_template: template.into(),
            device_class: BinarySensorClass::Connectivity,
        };
        let sensor =
            |shown: Shown, template: &str| Sensor::new(shown, info.clone(), template.into());
        let mut entities = vec![
            Entity::new(
                "connect_reachable",
                connectivity(
                    "Connect reachable",
                    None,
                    "{{ 'ON' if value_json is defined and value_json.connect.reachable else 'OFF' }}",
                ),
            ),
            Entity::new(
                "live_updates",
                connectivity(
                    "Live updates",
                    Some("mdi:access-point-network"),
                    // Off also while `connect.live` is off (`live.enabled` says which).
                    "{{ 'ON' if value_json is defined and value_json.live is defined and value_json.live.connected else 'OFF' }}",
                ),
            ),
            Entity::new(
                "printers",
                sensor(
                    Shown::new("Printers", Some("mdi:printer-3d")).diagnostic(),
                    "{{ value_json.printers | count if value_json is defined else '' }}",
                ),
            ),
            Entity::new(
                "last_error",
                sensor(
                    Shown::new("Last error", Some("mdi:alert-circle-outline")).diagnostic(),
                    "{{ (value_json.connect.last_error or 'none') if value_json is defined else '' }}",
                ),
            ),
            Entity::new(
                "notifications_unseen",
                Sensor {
                    state_class: Some(StateClass::Measurement),
                    // "None" (not read yet) is "unknown" to Home Assistant.
                    ..sensor(
                        Shown::new("Unseen notifications", Some("mdi:bell-badge-outline")),
                        "{{ value_json.notifications_unseen if value_json is defined else '' }}",
                    )
                },
            ),
            Entity::new(
                "notification",
                Event {
                    shown: Shown::new("Connect notification", Some("mdi:bell-ring-outline")),
                    state_topic: self.topics.bridge_notification(),
                    event_types: vec!["notification".into()],
                },
            ),
        ];
        // The fleet's totals: every bridged printer's summed.
        entities.extend(super::stats::sensors(&self.topics.bridge_stats()));
        entities
    }
}
