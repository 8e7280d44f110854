//! What the core does with each read's result.

use std::sync::Arc;

use tokio::time::Instant;

use crate::bridge::core::Core;
use crate::bridge::printer::feed::{self, FeedOutcome};
use crate::bridge::printer::jobs::{JobRead, JobVerdict};
use crate::bridge::reads::{Read, ReadDone, ReadResult};
use crate::connect::client::{ConnectError, Snapshot};
use crate::message::Message;
use crate::payloads::iso;

impl Core {
    /// Takes a read's result: publishes what it shows and asks for the reads that follow.
    pub fn on_read(&mut self, done: ReadDone, now: Instant, wall: f64) {
        self.on_result(done, now, wall);
        self.info_if_owed();
    }

    fn on_result(&mut self, done: ReadDone, now: Instant, wall: f64) {
        match (done.read, done.result) {
            (Read::Job { uuid, job }, ReadResult::Job(result)) => {
                self.on_job(&uuid, job, *result, now, wall)
            }
            (Read::Jobs { uuid, .. }, ReadResult::Jobs(result)) => {
                self.on_job_list(&uuid, result, now, wall)
            }
            (Read::Feed { uuid, rewound, .. }, ReadResult::Feed(result)) => {
                self.on_feed(&uuid, rewound, result, now);
                self.render(&uuid, wall);
            }
            (Read::Queue { uuid }, ReadResult::Queue(result)) => {
                let missing = self.optional("queue", &uuid, &result, now, wall);
                let Some(live) = self.live_mut(&uuid) else {
                    return;
                };
                match &result {
                    Ok(_) => live.succeeded("queue"),
                    Err(_) if missing => {}
                    Err(e) => live.failed("queue", &e.to_string()),
                }
                live.queue.on_read(result.map_err(|_| ()), now);
                self.render(&uuid, wall);
            }
            (Read::Cameras { uuid }, ReadResult::Cameras(result)) => {
                let missing = self.optional("cameras", &uuid, &result, now, wall);
                let Some(live) = self.live_mut(&uuid) else {
                    return;
                };
                match &result {
                    Ok(_) => live.succeeded("cameras"),
                    Err(_) if missing => {}
                    Err(e) => live.failed("cameras", &e.to_string()),
                }
                let before = live.cameras.named();
                let after = live.cameras.on_list(result.ok(), now);
                self.forget_pictures(&uuid, before.iter().filter(|c| !after.contains(c)));
                self.render(&uuid, wall);
                self.snapshot_reads(now);
            }
            (Read::Supported { uuid }, ReadResult::Supported(result)) => {
                self.on_supported(&uuid, result, now, wall)
            }
            (Read::Files { uuid }, ReadResult::Files(result)) => {
                self.on_files(&uuid, result, now, wall)
            }
            (Read::Preview { uuid, job, .. }, ReadResult::Preview(result)) => {
                self.on_preview(&uuid, job, result, now)
            }
            (Read::Snapshot { uuid, camera, .. }, ReadResult::Snapshot(result)) => {
                self.on_snapshot(&uuid, &camera, result);
                self.snapshot_reads(now);
            }
            (Read::PrinterTypes, ReadResult::PrinterTypes(result)) => {
                self.account.types_reading = false;
                let missing = self.optional("printer_types", "", &result, now, wall);
                match result {
                    Ok(types) => {
                        self.account.printer_types = Some(
                            types
                                .printer_types
                                .into_iter()
                                .map(|t| (t.id.clone(), t))
                                .collect(),
                        )
                    }
                    Err(_) if missing => {}
                    Err(e) => tracing::warn!("cannot read Connect's printer types: {e}"),
                }
            }
            (Read::Version, ReadResult::Version(result)) => {
                let missing = self.optional("version", "", &result, now, wall);
                let a = &mut self.account;
                a.version_reading = false;
                // Asked again when the rest is over.
                a.version_due = missing;
                match result {
                    Ok(v) => {
                        if a.server_version.as_ref() != Some(&v) {
                            tracing::info!(
                                "Prusa Connect version {}",
                                v.version.as_deref().unwrap_or("unknown")
                            );
                        }
                        a.server_version = Some(v);
                    }
                    Err(e) => tracing::debug!("cannot read Connect's version: {e}"),
                }
            }
            (Read::Unseen, ReadResult::Unseen(result)) => {
                self.optional("notifications_unseen", "", &result, now, wall);
                let a = &mut self.account;
                a.unseen_reading = false;
                match result {
                    Ok(n) => {
                        a.unseen_due = false;
                        self.notifications_moved(n.unseen, now);
                    }
                    Err(e) => tracing::debug!("cannot read the unseen notifications: {e}"),
                }
            }
            (Read::Notifications { .. }, ReadResult::Notifications(result)) => {
                self.on_notifications(result, now, wall)
            }
            (read, result) => {
                tracing::error!("a read's result does not match it: {read:?} -> {result:?}")
            }
        }
    }

    /// Notes an optional read's outcome ([`crate::bridge::account::unavailable`]): `true` for a 404, which the
    /// caller does not log.
    pub(crate) fn optional<T>(
        &mut self,
        kind: &'static str,
        uuid: &str,
        result: &Result<T, ConnectError>,
        now: Instant,
        wall: f64,
    ) -> bool {
        self.account
            .unavailable
            .observe(kind, uuid, result, now, wall)
    }

    fn live_mut(&mut self, uuid: &str) -> Option<&mut crate::bridge::printer::Runtime> {
        self.registry.get_mut(uuid)?.runtime.as_mut()
    }

    fn on_job(
        &mut self,
        uuid: &str,
        job: i64,
        result: Result<crate::connect::model::Job, ConnectError>,
        now: Instant,
        wall: f64,
    ) {
        let Some(entry) = self.registry.get_mut(uuid) else {
            return;
        };
        let Some(live) = entry.runtime.as_mut() else {
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
        let verdict = entry
            .record
            .jobs
            .on_record(&mut live.job_reads, job, read, now, wall);
        match (&verdict, &result) {
            (JobVerdict::Finished, Ok(record)) => self.announce_end(uuid, record),
            (JobVerdict::Finished, Err(_)) => {}
            (other, _) => self.log_verdict(uuid, job, other),
        }
        self.render(uuid, wall);
    }

    /// Connect's job list: the jobs it shows ended that were not announced are, oldest first.
    fn on_job_list(
        &mut self,
        uuid: &str,
        result: Result<Vec<crate::connect::model::Job>, ConnectError>,
        now: Instant,
        wall: f64,
    ) {
        let base = self.settings.active_poll_interval;
        let Some(entry) = self.registry.get_mut(uuid) else {
            return;
        };
        let Some(live) = entry.runtime.as_mut() else {
            return;
        };
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
        let ended = entry
            .record
            .jobs
            .on_list(&mut live.job_reads, &jobs, now, wall);
        for job in &ended {
            self.announce_end(uuid, job);
        }
        self.render(uuid, wall);
    }

    fn on_feed(
        &mut self,
        uuid: &str,
        rewound: bool,
        result: Result<crate::connect::client::FeedBatch, ConnectError>,
        now: Instant,
    ) {
        let retry = now + self.settings.active_poll_interval;
        let Some(entry) = self.registry.get_mut(uuid) else {
            return;
        };
        let id = entry.id().unwrap_or_default().to_string();
        let Some(live) = entry.runtime.as_mut() else {
            return;
        };
        let batch = match result {
            Ok(batch) => batch,
            Err(e) => {
                live.failed("events", &e.to_string());
                // Tried again at the first poll after `retry`.
                live.feed.retry(retry);
                return;
            }
        };
        live.succeeded("events");
        if batch.capped && !self.account.feed_cap_told {
            self.account.feed_cap_told = true;
            tracing::warn!(
                "{}: more than {} events since the feed position {}: the oldest of them are \
                 skipped (said once; other printers may skip some too)",
                live.printer.display_name(),
                crate::connect::EVENTS_PAGE * crate::connect::EVENTS_MAX_PAGES,
                entry.record.feed.after.and_then(iso).unwrap_or_default()
            );
        }
        let since = live
            .feed_read_at
            .replace(now)
            .map(|t| now.duration_since(t).as_secs_f64());
        let outcome = feed::accept(
            &mut entry.record.feed,
            &mut live.recent_events,
            batch,
            rewound,
            since,
        );
        match outcome {
            FeedOutcome::Publish(events) => {
                live.feed.finish();
                self.feed_was_read(uuid, now);
                self.jobs_named_in(uuid, &events, now);
                if events
                    .iter()
                    .any(|e| crate::bridge::printer::files::FILE_EVENTS.contains(&e.event.as_str()))
                {
                    self.files_changed(uuid, now);
                }
                if !events.is_empty() {
                    // Connect makes notifications of what printers do.
                    self.account.unseen_due = true;
                }
                let topic = self.settings.topics.event(&id);
                for event in events {
                    let payload = serde_json::Value::Object(event.raw).to_string();
                    self.publish(Message::event(topic.clone(), payload));
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
                self.read(Read::Feed {
                    uuid: uuid.to_string(),
                    from: Some(from),
                    rewound: true,
                });
            }
        }
    }

    /// Publishes a new picture (an unchanged one came back as 304: nothing to send).
    fn on_snapshot(&mut self, uuid: &str, camera_id: &str, result: Result<Snapshot, ConnectError>) {
        let Some(entry) = self.registry.get_mut(uuid) else {
            return;
        };
        let id = entry.id().unwrap_or_default().to_string();
        let Some(live) = entry.runtime.as_mut() else {
            return;
        };
        let name = live.printer.display_name().to_string();
        let Some(camera) = live.cameras.camera_mut(camera_id) else {
            return;
        };
        camera.fetching = false;
        let topic = self.settings.topics.camera(&id, camera_id);
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
                    self.publish(Message::Forget { topic });
                    return;
                }
                camera.too_large = false;
                live.succeeded("camera");
                self.publish(Message::Image {
                    topic,
                    payload: Arc::new(bytes),
                });
            }
            Err(ConnectError::Api { status: 404, .. }) => {
                // The camera was removed: list the printer's cameras again next poll (its
                // entity goes with that list, the others stay).
                tracing::info!("{name}: camera {} is gone from Connect", camera.name);
                live.cameras.relist = true;
                self.publish(Message::Forget { topic });
            }
            Err(e) => live.failed("camera", &e.to_string()),
        }
    }
}
