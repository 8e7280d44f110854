//! What Connect's printer controls change on a simulated printer besides its state: heater
//! targets and the temperatures that follow them, the filament, the chamber of printers that
//! have one, and the answers to dialogs. Only `World::step` moves temperatures.

use serde_json::Value;

use super::world::{Cause, Ctx, Printer, Temps};

/// Where a heater that is off settles.
const AMBIENT: f64 = 23.5;
/// A closed chamber stays a little warmer than the room.
const CHAMBER_AMBIENT: f64 = 24.0;
/// What the chamber reaches while a print heats it.
const CHAMBER_PRINTING: f64 = 35.0;
/// What the printer shows as its material once the filament is out.
const NO_FILAMENT: &str = "---";

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Chamber {
    pub temp: f64,
    /// 0: no target.
    pub target: f64,
    /// The chamber light, in %.
    pub led_intensity: i64,
}

impl Chamber {
    /// The CORE One family is the only one with a chamber.
    pub fn for_model(model: &str) -> Option<Chamber> {
        model.starts_with("COREONE").then_some(Chamber {
            temp: CHAMBER_AMBIENT,
            target: 0.0,
            led_intensity: 100,
        })
    }

    /// The bed and the nozzle warm the chamber while they print; it cools back when they stop.
    /// Air is slow to warm, far slower than a heater.
    fn follow_print(&mut self, printing: bool, dt: f64) {
        self.target = if printing { CHAMBER_PRINTING } else { 0.0 };
        let goal = if printing {
            CHAMBER_PRINTING
        } else {
            CHAMBER_AMBIENT
        };
        self.temp = settle(self.temp, goal, dt, 600.0, 900.0);
    }
}

impl Temps {
    /// One step of both heaters toward their targets (a target of 0 is a heater off).
    pub fn follow_targets(&mut self, dt: f64) {
        self.nozzle = approach(self.nozzle, self.target_nozzle, dt, 4.0, 40.0);
        self.bed = approach(self.bed, self.target_bed, dt, 8.0, 120.0);
    }
}

/// A first-order approach to `target` (`AMBIENT` when the heater is off), faster heating than
/// cooling.
fn approach(current: f64, target: f64, dt: f64, tau_heat: f64, tau_cool: f64) -> f64 {
    let goal = if target > 0.0 { target } else { AMBIENT };
    settle(current, goal, dt, tau_heat, tau_cool)
}

fn settle(current: f64, goal: f64, dt: f64, tau_heat: f64, tau_cool: f64) -> f64 {
    let tau = if goal > current { tau_heat } else { tau_cool };
    goal + (current - goal) * (-dt / tau).exp()
}

impl Printer {
    pub fn has_chamber(&self) -> bool {
        self.chamber.is_some()
    }

    pub fn set_nozzle_target(&mut self, target: f64) {
        self.temps.target_nozzle = target;
        self.heating = true;
    }

    pub fn set_bed_target(&mut self, target: f64) {
        self.temps.target_bed = target;
        self.heating = true;
    }

    /// A printer without a chamber has no light to set.
    pub fn set_chamber_led(&mut self, intensity: i64) {
        if let Some(chamber) = &mut self.chamber {
            chamber.led_intensity = intensity;
        }
    }

    /// The printer reports materials by their upper-case names ("PETG").
    pub fn load_filament(&mut self, material: &str) {
        self.material = material.trim().to_ascii_uppercase();
    }

    pub fn unload_filament(&mut self) {
        self.material = NO_FILAMENT.to_string();
    }

    /// Checks a DIALOG_ACTION against the dialog shown; gives the button as the dialog spells
    /// it, or why the printer would refuse.
    pub fn dialog_button(&self, dialog_id: i64, button: &str) -> Result<String, String> {
        let dialog = self
            .dialog
            .as_ref()
            .ok_or_else(|| "The printer shows no dialog".to_string())?;
        let shown = dialog.get("id").and_then(as_id);
        if shown != Some(dialog_id) {
            return Err(format!(
                "Dialog {dialog_id} is not the one shown ({})",
                dialog.get("id").unwrap_or(&Value::Null)
            ));
        }
        let buttons: Vec<&str> = dialog
            .get("buttons")
            .and_then(Value::as_array)
            .map(|b| b.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        buttons
            .iter()
            .find(|b| b.eq_ignore_ascii_case(button.trim()))
            .map(|b| b.to_string())
            .ok_or_else(|| {
                format!(
                    "Dialog {dialog_id} has no button {button:?} (it has {})",
                    buttons.join(", ")
                )
            })
    }

    /// Presses a button of the dialog shown (checked by [`Printer::dialog_button`]): the answer
    /// is remembered and the dialog goes, the printer back in the state it had before it.
    pub fn answer_dialog(&mut self, ctx: &mut Ctx, dialog_id: i64, button: String, cause: &Cause) {
        self.dialog_answers.push((dialog_id, button));
        self.set_dialog(ctx, None, cause);
    }

    /// What time does to any printer by itself. Autopilots heat their printers for their
    /// jobs; a manual printer's heaters follow the targets commands set.
    pub fn advance(&mut self, dt: f64) {
        if self.pilot.is_none() && self.heating {
            self.temps.follow_targets(dt);
        }
        let printing = self.online && self.state == "PRINTING";
        if let Some(chamber) = &mut self.chamber {
            chamber.follow_print(printing, dt);
        }
    }
}

/// A dialog id: Connect sends numbers, a script may have given a numeric string.
fn as_id(value: &Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
}
