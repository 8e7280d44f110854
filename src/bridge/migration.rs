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

use crate::bridge::Settings;
use crate::bridge::effects::Effects;
use crate::bridge::registry::Registry;
use crate::config::DiscoveryMode;
use crate::message::Message;

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

/// The migration under way, and the mode the state file remembers.
#[derive(Debug, Default)]
pub struct Migration {
    /// The bridge's old discovery topics, to clear before its new discovery.
    bridge: Option<Vec<String>>,
    /// The discovery mode in the state file, kept while discovery is off.
    remembered_mode: Option<String>,
}

impl Migration {
    /// At start: when the state file says discovery went out in the other mode, starts the
    /// migration of the bridge (whose new discovery follows at once) and of every printer
    /// (whose old topics are cleared once its new discovery is out).
    pub fn start(
        settings: &Settings,
        registry: &mut Registry,
        remembered_mode: Option<String>,
        fx: &mut Effects,
    ) -> Migration {
        let mut migration = Migration {
            bridge: None,
            remembered_mode,
        };
        let Some(discovery) = &settings.discovery else {
            return migration;
        };
        let Some(old) = migration
            .remembered_mode
            .as_deref()
            .and_then(DiscoveryMode::parse)
        else {
            return migration;
        };
        if old == discovery.mode {
            return migration;
        }
        tracing::info!(
            "homeassistant.mode changed from {} to {}: moving the entities over (migrate_discovery)",
            old.as_str(),
            discovery.mode.as_str()
        );
        let migrate = crate::discovery::Discovery::migration_payload().to_string();
        let bridge = discovery.bridge_topics_in(old);
        for topic in &bridge {
            fx.publish(Message::event(topic.clone(), migrate.clone()));
        }
        for entry in registry.entries_mut() {
            let topics = discovery.printer_topics_in(old, &entry.uuid, &entry.record.cameras);
            for topic in &topics {
                fx.publish(Message::event(topic.clone(), migrate.clone()));
            }
            entry.old_discovery = topics;
        }
        migration.bridge = Some(bridge);
        migration
    }

    /// Whether the bridge's discovery waits for its migration (see the module's steps).
    pub fn bridge_pending(&self) -> bool {
        self.bridge.is_some()
    }

    /// Clears the bridge's old-mode topics, before its new discovery.
    pub fn finish_bridge(&mut self, fx: &mut Effects) {
        for topic in self.bridge.take().unwrap_or_default() {
            fx.publish(Message::Clear { topic });
        }
    }

    /// The mode the state file is to remember.
    pub fn mode_to_save(&self, settings: &Settings) -> Option<String> {
        match &settings.discovery {
            Some(d) => Some(d.mode.as_str().to_string()),
            None => self.remembered_mode.clone(),
        }
    }
}
