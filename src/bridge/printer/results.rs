//! What a printer does with the result of a read made for it.

use std::sync::Arc;

use tokio::time::Instant;

use crate::bridge::printer::feed::{self, FeedOutcome};
use crate::bridge::printer::jobs::{self, JobRead, JobVerdict};
use crate::bridge::printer::{Ctx, PrinterEntry};
use crate::bridge::reads::{Read, ReadResult, StatsKind};
use crate::connect::client::{ConnectError, FeedBatch, Snapshot};
use crate::connect::model::Job;
use crate::message::{Kind, Message};
use crate::payloads::{self, iso};

impl PrinterEntry {
    /// Takes the result of a read made for this printer: publishes what it shows and asks
    /// for the reads that follow. A result that does not match its read is logged.
    pub fn on_read(
        &mut self,
        cx: &mut Ctx,
        read: Read,
        result: ReadResult,
        now: Instant,
        wall: f64,
    ) {
        // What discovery shows may change with any read: it is compared again.
        if let Some(live) = self.runtime.as_mut() {
            live.discovery_inputs = None;
        }
        match (read, result) {
            (Read::Job { job, .. }, ReadResult::Job(result)) => {
                self.on_job(cx, job, *result, now, wall)
            }
            (Read::Jobs { .. }, ReadResult::Jobs(result)) => {
                self.on_job_list(cx, result, now, wall)
            }
            (Read::Feed { rewound, .. }, ReadResult::Feed(result)) => {
                self.on_feed(cx, rewound, result, now);
                self.render(cx, wall);
            }
            (Read::Queue { .. }, ReadResult::Queue(result)) => {
                let missing = cx
                    .account
                    .unavailable
                    .observe("queue", &self.uuid, &result, now, wall);
                let Some(live) = self.runtime.as_mut() else {
                    return;
                };
                match &result {
                    Ok(_) => live.succeeded("queue"),
                    Err(_) if missing => {}
                    Err(e) => live.failed("queue", &e.to_string()),
                }
                live.queue.on_read(result.map_err(|_| ()), now);
                self.render(cx, wall);
            }
            (Read::Cameras { .. }, ReadResult::Cameras(result)) => {
                let missing = cx
                    .account
                    .unavailable
                    .observe("cameras", &self.uuid, &result, now, wall);
                let Some(live) = self.runtime.as_mut() else {
                    return;
                };
                match &result {
                    Ok(_) => live.succeeded("cameras"),
                    Err(_) if missing => {}
                    Err(e) => live.failed("cameras", &e.to_string()),
                }
                let before = live.cameras.named();
                let after = live.cameras.on_list(result.ok(), now);
                let gone: Vec<_> = before.into_iter().filter(|c| !after.contains(c)).collect();
                self.forget_pictures(cx, &gone);
                self.render(cx, wall);
            }
            (Read::Supported { .. }, ReadResult::Supported(result)) => {
                self.on_supported(cx, result, now, wall)
            }
            (Read::Files { .. }, ReadResult::Files(result)) => self.on_files(cx, result, now, wall),
            (Read::Storages { .. }, ReadResult::Storages(result)) => {
                self.on_storages(cx, result, now, wall)
            }
            (Read::Preview { job, .. }, ReadResult::Preview(result)) => {
                self.on_preview(cx, job, result, now)
            }
            (Read::Snapshot { camera, .. }, ReadResult::Snapshot(result)) => {
                self.on_snapshot(cx, &camera, result)
            }
            (Read::EndPicture { job, .. }, ReadResult::Snapshot(result)) => {
                self.on_end_picture(cx, job, result)
            }
            (Read::Stats { kind, .. }, ReadResult::Stats(result)) => {
                self.on_stats(kind, result);
                self.render(cx, wall);
            }
            (read, result) => {
                tracing::error!("a read's result does not match it: {read:?} -> {result:?}")
            }
        }
    }

    fn on_job(
        &mut self,
        cx: &mut Ctx,
        job: i64,
        result: Result<Job, ConnectError>,
        now: Instant,
        wall: f64,
    ) {
        let Some(live) = self.runtime.as_mut() else {
            return;
        };
        live.job_reads.in_flight.remove(&job);
        let current = live.printer.job_info.as_ref().and_then(|j| j.id);
        let read = match &result {
            Ok(record) => {
                live.succeeded("job");
                if current == Some(record.id) {
                    live.job_detail = Some(record.clone());
                    live.detail_stale = false;
                }
                JobRead::Found(record)
            }
            Err(ConnectError::Api { status: 404, .. }) => JobRead::Gone,
            Err(e) => {
                live.failed("job", &e.to_string());
                JobRead::Failed
            }
        };
        let verdict = self
            .record
            .jobs
            .on_record(&mut live.job_reads, job, read, now, wall);
        match (&verdict, &result) {
            (JobVerdict::Finished, Ok(record)) => self.announce_end(cx, record),
            (JobVerdict::Finished, Err(_)) => {}
            (other, _) => self.log_verdict(job, other),
        }
        self.render(cx, wall);
    }

    /// Connect's job list: the jobs it shows ended that were not announced are, oldest first.
    fn on_job_list(
        &mut self,
        cx: &mut Ctx,
        result: Result<Vec<Job>, ConnectError>,
        now: Instant,
        wall: f64,
    ) {
        let base = cx.settings.active_poll_interval;
        let Some(live) = self.runtime.as_mut() else {
            return;
        };
        live.job_reads.listed = true;
        let jobs = match result {
            Ok(jobs) => {
                live.succeeded("jobs");
                jobs
            }
            Err(e) => {
                live.failed("jobs", &e.to_string());
                live.job_reads.list_failed(base, now);
                return;
            }
        };
        let ended = self
            .record
            .jobs
            .on_list(&mut live.job_reads, &jobs, now, wall);
        for job in &ended {
            self.announce_end(cx, job);
        }
        self.render(cx, wall);
    }

    fn on_feed(
        &mut self,
        cx: &mut Ctx,
        rewound: bool,
        result: Result<FeedBatch, ConnectError>,
        now: Instant,
    ) {
        let id = self.id().unwrap_or_default().to_string();
        let Some(live) = self.runtime.as_mut() else {
            return;
        };
        let batch = match result {
            Ok(batch) => batch,
            Err(e) => {
                live.failed("events", &e.to_string());
                // Tried again at the first poll after this.
                live.feed.retry(now + cx.settings.active_poll_interval);
                return;
            }
        };
        live.succeeded("events");
        if batch.capped && !cx.account.feed_cap_told {
            cx.account.feed_cap_told = true;
            tracing::warn!(
                "{}: more than {} events since the feed position {}: the oldest of them are \
                 skipped (said once; other printers may skip some too)",
                live.printer.display_name(),
                crate::connect::EVENTS_PAGE * crate::connect::EVENTS_MAX_PAGES,
                self.record.feed.after.and_then(iso).unwrap_or_default()
            );
        }
        let since = live
            .feed_read_at
            .replace(now)
            .map(|t| now.duration_since(t).as_secs_f64());
        let outcome = feed::accept(
            &mut self.record.feed,
            &mut live.recent_events,
            batch,
            rewound,
            since,
        );
        match outcome {
            FeedOutcome::Publish(events) => {
                live.feed.finish();
                self.feed_was_read(cx, now);
                self.jobs_named_in(cx, &events, now);
                if events
                    .iter()
                    .any(|e| crate::bridge::printer::files::FILE_EVENTS.contains(&e.event.as_str()))
                {
                    self.files_changed(now);
                }
                if !events.is_empty() {
                    // Connect makes notifications of what printers do.
                    cx.account.unseen_read.request(now);
                }
                let topic = cx.settings.topics.event(&id);
                for event in events {
                    let payload = serde_json::Value::Object(event.raw).to_string();
                    cx.fx.publish(Message::event(topic.clone(), payload));
                }
            }
            FeedOutcome::Reread { from, server_now } => {
                tracing::warn!(
                    "{}: Connect's clock ({}) is behind the feed position: re-reading its feed \
                     from {}",
                    live.printer.display_name(),
                    iso(server_now).unwrap_or_default(),
                    iso(from).unwrap_or_default()
                );
                // Still running: the re-read follows at once.
                live.feed_rewound = true;
                cx.fx.read(Read::Feed {
                    uuid: self.uuid.clone(),
                    from: Some(from),
                    rewound: true,
                });
            }
        }
    }

    /// Publishes a new picture (an unchanged one came back as 304: nothing to send).
    fn on_snapshot(
        &mut self,
        cx: &mut Ctx,
        camera_id: &str,
        result: Result<Snapshot, ConnectError>,
    ) {
        let id = self.id().unwrap_or_default().to_string();
        let Some(live) = self.runtime.as_mut() else {
            return;
        };
        let name = live.printer.display_name().to_string();
        let Some(camera) = live.cameras.camera_mut(camera_id) else {
            return;
        };
        camera.fetching = false;
        let topic = cx.settings.topics.camera(&id, camera_id);
        match result {
            Ok(Snapshot::NotModified) => live.succeeded("camera"),
            Ok(Snapshot::Image {
                bytes,
                etag,
                last_modified,
            }) => {
                camera.etag = etag;
                camera.last_modified = last_modified;
                // The MQTT packet also holds the topic and a header.
                let fits = bytes.len() + topic.len() + 16 <= crate::message::MAX_PACKET_BYTES;
                if !fits {
                    if !camera.too_large {
                        tracing::warn!(
                            "{name}: camera {} sent a {} byte picture, larger than an MQTT \
                             message may be ({} bytes): not published",
                            camera.name,
                            bytes.len(),
                            crate::message::MAX_PACKET_BYTES
                        );
                    }
                    camera.too_large = true;
                    // The last picture that fitted is not the camera's any more.
                    cx.fx.publish(Message::Forget { topic });
                    return;
                }
                camera.too_large = false;
                live.succeeded("camera");
                cx.fx.publish(Message::Image {
                    topic,
                    payload: Arc::new(bytes),
                });
            }
            Err(ConnectError::Api { status: 404, .. }) => {
                // The camera was removed: list the printer's cameras again next poll (its
                // entity goes with that list, the others stay).
                tracing::info!("{name}: camera {} is gone from Connect", camera.name);
                live.cameras.relist = true;
                cx.fx.publish(Message::Forget { topic });
            }
            Err(e) => live.failed("camera", &e.to_string()),
        }
    }

    /// The last pictures of these cameras are not sent again.
    fn forget_pictures(&self, cx: &mut Ctx, cameras: &[(String, String)]) {
        let Some(id) = self.id() else {
            return;
        };
        for (camera, _) in cameras {
            let topic = cx.settings.topics.camera(id, camera);
            cx.fx.publish(Message::Forget { topic });
        }
    }

    /// Publishes how `job` ended on `P/job/finished`, counts it in the totals and asks for
    /// the camera's picture of it.
    fn announce_end(&mut self, cx: &mut Ctx, job: &Job) {
        let (Some(id), Some(live)) = (self.record.id.as_deref(), self.runtime.as_mut()) else {
            return;
        };
        let Some(payload) = payloads::job_finished(&live.printer, id, job) else {
            return;
        };
        if self.record.stats.count(&payload) {
            live.shown_stats = false;
        }
        // Its filament, for the spool (recorded with the announcement: see `spoolman`).
        let spool = self.record.spool;
        if let Some(used) = super::spool::use_of(cx.settings, &self.uuid, spool, &payload, job.id) {
            cx.fx.spool_uses.push(used);
        }
        // How it ended, as the camera saw it (the first camera; none without one).
        if cx.settings.camera.enabled
            && let Some(camera) = live.cameras.list.iter().flatten().next()
        {
            cx.fx.read(Read::EndPicture {
                uuid: self.uuid.clone(),
                camera: camera.id.clone(),
                job: job.id,
            });
        }
        tracing::info!(
            "{}: job {} ended {}",
            live.printer.display_name(),
            job.id,
            payload["event_type"].as_str().unwrap_or("?")
        );
        let topic = cx.settings.topics.job_finished(id);
        let trigger = payload["event_type"]
            .as_str()
            .and_then(crate::bridge::printer::controls::Trigger::of_end);
        cx.fx.publish(Message::event(topic, payload.to_string()));
        if let Some(trigger) = trigger {
            crate::bridge::printer::controls::trigger(cx, id, trigger);
        }
    }

    /// Connect's statistics `kind` of the printer: added to its totals once (see
    /// [`crate::bridge::printer::stats::Totals::seed_with`]). Connect without them (404)
    /// counts as read; any other failure leaves them for the next start.
    fn on_stats(&mut self, kind: StatsKind, result: Result<serde_json::Value, ConnectError>) {
        let Some(live) = self.runtime.as_mut() else {
            return;
        };
        let name = live.printer.display_name().to_string();
        let body = match result {
            Ok(body) => Some(body),
            Err(ConnectError::Api { status: 404, .. }) => None,
            Err(e) => {
                live.failed("statistics", &e.to_string());
                return;
            }
        };
        live.succeeded("statistics");
        // Published again when a number changed, and once the seeding is complete (its
        // `seeded` says so: a farm's three reads a printer are one message, not three).
        let before = self.record.stats.numbers();
        let understood = self.record.stats.seed_with(kind, body.as_ref());
        let complete = |seed: Option<&crate::bridge::printer::stats::Seed>| {
            seed.is_some_and(|s| s.read.len() == StatsKind::ALL.len())
        };
        if self.record.stats.numbers() != before || complete(self.record.stats.seeded.as_ref()) {
            live.shown_stats = false;
        }
        if !understood {
            tracing::warn!(
                "{name}: Connect's {} statistics are not in a shape the gateway knows: not \
                 added to the totals",
                kind.endpoint()
            );
        }
    }

    /// The camera's picture as job `job` ended: retained on `P/job/finished/picture`.
    fn on_end_picture(&mut self, cx: &mut Ctx, job: i64, result: Result<Snapshot, ConnectError>) {
        let id = self.id().unwrap_or_default().to_string();
        let Some(live) = self.runtime.as_mut() else {
            return;
        };
        let topic = cx.settings.topics.job_finished_picture(&id);
        match result {
            Ok(Snapshot::Image { bytes, .. })
                if bytes.len() + topic.len() + 16 <= crate::message::MAX_PACKET_BYTES =>
            {
                live.succeeded("end picture");
                cx.fx.publish(Message::Retain {
                    kind: Kind::Data,
                    topic,
                    payload: bytes,
                });
            }
            Ok(Snapshot::Image { bytes, .. }) => tracing::warn!(
                "{}: the picture of how job {job} ended is {} bytes, larger than an MQTT \
                 message may be: not published",
                live.printer.display_name(),
                bytes.len()
            ),
            // Asked without a validator: Connect has no picture to give.
            Ok(Snapshot::NotModified) => {}
            Err(e) => live.failed("end picture", &e.to_string()),
        }
    }

    /// Logs what became of an ending job that is not announced.
    fn log_verdict(&self, job: i64, verdict: &JobVerdict) {
        let name = self.display_name();
        match verdict {
            JobVerdict::NotAnnounced(state) => {
                tracing::info!("{name}: job {job} ended in state {state} (not announced)")
            }
            JobVerdict::Vanished => {
                tracing::warn!("{name}: job {job} vanished from Connect")
            }
            JobVerdict::GaveUp => tracing::warn!(
                "{name}: Connect's record of job {job} still does not say how it ended, {} hours \
                 after it did: not announced",
                jobs::LAG_GIVE_UP_SECONDS / 3600.0
            ),
            _ => {}
        }
    }
}
