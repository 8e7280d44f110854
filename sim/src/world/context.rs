//! What transitions need besides the printer itself: the clock, the id counters, the
//! account's notifications, and who made the transition.

use std::collections::VecDeque;

use super::clock::Clock;

const FIRST_JOB_ID: i64 = 100;
const FIRST_COMMAND_ID: i64 = 1_075_300;
const FIRST_PLANNED_JOB_ID: i64 = 5_000;
const FIRST_DIALOG_ID: i64 = 1;

/// What transitions need besides the printer itself: the clock and the id counters.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub clock: Clock,
    next_job_id: i64,
    next_command_id: i64,
    next_planned_job_id: i64,
    next_dialog_id: i64,
    next_notification_id: i64,
    /// The account's notifications, oldest first (at most [`MAX_NOTIFICATIONS`]).
    pub notifications: VecDeque<Notice>,
    /// What `GET /app/notifications/unseen` answers: each new notification adds one.
    pub unseen: u64,
}

impl Ctx {
    pub(super) fn new() -> Ctx {
        Ctx {
            clock: Clock::default(),
            next_job_id: FIRST_JOB_ID,
            next_command_id: FIRST_COMMAND_ID,
            next_planned_job_id: FIRST_PLANNED_JOB_ID,
            next_dialog_id: FIRST_DIALOG_ID,
            next_notification_id: 1,
            notifications: VecDeque::new(),
            unseen: 0,
        }
    }

    /// Adds a notification (unseen) and returns its id.
    pub fn notify(&mut self, mut notice: Notice) -> i64 {
        notice.id = bump(&mut self.next_notification_id);
        notice.created_us = self.clock.tick();
        let id = notice.id;
        self.notifications.push_back(notice);
        while self.notifications.len() > MAX_NOTIFICATIONS {
            self.notifications.pop_front();
        }
        self.unseen += 1;
        id
    }

    pub fn command_id(&mut self) -> i64 {
        bump(&mut self.next_command_id)
    }

    pub fn job_id(&mut self) -> i64 {
        bump(&mut self.next_job_id)
    }

    pub fn planned_job_id(&mut self) -> i64 {
        bump(&mut self.next_planned_job_id)
    }

    pub fn dialog_id(&mut self) -> i64 {
        bump(&mut self.next_dialog_id)
    }
}

/// Notifications kept, at most.
const MAX_NOTIFICATIONS: usize = 200;

/// One of the account's notifications (`GET /app/notifications`).
#[derive(Debug, Clone)]
pub(crate) struct Notice {
    pub id: i64,
    pub created_us: i64,
    pub category: String,
    pub name: String,
    pub severity: String,
    pub text: String,
    pub printer_uuid: Option<String>,
    pub printer_name: Option<String>,
    pub job: Option<(i64, String, String)>,
}

pub(super) fn bump(counter: &mut i64) -> i64 {
    let id = *counter;
    *counter += 1;
    id
}

/// Who made a transition: becomes the event's `source` (and `command`, `command_id`).
#[derive(Debug, Clone)]
pub(crate) struct Cause {
    pub source: &'static str,
    pub command: Option<(&'static str, i64)>,
}

impl Cause {
    pub const FIRMWARE: Cause = Cause::source("FIRMWARE");
    pub const CONNECT: Cause = Cause::source("CONNECT");

    pub const fn source(source: &'static str) -> Cause {
        Cause {
            source,
            command: None,
        }
    }

    pub fn command(name: &'static str, id: i64) -> Cause {
        Cause {
            source: "CONNECT_USER",
            command: Some((name, id)),
        }
    }
}
