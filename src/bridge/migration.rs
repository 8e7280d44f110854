//! A switch of `homeassistant.mode` (entity -> device after upgrading Home Assistant, or
//! back) moves the entities with Home Assistant's `migrate_discovery` protocol, so they keep
//! their entity ids and history: `{"migrate_discovery": true}` on each old discovery topic
//! (Home Assistant unloads the entity and keeps its registry entry), then the new discovery
//! (same unique ids: the entity comes back as it was), then the old topics cleared. The mode
//! in use is remembered in the state file.

use crate::config::DiscoveryMode;
use crate::outbox::{Kind, Message};

use super::core::Core;

impl DiscoveryMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DiscoveryMode::Device => "device",
            DiscoveryMode::Entity => "entity",
        }
    }

    fn parse(text: &str) -> Option<DiscoveryMode> {
        match text {
            "device" => Some(DiscoveryMode::Device),
            "entity" => Some(DiscoveryMode::Entity),
            _ => None,
        }
    }
}

impl Core {
    /// At start: when the state file says discovery went out in the other mode, starts the
    /// migration of the bridge (whose new discovery follows at once) and of every printer
    /// (whose old topics are cleared once its new discovery is out).
    pub(super) fn start_migration(&mut self, remembered: Option<&str>) {
        let Some(discovery) = &self.s.discovery else {
            return;
        };
        let Some(old) = remembered.and_then(DiscoveryMode::parse) else {
            return;
        };
        if old == discovery.mode {
            return;
        }
        tracing::info!(
            "homeassistant.mode changed from {} to {}: moving the entities over (migrate_discovery)",
            old.as_str(),
            discovery.mode.as_str()
        );
        let migrate = crate::discovery::Discovery::migration_payload().to_string();
        let mut owed = Vec::new();
        for entry in self.registry.entries() {
            let topics = discovery.printer_topics_in(old, &entry.uuid, &entry.record.cameras);
            owed.push((entry.uuid.clone(), topics));
        }
        let bridge = discovery.bridge_topics_in(old);
        for topic in bridge.iter().chain(owed.iter().flat_map(|(_, t)| t)) {
            self.out.push(Message::retain(
                Kind::Discovery,
                topic.clone(),
                migrate.clone(),
            ));
        }
        self.migrating.extend(owed);
        self.migrating.insert(BRIDGE.into(), bridge);
    }

    /// The old-mode topics of `key` (a printer uuid, or the bridge) are cleared: its new
    /// discovery was just queued after them.
    pub(super) fn finish_migration(&mut self, key: &str) {
        for topic in self.migrating.remove(key).unwrap_or_default() {
            self.out.push(Message::Clear { topic });
        }
    }
}

/// The key of the bridge's own migration.
pub(super) const BRIDGE: &str = "";
