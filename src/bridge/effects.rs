//! What a decision hands back: the messages to publish and the reads to make, in the order
//! they were decided. The core collects them; the shell takes them after every input.

use crate::bridge::reads::Read;
use crate::message::Message;

#[derive(Debug, Default)]
pub struct Effects {
    pub messages: Vec<Message>,
    pub reads: Vec<Read>,
}

impl Effects {
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
