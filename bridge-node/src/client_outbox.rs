//! What the bridge has yet to send one client on its signaling socket: a bounded queue that
//! coalesces room state, so a slow reader gets the latest state instead of an overflow.
//!
//! A shard produces a client's messages faster than a slow (or stalled) socket takes them. The
//! room-state messages need not all arrive, only the latest of each: a pending
//! `participant_updated` about someone is replaced by a newer one; a `participant_joined` still
//! pending when that participant leaves is withdrawn along with the `participant_left`; a pending
//! update about a participant who left is dropped. So the room state a client has yet to learn
//! takes at most a few entries per participant, whatever the others send. When the queue is still
//! full, the client's own pending error notices give way first; only a client that reads nothing
//! while the room keeps changing reaches [`OutboxFull`], and the driver disconnects THAT client.
//!
//! [`Outbox`] is the sans-IO queue; [`channel`] shares one between the shard thread
//! ([`OutboxSender`]) and the client's signaling task ([`OutboxReceiver`]).

use crate::driver::ClientCommand;
use bridgemesh_proto::ParticipantId;
use bridgemesh_proto::signaling::ServerMessage;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The queue is full of messages that cannot be coalesced; the client is not reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client's signaling queue is full")]
pub struct OutboxFull;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OutboxStats {
    /// Messages replaced by a newer state or withdrawn before they were sent.
    pub coalesced: u64,
    /// The client's own error notices (and reactions still pending) dropped to make room.
    pub errors_dropped: u64,
}

/// One client's pending messages, bounded by `capacity`.
#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<ServerMessage>,
    capacity: usize,
    closed: bool,
    stats: OutboxStats,
}

/// The participant a room-state message is about.
fn about(message: &ServerMessage) -> Option<&ParticipantId> {
    match message {
        ServerMessage::ParticipantJoined { participant }
        | ServerMessage::ParticipantUpdated { participant } => Some(&participant.id),
        ServerMessage::ParticipantLeft { participant_id } => Some(participant_id),
        _ => None,
    }
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "an outbox holds at least one message");
        Self {
            queue: VecDeque::new(),
            capacity,
            closed: false,
            stats: OutboxStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn stats(&self) -> OutboxStats {
        self.stats
    }

    /// The index of the latest pending message about `id`.
    fn latest_about(&self, id: &ParticipantId) -> Option<usize> {
        self.queue.iter().rposition(|m| about(m) == Some(id))
    }

    /// Queues `message`, coalescing it with pending room state where it can.
    pub fn push(&mut self, message: ServerMessage) -> Result<(), OutboxFull> {
        if self.closed {
            return Ok(());
        }
        match &message {
            ServerMessage::ParticipantUpdated { participant } => {
                if let Some(index) = self.latest_about(&participant.id) {
                    match &mut self.queue[index] {
                        // A newer state of the same participant replaces the pending one.
                        ServerMessage::ParticipantUpdated { participant: pending }
                        | ServerMessage::ParticipantJoined { participant: pending } => {
                            *pending = participant.clone();
                            self.stats.coalesced += 1;
                            return Ok(());
                        }
                        _ => {}
                    }
                }
            }
            ServerMessage::ParticipantLeft { participant_id } => {
                // Updates pending since the participant's last join are moot.
                let joined_at = self.queue.iter().rposition(
                    |m| matches!(m, ServerMessage::ParticipantJoined { participant } if participant.id == *participant_id),
                );
                let from = joined_at.unwrap_or(0);
                let before = self.queue.len();
                let mut index = 0;
                self.queue.retain(|m| {
                    let keep = index < from
                        || !matches!(m, ServerMessage::ParticipantUpdated { participant } if participant.id == *participant_id);
                    index += 1;
                    keep
                });
                self.stats.coalesced += (before - self.queue.len()) as u64;
                if let Some(joined_at) = joined_at {
                    // The client never heard of this stay: withdraw the join, skip the leave.
                    self.queue.remove(joined_at);
                    self.stats.coalesced += 2;
                    return Ok(());
                }
            }
            ServerMessage::DominantSpeaker { .. } => {
                // Only the latest speaker matters.
                if let Some(pending) = self
                    .queue
                    .iter_mut()
                    .find(|m| matches!(m, ServerMessage::DominantSpeaker { .. }))
                {
                    *pending = message;
                    self.stats.coalesced += 1;
                    return Ok(());
                }
            }
            ServerMessage::MuteRequested { by } => {
                let pending = self
                    .queue
                    .iter()
                    .any(|m| matches!(m, ServerMessage::MuteRequested { by: other } if other == by));
                if pending {
                    self.stats.coalesced += 1;
                    return Ok(());
                }
            }
            _ => {}
        }
        if self.queue.len() >= self.capacity {
            // Reactions are short-lived: one still pending when the queue is full is stale anyway.
            match self
                .queue
                .iter()
                .position(|m| matches!(m, ServerMessage::Error { .. } | ServerMessage::Reaction { .. }))
            {
                Some(index) => {
                    self.queue.remove(index);
                    self.stats.errors_dropped += 1;
                }
                None => return Err(OutboxFull),
            }
        }
        self.queue.push_back(message);
        Ok(())
    }

    /// No more messages are queued; those pending are still delivered, then `Close`.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// The next command for the socket task, `None` when nothing is pending yet.
    pub fn pop(&mut self) -> Option<ClientCommand> {
        match self.queue.pop_front() {
            Some(message) => Some(ClientCommand::Send(message)),
            None if self.closed => Some(ClientCommand::Close),
            None => None,
        }
    }
}

struct Shared {
    outbox: Mutex<Outbox>,
    ready: Notify,
}

/// The shard's end. Dropping it closes the outbox.
pub struct OutboxSender {
    shared: Arc<Shared>,
}

/// The signaling task's end.
pub struct OutboxReceiver {
    shared: Arc<Shared>,
}

pub fn channel(capacity: usize) -> (OutboxSender, OutboxReceiver) {
    let shared = Arc::new(Shared {
        outbox: Mutex::new(Outbox::new(capacity)),
        ready: Notify::new(),
    });
    (
        OutboxSender {
            shared: shared.clone(),
        },
        OutboxReceiver { shared },
    )
}

impl OutboxSender {
    /// Queues `command` without waiting (the shard thread never blocks on a client).
    pub fn try_send(&self, command: ClientCommand) -> Result<(), OutboxFull> {
        let result = {
            let mut outbox = self.shared.outbox.lock().expect("outbox lock");
            match command {
                ClientCommand::Send(message) => outbox.push(message),
                ClientCommand::Close => {
                    outbox.close();
                    Ok(())
                }
            }
        };
        self.shared.ready.notify_one();
        result
    }

    pub fn stats(&self) -> OutboxStats {
        self.shared.outbox.lock().expect("outbox lock").stats()
    }
}

impl Drop for OutboxSender {
    fn drop(&mut self) {
        self.shared.outbox.lock().expect("outbox lock").close();
        self.shared.ready.notify_one();
    }
}

impl OutboxReceiver {
    /// The next command: pending messages in order, then `Close` once the shard closed it.
    pub async fn recv(&mut self) -> Option<ClientCommand> {
        loop {
            // Registered before looking, so a push between the look and the wait is not missed.
            let ready = self.shared.ready.notified();
            if let Some(command) = self.shared.outbox.lock().expect("outbox lock").pop() {
                return Some(command);
            }
            ready.await;
        }
    }

    pub fn try_recv(&mut self) -> Option<ClientCommand> {
        self.shared.outbox.lock().expect("outbox lock").pop()
    }
}

#[cfg(test)]
mod tests;
