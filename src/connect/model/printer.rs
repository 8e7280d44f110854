//! A printer as `/app/printers` lists it: state, temperatures, the job it runs, tools.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::job::JobState;

connect_enum!(
    /// `printer_state` and `connect_state` of a printer.
    PrinterState {
        Idle = "IDLE",
        Ready = "READY",
        Busy = "BUSY",
        Printing = "PRINTING",
        Paused = "PAUSED",
        Finished = "FINISHED",
        Stopped = "STOPPED",
        Attention = "ATTENTION",
        Error = "ERROR",
        Manipulating = "MANIPULATING",
        Offline = "OFFLINE",
        Unknown = "UNKNOWN",
    }
);

impl PrinterState {
    /// States in which the fleet is polled fast: something is happening or someone is needed.
    pub fn is_active(&self) -> bool {
        matches!(
            self,
            Self::Printing | Self::Paused | Self::Attention | Self::Busy | Self::Manipulating
        )
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Temperatures {
    pub temp_nozzle: Option<f64>,
    pub temp_bed: Option<f64>,
    pub target_nozzle: Option<f64>,
    pub target_bed: Option<f64>,
    /// Printers with a chamber (CORE One) only.
    pub temp_chamber: Option<f64>,
    pub target_chamber: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Filament {
    pub material: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct JobInfo {
    pub id: Option<i64>,
    pub origin_id: Option<i64>,
    pub path: Option<String>,
    pub state: Option<JobState>,
    pub start: Option<f64>,
    pub end: Option<f64>,
    pub progress: Option<f64>,
    pub time_printing: Option<f64>,
    pub time_remaining: Option<f64>,
    pub display_name: Option<String>,
    pub preview_url: Option<String>,
    pub model_weight: Option<f64>,
    pub weight_remaining: Option<f64>,
}

/// What the printer shows while it waits for the user.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct DialogInfo {
    pub id: Option<Value>,
    pub code: Option<Value>,
    pub title: Option<String>,
    pub text: Option<String>,
    #[serde(default)]
    pub buttons: Vec<Value>,
    pub key: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Printer {
    pub uuid: String,
    pub name: Option<String>,
    pub location: Option<String>,
    pub sn: Option<String>,
    pub printer_model: Option<String>,
    pub printer_type: Option<String>,
    pub printer_type_name: Option<String>,
    pub team_id: Option<i64>,
    pub team_name: Option<String>,
    pub firmware: Option<String>,
    pub printer_state: Option<PrinterState>,
    pub connect_state: Option<PrinterState>,
    pub state_reason: Option<Value>,
    pub last_online: Option<f64>,
    pub temp: Option<Temperatures>,
    pub axis_x: Option<f64>,
    pub axis_y: Option<f64>,
    pub axis_z: Option<f64>,
    pub speed: Option<f64>,
    pub flow: Option<f64>,
    pub nozzle_diameter: Option<f64>,
    pub filament: Option<Filament>,
    pub job_info: Option<JobInfo>,
    pub dialog_info: Option<DialogInfo>,
    /// Jobs planned in the printer's queue (one client's schema; absent in older captures).
    /// Kept raw so a value of an unexpected type does not make the printer unreadable.
    pub job_queue_count: Option<Value>,
    /// Per tool (`"1"`, `"2"`...): fan speeds. Whatever else it holds, or a value of another
    /// shape, is ignored.
    #[serde(default, deserialize_with = "lenient_tools")]
    pub tools: Vec<Tool>,
    /// Printers with a chamber: `{"led_intensity": ..}` (a guess at the shape).
    #[serde(default, deserialize_with = "lenient_chamber")]
    pub chamber: Option<Chamber>,
}

/// One tool of `tools`, as far as the gateway reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tool {
    pub active: bool,
    pub fan_hotend: Option<f64>,
    pub fan_print: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chamber {
    pub led_intensity: Option<f64>,
}

fn finite(v: &Value, key: &str) -> Option<f64> {
    v.get(key)?.as_f64().filter(|f| f.is_finite())
}

fn lenient_tools<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Tool>, D::Error> {
    let value = Value::deserialize(d)?;
    let Some(tools) = value.as_object() else {
        return Ok(Vec::new());
    };
    // Tools are numbered ("1", "2"...); other keys are something else.
    Ok(tools
        .iter()
        .filter(|(k, t)| k.parse::<u32>().is_ok() && t.is_object())
        .map(|(_, t)| Tool {
            active: t.get("active").and_then(Value::as_bool) == Some(true),
            fan_hotend: finite(t, "fan_hotend"),
            fan_print: finite(t, "fan_print"),
        })
        .collect())
}

fn lenient_chamber<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Chamber>, D::Error> {
    let value = Value::deserialize(d)?;
    Ok(value.is_object().then(|| Chamber {
        led_intensity: finite(&value, "led_intensity"),
    }))
}

impl Printer {
    /// The active tool (the first one when none says it is active).
    pub fn active_tool(&self) -> Option<&Tool> {
        self.tools
            .iter()
            .find(|t| t.active)
            .or_else(|| self.tools.first())
    }

    /// The chamber light's intensity (%), when Connect sends it.
    pub fn chamber_led(&self) -> Option<f64> {
        self.chamber.as_ref()?.led_intensity
    }

    /// The dialog's buttons as text (Connect sends strings; anything else is skipped).
    pub fn dialog_buttons(&self) -> Vec<String> {
        self.dialog_info
            .as_ref()
            .map(|d| {
                d.buttons
                    .iter()
                    .filter_map(|b| b.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `job_queue_count` when Connect sent a whole number.
    pub fn queue_count(&self) -> Option<u64> {
        self.job_queue_count.as_ref().and_then(Value::as_u64)
    }

    /// OFFLINE when Connect has lost the printer (its `printer_state` is then stale),
    /// otherwise what the printer says.
    pub fn effective_state(&self) -> PrinterState {
        if self.connect_state == Some(PrinterState::Offline) {
            return PrinterState::Offline;
        }
        self.printer_state
            .clone()
            .or_else(|| self.connect_state.clone())
            .unwrap_or(PrinterState::Unknown)
    }

    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.uuid)
    }
}
