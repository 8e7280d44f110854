//! Account-wide reads: printer types, notifications, Connect's version.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

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
