//! A printer's files (`/files`, `/storages`) and cameras.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::envelope::Pager;

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

/// `/files` and `/storages` are passed on as they come; their shape is not pinned down.
pub type Opaque = BTreeMap<String, Value>;

/// One of a printer's storages (`GET /app/printers/{uuid}/storages`): a USB stick, the
/// internal flash. Sizes are bytes; `None` where Connect does not say (or says nonsense).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Storage {
    pub name: Option<String>,
    pub read_only: bool,
    pub free_space: Option<u64>,
    pub total_space: Option<u64>,
}

/// The storages of a `/storages` answer; an item that is no object is skipped.
pub fn storages(body: &Value) -> Vec<Storage> {
    let items = body
        .get("storages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    items
        .iter()
        .filter(|s| s.is_object())
        .map(|s| Storage {
            name: s.get("name").and_then(Value::as_str).map(str::to_string),
            read_only: s.get("read_only").and_then(Value::as_bool).unwrap_or(false),
            free_space: s.get("free_space").and_then(Value::as_u64),
            total_space: s.get("total_space").and_then(Value::as_u64),
        })
        .collect()
}

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
