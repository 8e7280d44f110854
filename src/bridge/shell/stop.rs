//! The stop on SIGTERM: commands waiting are refused, those running answered, the state
//! file written once the journal (and the Spoolman ledger) are on disk.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Shell;
use super::systemd::notify_systemd;
use crate::command::ErrorCode;
use crate::message::Incoming;
use crate::mqtt::Publisher;
use crate::spoolman::SpoolmanLink;

/// On SIGTERM, requests to Connect in progress (a command, a poll) get this long to be
/// answered; then they are abandoned. The whole stop must fit in 5 seconds.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

const STOPPING: &str = "the gateway is stopping: the command was not sent to the printer; send it \
                        again once the gateway is back";
/// How long a state file write waits for the MQTT session to write and hand over the journal
/// of events owed (it answers in milliseconds unless it is stuck).
const JOURNAL_SYNC_LIMIT: Duration = Duration::from_secs(1);

impl Shell {
    pub(super) async fn stop(
        mut self,
        mut incoming: mpsc::UnboundedReceiver<Incoming>,
        held: VecDeque<Incoming>,
    ) {
        let started = Instant::now();
        notify_systemd(&[sd_notify::NotifyState::Stopping]);
        // No command comes in from now on: each one that did is answered below, and none is
        // left unanswered behind the last look at `incoming`.
        let unsubscribed = self.publisher.unsubscribe();
        self.reads.abort();
        for msg in self.commands.take_waiting().into_iter().chain(held) {
            self.refuse(&msg, ErrorCode::Expired, STOPPING);
        }
        // Commands already sent get their answer (Connect is abandoned after STOP_GRACE).
        while let Some(done) = self.commands.next().await {
            self.core.command_done(done, Instant::now());
            self.publisher.publish_all(self.core.take_messages());
        }
        // Once the broker acknowledged the unsubscribe, whatever it sent before is in
        // `incoming`. A broker that does not answer gets STOP_GRACE from the stop's start.
        let _ = tokio::time::timeout_at(started + STOP_GRACE, unsubscribed).await;
        while let Ok(msg) = incoming.try_recv() {
            self.refuse(&msg, ErrorCode::Expired, STOPPING);
        }
        if self.clear_retained_on_exit {
            self.publisher.clear_all();
        }
        if let Some(offline) = self.core.stop_messages(self.clear_retained_on_exit) {
            self.publisher.publish(offline);
        }
        let memory = serde_json::to_vec(&self.core.state_view());
        let mut store = self.store;
        let before = on_disk_first(&self.publisher, self.spoolman.as_ref());
        let saved =
            tokio::task::spawn_blocking(move || store.save_bytes_after(memory?, before)).await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("cannot save the state file: {e:#}"),
            Err(e) => tracing::warn!("cannot save the state file: {e}"),
        }
        self.publisher.stop();
    }
}

/// What must be on disk before the state file is written: its cursors say which events were
/// made, so the journal holding those not yet delivered (and the Spoolman ledger holding
/// their filament) goes first. Asked for now, waited for by the closure.
pub(super) fn on_disk_first(
    publisher: &Publisher,
    spoolman: Option<&SpoolmanLink>,
) -> impl FnOnce() -> anyhow::Result<()> + Send + 'static {
    let sync = publisher.sync_journal();
    let ledger = spoolman.map(SpoolmanLink::sync);
    move || {
        sync.wait(JOURNAL_SYNC_LIMIT)?;
        ledger.map_or(Ok(()), |l| l.wait(JOURNAL_SYNC_LIMIT))
    }
}
