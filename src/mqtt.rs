//! The broker session: connect, back off, subscribe on every connection, and deliver what
//! the [`Outbox`] says the broker is owed; report the connection state and incoming messages
//! to the bridge.
//!
//! One task owns the outbox and the connection ([`wire`], our own on rumqttc's packet codec),
//! so what the bridge publishes in one turn is written to the broker in one write, and a
//! dropped connection is seen in order with everything else. rumqttc's client and event loop
//! serve the `check` command, the demo and Connect's live channel.

mod births;
mod broker;
mod publisher;
mod session;
pub(crate) mod wire;

use rumqttc::MqttOptions;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub(crate) use broker::SYSTEM_CA_BUNDLE;
pub use broker::{drain, explain_broker_error, low_latency, options};
pub use publisher::{JournalSync, PublishedMessages, Publisher};
pub use session::Link;

use crate::journal::Journal;
use crate::message::Incoming;
use crate::outbox::Outbox;
use session::{Parts, SessionState};

pub struct Session {
    pub publisher: Publisher,
    pub link: watch::Receiver<Link>,
    pub incoming: mpsc::UnboundedReceiver<Incoming>,
    /// Ends after [`Publisher::stop`] has delivered what was owed (or at once when the broker
    /// is away: the last will says `offline`).
    pub task: JoinHandle<()>,
}

/// Starts the session. `subscriptions` are (re)subscribed on every ConnAck; `status_topic`
/// (the bridge's `online`/`offline`) is published `online` first on every connection; a
/// message `online` on `ha_status` (Home Assistant's birth topic) republishes everything.
/// `journal` keeps the events owed across a restart: what it kept from the last run is
/// delivered first.
pub fn start(
    opts: MqttOptions,
    subscriptions: Vec<String>,
    status_topic: &str,
    ha_status: Option<String>,
    mut journal: Option<Journal>,
) -> Session {
    let (link_tx, link) = watch::channel(Link::default());
    let (in_tx, incoming) = mpsc::unbounded_channel();
    let (req_tx, requests) = mpsc::unbounded_channel();
    let mut outbox = Outbox::new(status_topic);
    for kept in journal.iter_mut().flat_map(Journal::take_kept) {
        outbox.restore(kept.id, kept.topic, kept.payload);
    }
    let parts = Parts {
        opts,
        journal,
        link: link_tx,
        incoming: in_tx,
        ha_status,
        requests: req_tx.downgrade(),
        status_topic: status_topic.to_string(),
        subscriptions,
    };
    let task = tokio::spawn(SessionState::new(outbox, parts).run(requests));
    Session {
        publisher: Publisher::new(req_tx),
        link,
        incoming,
        task,
    }
}
