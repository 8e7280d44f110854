//! Home Assistant's MQTT platforms as the gateway uses them: one struct per platform, with
//! the abbreviated keys Home Assistant documents (`stat_t` for `state_topic`...).
//!
//! Every abbreviation here is in the `abbreviations.py` of Home Assistant 2024.3.3 and
//! 2026.2.3, except `p` (device-based discovery, 2024.11+: the same release added it) and
//! `def_ent_id` (`default_entity_id`, 2025.10+: the same release added it). Topics are written
//! whole here; `message.rs` shortens them with `~` when it writes a message.

use std::borrow::Cow;

use serde::Serialize;

/// The Home Assistant MQTT platforms (discovery's `<component>`) the gateway uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Sensor,
    BinarySensor,
    Button,
    Number,
    Select,
    Event,
    Image,
    Camera,
    Update,
    /// A device trigger: no entity (no id, no availability).
    DeviceAutomation,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Sensor => "sensor",
            Platform::BinarySensor => "binary_sensor",
            Platform::Button => "button",
            Platform::Number => "number",
            Platform::Select => "select",
            Platform::Event => "event",
            Platform::Image => "image",
            Platform::Camera => "camera",
            Platform::Update => "update",
            Platform::DeviceAutomation => "device_automation",
        }
    }
}

/// An availability entry: `topic` says `online`, or `template` makes it say so.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Availability {
    #[serde(rename = "t")]
    pub topic: String,
    #[serde(rename = "val_tpl", skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

impl Availability {
    pub fn topic(topic: String) -> Availability {
        Availability {
            topic,
            template: None,
        }
    }

    pub fn templated(topic: String, template: String) -> Availability {
        Availability {
            topic,
            template: Some(template),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Category {
    Diagnostic,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum StateClass {
    Measurement,
    /// A total that only grows (or starts again from zero): Home Assistant's long-term
    /// statistics sum it.
    TotalIncreasing,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum SensorClass {
    Temperature,
    Duration,
    Timestamp,
    Distance,
    DataSize,
    Weight,
    Enum,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum BinarySensorClass {
    Connectivity,
    Running,
    Problem,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum UpdateClass {
    Firmware,
}

/// What every entity shows: its name, icon and category.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Shown {
    pub name: String,
    #[serde(rename = "ic", skip_serializing_if = "Option::is_none")]
    pub icon: Option<&'static str>,
    #[serde(rename = "ent_cat", skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
}

impl Shown {
    pub fn new(name: impl Into<String>, icon: Option<&'static str>) -> Shown {
        Shown {
            name: name.into(),
            icon,
            category: None,
        }
    }

    pub fn diagnostic(mut self) -> Shown {
        self.category = Some(Category::Diagnostic);
        self
    }
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Sensor {
    #[serde(flatten)]
    pub shown: Shown,
    #[serde(rename = "stat_t")]
    pub state_topic: String,
    #[serde(rename = "val_tpl")]
    pub value_template: String,
    #[serde(rename = "dev_cla", skip_serializing_if = "Option::is_none")]
    pub device_class: Option<SensorClass>,
    #[serde(rename = "unit_of_meas", skip_serializing_if = "Option::is_none")]
    pub unit: Option<&'static str>,
    #[serde(rename = "stat_cla", skip_serializing_if = "Option::is_none")]
    pub state_class: Option<StateClass>,
    #[serde(rename = "sug_dsp_prc", skip_serializing_if = "Option::is_none")]
    pub precision: Option<u8>,
    /// The values of an enum sensor.
    #[serde(rename = "ops", skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
}

impl Sensor {
    /// A sensor of `state_topic` through `value_template`, nothing else set.
    pub fn new(shown: Shown, state_topic: String, value_template: String) -> Sensor {
        Sensor {
            shown,
            state_topic,
            value_template,
            device_class: None,
            unit: None,
            state_class: None,
            precision: None,
            options: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct BinarySensor {
    #[serde(flatten)]
    pub shown: Shown,
    #[serde(rename = "stat_t")]
    pub state_topic: String,
    #[serde(rename = "val_tpl")]
    pub value_template: String,
    #[serde(rename = "dev_cla")]
    pub device_class: BinarySensorClass,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Button {
    #[serde(flatten)]
    pub shown: Shown,
    #[serde(rename = "cmd_t")]
    pub command_topic: String,
    #[serde(rename = "pl_prs")]
    pub payload_press: String,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Number {
    #[serde(flatten)]
    pub shown: Shown,
    #[serde(rename = "stat_t")]
    pub state_topic: String,
    #[serde(rename = "val_tpl")]
    pub value_template: String,
    #[serde(rename = "cmd_t")]
    pub command_topic: String,
    #[serde(rename = "cmd_tpl")]
    pub command_template: String,
    pub min: f64,
    pub max: f64,
    pub step: u32,
    pub mode: NumberMode,
    #[serde(rename = "unit_of_meas")]
    pub unit: &'static str,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum NumberMode {
    Box,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Select {
    #[serde(flatten)]
    pub shown: Shown,
    #[serde(rename = "cmd_t")]
    pub command_topic: String,
    #[serde(rename = "cmd_tpl", skip_serializing_if = "Option::is_none")]
    pub command_template: Option<String>,
    #[serde(rename = "ops")]
    pub options: Vec<String>,
    /// Without one, Home Assistant shows the last choice (optimistic).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub state: Option<SelectState>,
    /// The choice is retained on `command_topic` (an input the gateway reads back).
    #[serde(rename = "ret", skip_serializing_if = "std::ops::Not::not")]
    pub retain: bool,
}

/// Where a select reads its current option.
#[derive(Debug, Clone, Serialize)]
pub(super) struct SelectState {
    #[serde(rename = "stat_t")]
    pub topic: String,
    #[serde(rename = "val_tpl")]
    pub template: String,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Event {
    #[serde(flatten)]
    pub shown: Shown,
    #[serde(rename = "stat_t")]
    pub state_topic: String,
    #[serde(rename = "evt_typ")]
    pub event_types: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Image {
    #[serde(flatten)]
    pub shown: Shown,
    #[serde(rename = "img_t")]
    pub image_topic: String,
    #[serde(rename = "cont_type")]
    pub content_type: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Camera {
    #[serde(flatten)]
    pub shown: Shown,
    #[serde(rename = "t")]
    pub topic: String,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Update {
    #[serde(flatten)]
    pub shown: Shown,
    #[serde(rename = "stat_t")]
    pub state_topic: String,
    #[serde(rename = "val_tpl")]
    pub value_template: String,
    #[serde(rename = "dev_cla")]
    pub device_class: UpdateClass,
}

/// A device trigger: "when <printer> <type>" in Home Assistant's automation editor.
#[derive(Debug, Clone, Serialize)]
pub(super) struct DeviceTrigger {
    #[serde(rename = "atype")]
    pub automation_type: TriggerKind,
    #[serde(rename = "t")]
    pub topic: String,
    #[serde(rename = "type")]
    pub trigger_type: &'static str,
    #[serde(rename = "stype")]
    pub subtype: &'static str,
    #[serde(rename = "pl")]
    pub payload: &'static str,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum TriggerKind {
    Trigger,
}

/// One platform's configuration.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub(super) enum Config {
    Sensor(Sensor),
    BinarySensor(BinarySensor),
    Button(Button),
    Number(Number),
    Select(Select),
    Event(Event),
    Image(Image),
    Camera(Camera),
    Update(Update),
    DeviceTrigger(DeviceTrigger),
}

impl Config {
    pub fn platform(&self) -> Platform {
        match self {
            Config::Sensor(_) => Platform::Sensor,
            Config::BinarySensor(_) => Platform::BinarySensor,
            Config::Button(_) => Platform::Button,
            Config::Number(_) => Platform::Number,
            Config::Select(_) => Platform::Select,
            Config::Event(_) => Platform::Event,
            Config::Image(_) => Platform::Image,
            Config::Camera(_) => Platform::Camera,
            Config::Update(_) => Platform::Update,
            Config::DeviceTrigger(_) => Platform::DeviceAutomation,
        }
    }

    /// Every topic of the configuration (what `~` may shorten).
    pub fn topics_mut(&mut self) -> Vec<&mut String> {
        match self {
            Config::Sensor(c) => vec![&mut c.state_topic],
            Config::BinarySensor(c) => vec![&mut c.state_topic],
            Config::Button(c) => vec![&mut c.command_topic],
            Config::Number(c) => vec![&mut c.state_topic, &mut c.command_topic],
            Config::Select(c) => {
                let mut topics = vec![&mut c.command_topic];
                topics.extend(c.state.as_mut().map(|s| &mut s.topic));
                topics
            }
            Config::Event(c) => vec![&mut c.state_topic],
            Config::Image(c) => vec![&mut c.image_topic],
            Config::Camera(c) => vec![&mut c.topic],
            Config::Update(c) => vec![&mut c.state_topic],
            Config::DeviceTrigger(c) => vec![&mut c.topic],
        }
    }
}

macro_rules! into_config {
    ($($kind:ident),*) => {
        $(impl From<$kind> for Config {
            fn from(c: $kind) -> Config {
                Config::$kind(c)
            }
        })*
    };
}

into_config!(
    Sensor,
    BinarySensor,
    Button,
    Number,
    Select,
    Event,
    Image,
    Camera,
    Update,
    DeviceTrigger
);

/// One entity (or device trigger) of a device: its object id, configuration and the
/// availability it adds to its device's.
#[derive(Debug, Clone)]
pub(super) struct Entity {
    pub object: Cow<'static, str>,
    pub config: Config,
    /// Beyond the bridge and the printer being online: the states it works in.
    pub available_when: Option<Availability>,
}

impl Entity {
    pub fn new(object: impl Into<Cow<'static, str>>, config: impl Into<Config>) -> Entity {
        Entity {
            object: object.into(),
            config: config.into(),
            available_when: None,
        }
    }

    pub fn available_when(mut self, availability: Availability) -> Entity {
        self.available_when = Some(availability);
        self
    }

    pub fn platform(&self) -> Platform {
        self.config.platform()
    }
}
