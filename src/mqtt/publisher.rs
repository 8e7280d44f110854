//! The bridge's handle on the session: requests go into a channel the session task owns, so
//! nothing the bridge does blocks on the broker.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::sync::{mpsc, oneshot};

use crate::message::Message;

/// What the bridge asks of the session.
#[derive(Debug)]
pub(super) enum Request {
    Publish(Message),
    Republish,
    ClearAll,
    /// Write what the journal is owed and hand back its file to fsync.
    /// `Ok(None)`: no journal; `Err`: the journal lacks events (a write failed).
    SyncJournal(std::sync::mpsc::Sender<Result<Option<std::fs::File>, String>>),
    /// Unsubscribe from everything; answered when the broker acknowledged it (from then on
    /// no message comes in) or the connection is gone.
    Unsubscribe(oneshot::Sender<()>),
    /// Deliver what is owed, then disconnect.
    Stop,
}

/// See [`Publisher::sync_journal`].
pub struct JournalSync {
    rx: std::sync::mpsc::Receiver<Result<Option<std::fs::File>, String>>,
}

impl JournalSync {
    /// Blocks (call it off the runtime) until the journal holds every event published before
    /// [`Publisher::sync_journal`] and is fsynced. An error when the session is gone or does
    /// not answer within `limit`: then the journal may lack them.
    pub fn wait(self, limit: Duration) -> Result<()> {
        match self.rx.recv_timeout(limit) {
            Ok(Ok(Some(file))) => file
                .sync_data()
                .context("cannot fsync the journal of events owed to the broker"),
            Ok(Ok(None)) => Ok(()),
            // A state file saying events were made that no file holds would lose them in a
            // crash: it waits for the journal.
            Ok(Err(why)) => bail!("{why}"),
            Err(e) => bail!("the MQTT session did not write its journal ({e})"),
        }
    }
}

/// The bridge's handle on the outbox: never blocks, never fails (once the session is gone,
/// there is nobody left to tell).
#[derive(Debug, Clone)]
pub struct Publisher {
    tx: mpsc::UnboundedSender<Request>,
}

impl Publisher {
    pub(super) fn new(tx: mpsc::UnboundedSender<Request>) -> Publisher {
        Publisher { tx }
    }

    pub fn publish(&self, message: Message) {
        let _ = self.tx.send(Request::Publish(message));
    }

    pub fn publish_all(&self, messages: impl IntoIterator<Item = Message>) {
        for m in messages {
            self.publish(m);
        }
    }

    /// Every retained value and the last pictures again (Home Assistant's birth message).
    pub fn republish(&self) {
        let _ = self.tx.send(Request::Republish);
    }

    /// Clears every retained topic published so far.
    pub fn clear_all(&self) {
        let _ = self.tx.send(Request::ClearAll);
    }

    /// Asks the session to write to its journal the events published so far; the state
    /// file that records them as made is written after [`JournalSync::wait`].
    pub fn sync_journal(&self) -> JournalSync {
        let (tx, rx) = std::sync::mpsc::channel();
        let _ = self.tx.send(Request::SyncJournal(tx));
        JournalSync { rx }
    }

    /// Unsubscribes from every topic (commands included): resolves once the broker has
    /// acknowledged it, after every message that came before is in `Session::incoming`, or
    /// when the connection is gone. For the stop: what came in can then all be answered.
    pub fn unsubscribe(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(Request::Unsubscribe(tx));
        rx
    }

    /// Delivers everything owed (what was published before this call included), then
    /// disconnects cleanly; the session task ends after that.
    pub fn stop(&self) {
        let _ = self.tx.send(Request::Stop);
    }

    /// A publisher whose requests land in a plain channel, for in-process tests of the bridge:
    /// the receiver yields each published [`Message`] (other requests are left out).
    pub fn channel() -> (Publisher, PublishedMessages) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Publisher { tx }, PublishedMessages { rx })
    }
}

/// See [`Publisher::channel`].
pub struct PublishedMessages {
    rx: mpsc::UnboundedReceiver<Request>,
}

impl PublishedMessages {
    /// The messages published so far (without waiting).
    pub fn take(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        while let Ok(request) = self.rx.try_recv() {
            if let Request::Publish(m) = request {
                out.push(m);
            }
        }
        out
    }
}
