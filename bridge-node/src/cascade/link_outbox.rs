//! What one cascade link has yet to write on its control stream: a bounded queue that coalesces
//! state per (room, participant) and per stream, with a budget per room.
//!
//! Participant state and receiver demand need only their latest value to reach the peer: a
//! pending `participant` about someone is replaced by a newer one, a pending `demand` for a stream
//! by the newer count, and a keyframe request already pending is not queued twice. So a busy room
//! (or a guest flipping its mute) adds at most one pending message per participant. A room whose
//! pending messages still pass [`LINK_ROOM_BUDGET`] is the one hurting the link: its pending
//! messages are withdrawn and the caller closes that room on the link, instead of the whole link
//! closing for every room on it. Only a queue full across rooms (a peer that reads nothing) is
//! [`Pushed::Full`]. Sans-IO; [`channel`] shares one outbox between the shard threads and the
//! link's writer task.

use bridgemesh_proto::cascade::LinkMessage;
use bridgemesh_proto::{ParticipantId, RoomId};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Messages pending on one link, all rooms together.
pub const LINK_QUEUE_CAPACITY: usize = 4096;
/// Messages pending about one room; past it the room is closed on the link.
pub const LINK_ROOM_BUDGET: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Folded into a pending message, or dropped as a duplicate.
    Coalesced,
    /// This room passed its budget: its pending messages were withdrawn; close it on the link.
    RoomOverflow(RoomId),
    /// The whole queue is full: the peer reads nothing.
    Full,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LinkOutboxStats {
    pub coalesced: u64,
    pub rooms_overflowed: u64,
}

fn room_of(message: &LinkMessage) -> Option<&RoomId> {
    match message {
        LinkMessage::Open { room }
        | LinkMessage::Close { room }
        | LinkMessage::Participant { room, .. }
        | LinkMessage::ParticipantLeft { room, .. }
        | LinkMessage::Stream { room, .. }
        | LinkMessage::Chat { room, .. }
        | LinkMessage::ChatDeleted { room, .. }
        | LinkMessage::LowerHand { room, .. }
        | LinkMessage::Reaction { room, .. }
        | LinkMessage::E2ee { room, .. } => Some(room),
        LinkMessage::Recording { room, .. } => Some(room),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Participant(RoomId, ParticipantId),
    Demand(u32),
    Keyframe(u32),
}

fn key_of(message: &LinkMessage) -> Option<Key> {
    match message {
        LinkMessage::Participant { room, participant } => {
            Some(Key::Participant(room.clone(), participant.id.clone()))
        }
        LinkMessage::Demand { id, .. } => Some(Key::Demand(*id)),
        LinkMessage::KeyframeRequest { id } => Some(Key::Keyframe(*id)),
        _ => None,
    }
}

/// Pending messages in order. A withdrawn message leaves a hole (`None`), so the sequence numbers
/// the coalescing index keeps stay valid until the message is written.
#[derive(Debug)]
pub struct LinkOutbox {
    queue: VecDeque<Option<LinkMessage>>,
    /// Sequence number of `queue[0]`.
    head: u64,
    pending: usize,
    per_room: HashMap<RoomId, usize>,
    index: HashMap<Key, u64>,
    capacity: usize,
    room_budget: usize,
    closed: bool,
    stats: LinkOutboxStats,
}

impl LinkOutbox {
    pub fn new(capacity: usize, room_budget: usize) -> Self {
        assert!(capacity > 0 && room_budget > 0);
        Self {
            queue: VecDeque::new(),
            head: 0,
            pending: 0,
            per_room: HashMap::new(),
            index: HashMap::new(),
            capacity,
            room_budget,
            closed: false,
            stats: LinkOutboxStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.pending
    }

    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    pub fn stats(&self) -> LinkOutboxStats {
        self.stats
    }

    pub fn push(&mut self, message: LinkMessage) -> Pushed {
        if self.closed {
            return Pushed::Queued;
        }
        let key = key_of(&message);
        if let Some(key) = &key
            && let Some(&seq) = self.index.get(key)
            && let Some(Some(pending)) = self.queue.get_mut((seq - self.head) as usize)
        {
            // A keyframe request already pending says it all; newer state replaces older.
            if !matches!(key, Key::Keyframe(_)) {
                *pending = message;
            }
            self.stats.coalesced += 1;
            return Pushed::Coalesced;
        }
        if self.pending >= self.capacity {
            return Pushed::Full;
        }
        if let Some(room) = room_of(&message) {
            let count = self.per_room.entry(room.clone()).or_default();
            if *count >= self.room_budget {
                let room = room.clone();
                self.withdraw_room(&room);
                self.stats.rooms_overflowed += 1;
                return Pushed::RoomOverflow(room);
            }
            *count += 1;
        }
        let seq = self.head + self.queue.len() as u64;
        if let Some(key) = key {
            self.index.insert(key, seq);
        }
        self.queue.push_back(Some(message));
        self.pending += 1;
        Pushed::Queued
    }

    fn withdraw_room(&mut self, room: &RoomId) {
        for slot in self.queue.iter_mut() {
            if slot.as_ref().and_then(room_of) == Some(room) {
                if let Some(key) = slot.as_ref().and_then(key_of) {
                    self.index.remove(&key);
                }
                *slot = None;
                self.pending -= 1;
            }
        }
        self.per_room.remove(room);
    }

    pub fn pop(&mut self) -> Option<LinkMessage> {
        while let Some(slot) = self.queue.pop_front() {
            let seq = self.head;
            self.head += 1;
            let Some(message) = slot else {
                continue;
            };
            self.pending -= 1;
            if let Some(key) = key_of(&message)
                && self.index.get(&key) == Some(&seq)
            {
                self.index.remove(&key);
            }
            if let Some(room) = room_of(&message)
                && let Some(count) = self.per_room.get_mut(room)
            {
                *count -= 1;
                if *count == 0 {
                    self.per_room.remove(room);
                }
            }
            return Some(message);
        }
        None
    }

    pub fn close(&mut self) {
        self.closed = true;
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

struct Shared {
    outbox: Mutex<LinkOutbox>,
    ready: Notify,
}

/// The queuing end: the shard threads (through the link table) and the link task.
#[derive(Clone)]
pub struct LinkOutboxSender {
    shared: Arc<Shared>,
}

/// The writer task's end.
pub struct LinkOutboxReceiver {
    shared: Arc<Shared>,
}

pub fn channel(capacity: usize, room_budget: usize) -> (LinkOutboxSender, LinkOutboxReceiver) {
    let shared = Arc::new(Shared {
        outbox: Mutex::new(LinkOutbox::new(capacity, room_budget)),
        ready: Notify::new(),
    });
    (
        LinkOutboxSender {
            shared: shared.clone(),
        },
        LinkOutboxReceiver { shared },
    )
}

impl LinkOutboxSender {
    pub fn push(&self, message: LinkMessage) -> Pushed {
        let pushed = self.shared.outbox.lock().expect("link outbox lock").push(message);
        self.shared.ready.notify_one();
        pushed
    }

    /// The writer finishes what is pending, then ends the stream.
    pub fn close(&self) {
        self.shared.outbox.lock().expect("link outbox lock").close();
        self.shared.ready.notify_one();
    }

    pub fn stats(&self) -> LinkOutboxStats {
        self.shared.outbox.lock().expect("link outbox lock").stats()
    }
}

impl LinkOutboxReceiver {
    /// The next message; `None` once closed and drained.
    pub async fn recv(&mut self) -> Option<LinkMessage> {
        loop {
            let ready = self.shared.ready.notified();
            {
                let mut outbox = self.shared.outbox.lock().expect("link outbox lock");
                if let Some(message) = outbox.pop() {
                    return Some(message);
                }
                if outbox.is_closed() {
                    return None;
                }
            }
            ready.await;
        }
    }
}

#[cfg(test)]
mod tests;
