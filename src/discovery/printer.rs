//! A printer's entities, by part: its state and job, its readings and queues, the buttons
//! every printer has, the job's objects and end, the data only some printers send, its
//! preview and firmware, its device triggers and cameras. The controls that depend on its
//! supported commands are in `controls.rs`.

use super::platform::{
    Availability, BinarySensor, BinarySensorClass, Button, Camera, DeviceTrigger, Entity, Event,
    Image, Select, SelectState, Sensor, SensorClass, Shown, StateClass, TriggerKind, Update,
    UpdateClass,
};
use super::{Features, NO_OBJECTS, PrinterDevice};
use crate::connect::model::{JobState, PrinterState};
use crate::payloads::StatePayload;
use crate::spoolman::NO_SPOOL;
use crate::topics::Topics;

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

/// Every entity of printer `p`, in the order its per-entity messages go out.
pub(super) fn entities(topics: &Topics, p: &PrinterDevice) -> Vec<Entity> {
    let at = Printer::new(topics, &p.id);
    let mut entities = at.job_sensors();
    entities.extend(at.readings());
    entities.extend(at.queues());
    entities.extend(at.flags());
    entities.extend(at.print_buttons());
    entities.extend(at.job_objects_and_end(&p.objects));
    entities.extend(super::stats::sensors(&at.topics.stats(at.id)));
    if let Some(spools) = &p.spools {
        entities.extend(at.spool(spools));
    }
    entities.extend(at.features(&p.features));
    entities.extend(at.preview_and_firmware());
    entities.extend(p.controls.entities(&at));
    entities.extend(at.triggers());
    entities.extend(at.cameras(&p.cameras));
    entities
}

/// One printer's topics, and the pieces its entities are made of.
pub(super) struct Printer<'a> {
    pub topics: &'a Topics,
    pub id: &'a str,
    /// `P/state`, which most entities read.
    pub state: String,
}

impl<'a> Printer<'a> {
    fn new(topics: &'a Topics, id: &'a str) -> Printer<'a> {
        Printer {
            topics,
            id,
            state: topics.state(id),
        }
    }

    pub fn command(&self) -> String {
        self.topics.command(self.id)
    }

    /// A sensor of `P/state`.
    fn sensor(&self, name: &str, icon: Option<&'static str>, template: String) -> Sensor {
        Sensor::new(Shown::new(name, icon), self.state.clone(), template)
    }

    /// A sensor showing `field` of `P/state`.
    fn field_sensor(&self, name: &str, icon: Option<&'static str>, field: &str) -> Sensor {
        self.sensor(name, icon, field_template(field))
    }

    fn temperature(&self, name: &str, field: &str) -> Sensor {
        Sensor {
            device_class: Some(SensorClass::Temperature),
            unit: Some("°C"),
            state_class: Some(StateClass::Measurement),
            precision: Some(1),
            ..self.field_sensor(name, None, field)
        }
    }

    /// Online while `P/state` is defined and `condition` holds.
    pub fn while_state(&self, condition: &str) -> Availability {
        Availability::templated(
            self.state.clone(),
            format!("{{{{ 'online' if value_json is defined and {condition} else 'offline' }}}}"),
        )
    }

    /// Online while `P/state`'s state is one of `allowed`.
    pub fn in_states(&self, allowed: &[impl AsRef<str>]) -> Availability {
        self.while_state(&format!("value_json.state in {}", state_list(allowed)))
    }

    fn job_sensors(&self) -> Vec<Entity> {
        let mut states: Vec<&str> = PrinterState::KNOWN.to_vec();
        states.sort();
        let known = state_list(&states);
        let duration = |name: &str, field: &str| Sensor {
            device_class: Some(SensorClass::Duration),
            unit: Some("s"),
            ..self.field_sensor(name, None, field)
        };
        vec![
            Entity::new(
                "state",
                Sensor {
                    device_class: Some(SensorClass::Enum),
                    options: Some(states.iter().map(|s| s.to_string()).collect()),
                    // An enum sensor rejects values outside its options: map new ones to UNKNOWN.
                    ..self.sensor(
                        "State",
                        Some("mdi:printer-3d"),
                        format!(
                            "{{{{ value_json.state if value_json is defined and value_json.state in {known} else 'UNKNOWN' }}}}"
                        ),
                    )
                },
            ),
            Entity::new(
                "progress",
                Sensor {
                    unit: Some("%"),
                    state_class: Some(StateClass::Measurement),
                    precision: Some(0),
                    ..self.field_sensor("Progress", Some("mdi:progress-clock"), "progress")
                },
            ),
            Entity::new("time_remaining", duration("Time remaining", "time_remaining")),
            Entity::new("time_printing", duration("Time printing", "time_printing")),
            self.timestamp("eta", "ETA", "eta"),
            self.timestamp("job_started", "Job started", "job_started"),
            Entity::new(
                "job_name",
                self.field_sensor("Job name", Some("mdi:file-document-outline"), "job_name"),
            ),
        ]
    }

    /// A timestamp that may be null: Home Assistant before 2024.10 warns about any value of
    /// a timestamp sensor that is not a time, null included. While it is null the entity is
    /// unavailable and the value (never shown) is a valid time.
    fn timestamp(&self, object: &'static str, name: &str, field: &str) -> Entity {
        let f = StatePayload::template_field(field);
        let template = format!(
            "{{% if value_json is defined and {f} %}}{{{{ {f} }}}}{{% else %}}{{{{ now().isoformat() }}}}{{% endif %}}"
        );
        let sensor = Sensor {
            device_class: Some(SensorClass::Timestamp),
            ..self.sensor(name, None, template)
        };
        Entity::new(object, sensor).available_when(self.while_state(&f))
    }

    fn readings(&self) -> Vec<Entity> {
        vec![
            Entity::new(
                "temp_nozzle",
                self.temperature("Nozzle temperature", "temp_nozzle"),
            ),
            Entity::new(
                "target_nozzle",
                self.temperature("Nozzle target", "target_nozzle"),
            ),
            Entity::new("temp_bed", self.temperature("Bed temperature", "temp_bed")),
            Entity::new("target_bed", self.temperature("Bed target", "target_bed")),
            Entity::new(
                "material",
                self.field_sensor("Material", Some("mdi:printer-3d-nozzle"), "material"),
            ),
            Entity::new(
                "speed",
                Sensor {
                    unit: Some("%"),
                    ..self.field_sensor("Speed", Some("mdi:speedometer"), "speed")
                },
            ),
            Entity::new(
                "z_height",
                Sensor {
                    device_class: Some(SensorClass::Distance),
                    unit: Some("mm"),
                    state_class: Some(StateClass::Measurement),
                    precision: Some(1),
                    ..self.field_sensor("Z height", None, "axis_z")
                },
            ),
            // Which nozzle is on: a farm's dashboards group printers by it.
            Entity::new(
                "nozzle_diameter",
                Sensor {
                    shown: Shown::new("Nozzle diameter", Some("mdi:printer-3d-nozzle-outline"))
                        .diagnostic(),
                    device_class: Some(SensorClass::Distance),
                    unit: Some("mm"),
                    precision: Some(2),
                    ..Sensor::new(
                        Shown::new("", None),
                        self.state.clone(),
                        field_template("nozzle_diameter"),
                    )
                },
            ),
            Entity::new("storage_free", self.storage_free()),
        ]
    }

    /// The free space on the printer's writable storages, in GB (`P/state` has bytes).
    fn storage_free(&self) -> Sensor {
        let free = StatePayload::template_field("storage_free");
        Sensor {
            device_class: Some(SensorClass::DataSize),
            unit: Some("GB"),
            state_class: Some(StateClass::Measurement),
            precision: Some(2),
            ..self.sensor(
                "Storage free",
                Some("mdi:usb-flash-drive-outline"),
                format!(
                    "{{{{ ({free} / 1000000000) | round(2) if value_json is defined and {free} is number else '' }}}}"
                ),
            )
        }
    }

    fn queues(&self) -> Vec<Entity> {
        let count = |name: &str, icon, field: &str| Sensor {
            state_class: Some(StateClass::Measurement),
            ..self.field_sensor(name, Some(icon), field)
        };
        vec![
            Entity::new(
                "queue_count",
                count("Queued jobs", "mdi:tray-full", "queue_count"),
            ),
            Entity::new(
                "queue_next",
                self.field_sensor("Next queued job", Some("mdi:tray-arrow-up"), "queue_next"),
            ),
            Entity::new(
                "download_queue_count",
                count(
                    "Downloads waiting",
                    "mdi:tray-arrow-down",
                    "download_queue_count",
                ),
            ),
        ]
    }

    fn flags(&self) -> Vec<Entity> {
        let flag = |name: &str, field: &str, device_class| BinarySensor {
            shown: Shown::new(name, None),
            state_topic: self.state.clone(),
            value_template: format!(
                "{{{{ 'ON' if value_json is defined and {} else 'OFF' }}}}",
                StatePayload::template_field(field)
            ),
            device_class,
        };
        vec![
            Entity::new(
                "printing",
                flag("Printing", "printing", BinarySensorClass::Running),
            ),
            Entity::new(
                "attention",
                flag("Needs attention", "attention", BinarySensorClass::Problem),
            ),
        ]
    }

    /// Pause, resume, stop, set ready: available only in the states where Connect accepts
    /// the command.
    fn print_buttons(&self) -> Vec<Entity> {
        use PrinterState::*;
        let button = |object: &'static str, name: &str, press: &str, icon, states: &[_]| {
            let allowed: Vec<&str> = states.iter().map(PrinterState::as_str).collect();
            Entity::new(object, self.button(name, icon, self.command(), press))
                .available_when(self.in_states(&allowed))
        };
        vec![
            button("pause", "Pause", "PAUSE_PRINT", "mdi:pause", &[Printing]),
            button("resume", "Resume", "RESUME_PRINT", "mdi:play", &[Paused]),
            button(
                "stop",
                "Stop",
                "STOP_PRINT",
                "mdi:stop",
                &[Printing, Paused, Attention],
            ),
            button(
                "set_ready",
                "Set ready",
                "SET_PRINTER_READY",
                "mdi:check-circle-outline",
                &[Idle, Finished, Stopped, Ready],
            ),
            // Undoes "Set ready" (the printer would start the next queued job).
            button(
                "cancel_ready",
                "Cancel ready",
                "CANCEL_PRINTER_READY",
                "mdi:close-circle-outline",
                &[Ready],
            ),
        ]
    }

    pub fn button(&self, name: &str, icon: &'static str, topic: String, press: &str) -> Button {
        Button {
            shown: Shown::new(name, Some(icon)),
            command_topic: topic,
            payload_press: press.into(),
        }
    }

    /// "Cancel object" (the running job's objects) and the "Print finished" event.
    fn job_objects_and_end(&self, objects: &[String]) -> Vec<Entity> {
        let options = if objects.is_empty() {
            vec![NO_OBJECTS.to_string()]
        } else {
            objects.to_vec()
        };
        let cancel = Select {
            shown: Shown::new("Cancel object", Some("mdi:cancel")),
            command_topic: self.command(),
            command_template: Some(
                "{\"command\": \"CANCEL_OBJECT\", \"kwargs\": {\"object_name\": {{ value | tojson }}}}".into(),
            ),
            options,
            state: None,
            retain: false,
        };
        let cancelable = Availability::templated(
            self.topics.job(self.id),
            "{{ 'online' if value_json is defined and value_json.state in ['PRINTING', 'PAUSED'] and value_json.cancelable_objects | rejectattr('canceled') | list | length > 0 else 'offline' }}".into(),
        );
        let finished = Event {
            shown: Shown::new("Print finished", Some("mdi:printer-3d")),
            state_topic: self.topics.job_finished(self.id),
            event_types: [JobState::FinOk, JobState::FinError, JobState::FinStopped]
                .iter()
                .map(|s| s.as_str().to_string())
                .collect(),
        };
        vec![
            Entity::new("cancel_object", cancel).available_when(cancelable),
            Entity::new("print_finished", finished),
        ]
    }

    /// With Spoolman: "Spool" (the select of its spools, setting the retained `P/spool`), and
    /// "Spool remaining" (grams).
    fn spool(&self, labels: &[String]) -> Vec<Entity> {
        let label = StatePayload::template_field("spool");
        let id = StatePayload::template_field("spool_id");
        let mut options = vec![NO_SPOOL.to_string()];
        options.extend(labels.iter().cloned());
        let select = Select {
            shown: Shown::new("Spool", Some("mdi:printer-3d-nozzle-outline")),
            command_topic: self.topics.spool(self.id),
            // "#12 Polymaker PLA" sends 12; "No spool" an empty payload (no spool).
            command_template: Some(format!(
                "{{{{ '' if value == '{NO_SPOOL}' else value.split(' ')[0][1:] }}}}"
            )),
            options,
            // A spool Spoolman does not list (archived) is "unknown", not "No spool".
            state: Some(SelectState {
                topic: self.state.clone(),
                template: format!(
                    "{{{{ {label} if value_json is defined and {label} else ('{NO_SPOOL}' if \
                     value_json is defined and {id} is none else 'None') }}}}"
                ),
            }),
            retain: true,
        };
        let remaining = Sensor {
            device_class: Some(SensorClass::Weight),
            unit: Some("g"),
            state_class: Some(StateClass::Measurement),
            precision: Some(0),
            ..self.field_sensor(
                "Spool remaining",
                Some("mdi:weight-gram"),
                "spool_remaining_g",
            )
        };
        vec![
            Entity::new("spool", select),
            Entity::new("spool_remaining", remaining),
        ]
    }

    /// Sensors of data only some printers send: created when Connect sends it.
    fn features(&self, features: &Features) -> Vec<Entity> {
        let fan = |name: &str, field: &str| Sensor {
            unit: Some("RPM"),
            state_class: Some(StateClass::Measurement),
            shown: Shown::new(name, Some("mdi:fan")).diagnostic(),
            ..self.field_sensor(name, None, field)
        };
        let mut entities = Vec::new();
        if features.chamber {
            entities.push(Entity::new(
                "temp_chamber",
                self.temperature("Chamber temperature", "temp_chamber"),
            ));
            entities.push(Entity::new(
                "target_chamber",
                self.temperature("Chamber target", "target_chamber"),
            ));
        }
        if features.chamber_led {
            let level = Sensor {
                unit: Some("%"),
                ..self.field_sensor("Chamber light level", Some("mdi:led-on"), "chamber_led")
            };
            entities.push(Entity::new("chamber_led_level", level));
        }
        if features.fans {
            entities.push(Entity::new("fan_hotend", fan("Hotend fan", "fan_hotend")));
            entities.push(Entity::new("fan_print", fan("Print fan", "fan_print")));
        }
        entities
    }

    fn preview_and_firmware(&self) -> Vec<Entity> {
        let preview = Image {
            shown: Shown::new("Print preview", Some("mdi:image-outline")),
            image_topic: self.topics.job_preview(self.id),
            content_type: "image/png",
        };
        let firmware = StatePayload::template_field("firmware");
        let latest = StatePayload::template_field("firmware_latest");
        let update = Update {
            shown: Shown::new("Firmware", None).diagnostic(),
            state_topic: self.state.clone(),
            // Installed: the printer's; latest: the type's stable release when Connect lists
            // one (no install action: firmware is flashed on the printer).
            value_template: format!(
                "{{{{ {{'installed_version': {firmware} or '', 'latest_version': ({latest} or {firmware} or '')}} | tojson if value_json is defined else '' }}}}"
            ),
            device_class: UpdateClass::Firmware,
        };
        vec![
            Entity::new("job_preview", preview),
            Entity::new("firmware", update),
        ]
    }

    /// The device triggers: messages on `P/trigger`.
    fn triggers(&self) -> Vec<Entity> {
        TRIGGERS
            .iter()
            .map(|(object, payload)| {
                let trigger = DeviceTrigger {
                    automation_type: TriggerKind::Trigger,
                    topic: self.topics.trigger(self.id),
                    trigger_type: payload,
                    subtype: "printer",
                    payload,
                };
                Entity::new(*object, trigger)
            })
            .collect()
    }

    /// One camera entity per camera, and with any camera, the picture of how the last job
    /// ended.
    fn cameras(&self, cameras: &[(String, String)]) -> Vec<Entity> {
        let mut entities: Vec<Entity> = cameras
            .iter()
            .map(|(camera, name)| {
                let object = format!("camera_{}", crate::topics::slug(camera));
                let config = Camera {
                    shown: Shown::new(name.as_str(), Some("mdi:cctv")),
                    topic: self.topics.camera(self.id, camera),
                };
                Entity::new(object, config)
            })
            .collect();
        if !cameras.is_empty() {
            let result = Image {
                shown: Shown::new("Last print result", Some("mdi:image-check-outline")),
                image_topic: self.topics.job_finished_picture(self.id),
                content_type: "image/jpeg",
            };
            entities.push(Entity::new("last_print_result", result));
        }
        entities
    }
}

/// `{{ value_json.<field> }}` of a field `P/state` has. Every template tolerates an empty
/// payload (a state topic cleared as its printer goes): Home Assistant may still hold the
/// entity when the clear arrives, and `value_json` is then undefined (an ERROR in its log).
/// Numeric sensors ignore the empty value.
fn field_template(field: &str) -> String {
    format!(
        "{{{{ {} if value_json is defined else '' }}}}",
        StatePayload::template_field(field)
    )
}

/// `["A","B"]`: a list of states as a template reads it.
pub(super) fn state_list(states: &[impl AsRef<str>]) -> String {
    let states: Vec<&str> = states.iter().map(AsRef::as_ref).collect();
    serde_json::to_string(&states).unwrap_or_default()
}
