//! Scripting Connect itself: the requests it received, its token, its faults, its clock and
//! the account's notifications.

use super::Simulator;
use crate::faults::{Fault, FaultRule};
use crate::recorded::RecordedRequest;
use crate::world;

impl Simulator {
    /// Every request received so far (last 100,000), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.world().requests.iter().cloned().collect()
    }

    pub fn clear_requests(&self) {
        self.world().requests.clear();
    }

    /// `None`: any non-empty bearer token is accepted. `Some(t)`: only `t`.
    pub fn set_token(&self, token: Option<&str>) {
        self.world().token = token.map(str::to_string);
    }

    /// `Some(fault)`: every `/app/` request gets it until further notice. `None`: Connect
    /// behaves again. Either way rules added with [`Simulator::add_fault`] are dropped.
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.world().faults = fault.map(FaultRule::new).into_iter().collect();
    }

    /// Adds a fault for some requests. Rules are tried in the order they were added and the
    /// first one that matches a request answers it, so `add_fault(503 on /app/printers,
    /// 3 times)` then `add_fault(500 on /app/printers, 2 times)` fails five list requests.
    pub fn add_fault(&self, rule: FaultRule) {
        self.world().faults.push(rule);
    }

    /// The fault rules still in force (counted-down rules that ran out are gone).
    pub fn faults(&self) -> Vec<FaultRule> {
        self.world().faults.clone()
    }

    /// `true`: the printer is left out of `GET /app/printers`, as when Connect's list
    /// glitches; it still exists and its own endpoints still answer. `false`: listed again.
    #[track_caller]
    pub fn hide_printer(&self, uuid: &str, hidden: bool) {
        self.script(uuid, |p, _| p.hidden = hidden)
    }

    /// Shifts Connect's clock by `seconds` (negative: backwards) from the real time, as when
    /// the server's clock jumps: events created from now on carry `created` (and
    /// `server_time`) shifted, and the feed's `pager.from`/`pager.to` follow. Earlier events
    /// keep their times, so after a backwards jump `created` is no longer in the order events
    /// happened. `0.0` puts the clock right again (itself a jump when it was off).
    pub fn set_clock_offset(&self, seconds: f64) {
        let us = if seconds.is_finite() {
            (seconds * 1e6).round() as i64
        } else {
            0
        };
        self.world().ctx.clock.set_offset(us);
    }

    /// The count `GET /app/notifications/unseen` answers (each new notification adds one).
    pub fn set_unseen(&self, n: u64) {
        self.world().ctx.unseen = n;
    }

    /// Adds an account notification (a job's end and a dialog make their own) and returns its
    /// id; `printer`: the uuid of the printer it is about.
    pub fn add_notification(&self, printer: Option<&str>, severity: &str, text: &str) -> i64 {
        let mut world = self.world();
        let printer_name = printer
            .and_then(|u| world.printer(u))
            .map(|p| p.name.clone());
        world.ctx.notify(world::Notice {
            id: 0,
            created_us: 0,
            category: "PRINTER".into(),
            name: "MESSAGE".into(),
            severity: severity.into(),
            text: text.into(),
            printer_uuid: printer.map(str::to_string),
            printer_name,
            job: None,
        })
    }

    /// The ids of the account's notifications, oldest first.
    pub fn notification_ids(&self) -> Vec<i64> {
        self.world()
            .ctx
            .notifications
            .iter()
            .map(|n| n.id)
            .collect()
    }
}
