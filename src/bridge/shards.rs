//! A shard's share of the list (`connect.shard`): the printers it bridges, the topic ids they
//! have across the whole account, and the ids the other shards answer for.

use std::collections::{BTreeMap, HashSet};

use crate::bridge::registry::Registry;
use crate::connect::model::Printer;
use crate::shard::Shard;

/// One list split between the shards.
#[derive(Debug, Default)]
pub struct Split {
    /// The printers this shard bridges.
    pub mine: Vec<Printer>,
    /// Their topic ids (uuid → id), as a gateway bridging the whole account would give them:
    /// two printers of one name in two shards never get the same id.
    pub ids: BTreeMap<String, String>,
    /// The topic ids of the printers the other shards bridge: their commands are not this
    /// shard's to answer.
    pub others: HashSet<String>,
    /// The uuids of those printers.
    pub other_uuids: HashSet<String>,
}

/// Splits `printers` (the account's, `connect.printers` applied) for `shard`; `overrides` is
/// `mqtt.printer_ids`.
pub fn split(shard: Shard, printers: Vec<Printer>, overrides: &BTreeMap<String, String>) -> Split {
    // The ids are worked out over the whole list, the same way in every shard: a registry
    // with no history, so they do not depend on what one shard saw before.
    let mut whole = Registry::default();
    whole.assign_ids(&printers.iter().collect::<Vec<_>>(), overrides);
    let id_of = |uuid: &str| whole.get(uuid).and_then(|e| e.id()).map(str::to_string);
    let mut split = Split::default();
    for p in printers {
        if shard.owns(&p.uuid) {
            if let Some(id) = id_of(&p.uuid) {
                split.ids.insert(p.uuid.clone(), id);
            }
            split.mine.push(p);
        } else {
            split.others.extend(id_of(&p.uuid));
            split.other_uuids.insert(p.uuid);
        }
    }
    split
}

/// Printers another shard bridges (this one did before `connect.shard` changed) are
/// forgotten without clearing anything: their topics and discovery are that shard's now.
pub fn hand_over(registry: &mut Registry, others: &HashSet<String>, shard: Shard) {
    let leaving: Vec<String> = registry
        .entries()
        .filter(|e| others.contains(&e.uuid))
        .map(|e| e.uuid.clone())
        .collect();
    for uuid in leaving {
        tracing::info!(
            "printer {uuid} is bridged by shard {}/{} now: leaving it to that shard",
            crate::shard::owner(&uuid, shard.n),
            shard.n
        );
        registry.remove(&uuid);
    }
}

/// Whether an instance answers messages for printer `printer_id`: always, unless it is a
/// shard and another shard bridges that printer (`others`: their ids). A printer no shard
/// knows is answered (`UNKNOWN_PRINTER`) by shard 1 alone.
pub fn answers_for(
    shard: Option<Shard>,
    registry: &Registry,
    others: &HashSet<String>,
    printer_id: &str,
) -> bool {
    let Some(shard) = shard else {
        return true;
    };
    if registry
        .by_id(printer_id)
        .is_some_and(|e| e.runtime.is_some())
    {
        return true;
    }
    shard.k == 1 && !others.contains(printer_id)
}
