//! What the core knows of the poll being processed: which printers the list had, which it
//! sent unreadable, whether any is busy, the request budget left for extras, and whether a
//! command asked for fast polls.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

use crate::bridge::Settings;
use crate::bridge::schedule::EXTRAS_PER_TICK;
use crate::connect::client::{PRINTERS_PAGE, RejectedPrinter};

/// A poll's budget of extra reads counts at most this many active poll intervals since the
/// last (the default idle interval is six).
pub const MAX_TICKS: u32 = 6;

#[derive(Debug)]
pub struct Poll {
    /// The printers of the list being processed (or the last one).
    pub listed: HashSet<String>,
    /// The printers the last list sent in a shape that cannot be read.
    pub rejected: Vec<RejectedPrinter>,
    /// Some printer of this list is busy.
    pub active: bool,
    /// What is left of [`EXTRAS_PER_TICK`] in this poll.
    pub budget: u32,
    /// Poll fast until then (after a command).
    pub fast_until: Option<Instant>,
    /// The topic ids of the printers other shards bridge (`connect.shard`).
    pub other_shards: HashSet<String>,
    /// How many pages the last list took (every printer of the account counts).
    pub pages: u32,
    /// Extra reads asked for earlier and still waiting for their turn (the shell says).
    pub waiting: usize,
    /// When the last list came (see [`Poll::begin`]).
    pub began: Option<Instant>,
}

impl Default for Poll {
    fn default() -> Poll {
        Poll {
            listed: HashSet::new(),
            rejected: Vec::new(),
            active: false,
            budget: EXTRAS_PER_TICK,
            fast_until: None,
            other_shards: HashSet::new(),
            pages: 1,
            waiting: 0,
            began: None,
        }
    }
}

impl Poll {
    /// A new list of `printers` readable printers and `rejected` came in at `now`: the budget
    /// is whole again, but for the start-up reads still waiting. It is [`EXTRAS_PER_TICK`]
    /// for each active poll interval since the last list, up to [`MAX_TICKS`] of them: polls
    /// at the idle pace (an idle farm, or one the live channel covers) make a farm known as
    /// fast as polls at the active pace would, not six times slower.
    pub fn begin(
        &mut self,
        printers: usize,
        rejected: Vec<RejectedPrinter>,
        now: Instant,
        settings: &Settings,
    ) {
        let pace = settings.active_poll_interval;
        let count = printers + rejected.len();
        self.pages =
            u32::try_from(count.div_ceil(PRINTERS_PAGE as usize).max(1)).unwrap_or(u32::MAX);
        if rejected != self.rejected {
            for r in &rejected {
                tracing::warn!("Connect sent a printer that cannot be read: {r}");
            }
            self.rejected = rejected;
        }
        // Reads asked for earlier that still wait count against it: under the request
        // budget a farm's start would otherwise queue thousands of them (memory, and the
        // order by printer matters less the more there are).
        let waiting = u32::try_from(self.waiting).unwrap_or(u32::MAX);
        let ticks = match self.began.replace(now) {
            Some(last) if !pace.is_zero() => {
                let ticks = now.saturating_duration_since(last).as_secs_f64() / pace.as_secs_f64();
                ticks.round().clamp(1.0, f64::from(MAX_TICKS)) as u32
            }
            _ => 1,
        };
        self.budget = (EXTRAS_PER_TICK * ticks).saturating_sub(waiting);
        self.active = false;
    }

    pub fn is_listed(&self, uuid: &str) -> bool {
        self.listed.contains(uuid)
    }

    /// Whether the last list had printer `uuid` in a shape that cannot be read.
    pub fn is_rejected(&self, uuid: &str) -> bool {
        self.rejected
            .iter()
            .any(|r| r.uuid.as_deref() == Some(uuid))
    }

    pub fn rejected_uuids(&self) -> Vec<String> {
        self.rejected
            .iter()
            .filter_map(|r| r.uuid.clone())
            .collect()
    }

    /// How long to wait for the next poll: the active interval while a printer is busy (and
    /// the live channel does not cover the busy ones) or after a command.
    pub fn interval(
        &self,
        now: Instant,
        live_covers_busy: bool,
        idle: Duration,
        active: Duration,
    ) -> Duration {
        let fast = self.fast_until.is_some_and(|t| now < t);
        if (self.active && !live_covers_busy) || fast {
            active
        } else {
            idle
        }
    }
}
