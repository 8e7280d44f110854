//! A switch of `homeassistant.mode` (entity -> device after upgrading Home Assistant, or
//! back) moves the entities with Home Assistant's `migrate_discovery` protocol, so they keep
//! their entity ids and history:
//! 1. at start, `{"migrate_discovery": true}` on each old discovery topic, as a message that
//!    is not retained: Home Assistant unloads the entity and keeps its registry entry;
//! 2. a poll later at the earliest (the bridge at the end of the first poll, a printer when
//!    it is first published), the old topics cleared: the entity is unloaded, so this is no
//!    conflict (cleared after the new discovery, Home Assistant warns that the old topic
//!    conflicts with it);
//! 3. then the new discovery, with the same unique ids: the entity comes back as it was.
//!
//! The mode in use is remembered in the state file.

use crate::config::DiscoveryMode;
use crate::message::Message;

use crate::bridge::core::Core;

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
        let Some(discovery) = &self.settings.discovery else {
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
            self.out
                .push(Message::event(topic.clone(), migrate.clone()));
        }
        self.migrating.extend(owed);
        self.migrating.insert(BRIDGE.into(), bridge);
    }

    /// Whether the bridge's discovery waits for its migration (see the module's steps).
    pub(super) fn bridge_migrating(&self) -> bool {
        self.migrating.contains_key(BRIDGE)
    }

    /// Clears the old-mode topics of `key` (a printer uuid, or the bridge), before its new
    /// discovery.
    pub(super) fn finish_migration(&mut self, key: &str) {
        for topic in self.migrating.remove(key).unwrap_or_default() {
            self.out.push(Message::Clear { topic });
        }
    }
}

/// The key of the bridge's own migration.
pub(super) const BRIDGE: &str = "";
