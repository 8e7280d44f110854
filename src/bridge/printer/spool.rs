//! A printer's Spoolman spool (`spoolman.url`): chosen on `P/spool` (the "Spool" select, or
//! any client), kept in its record, shown in `P/state`, and handed each ended job's filament.

use serde_json::Value;

use crate::bridge::Settings;
use crate::bridge::account::spools::Spools;
use crate::bridge::printer::{Ctx, PrinterEntry};
use crate::payloads::StatePayload;
use crate::spoolman::{Spool, Use, grams_used};

impl PrinterEntry {
    /// A message on `P/spool`: the printer's spool from now on (empty or `none`: no spool).
    /// A payload that names no spool is logged and changes nothing.
    pub fn select_spool(&mut self, cx: &mut Ctx, payload: &[u8], wall: f64) {
        let printer_id = self.id().unwrap_or_default().to_string();
        let chosen = match Spool::id_of(&String::from_utf8_lossy(payload)) {
            Ok(chosen) => chosen,
            Err(why) => {
                tracing::warn!("{printer_id}: P/spool ignored: {why}");
                return;
            }
        };
        if self.record.spool == chosen {
            return;
        }
        if let Some(id) = chosen
            && cx.account.spools.list.is_some()
            && cx.account.spools.find(id).is_none()
        {
            tracing::warn!(
                "{printer_id}: spool {id} is not among Spoolman's spools (archived, or not \
                 there yet); its jobs are reported to it all the same"
            );
        }
        tracing::info!(
            "{printer_id}: spool {}",
            chosen.map_or("none".to_string(), |id| id.to_string())
        );
        self.record.spool = chosen;
        self.render(cx, wall);
    }
}

/// The filament of the job `finished` announces, for printer `uuid`'s `spool` (`None`: no
/// Spoolman, no spool, or nothing used).
pub fn use_of(
    settings: &Settings,
    uuid: &str,
    spool: Option<u64>,
    finished: &Value,
    job: i64,
) -> Option<Use> {
    settings.spoolman.as_ref()?;
    Some(Use {
        printer: uuid.to_string(),
        job: u64::try_from(job).ok()?,
        spool: spool?,
        grams: grams_used(finished)?,
        baseline: None,
    })
}

/// `P/state`'s `spool_id`, `spool` (its label in the select) and `spool_remaining_g`.
pub fn show<'a>(state: &mut StatePayload<'a>, spool: Option<u64>, spools: &'a Spools) {
    state.spool_id = spool;
    let known = spool.and_then(|id| spools.find(id));
    state.spool = known.map(|s| s.label.as_str());
    state.spool_remaining_g = known
        .and_then(|s| s.remaining_g)
        .map(|g| (g * 10.0).round() / 10.0);
}
