//! Commands: what a printer supports, and the answer to running one.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::printer::PrinterState;

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
