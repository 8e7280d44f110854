//! The commands a printer takes, as the captured `supported-commands` document of an MK4-class
//! printer lists them (plus the chamber's, for printers that have one).

use serde_json::{Map, Value, json};

use super::super::render::num;
use super::super::world::Printer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ArgType {
    Integer,
    Number,
    String,
    Boolean,
    Object,
}

impl ArgType {
    pub fn name(self) -> &'static str {
        match self {
            ArgType::Integer => "integer",
            ArgType::Number => "number",
            ArgType::String => "string",
            ArgType::Boolean => "boolean",
            ArgType::Object => "object",
        }
    }
}

/// The value an argument takes when it is not given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Preset {
    Integer(i64),
    Text(&'static str),
}

impl Preset {
    pub fn to_json(self) -> Value {
        match self {
            Preset::Integer(n) => json!(n),
            Preset::Text(s) => json!(s),
        }
    }
}

#[derive(Debug)]
pub(super) struct ArgSpec {
    pub name: &'static str,
    pub ty: ArgType,
    pub required: bool,
    pub description: &'static str,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub unit: Option<&'static str>,
    pub default: Option<Preset>,
    /// Where a client finds the value to give (`dialog_info.id`).
    pub reference: Option<&'static str>,
}

/// An optional argument; the builder methods below add the rest.
const fn arg(name: &'static str, ty: ArgType, description: &'static str) -> ArgSpec {
    ArgSpec {
        name,
        ty,
        required: false,
        description,
        min: None,
        max: None,
        unit: None,
        default: None,
        reference: None,
    }
}

impl ArgSpec {
    const fn required(self) -> ArgSpec {
        ArgSpec {
            required: true,
            ..self
        }
    }

    const fn range(self, min: f64, max: f64) -> ArgSpec {
        ArgSpec {
            min: Some(min),
            max: Some(max),
            ..self
        }
    }

    const fn unit(self, unit: &'static str) -> ArgSpec {
        ArgSpec {
            unit: Some(unit),
            ..self
        }
    }

    const fn default(self, preset: Preset) -> ArgSpec {
        ArgSpec {
            default: Some(preset),
            ..self
        }
    }

    const fn reference(self, reference: &'static str) -> ArgSpec {
        ArgSpec {
            reference: Some(reference),
            ..self
        }
    }

    fn to_json(&self) -> Value {
        let mut v = Map::new();
        v.insert("name".into(), json!(self.name));
        v.insert("type".into(), json!(self.ty.name()));
        v.insert("required".into(), json!(self.required));
        v.insert("input".into(), json!(true));
        v.insert("output".into(), json!(false));
        v.insert("description".into(), json!(self.description));
        if let Some(unit) = self.unit {
            v.insert("unit".into(), json!(unit));
        }
        if let Some(min) = self.min {
            v.insert("min_limit".into(), num(min));
        }
        if let Some(max) = self.max {
            v.insert("max_limit".into(), num(max));
        }
        if let Some(preset) = self.default {
            v.insert("default".into(), preset.to_json());
        }
        if let Some(reference) = self.reference {
            v.insert("reference".into(), json!(reference));
        }
        Value::Object(v)
    }
}

#[derive(Debug)]
pub(super) struct CommandSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub args: &'static [ArgSpec],
    pub from: &'static [&'static str],
    /// The G-code the printer turns it into.
    pub template: Option<&'static str>,
    /// Extruding needs a hot nozzle: below this (°C) the printer refuses.
    pub min_temp_nozzle_e: Option<f64>,
    /// Only printers with a chamber list it.
    pub chamber_only: bool,
}

const fn cmd(
    name: &'static str,
    description: &'static str,
    from: &'static [&'static str],
) -> CommandSpec {
    CommandSpec {
        name,
        description,
        args: &[],
        from,
        template: None,
        min_temp_nozzle_e: None,
        chamber_only: false,
    }
}

impl CommandSpec {
    const fn args(self, args: &'static [ArgSpec]) -> CommandSpec {
        CommandSpec { args, ..self }
    }

    const fn template(self, template: &'static str) -> CommandSpec {
        CommandSpec {
            template: Some(template),
            ..self
        }
    }

    const fn min_temp_nozzle_e(self, celsius: f64) -> CommandSpec {
        CommandSpec {
            min_temp_nozzle_e: Some(celsius),
            ..self
        }
    }

    const fn chamber_only(self) -> CommandSpec {
        CommandSpec {
            chamber_only: true,
            ..self
        }
    }

    fn to_json(&self) -> Value {
        let args: Vec<Value> = self.args.iter().map(ArgSpec::to_json).collect();
        let mut v = Map::new();
        v.insert("command".into(), json!(self.name));
        v.insert("args".into(), json!(args));
        v.insert("description".into(), json!(self.description));
        v.insert("duplicates_allowed".into(), json!(false));
        v.insert("executable_from_state".into(), json!(self.from));
        if let Some(template) = self.template {
            v.insert("template".into(), json!(template));
        }
        if let Some(celsius) = self.min_temp_nozzle_e {
            v.insert("min_temp_nozzle_e".into(), num(celsius));
        }
        Value::Object(v)
    }
}

const SET_READY_FROM: &[&str] = &["STOPPED", "IDLE", "FINISHED", "READY"];
const START_FROM: &[&str] = &["IDLE", "READY", "FINISHED", "STOPPED"];
const FILAMENT_FROM: &[&str] = &["IDLE", "READY", "PAUSED", "STOPPED", "FINISHED"];
const JOB_FROM: &[&str] = &["PRINTING", "PAUSED"];
const HOME_FROM: &[&str] = &["IDLE", "READY", "MANIPULATING"];
const MOTION_FROM: &[&str] = &["IDLE", "PAUSED", "FINISHED", "STOPPED", "READY"];
const BEEP_FROM: &[&str] = &[
    "IDLE",
    "PAUSED",
    "FINISHED",
    "STOPPED",
    "READY",
    "MANIPULATING",
];
const SETTING_FROM: &[&str] = &["IDLE", "PAUSED", "FINISHED", "STOPPED", "PRINTING", "READY"];
const BED_FROM: &[&str] = &[
    "IDLE",
    "PAUSED",
    "FINISHED",
    "STOPPED",
    "PRINTING",
    "READY",
    "MANIPULATING",
];
const LEVELING_FROM: &[&str] = &["IDLE", "READY"];
const BUT_UNKNOWN: &[&str] = &[
    "IDLE",
    "READY",
    "BUSY",
    "PRINTING",
    "PAUSED",
    "FINISHED",
    "STOPPED",
    "ATTENTION",
    "ERROR",
    "MANIPULATING",
];
const BUT_UNKNOWN_OR_ERROR: &[&str] = &[
    "IDLE",
    "READY",
    "BUSY",
    "PRINTING",
    "PAUSED",
    "FINISHED",
    "STOPPED",
    "ATTENTION",
    "MANIPULATING",
];
/// The dangerous commands' states are not in the capture: anything but a print.
const DANGEROUS_FROM: &[&str] = &["IDLE", "READY", "FINISHED", "STOPPED"];

use ArgType::{Boolean, Integer, Number, Object, String as Str};

/// Listed twice, as the capture does: clients must take a duplicate in their stride.
const CANCEL_OBJECT: CommandSpec = cmd("CANCEL_OBJECT", "Cancel one object of the print", JOB_FROM)
    .args(&[arg(
        "object_id",
        Integer,
        "The object's id in the job's cancelable objects",
    )
    .required()])
    .template("M486 P{object_id}");

pub(super) static COMMANDS: &[CommandSpec] = &[
    cmd(
        "SET_PRINTER_READY",
        "Mark the printer ready for the next print",
        SET_READY_FROM,
    )
    .template("M72 S1"),
    cmd(
        "CANCEL_PRINTER_READY",
        "Take back the printer's readiness",
        &["READY"],
    )
    .template("M72 S0"),
    cmd(
        "START_PRINT",
        "Print a file from the printer's storage",
        START_FROM,
    )
    .args(&[
        arg("path", Str, "The file's path on the printer").required(),
        arg(
            "tool_mapping",
            Object,
            "Which tool prints which of the file's filaments",
        ),
    ])
    .template("M23 {path}\nM24"),
    cmd("PAUSE_PRINT", "Pause the print", &["PRINTING"]).template("M601"),
    cmd("RESUME_PRINT", "Resume the paused print", &["PAUSED"]).template("M602"),
    cmd(
        "STOP_PRINT",
        "Stop the print",
        &["PAUSED", "PRINTING", "ATTENTION"],
    )
    .template("M603"),
    cmd(
        "LOAD_FILAMENT",
        "Load filament into the extruder",
        FILAMENT_FROM,
    )
    .args(&[arg("filament", Str, "The material's name, e.g. PLA").required()])
    .template("M701 S\"{filament}\""),
    cmd(
        "UNLOAD_FILAMENT",
        "Unload the filament from the extruder",
        FILAMENT_FROM,
    )
    .args(&[arg("tool", Integer, "The tool to unload").default(Preset::Integer(0))])
    .template("M702 T{tool}"),
    cmd(
        "DIALOG_ACTION",
        "Press a button of the dialog the printer shows",
        BUT_UNKNOWN,
    )
    .args(&[
        arg("dialog_id", Integer, "The dialog's id")
            .required()
            .reference("dialog_info.id"),
        arg("button", Str, "The button's label").required(),
    ]),
    cmd("HOME", "Home the axes", HOME_FROM)
        .args(&[arg("axis", Str, "The axes to home").default(Preset::Text("XYZ"))])
        .template("G28 {axis}"),
    cmd("MOVE", "Move the head by a distance", MOTION_FROM)
        .args(&[
            arg("feedrate", Integer, "Speed of the move")
                .required()
                .range(0.0, 3000.0)
                .unit("mm/min")
                .default(Preset::Integer(3000)),
            arg("x", Number, "Distance along X").unit("mm"),
            arg("y", Number, "Distance along Y").unit("mm"),
        ])
        .template("G91\nG1 X{x} Y{y} F{feedrate}\nG90"),
    cmd("MOVE_Z", "Move the bed or head up or down", MOTION_FROM)
        .args(&[
            arg("feedrate", Integer, "Speed of the move")
                .required()
                .range(0.0, 720.0)
                .unit("mm/min"),
            arg("distance", Number, "Distance along Z")
                .required()
                .unit("mm"),
        ])
        .template("G91\nG1 Z{distance} F{feedrate}\nG90"),
    cmd("MOVE_E", "Extrude or retract filament", MOTION_FROM)
        .args(&[
            arg("feedrate", Integer, "Speed of the extruder")
                .required()
                .range(0.0, 240.0)
                .unit("mm/min"),
            arg("length", Number, "Length of filament, negative to retract")
                .required()
                .range(-10.0, 100.0)
                .unit("mm"),
        ])
        .template("M83\nG1 E{length} F{feedrate}")
        .min_temp_nozzle_e(170.0),
    CANCEL_OBJECT,
    CANCEL_OBJECT,
    cmd("SET_SPEED", "Set the print speed", SETTING_FROM)
        .args(&[arg("speed", Integer, "Print speed")
            .required()
            .range(10.0, 300.0)
            .unit("%")
            .default(Preset::Integer(100))])
        .template("M220 S{speed}"),
    cmd("SET_FLOW", "Set the flow rate", SETTING_FROM)
        .args(&[arg("flow", Integer, "Flow rate")
            .required()
            .range(10.0, 150.0)
            .unit("%")
            .default(Preset::Integer(100))])
        .template("M221 S{flow}"),
    cmd(
        "SET_NOZZLE_TEMPERATURE",
        "Set the nozzle's target temperature",
        SETTING_FROM,
    )
    .args(&[arg("nozzle_temperature", Integer, "Target temperature")
        .required()
        .range(0.0, 290.0)
        .unit("°C")])
    .template("M104 S{nozzle_temperature}"),
    cmd(
        "SET_HEATBED_TEMPERATURE",
        "Set the heatbed's target temperature",
        BED_FROM,
    )
    .args(&[arg("bed_temperature", Integer, "Target temperature")
        .required()
        .range(0.0, 150.0)
        .unit("°C")])
    .template("M140 S{bed_temperature}"),
    cmd(
        "SET_CHAMBER_LED_INTENSITY",
        "Set the brightness of the chamber light",
        BUT_UNKNOWN_OR_ERROR,
    )
    .args(&[arg("chamber.led_intensity", Integer, "Brightness")
        .required()
        .range(0.0, 100.0)
        .unit("%")])
    .template("M150 W{chamber.led_intensity}")
    .chamber_only(),
    cmd(
        "SET_ENCLOSURE_ENABLED",
        "Turn the enclosure's control on or off",
        BUT_UNKNOWN_OR_ERROR,
    )
    .args(&[arg("enclosure_enabled", Boolean, "Enclosure control on").required()])
    .chamber_only(),
    cmd(
        "SET_ENCLOSURE_PRINTING_FILTRATION",
        "Filter the chamber's air while printing",
        BUT_UNKNOWN_OR_ERROR,
    )
    .args(&[arg(
        "enclosure_printing_filtration",
        Boolean,
        "Filtration while printing",
    )
    .required()])
    .chamber_only(),
    cmd(
        "SET_ENCLOSURE_POSTPRINT",
        "Filter the chamber's air after a print",
        BUT_UNKNOWN_OR_ERROR,
    )
    .args(&[arg("enclosure_postprint", Boolean, "Filtration after a print").required()])
    .chamber_only(),
    cmd(
        "SET_ENCLOSURE_POSTPRINT_FILTRATION_TIME",
        "How long to filter the air after a print",
        BUT_UNKNOWN_OR_ERROR,
    )
    .args(&[arg(
        "enclosure_postprint_filtration_time",
        Integer,
        "Filtration time after a print",
    )
    .required()
    .unit("s")])
    .chamber_only(),
    cmd("BEEP", "Beep", BEEP_FROM).template("M300"),
    cmd("DISABLE_STEPPERS", "Turn the motors off", MOTION_FROM).template("M18"),
    cmd("MESH_BED_LEVELING", "Measure the bed's mesh", LEVELING_FROM).template("G29"),
    cmd("SEND_GCODE", "Run G-code", DANGEROUS_FROM)
        .args(&[arg("gcode", Str, "The G-code to run").required()])
        .template("{gcode}"),
    cmd("FLASH", "Flash firmware from a file", DANGEROUS_FROM)
        .args(&[arg("path", Str, "The firmware file's path").required()])
        .template("M997 {path}"),
    cmd("RESET_PRINTER", "Restart the printer", BUT_UNKNOWN).template("M999"),
    cmd(
        "DELETE_FILE",
        "Delete a file from the printer",
        DANGEROUS_FROM,
    )
    .args(&[arg("path", Str, "The file's path").required()])
    .template("M30 {path}"),
];

/// The commands `printer` takes, in the document's order (duplicates included).
fn for_printer(printer: &Printer) -> impl Iterator<Item = &'static CommandSpec> + '_ {
    COMMANDS
        .iter()
        .filter(|c| !c.chamber_only || printer.has_chamber())
}

/// The first entry for `name` that `printer` takes.
pub(super) fn find(printer: &Printer, name: &str) -> Option<&'static CommandSpec> {
    for_printer(printer).find(|c| c.name == name)
}

/// The body of `GET /app/printers/{uuid}/supported-commands`.
pub(crate) fn supported_commands(printer: &Printer) -> Value {
    let commands: Vec<Value> = for_printer(printer).map(CommandSpec::to_json).collect();
    json!({ "commands": commands })
}
