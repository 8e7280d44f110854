//! How a simulator starts: its token, its scenario, and what a new printer looks like.

/// Options for [`Simulator::new`](crate::Simulator::new).
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// `None`: any non-empty bearer token is accepted. `Some(t)`: only `t`.
    pub token: Option<String>,
    pub scenario: Scenario,
}

/// The printers a simulator starts with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Scenario {
    /// No printers; tests add their own with
    /// [`Simulator::add_printer`](crate::Simulator::add_printer).
    #[default]
    Empty,
    /// "Busy MK4", "Core One" and "MINI" running a scripted day (one fails, one gets paused).
    Demo,
    /// `printers` printers named "Farm 001".., idling and printing in turn (jobs of 1 to 5
    /// minutes: a farm's day in an hour).
    Farm { printers: usize },
    /// [`Scenario::Farm`] with jobs of 1 to 3 hours, as a real farm's: far fewer job starts,
    /// each calling for its reads.
    FarmLongJobs { printers: usize },
}

/// What a new printer looks like. `PrinterSpec::named("X")` gives an MK4 called X.
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterSpec {
    pub name: String,
    /// Connect's `printer_model`, e.g. "MK4IS".
    pub model: String,
    /// Connect's `printer_type`, e.g. "7.1.0".
    pub printer_type: String,
    pub printer_type_name: String,
    pub firmware: String,
    /// Empty: a serial number is made up from the printer's number.
    pub sn: String,
    /// `None`: the next deterministic uuid "00000000-0000-4000-8000-00000000000N".
    pub uuid: Option<String>,
}

impl Default for PrinterSpec {
    fn default() -> Self {
        PrinterSpec::named("Printer")
    }
}

impl PrinterSpec {
    /// An Original Prusa MK4 (input shaper) with the given name.
    pub fn named(name: &str) -> PrinterSpec {
        PrinterSpec {
            name: name.to_string(),
            model: "MK4IS".to_string(),
            printer_type: "7.1.0".to_string(),
            printer_type_name: "Original Prusa MK4".to_string(),
            firmware: "6.2.6+8948".to_string(),
            sn: String::new(),
            uuid: None,
        }
    }

    /// An Original Prusa MINI+ with the given name.
    pub fn mini(name: &str) -> PrinterSpec {
        PrinterSpec {
            model: "MINI".to_string(),
            printer_type: "2.1.0".to_string(),
            printer_type_name: "Original Prusa MINI+".to_string(),
            firmware: "6.2.6+8948".to_string(),
            ..PrinterSpec::named(name)
        }
    }

    /// A Prusa CORE One with the given name.
    pub fn core_one(name: &str) -> PrinterSpec {
        PrinterSpec {
            model: "COREONE".to_string(),
            printer_type: "7.2.0".to_string(),
            printer_type_name: "Prusa CORE One".to_string(),
            firmware: "6.3.2+9839".to_string(),
            ..PrinterSpec::named(name)
        }
    }

    /// An Original Prusa XL with the given name.
    pub fn xl(name: &str) -> PrinterSpec {
        PrinterSpec {
            model: "XL".to_string(),
            printer_type: "3.1.0".to_string(),
            printer_type_name: "Original Prusa XL".to_string(),
            firmware: "6.2.6+8948".to_string(),
            ..PrinterSpec::named(name)
        }
    }
}
