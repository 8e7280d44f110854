//! What a decision hands back: the messages to publish and the reads to make, in the order
//! they were decided, and the printers to render again. The core collects them; the shell
//! takes them after every input.

use crate::bridge::reads::Read;
use crate::message::Message;

#[derive(Debug, Default)]
pub struct Effects {
    pub messages: Vec<Message>,
    pub reads: Vec<Read>,
    /// Reads asked for before that no longer serve: the shell drops those still waiting for
    /// their turn (one already running comes back as usual).
    pub withdrawn: Vec<Read>,
    /// Printers to render again ([`crate::bridge::core::Core::introduce`]), one at a time with
    /// their messages sent between two: a read that serves many printers at once (a shared
    /// `supported-commands` list, the printer types) changes a farm's discoveries by the
    /// thousand, 20 MB rendered in one go.
    pub renders: Vec<String>,
    /// Ended jobs' filament for Spoolman (`spoolman.url`).
    pub spool_uses: Vec<crate::spoolman::Use>,
}

/// A messages vector larger than this (a start's burst) is not kept for the next batch.
const KEPT_MESSAGES: usize = 4096;

impl Effects {
    /// Takes back the vector the messages were taken in, emptied, to collect the next ones
    /// in: a farm's live channel decides hundreds of messages every 50 ms, and growing a new
    /// vector for each batch (its reallocations, and the allocator tidying up its free lists
    /// for the larger ones) was 6 % of the gateway's CPU.
    pub fn recycle(&mut self, mut spare: Vec<Message>) {
        spare.clear();
        if self.messages.is_empty() && spare.capacity() <= KEPT_MESSAGES {
            self.messages = spare;
        }
    }

    pub fn publish(&mut self, message: Message) {
        self.messages.push(message);
    }

    pub fn publish_all(&mut self, messages: impl IntoIterator<Item = Message>) {
        self.messages.extend(messages);
    }

    /// Asks for `read` (a read already running is `None`: nothing to ask).
    pub fn read(&mut self, read: impl Into<Option<Read>>) {
        self.reads.extend(read.into());
    }
}
