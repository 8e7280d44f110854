//! The rumqttc session: connect, back off, resubscribe on every ConnAck, and deliver what the
//! [`Outbox`] says the broker is owed; report the connection state and incoming messages to
//! the bridge.
//!
//! Two tasks. One only polls rumqttc's event loop (never cancelled, never awaiting a client
//! call) and forwards what happened. The other owns the outbox and is the only one handing
//! publishes to rumqttc: it learns of a dropped connection in order with everything else, and
//! after each ConnAck it subscribes before handing anything, so the `Outgoing::Subscribe`
//! event marks where the new connection's publishes start (anything rumqttc writes before it
//! was handed over before the drop and is owed again already).

mod births;
mod broker;
mod poller;
mod publisher;
mod session;

use rumqttc::{AsyncClient, MqttOptions};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::task::AbortOnDropHandle;

pub(crate) use broker::SYSTEM_CA_BUNDLE;
pub use broker::{drain, explain_broker_error, low_latency, options};
pub use poller::Link;
pub use publisher::{JournalSync, PublishedMessages, Publisher};

use crate::journal::Journal;
use crate::message::Incoming;
use crate::outbox::{self, Outbox};
use poller::Poller;
use session::SessionState;

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
    // The outbox hands over at most WINDOW publishes, plus one subscribe: the channel never
    // fills.
    let (client, eventloop) = AsyncClient::new(opts, outbox::WINDOW * 2 + 8);
    let (link_tx, link) = watch::channel(Link::default());
    let (in_tx, incoming) = mpsc::unbounded_channel();
    let (req_tx, requests) = mpsc::unbounded_channel();
    let (polled_tx, polled) = mpsc::unbounded_channel();
    let poller = Poller::new(polled_tx, in_tx, link_tx.clone(), ha_status, req_tx.clone());
    let poller = AbortOnDropHandle::new(tokio::spawn(poller.run(eventloop)));
    let mut outbox = Outbox::new(status_topic);
    for kept in journal.iter_mut().flat_map(Journal::take_kept) {
        outbox.restore(kept.id, kept.topic, kept.payload);
    }
    let state = SessionState::new(
        client,
        outbox,
        journal,
        link_tx,
        status_topic,
        subscriptions,
    );
    let task = tokio::spawn(state.run(polled, requests, poller));
    Session {
        publisher: Publisher::new(req_tx),
        link,
        incoming,
        task,
    }
}
