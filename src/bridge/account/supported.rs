//! Supported-command lists shared by the printers that have the same one (a farm's printers
//! of one model and firmware): one copy, not one per printer.

use std::sync::Arc;

use crate::connect::model::SupportedCommand;

/// The distinct supported-commands lists in use.
#[derive(Debug, Default)]
pub struct SupportedPool(Vec<Arc<Vec<SupportedCommand>>>);

impl SupportedPool {
    pub fn intern(&mut self, list: Vec<SupportedCommand>) -> Arc<Vec<SupportedCommand>> {
        // Lists no printer holds any more go.
        self.0.retain(|l| Arc::strong_count(l) > 1);
        if let Some(same) = self.0.iter().find(|l| ***l == list) {
            return same.clone();
        }
        let list = Arc::new(list);
        self.0.push(list.clone());
        list
    }
}
