//! Scripting the live channel (`/mqtt`, see `live.rs`).

use std::time::Duration;

use super::Simulator;
use crate::live::LiveStats;

impl Simulator {
    /// Off: websocket upgrades are refused (503) and every session is dropped. On at start.
    pub fn set_live_enabled(&self, enabled: bool) {
        self.live.set_enabled(enabled);
    }

    /// On: every CONNECT is refused as a bad username or password (a user's wrong account).
    pub fn set_live_refuse_all(&self, refuse: bool) {
        self.live.set_refuse_all(refuse);
    }

    /// How often sessions send what changed (the printers' telemetry cadence; 1 s at start).
    /// Sessions started later use it.
    pub fn set_live_period(&self, period: Duration) {
        self.live.set_period(period);
    }

    /// Ends every live session (the clients may connect again).
    pub fn drop_live_connections(&self) {
        self.live.drop_all();
    }

    pub fn live_stats(&self) -> LiveStats {
        self.live.stats()
    }

    /// The printers some live session is subscribed to, with how many sessions are.
    pub fn live_subscriptions(&self) -> std::collections::BTreeMap<String, usize> {
        self.live.subscriptions()
    }

    /// Live sessions past their CONNECT.
    pub fn live_sessions(&self) -> usize {
        self.live.sessions()
    }
}
