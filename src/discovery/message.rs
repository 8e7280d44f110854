//! A device's entities packed into discovery messages: one device-based message (mode
//! `device`) or one message per entity (mode `entity`).
//!
//! What is shared is written once where Home Assistant allows it: in a device-based message
//! the device, origin and availability sit beside the components and Home Assistant gives them
//! to each; an entity's own availability repeats the device's, since Home Assistant replaces
//! (not extends) a shared list. A per-entity message carries them all.
//!
//! `~` (Home Assistant's base topic) shortens the topics under the device's own base. Home
//! Assistant expands it only inside the payload that holds it, in keys ending in `topic` and
//! in availability entries; a device-based message may not hold one at its top (its schema
//! refuses unknown keys), so each component that gains from it holds its own.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::platform::{Availability, Entity, Platform};
use crate::config::DiscoveryMode;

const ORIGIN_URL: &str = "https://github.com/prusa-connect-mqtt/prusa-connect-mqtt";

/// Home Assistant's device registry entry.
#[derive(Debug, Clone, Serialize)]
pub(super) struct DeviceInfo {
    #[serde(rename = "ids")]
    pub identifiers: Vec<String>,
    pub name: String,
    #[serde(rename = "mf")]
    pub manufacturer: &'static str,
    #[serde(rename = "mdl", skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(rename = "sn", skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    #[serde(rename = "sw", skip_serializing_if = "Option::is_none")]
    pub sw_version: Option<String>,
    #[serde(rename = "cu", skip_serializing_if = "Option::is_none")]
    pub configuration_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via_device: Option<String>,
}

/// Who published the discovery (Home Assistant names it in its logs).
#[derive(Debug, Clone, Copy, Serialize)]
struct Origin {
    name: &'static str,
    #[serde(rename = "sw")]
    sw_version: &'static str,
    #[serde(rename = "url")]
    support_url: &'static str,
}

const ORIGIN: Origin = Origin {
    name: "prusa-connect-mqtt",
    sw_version: env!("CARGO_PKG_VERSION"),
    support_url: ORIGIN_URL,
};

/// A device as its messages need it.
pub(super) struct Device {
    /// The node id in the discovery topics (and the start of unique ids).
    pub node: String,
    pub info: DeviceInfo,
    /// The start of the entity ids (`sensor.<prefix>_<object>`).
    pub entity_prefix: String,
    /// The device's own topics start with `<base>/` (what `~` stands for).
    pub base: String,
    /// What every entity of the device needs online (the bridge, the printer).
    pub availability: Vec<Availability>,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
enum AvailabilityMode {
    /// Available only while every entry says so.
    All,
}

/// The ids of an entity: the unique id Home Assistant keys it by, and the entity id it
/// gives a new one: `default_entity_id` since 2025.10 (which then ignores `object_id`
/// without a warning), `object_id` before (which drops the key it does not know). Both, in
/// both modes: the same ids whatever the version.
#[derive(Debug, Serialize)]
struct Ids {
    #[serde(rename = "uniq_id")]
    unique_id: String,
    #[serde(rename = "obj_id")]
    object_id: String,
    #[serde(rename = "def_ent_id")]
    default_entity_id: String,
}

/// One entity as written: its configuration with its ids, availability and base topic.
#[derive(Debug, Serialize)]
struct Component {
    /// Device mode only: the platform (entity mode says it in the topic).
    #[serde(rename = "p", skip_serializing_if = "Option::is_none")]
    platform: Option<Platform>,
    #[serde(flatten)]
    ids: Option<Ids>,
    #[serde(rename = "avty", skip_serializing_if = "Vec::is_empty")]
    availability: Vec<Availability>,
    #[serde(rename = "avty_mode", skip_serializing_if = "Option::is_none")]
    availability_mode: Option<AvailabilityMode>,
    #[serde(flatten)]
    config: super::platform::Config,
    #[serde(rename = "~", skip_serializing_if = "Option::is_none")]
    base: Option<String>,
}

#[derive(Serialize)]
pub(super) struct DeviceMessage<'a> {
    #[serde(rename = "dev")]
    device: &'a DeviceInfo,
    #[serde(rename = "o")]
    origin: Origin,
    #[serde(rename = "avty")]
    availability: &'a [Availability],
    #[serde(rename = "avty_mode")]
    availability_mode: AvailabilityMode,
    qos: u8,
    #[serde(rename = "cmps")]
    components: BTreeMap<&'a str, Component>,
}

#[derive(Serialize)]
pub(super) struct EntityMessage<'a> {
    #[serde(flatten)]
    component: Component,
    #[serde(rename = "dev")]
    device: &'a DeviceInfo,
    #[serde(rename = "o")]
    origin: Origin,
    qos: u8,
}

/// One discovery message, as it is written.
pub(super) enum Packed<'a> {
    Device(DeviceMessage<'a>),
    Entity(Box<EntityMessage<'a>>),
}

impl Serialize for Packed<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Packed::Device(m) => m.serialize(serializer),
            Packed::Entity(m) => m.serialize(serializer),
        }
    }
}

impl Packed<'_> {
    /// The message as a JSON value (tests, and the golden files, read it so).
    pub(super) fn value(&self) -> Value {
        serde_json::to_value(self).expect("discovery messages have string keys only")
    }

    /// The message's JSON, written straight from it: at a farm's start, building a `Value`
    /// tree of every printer's device message first was a quarter of the gateway's CPU.
    pub(super) fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("discovery messages have string keys only")
    }
}

/// The device's discovery messages: `(topic, message)`.
pub(super) fn pack<'a>(
    prefix: &str,
    mode: DiscoveryMode,
    device: &'a Device,
    entities: &'a [Entity],
) -> Vec<(String, Packed<'a>)> {
    match mode {
        DiscoveryMode::Device => {
            let message = DeviceMessage {
                device: &device.info,
                origin: ORIGIN,
                availability: &device.availability,
                availability_mode: AvailabilityMode::All,
                qos: 1,
                components: entities
                    .iter()
                    .map(|e| (e.object.as_ref(), component(device, e, mode)))
                    .collect(),
            };
            vec![(device_topic(prefix, &device.node), Packed::Device(message))]
        }
        DiscoveryMode::Entity => entities
            .iter()
            .map(|e| {
                let message = EntityMessage {
                    component: component(device, e, mode),
                    device: &device.info,
                    origin: ORIGIN,
                    qos: 1,
                };
                let topic = entity_topic(prefix, e.platform(), &device.node, &e.object);
                (topic, Packed::Entity(Box::new(message)))
            })
            .collect(),
    }
}

pub(super) fn device_topic(prefix: &str, node: &str) -> String {
    format!("{prefix}/device/{node}/config")
}

pub(super) fn entity_topic(prefix: &str, platform: Platform, node: &str, object: &str) -> String {
    format!("{prefix}/{}/{node}/{object}/config", platform.as_str())
}

/// `e` as mode `mode` writes it for `device`.
fn component(device: &Device, e: &Entity, mode: DiscoveryMode) -> Component {
    let platform = e.platform();
    let entity = platform != Platform::DeviceAutomation;
    let object_id = format!("{}_{}", device.entity_prefix, e.object);
    let ids = entity.then(|| Ids {
        unique_id: format!("{}_{}", device.node, e.object),
        default_entity_id: format!("{}.{object_id}", platform.as_str()),
        object_id,
    });
    // In a device message the device's availability is shared; an entity with its own
    // states repeats it, since its list replaces the shared one.
    let with_device = match mode {
        DiscoveryMode::Entity => entity,
        DiscoveryMode::Device => e.available_when.is_some(),
    };
    let mut availability = Vec::new();
    if with_device {
        availability.extend(device.availability.iter().cloned());
    }
    availability.extend(e.available_when.iter().cloned());
    let mut component = Component {
        platform: (mode == DiscoveryMode::Device).then_some(platform),
        ids,
        availability_mode: (mode == DiscoveryMode::Entity && entity)
            .then_some(AvailabilityMode::All),
        availability,
        config: e.config.clone(),
        base: None,
    };
    component.shorten(&device.base);
    component
}

impl Component {
    /// Writes the topics under `base` as `~/...` when that is shorter (two or more of them)
    /// and no topic would be misread (one beginning or ending with `~` itself).
    fn shorten(&mut self, base: &str) {
        let mut topics = self.config.topics_mut();
        topics.extend(self.availability.iter_mut().map(|a| &mut a.topic));
        let under = format!("{base}/");
        let ambiguous = topics
            .iter()
            .any(|t| t.starts_with('~') || t.ends_with('~'));
        let count = topics.iter().filter(|t| t.starts_with(&under)).count();
        if ambiguous || base.is_empty() || count < 2 {
            return;
        }
        for topic in topics {
            if let Some(rest) = topic.strip_prefix(base)
                && rest.starts_with('/')
            {
                *topic = format!("~{rest}");
            }
        }
        self.base = Some(base.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::platform::{Button, Camera, Sensor, Shown};

    fn device(base: &str) -> Device {
        Device {
            node: "n".into(),
            info: DeviceInfo {
                identifiers: vec!["n".into()],
                name: "N".into(),
                manufacturer: "M",
                model: None,
                serial_number: None,
                sw_version: None,
                configuration_url: None,
                via_device: None,
            },
            entity_prefix: "p".into(),
            base: base.into(),
            availability: vec![Availability::topic(format!("{base}/availability"))],
        }
    }

    fn written(device: &Device, entity: Entity, mode: DiscoveryMode) -> Value {
        let entities = [entity];
        let messages = pack("ha", mode, device, &entities);
        let message = messages[0].1.value();
        match mode {
            DiscoveryMode::Device => message["cmps"]["e"].clone(),
            DiscoveryMode::Entity => message,
        }
    }

    fn sensor(topic: &str) -> Entity {
        let sensor = Sensor::new(Shown::new("S", None), topic.into(), "{{ 1 }}".into());
        Entity::new("e", sensor)
    }

    /// One topic gains nothing from `~` (its key is longer than what it saves).
    #[test]
    fn a_base_only_where_two_topics_share_it() {
        let d = device("b/p");
        let lone = written(&d, sensor("b/p/state"), DiscoveryMode::Device);
        assert_eq!(lone["stat_t"], "b/p/state");
        assert!(lone.get("~").is_none());
        // In entity mode the device's availability is in the message too.
        let both = written(&d, sensor("b/p/state"), DiscoveryMode::Entity);
        assert_eq!(both["~"], "b/p");
        assert_eq!(both["stat_t"], "~/state");
        assert_eq!(both["avty"][0]["t"], "~/availability");
        let button = Button {
            shown: Shown::new("B", None),
            command_topic: "b/p/command".into(),
            payload_press: "X".into(),
        };
        let own = Entity::new("e", button).available_when(Availability::topic("b/p/state".into()));
        let own = written(&d, own, DiscoveryMode::Device);
        assert_eq!(own["~"], "b/p");
        assert_eq!(own["cmd_t"], "~/command");
        let topics: Vec<&Value> = own["avty"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| &a["t"])
            .collect();
        assert_eq!(topics, ["~/availability", "~/state"]);
    }

    /// Home Assistant expands a topic that begins or ends with `~` itself too: a message with
    /// such a topic has no base.
    #[test]
    fn no_base_when_a_topic_would_be_misread() {
        let camera = |topic: &str| {
            let camera = Camera {
                shown: Shown::new("C", None),
                topic: topic.into(),
            };
            Entity::new("e", camera)
        };
        let d = device("b/p");
        let tilde_id = written(&d, camera("b/p/camera/7~"), DiscoveryMode::Entity);
        assert!(tilde_id.get("~").is_none());
        assert_eq!(tilde_id["t"], "b/p/camera/7~");
        let d = device("~b/p");
        let tilde_base = written(&d, sensor("~b/p/state"), DiscoveryMode::Entity);
        assert!(tilde_base.get("~").is_none());
        assert_eq!(tilde_base["stat_t"], "~b/p/state");
    }
}
