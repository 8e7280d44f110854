//! The printer's controls: which of Connect's commands become Home Assistant entities
//! (numbers, buttons, selects), with the limits and states the printer's `supported-commands`
//! gives. A control exists only when the printer supports its command and `commands.allow`
//! lets it through: Home Assistant never shows a button that can only fail.

use serde_json::json;

use super::platform::{Entity, Number, NumberMode, Select, SelectState, Shown};
use super::printer::{Printer, state_list};
use crate::connect::model::{PrinterState, SupportedCommand};
use crate::payloads::StatePayload;

/// A number entity that sets one value through one command.
struct NumberKind {
    object: &'static str,
    name: &'static str,
    command: &'static str,
    arg: &'static str,
    /// The `P/state` field that shows the value.
    field: &'static str,
    unit: &'static str,
    /// When `supported-commands` gives no limit.
    min: f64,
    max: f64,
    icon: &'static str,
}

const NUMBERS: &[NumberKind] = &[
    NumberKind {
        object: "set_nozzle_target",
        name: "Set nozzle target",
        command: "SET_NOZZLE_TEMPERATURE",
        arg: "nozzle_temperature",
        field: "target_nozzle",
        unit: "°C",
        min: 0.0,
        max: 290.0,
        icon: "mdi:printer-3d-nozzle-heat",
    },
    NumberKind {
        object: "set_bed_target",
        name: "Set bed target",
        command: "SET_HEATBED_TEMPERATURE",
        arg: "bed_temperature",
        field: "target_bed",
        unit: "°C",
        min: 0.0,
        max: 150.0,
        icon: "mdi:radiator",
    },
    NumberKind {
        object: "set_speed",
        name: "Set speed",
        command: "SET_SPEED",
        arg: "speed",
        field: "speed",
        unit: "%",
        min: 10.0,
        max: 300.0,
        icon: "mdi:speedometer",
    },
    NumberKind {
        object: "set_flow",
        name: "Set flow",
        command: "SET_FLOW",
        arg: "flow",
        field: "flow",
        unit: "%",
        min: 10.0,
        max: 150.0,
        icon: "mdi:water-percent",
    },
    NumberKind {
        object: "chamber_led",
        name: "Chamber light",
        command: "SET_CHAMBER_LED_INTENSITY",
        arg: "chamber.led_intensity",
        field: "chamber_led",
        unit: "%",
        min: 0.0,
        max: 100.0,
        icon: "mdi:led-on",
    },
];

/// A button that sends one command, with fixed arguments.
struct ButtonKind {
    object: &'static str,
    name: &'static str,
    command: &'static str,
    /// Sent when the command takes this argument.
    arg: Option<(&'static str, &'static str)>,
    icon: &'static str,
}

const BUTTONS: &[ButtonKind] = &[
    ButtonKind {
        object: "home",
        name: "Home",
        command: "HOME",
        arg: Some(("axis", "XYZ")),
        icon: "mdi:home-import-outline",
    },
    ButtonKind {
        object: "beep",
        name: "Beep",
        command: "BEEP",
        arg: None,
        icon: "mdi:volume-high",
    },
    ButtonKind {
        object: "disable_steppers",
        name: "Disable motors",
        command: "DISABLE_STEPPERS",
        arg: None,
        icon: "mdi:engine-off-outline",
    },
    ButtonKind {
        object: "unload_filament",
        name: "Unload filament",
        command: "UNLOAD_FILAMENT",
        arg: None,
        icon: "mdi:tray-arrow-up",
    },
];

/// The materials Prusa's firmware offers to load.
pub const MATERIALS: &[&str] = &[
    "PLA", "PETG", "ASA", "ABS", "PC", "PVB", "PA", "CPE", "HIPS", "PP", "FLEX",
];

/// The only option of "Dialog response" while no dialog is shown (Home Assistant needs one).
pub const NO_DIALOG: &str = "(no dialog)";

/// What a printer's controls are: the part of its discovery that depends on its supported
/// commands, the allow list and the dialog it shows. Compared to decide whether discovery
/// changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Controls {
    /// `(index into NUMBERS, min, max, states)`.
    numbers: Vec<(usize, f64, f64, Vec<String>)>,
    /// `(index into BUTTONS, sends the argument, states)`.
    buttons: Vec<(usize, bool, Vec<String>)>,
    load_filament: Option<Vec<String>>,
    /// The states DIALOG_ACTION runs in, and the buttons of the dialog shown now.
    dialog: Option<(Vec<String>, Vec<String>)>,
    /// The states START_PRINT runs in, and the labels of the printer's files.
    start_print: Option<(Vec<String>, Vec<String>)>,
}

/// Hashed to remember which discovery was published (a printer keeps the hash, not the
/// controls): the limits by their bits.
impl std::hash::Hash for Controls {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.numbers.len().hash(h);
        for (i, min, max, states) in &self.numbers {
            (i, min.to_bits(), max.to_bits(), states).hash(h);
        }
        self.buttons.hash(h);
        self.load_filament.hash(h);
        self.dialog.hash(h);
        self.start_print.hash(h);
    }
}

/// The only option of "File to print" while the printer's files are not known.
pub const NO_FILES: &str = "(no files)";

impl Controls {
    /// The controls of a printer supporting `supported`, with `allow` the allow list and
    /// `dialog_buttons` the buttons of the dialog it shows.
    pub fn new(
        supported: &[SupportedCommand],
        allow: &[String],
        dialog_buttons: &[String],
    ) -> Controls {
        let usable = |command: &str| {
            allow
                .iter()
                .any(|a| a.eq_ignore_ascii_case(command))
                .then(|| supported.iter().find(|c| c.command == command))
                .flatten()
        };
        let numbers = NUMBERS
            .iter()
            .enumerate()
            .filter_map(|(i, kind)| {
                let spec = usable(kind.command)?;
                let arg = spec.args.iter().find(|a| a.name == kind.arg)?;
                let min = arg.min.unwrap_or(kind.min);
                let max = arg.max.unwrap_or(kind.max).max(min);
                Some((i, min, max, states(spec)))
            })
            .collect();
        let buttons = BUTTONS
            .iter()
            .enumerate()
            .filter_map(|(i, kind)| {
                let spec = usable(kind.command)?;
                let with_arg = kind
                    .arg
                    .is_some_and(|(name, _)| spec.args.iter().any(|a| a.name == name));
                Some((i, with_arg, states(spec)))
            })
            .collect();
        Controls {
            numbers,
            buttons,
            load_filament: usable("LOAD_FILAMENT").map(states),
            dialog: usable("DIALOG_ACTION").map(|spec| (states(spec), dialog_buttons.to_vec())),
            start_print: usable("START_PRINT").map(|spec| (states(spec), Vec::new())),
        }
    }

    /// The printer's files, for "File to print" (when START_PRINT is usable).
    pub fn with_files(mut self, labels: &[String]) -> Controls {
        if let Some((_, files)) = &mut self.start_print {
            *files = labels.to_vec();
        }
        self
    }

    /// The entities of these controls, for printer `at`.
    pub(super) fn entities(&self, at: &Printer) -> Vec<Entity> {
        let mut entities: Vec<Entity> = self
            .numbers
            .iter()
            .map(|(i, min, max, allowed)| number(at, &NUMBERS[*i], *min, *max, allowed))
            .collect();
        for (i, with_arg, allowed) in &self.buttons {
            let kind = &BUTTONS[*i];
            let press = match kind.arg {
                Some((name, value)) if *with_arg => {
                    json!({"command": kind.command, "kwargs": {name: value}}).to_string()
                }
                _ => kind.command.to_string(),
            };
            let button = at.button(kind.name, kind.icon, at.command(), &press);
            entities.push(Entity::new(kind.object, button).available_when(at.in_states(allowed)));
        }
        if let Some(allowed) = &self.load_filament {
            entities.push(load_filament(at, allowed));
        }
        if let Some((allowed, buttons)) = &self.dialog {
            entities.push(dialog_response(at, allowed, buttons));
        }
        if let Some((allowed, files)) = &self.start_print {
            entities.extend(start_print(at, allowed, files));
        }
        entities
    }

    /// Every control there can be: what a removal must clear.
    pub(super) fn all() -> Controls {
        Controls {
            numbers: (0..NUMBERS.len())
                .map(|i| (i, 0.0, 0.0, Vec::new()))
                .collect(),
            buttons: (0..BUTTONS.len()).map(|i| (i, false, Vec::new())).collect(),
            load_filament: Some(Vec::new()),
            dialog: Some((Vec::new(), Vec::new())),
            start_print: Some((Vec::new(), Vec::new())),
        }
    }
}

/// The states a command runs in (every state Connect knows but OFFLINE when it says none).
fn states(spec: &SupportedCommand) -> Vec<String> {
    match &spec.executable_from_state {
        Some(states) if !states.is_empty() => {
            let mut all: Vec<String> = states.iter().map(|s| s.as_str().to_string()).collect();
            all.sort();
            all.dedup();
            all
        }
        _ => PrinterState::KNOWN
            .iter()
            .filter(|s| **s != PrinterState::Offline.as_str())
            .map(|s| s.to_string())
            .collect(),
    }
}

/// A number setting one value through its command.
fn number(at: &Printer, kind: &NumberKind, min: f64, max: f64, allowed: &[String]) -> Entity {
    let field = StatePayload::template_field(kind.field);
    let number = Number {
        shown: Shown::new(kind.name, Some(kind.icon)),
        state_topic: at.state.clone(),
        // "None" is Home Assistant's "unknown" for a number (no value yet).
        value_template: format!(
            "{{{{ {field} if value_json is defined and {field} is not none else 'None' }}}}"
        ),
        command_topic: at.command(),
        command_template: format!(
            "{{\"command\": \"{}\", \"kwargs\": {{\"{}\": {{{{ value | int }}}}}}}}",
            kind.command, kind.arg
        ),
        min,
        max,
        step: 1,
        mode: NumberMode::Box,
        unit: kind.unit,
    };
    Entity::new(kind.object, number).available_when(at.in_states(allowed))
}

/// "Load filament": LOAD_FILAMENT with the chosen material; shows the loaded material when
/// it is one of the options.
fn load_filament(at: &Printer, allowed: &[String]) -> Entity {
    let material = StatePayload::template_field("material");
    let select = Select {
        shown: Shown::new("Load filament", Some("mdi:printer-3d-nozzle")),
        command_topic: at.command(),
        command_template: Some(
            "{\"command\": \"LOAD_FILAMENT\", \"kwargs\": {\"filament\": {{ value | tojson }}}}"
                .into(),
        ),
        options: MATERIALS.iter().map(|m| m.to_string()).collect(),
        state: Some(SelectState {
            topic: at.state.clone(),
            template: format!(
                "{{{{ {material} if value_json is defined and {material} in {} else 'None' }}}}",
                state_list(MATERIALS)
            ),
        }),
        retain: false,
    };
    Entity::new("load_filament", select).available_when(at.in_states(allowed))
}

/// "Dialog response": the buttons of the dialog shown, available while one is.
fn dialog_response(at: &Printer, allowed: &[String], buttons: &[String]) -> Entity {
    let dialog = StatePayload::template_field("dialog");
    let shown = at.while_state(&format!(
        "{dialog} and value_json.state in {}",
        state_list(allowed)
    ));
    let select = Select {
        shown: Shown::new("Dialog response", Some("mdi:message-reply-text-outline")),
        command_topic: at.command(),
        command_template: Some(
            "{\"command\": \"DIALOG_ACTION\", \"kwargs\": {\"button\": {{ value | tojson }}}}"
                .into(),
        ),
        options: if buttons.is_empty() {
            vec![NO_DIALOG.to_string()]
        } else {
            buttons.to_vec()
        },
        // A choice is an action, not a state: nothing stays selected.
        state: Some(SelectState {
            topic: at.state.clone(),
            template: "{{ 'None' }}".into(),
        }),
        retain: false,
    };
    Entity::new("dialog_response", select).available_when(shown)
}

/// "File to print" and "Start print": the select tells the gateway the file, the button
/// prints it (a bare START_PRINT).
fn start_print(at: &Printer, allowed: &[String], files: &[String]) -> Vec<Entity> {
    let chosen = StatePayload::template_field("print_file");
    let ready = at.while_state(&format!(
        "{chosen} and value_json.state in {}",
        state_list(allowed)
    ));
    let select = Select {
        shown: Shown::new("File to print", Some("mdi:file-outline")),
        command_topic: at.topics.print_file(at.id),
        command_template: None,
        options: if files.is_empty() {
            vec![NO_FILES.to_string()]
        } else {
            files.to_vec()
        },
        state: Some(SelectState {
            topic: at.state.clone(),
            template: format!(
                "{{{{ {chosen} if value_json is defined and {chosen} else 'None' }}}}"
            ),
        }),
        retain: false,
    };
    let button = at.button("Start print", "mdi:printer-3d", at.command(), "START_PRINT");
    vec![
        Entity::new("print_file", select).available_when(at.in_states(allowed)),
        Entity::new("start_print", button).available_when(ready),
    ]
}
