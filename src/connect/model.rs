//! Serde types for Prusa Connect's `/app` API, parsed tolerantly: every field is optional
//! unless a response is useless without it, unknown fields are ignored, and unknown enum
//! values are kept as `Other(String)` instead of failing the whole response.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// An enum of Connect strings that keeps values it does not know.
macro_rules! connect_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)+
            /// A value this version does not know; kept as Connect sent it.
            Other(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Other(s) => s,
                }
            }

            pub fn parse(s: &str) -> Self {
                match s {
                    $($text => Self::$variant,)+
                    other => Self::Other(other.to_string()),
                }
            }

            /// Every known value, in declaration order.
            pub const KNOWN: &'static [&'static str] = &[$($text),+];
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Ok(Self::parse(&s))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

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

connect_enum!(
    /// State of a job.
    JobState {
        Printing = "PRINTING",
        Paused = "PAUSED",
        FinOk = "FIN_OK",
        FinError = "FIN_ERROR",
        FinStopped = "FIN_STOPPED",
        FinHarvested = "FIN_HARVESTED",
        Unknown = "UNKNOWN",
    }
);

impl JobState {
    pub fn is_running(&self) -> bool {
        matches!(self, Self::Printing | Self::Paused)
    }

    /// The end states that `job/finished` and the "Print finished" event report.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::FinOk | Self::FinError | Self::FinStopped)
    }
}

/// `{"<key>": [...], "pager": {...}}`: every collection has this shape.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Pager {
    pub limit: Option<u64>,
    pub offset: Option<u64>,
    pub total: Option<u64>,
    pub from: Option<f64>,
    pub to: Option<f64>,
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

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct JobFile {
    pub name: Option<String>,
    pub path: Option<String>,
    pub display_name: Option<String>,
    pub size: Option<u64>,
    pub m_time: Option<f64>,
    pub preview_url: Option<String>,
    pub meta: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct JobData {
    pub material: Option<String>,
    pub weight: Option<f64>,
    pub cost: Option<f64>,
    pub tool: Option<i64>,
    pub layer_height: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct CancelableObject {
    pub id: i64,
    pub name: Option<String>,
    #[serde(default)]
    pub canceled: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Cancelable {
    #[serde(default)]
    pub objects: Vec<CancelableObject>,
}

/// A job from `/jobs` or `/jobs/{id}` (the detail adds `file` and `cancelable`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Job {
    pub id: i64,
    pub state: Option<JobState>,
    pub progress: Option<f64>,
    pub time_printing: Option<f64>,
    pub time_remaining: Option<f64>,
    pub mode: Option<String>,
    pub source: Option<String>,
    pub ts_started: Option<f64>,
    pub ts_ended: Option<f64>,
    pub file: Option<JobFile>,
    #[serde(default)]
    pub files: Vec<JobFile>,
    pub data: Option<JobData>,
    pub cancelable: Option<Cancelable>,
    pub reason: Option<Value>,
}

impl Job {
    pub fn file(&self) -> Option<&JobFile> {
        self.file.as_ref().or_else(|| self.files.first())
    }

    pub fn file_name(&self) -> Option<&str> {
        let f = self.file()?;
        f.display_name.as_deref().or(f.name.as_deref())
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct JobList {
    #[serde(default)]
    pub jobs: Vec<Job>,
    #[serde(default)]
    pub pager: Pager,
}

/// One entry of a printer's event feed. Kept whole (`raw`) so `P/event` passes on every field.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    pub event: String,
    pub created: f64,
    pub raw: serde_json::Map<String, Value>,
}

impl FeedEvent {
    /// Events have no id: the key is made of the whole event, so two events that differ in
    /// any field (two `FILE_CHANGED` of one second with other `data`) are two events. The
    /// fields are hashed in key order (serde_json's map is sorted), so the order Connect
    /// sends them in does not matter.
    pub fn key(&self) -> String {
        use sha2::{Digest, Sha256};
        let whole = serde_json::to_vec(&self.raw).unwrap_or_default();
        let digest = Sha256::digest(&whole);
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}|{}|#{hex}", self.created, self.event)
    }

    /// The key earlier versions saved in `state.json` (without `data`, `job_id` and the
    /// rest): a cursor saved by one of them still says which events were published.
    pub fn legacy_key(&self) -> String {
        let field = |k: &str| self.raw.get(k).map(|v| v.to_string()).unwrap_or_default();
        format!(
            "{}|{}|{}|{}|{}",
            self.created,
            self.event,
            field("state"),
            field("command_id"),
            field("transfer_id")
        )
    }

    /// Parses one feed entry; `None` for entries without an `event` name or `created` time.
    pub fn from_value(v: Value) -> Option<FeedEvent> {
        let Value::Object(raw) = v else { return None };
        let event = raw.get("event")?.as_str()?.to_string();
        let created = raw.get("created")?.as_f64()?;
        if !created.is_finite() {
            return None;
        }
        Some(FeedEvent {
            event,
            created,
            raw,
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct EventPage {
    #[serde(default)]
    pub events: Vec<Value>,
    #[serde(default)]
    pub pager: Pager,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct PlannedJob {
    pub id: Option<i64>,
    pub path: Option<String>,
    pub set_ready: Option<bool>,
    pub position: Option<i64>,
    pub file: Option<JobFile>,
}

impl PlannedJob {
    /// What a person calls the job: the file's display name, else its name, else the path.
    pub fn label(&self) -> Option<String> {
        let file = self.file.as_ref();
        file.and_then(|f| f.display_name.clone())
            .or_else(|| file.and_then(|f| f.name.clone()))
            .or_else(|| self.path.clone())
            .or_else(|| file.and_then(|f| f.path.clone()))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Queue {
    #[serde(default)]
    pub planned_jobs: Vec<PlannedJob>,
    #[serde(default)]
    pub pager: Pager,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Camera {
    pub id: Value,
    pub name: Option<String>,
    pub config: Option<Value>,
    #[serde(default)]
    pub features: Vec<String>,
    pub registered: Option<bool>,
}

impl Camera {
    /// Camera ids are numbers in captures; accept strings too.
    pub fn id_string(&self) -> String {
        match &self.id {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CameraList {
    #[serde(default)]
    pub cameras: Vec<Camera>,
    #[serde(default)]
    pub pager: Pager,
}

/// An argument of a supported command: the capture lists bare names, the richer form objects.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandArg {
    pub name: String,
    pub kind: Option<String>,
    pub required: bool,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub unit: Option<String>,
}

impl<'de> Deserialize<'de> for CommandArg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Name(String),
            Full {
                name: String,
                #[serde(rename = "type")]
                kind: Option<String>,
                required: Option<bool>,
                min_limit: Option<f64>,
                max_limit: Option<f64>,
                unit: Option<String>,
            },
        }
        Ok(match Form::deserialize(d)? {
            Form::Name(name) => CommandArg {
                name,
                kind: None,
                required: true,
                min: None,
                max: None,
                unit: None,
            },
            Form::Full {
                name,
                kind,
                required,
                min_limit,
                max_limit,
                unit,
            } => CommandArg {
                name,
                kind,
                required: required.unwrap_or(true),
                min: min_limit,
                max: max_limit,
                unit,
            },
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct SupportedCommand {
    pub command: String,
    #[serde(default)]
    pub args: Vec<CommandArg>,
    pub executable_from_state: Option<Vec<PrinterState>>,
    pub template: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SupportedCommands {
    #[serde(default)]
    pub commands: Vec<SupportedCommand>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct CommandRecord {
    pub id: i64,
    pub state: Option<String>,
    pub command: Option<String>,
    pub received: Option<f64>,
    pub source: Option<String>,
    pub kwargs: Option<Value>,
}

/// Answer of `POST /commands/sync`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CommandResult {
    pub command: CommandRecord,
    pub event: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct PrinterType {
    pub id: String,
    pub name: Option<String>,
    pub parameters: Option<Value>,
    pub fw_device_type_id: Option<String>,
    /// The type's current firmware release (`"support": {"stable": "6.3.2"}`).
    #[serde(default, rename = "support", deserialize_with = "lenient_stable")]
    pub stable_firmware: Option<String>,
}

fn lenient_stable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = Value::deserialize(d)?;
    Ok(value
        .get("stable")
        .and_then(Value::as_str)
        .map(str::to_string))
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PrinterTypes {
    #[serde(default)]
    pub printer_types: Vec<PrinterType>,
}

/// One of the account's notifications (`GET /app/notifications`); every field but `id` may
/// be missing, and any of them may be of another type than expected (then it is `None`).
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub id: i64,
    pub category: Option<String>,
    pub name: Option<String>,
    pub severity: Option<String>,
    pub text: Option<String>,
    pub created: Option<f64>,
    pub printer_uuid: Option<String>,
    pub printer_name: Option<String>,
    pub job_id: Option<i64>,
    pub job_name: Option<String>,
}

impl Notification {
    /// `None` for an entry without an integer `id`.
    pub fn from_value(v: Value) -> Option<Notification> {
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let data = v.get("data").cloned().unwrap_or(Value::Null);
        Some(Notification {
            id: v.get("id")?.as_i64()?,
            category: text(&v, "category"),
            name: text(&v, "name"),
            severity: text(&v, "severity"),
            text: text(&v, "text"),
            created: v
                .get("created")
                .and_then(Value::as_f64)
                .filter(|t| t.is_finite()),
            printer_uuid: text(&data, "printer_uuid"),
            printer_name: text(&data, "printer_name"),
            job_id: data.get("job_id").and_then(Value::as_i64),
            job_name: text(&data, "job_name"),
        })
    }
}

/// A page of `GET /app/notifications`, entries kept raw (see [`Notification::from_value`]).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NotificationPage {
    #[serde(default)]
    pub notifications: Vec<Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Unseen {
    #[serde(default)]
    pub unseen: u64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ServerVersion {
    pub commit: Option<String>,
    pub version: Option<String>,
    pub date: Option<String>,
}

/// `/files` and `/storages` are passed on as they come; their shape is not pinned down.
pub type Opaque = BTreeMap<String, Value>;

/// A file the printer can print (`GET /app/printers/{uuid}/files`).
#[derive(Debug, Clone, PartialEq)]
pub struct PrintFile {
    /// What START_PRINT takes.
    pub path: String,
    /// What a person sees.
    pub name: String,
}

/// The printable files of a `/files` answer: items with a `path`, folders left out; any item
/// of another shape is skipped.
pub fn print_files(body: &Value) -> Vec<PrintFile> {
    let items = body
        .get("files")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    items
        .iter()
        .filter(|f| {
            f.get("type")
                .and_then(Value::as_str)
                .is_none_or(|t| !t.eq_ignore_ascii_case("FOLDER"))
        })
        .filter_map(|f| {
            let path = f.get("path")?.as_str()?.trim();
            if path.is_empty() {
                return None;
            }
            let name = ["display_name", "name"]
                .iter()
                .find_map(|k| f.get(*k).and_then(Value::as_str))
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| path.rsplit('/').next().unwrap_or(path));
            Some(PrintFile {
                path: path.to_string(),
                name: name.to_string(),
            })
        })
        .collect()
}

/// Connect's JSON error body: `{"code": "UNAUTHORIZED", "message": "..."}`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ApiError {
    pub code: Option<String>,
    pub message: Option<String>,
    pub reason: Option<Value>,
}

#[cfg(test)]
mod tests;
