//! The statistics sensors: a printer's totals and use of the day (`P/stats`), and the same
//! for the fleet on the bridge device (`bridge/stats`).

use super::platform::{Entity, Sensor, SensorClass, Shown, StateClass};

/// The sensors of `topic` (`P/stats`, or the fleet's `bridge/stats`).
pub(super) fn sensors(topic: &str) -> Vec<Entity> {
    let mut all = totals(topic);
    all.extend(day(topic));
    all
}

/// A sensor of `field` of `topic` (a dotted path for a nested one).
fn of(topic: &str, name: &str, icon: &'static str, field: &str) -> Sensor {
    Sensor::new(
        Shown::new(name, Some(icon)),
        topic.to_string(),
        format!("{{{{ value_json.{field} if value_json is defined else '' }}}}"),
    )
}

/// A total that only grows: `total_increasing`, so Home Assistant's long-term statistics
/// (and its statistics cards) sum it by hour, day and month. A total that starts again from
/// zero (the day's, at midnight) is a new cycle to it.
fn total(topic: &str, name: &str, icon: &'static str, field: &str) -> Sensor {
    Sensor {
        state_class: Some(StateClass::TotalIncreasing),
        ..of(topic, name, icon, field)
    }
}

/// A share in percent; null (nothing counted yet) renders "None": Home Assistant's
/// "unknown".
fn percent(topic: &str, name: &str, icon: &'static str, field: &str) -> Sensor {
    Sensor {
        unit: Some("%"),
        state_class: Some(StateClass::Measurement),
        precision: Some(0),
        ..of(topic, name, icon, field)
    }
}

/// Hours of `field` (a duration).
fn hours(sensor: Sensor) -> Sensor {
    Sensor {
        device_class: Some(SensorClass::Duration),
        unit: Some("h"),
        precision: Some(1),
        ..sensor
    }
}

/// The jobs by outcome, print time, filament, cost and success rate.
fn totals(topic: &str) -> Vec<Entity> {
    vec![
        Entity::new(
            "stats_ok",
            total(topic, "Prints succeeded", "mdi:check-circle-outline", "ok"),
        ),
        Entity::new(
            "stats_failed",
            total(topic, "Prints failed", "mdi:alert-circle-outline", "failed"),
        ),
        Entity::new(
            "stats_stopped",
            total(
                topic,
                "Prints stopped",
                "mdi:stop-circle-outline",
                "stopped",
            ),
        ),
        Entity::new(
            "stats_print_time",
            hours(total(
                topic,
                "Total print time",
                "mdi:timer-outline",
                "print_hours",
            )),
        ),
        Entity::new(
            "stats_filament",
            Sensor {
                device_class: Some(SensorClass::Weight),
                unit: Some("g"),
                precision: Some(0),
                ..total(
                    topic,
                    "Total filament used",
                    "mdi:printer-3d-nozzle",
                    "filament_g",
                )
            },
        ),
        // Connect names no currency: a plain total (Home Assistant's `monetary` class would
        // want one).
        Entity::new(
            "stats_cost",
            Sensor {
                precision: Some(2),
                ..total(topic, "Total print cost", "mdi:cash", "cost")
            },
        ),
        Entity::new(
            "stats_success_rate",
            percent(
                topic,
                "Success rate",
                "mdi:percent-circle-outline",
                "success_rate",
            ),
        ),
    ]
}

/// The use of the day (UTC): printing time today, utilization today and yesterday.
fn day(topic: &str) -> Vec<Entity> {
    vec![
        Entity::new(
            "stats_printing_today",
            hours(total(
                topic,
                "Printing time today",
                "mdi:timer-play-outline",
                "today.printing_hours",
            )),
        ),
        Entity::new(
            "stats_utilization_today",
            percent(
                topic,
                "Utilization today",
                "mdi:chart-donut",
                "today.utilization",
            ),
        ),
        Entity::new(
            "stats_utilization_yesterday",
            percent(
                topic,
                "Utilization yesterday",
                "mdi:chart-donut",
                "yesterday.utilization",
            ),
        ),
    ]
}
