//! A new view of one printer, from the list or from the live channel: what changed is
//! published, and the reads it calls for are asked for.

use tokio::time::Instant;

use crate::bridge::printer::controls::{self, dialog_event, dialog_key};
use crate::bridge::printer::days;
use crate::bridge::printer::render::hash;
use crate::bridge::printer::{Ctx, PrinterEntry, QueueStep, Runtime};
use crate::bridge::reads::Read;
use crate::connect::model::{DialogInfo, Printer, PrinterState};
use crate::message::Message;
use crate::payloads;

impl PrinterEntry {
    /// Takes `printer` as the printer's view now (what the live channel said laid over
    /// already): publishes what changed and asks for the reads it calls for.
    pub fn update(&mut self, cx: &mut Ctx, now: Instant, wall: f64, printer: Printer) {
        // A printer without an id (another took it) publishes nothing until it has one.
        let Some(id) = self.id().map(str::to_string) else {
            return;
        };
        if !self.known {
            self.known = true;
            self.record.jobs.first_seen(&printer);
            tracing::info!("bridging printer {} as {id}", printer.display_name());
        }
        // The first look in this run: jobs may have ended while the gateway was stopped.
        let (before, previous_dialog) = match self.runtime.as_mut() {
            Some(live) => {
                let previous_dialog = live.printer.dialog_info.clone();
                let before = std::mem::replace(&mut live.printer, printer).effective_state();
                (Some(before), previous_dialog)
            }
            None => {
                self.record.stats.begin(payloads::iso(wall));
                self.runtime = Some(Box::new(Runtime::new(printer, now)));
                (None, None)
            }
        };
        self.looked_at(cx, now, wall, &id, before, previous_dialog);
    }

    /// Lays what the live channel said over the printer's view, in place; when that changed
    /// it, goes on as [`PrinterEntry::update`] does with a new view.
    pub fn update_pushed(&mut self, cx: &mut Ctx, now: Instant, wall: f64) {
        let Some(id) = self.id().map(str::to_string) else {
            return;
        };
        let Some(live) = self.runtime.as_mut() else {
            return;
        };
        let before = live.printer.effective_state();
        let previous_dialog = live.printer.dialog_info.clone();
        if !live.pushed.lay_over(&mut live.printer) {
            return;
        }
        self.looked_at(cx, now, wall, &id, Some(before), previous_dialog);
    }

    /// The rest of a look at a new view (the printer's state before it, `None` on the first
    /// look in this run): what changed is published and the reads it calls for asked for.
    fn looked_at(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        wall: f64,
        id: &str,
        before: Option<PrinterState>,
        previous_dialog: Option<DialogInfo>,
    ) {
        let Some(live) = self.runtime.as_mut() else {
            return;
        };
        live.first_seen.get_or_insert(wall);
        self.track_use(wall);
        self.extras_reads(cx, now);
        self.announce_dialog(cx, id, previous_dialog, wall);
        self.job_reads(cx, now, wall, before, id);
        self.seed_reads(cx, wall);
        self.render(cx, wall);
    }

    /// The queues, cameras and feed, when what calls for them moved.
    fn extras_reads(&mut self, cx: &mut Ctx, now: Instant) {
        let uuid = self.uuid.as_str();
        let Some(live) = self.runtime.as_mut() else {
            return;
        };
        let printer = &live.printer;
        let unavailable = &cx.account.unavailable;
        // The queues, when the printer's state, job or queue count moved.
        let signature = feed_signature(printer);
        let queue_key = hash(&(signature, printer.queue_count()));
        let empty = printer.queue_count() == Some(0);
        if !unavailable.resting("queue", uuid, now)
            && live.queue.step(queue_key, empty, cx.budget, now) == QueueStep::Read
        {
            cx.fx.read(Read::Queue {
                uuid: uuid.to_string(),
            });
        }
        // The cameras, when first seen and when a new job starts.
        let running_job = printer
            .job_info
            .as_ref()
            .and_then(|j| j.id)
            .filter(|_| payloads::job_running(printer));
        if cx.settings.camera.enabled
            && live.cameras.wants_list(running_job, now)
            && *cx.budget > 0
            && !unavailable.resting("cameras", uuid, now)
        {
            *cx.budget -= 1;
            live.cameras.start_list(running_job);
            cx.fx.read(Read::Cameras {
                uuid: uuid.to_string(),
            });
        }
        // The feed, when the state, job or dialog changed (Connect also makes notifications
        // of what printers do).
        if live.signature.as_ref() != Some(&signature) {
            if live.signature.is_some() {
                live.feed.request(now);
                cx.account.unseen_read.request(now);
            }
            live.signature = Some(signature);
        }
        cx.fx
            .read(live.start_feed_read(uuid, self.record.feed.after, now));
    }

    /// Dialogs: announced once each (across restarts), and their closing.
    fn announce_dialog(&mut self, cx: &mut Ctx, id: &str, previous: Option<DialogInfo>, wall: f64) {
        let Some(live) = self.runtime.as_ref() else {
            return;
        };
        let key = live.printer.dialog_info.as_ref().map(dialog_key);
        if key != self.record.announced_dialog {
            let event = dialog_event(&live.printer, previous.as_ref(), wall);
            cx.fx
                .publish(Message::event(cx.settings.topics.event(id), event));
            self.record.announced_dialog = key;
        }
    }

    /// Jobs: starts and ends, the ended ones' records and the current one's detail; the
    /// supported commands, files and thumbnail; the device triggers the change fires.
    fn job_reads(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        wall: f64,
        before: Option<PrinterState>,
        id: &str,
    ) {
        let uuid = self.uuid.as_str();
        let Some(live) = self.runtime.as_mut() else {
            return;
        };
        let jobs = &mut self.record.jobs;
        let (was_active, was_last) = (jobs.active_job, jobs.last_job);
        let jobs_changed = jobs.observe(&live.printer, wall);
        let started = jobs
            .active_job
            .is_some_and(|j| was_active != Some(j) && was_last != Some(j));
        let triggers = controls::state_triggers(before.as_ref(), &live.printer, started);
        let unavailable = &cx.account.unavailable;
        if !unavailable.resting("supported_commands", uuid, now) {
            cx.fx.read(live.start_supported_read(
                uuid,
                cx.budget,
                &mut cx.account.supported_pool,
                now,
            ));
        }
        if !unavailable.resting("files", uuid, now) {
            cx.fx.read(live.start_files_read(
                uuid,
                &cx.settings.allow,
                before.as_ref(),
                cx.budget,
                now,
            ));
        }
        cx.fx.read(live.start_preview_read(uuid, cx.budget, now));
        if jobs_changed || before.is_none() {
            live.job_reads.list.request(now);
        }
        live.start_job_list_read(cx.fx, uuid, jobs.boundary(), now);
        let mut due = jobs.reads_due(&live.job_reads, now);
        if let Some(current) = live.printer.job_info.as_ref().and_then(|j| j.id)
            && (live.current_detail().is_none() || live.detail_stale)
            && !due.contains(&current)
        {
            due.push(current);
        }
        for job in due {
            if live.job_reads.in_flight.insert(job) {
                cx.fx.read(Read::Job {
                    uuid: uuid.to_string(),
                    job,
                });
            }
        }
        for trigger in triggers {
            controls::trigger(cx, id, trigger);
        }
    }
}

/// The day's use is counted into the totals (and `P/stats` published again) at most this
/// far apart, and whenever the printer's state or the day changes. Every 5 minutes made an
/// idle printer's 12 messages an hour (the budget is 10): now 4.
const USE_FOLD_EVERY: f64 = 900.0;
/// A printer not seen for longer (the gateway or Connect away) does not count the time in
/// between: nobody knows what it did.
const USE_GAP_MAX: f64 = 300.0;

impl PrinterEntry {
    /// Asks for Connect's statistics that seed the totals still missing, once a run, and only
    /// once the printer is known: at a farm's start they would otherwise wait in line by the
    /// thousand (3 a printer) and hold back the reads that make printers known.
    fn seed_reads(&mut self, cx: &mut Ctx, wall: f64) {
        let Some(live) = self.runtime.as_mut() else {
            return;
        };
        if live.seed_asked || !live.is_known(cx.settings.camera.enabled) {
            return;
        }
        live.seed_asked = true;
        let backfill = cx.settings.stats_backfill;
        for (kind, from, to) in self.record.stats.seed_reads(backfill, wall) {
            cx.fx.read(Read::Stats {
                uuid: self.uuid.clone(),
                kind,
                from,
                to,
            });
        }
    }

    /// Counts the time since the printer was last seen in the state it was in then (see
    /// [`days::Days`]). The time is counted into the persisted totals in pieces, not at every
    /// look: the state file would be written at every poll.
    fn track_use(&mut self, wall: f64) {
        let Some(live) = self.runtime.as_mut() else {
            return;
        };
        let bucket = days::bucket(&live.printer.effective_state());
        let start = bucket.map(|b| (b, wall, wall));
        let Some((was, since, seen)) = live.use_since else {
            live.use_since = start;
            return;
        };
        let gap = wall - seen > USE_GAP_MAX || wall < seen;
        let end = if gap { seen } else { wall };
        let new_day = days::day_of(since).0 != days::day_of(wall).0;
        if Some(was) == bucket && !gap && !new_day && end - since < USE_FOLD_EVERY {
            live.use_since = Some((was, since, wall));
            return;
        }
        self.record.stats.days.add(was, since, end);
        self.record.stats.days.roll(wall);
        live.shown_stats = false;
        live.use_since = start;
    }
}

/// The parts of a printer whose change means the events feed has something new, hashed: a
/// look compares it with the last one, and a farm's looks come by the thousand a second.
fn feed_signature(p: &Printer) -> u64 {
    let job = p.job_info.as_ref();
    hash(&(
        p.effective_state().as_str(),
        p.printer_state.as_ref().map(|s| s.as_str()),
        job.and_then(|j| j.id),
        job.and_then(|j| j.state.as_ref().map(|s| s.as_str())),
        p.dialog_info.is_some(),
    ))
}
