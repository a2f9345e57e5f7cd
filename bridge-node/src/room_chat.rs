//! A room's chat on one bridge: the history late joiners get, message ids, deletes, and who a
//! message goes to. Sans-IO: the shard passes the time and carries out the [`Delivery`].
//!
//! Every bridge of a cascaded room keeps its own copy of the room's history: the bridge that
//! accepts a message from its participant records it and sends it over every link of the room;
//! the others record it on arrival, and a bridge that newly opens the room on a link receives
//! the other side's history message by message. Recording is idempotent (by id) and keeps the
//! history in send order, so copies that learn the same messages in a different order agree.
//! Private messages are never kept: they go to the sender and the target only.

use bridgemesh_proto::ParticipantId;
use bridgemesh_proto::api::ErrorCode;
use bridgemesh_proto::meeting::{CHAT_HISTORY_MAX, CHAT_TEXT_MAX_BYTES, ChatMessage, ChatMessageId};
use std::collections::VecDeque;

/// Why a chat request was refused; the sender gets the message as an `error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChatError {
    #[error("a chat message needs some text")]
    Empty,
    #[error("a chat message is at most {CHAT_TEXT_MAX_BYTES} bytes; this one is {bytes}")]
    TooLong { bytes: usize },
    #[error("no participant {0} is in this room")]
    UnknownRecipient(ParticipantId),
    #[error("a private message needs another participant as its target")]
    ToSelf,
    #[error("only a moderator can delete chat messages")]
    NotModerator,
    #[error("no chat message {0} is in this room's history")]
    UnknownMessage(ChatMessageId),
}

impl ChatError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ChatError::Empty | ChatError::TooLong { .. } | ChatError::ToSelf => ErrorCode::InvalidField,
            ChatError::UnknownRecipient(_) | ChatError::UnknownMessage(_) => ErrorCode::NotFound,
            ChatError::NotModerator => ErrorCode::Forbidden,
        }
    }
}

/// Who asks: a participant this bridge hosts.
#[derive(Debug, Clone, Copy)]
pub struct Author<'a> {
    pub id: &'a ParticipantId,
    pub display_name: &'a str,
    pub moderator: bool,
}

/// One room's chat state.
#[derive(Debug)]
pub struct RoomChat {
    history: VecDeque<ChatMessage>,
    capacity: usize,
}

impl Default for RoomChat {
    fn default() -> Self {
        Self::new(CHAT_HISTORY_MAX)
    }
}

impl RoomChat {
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "a chat history holds at least one message");
        Self {
            history: VecDeque::new(),
            capacity,
        }
    }

    /// Checks a message from a local participant and makes it a [`ChatMessage`]; a room message
    /// is recorded. `recipient_present` says whether `to` (if any) is in the room, local or remote.
    #[allow(clippy::too_many_arguments)]
    pub fn accept(
        &mut self,
        author: Author<'_>,
        text: String,
        to: Option<ParticipantId>,
        recipient_present: bool,
        sent_at_ms: u64,
        counter: u64,
    ) -> Result<ChatMessage, ChatError> {
        if text.len() > CHAT_TEXT_MAX_BYTES {
            return Err(ChatError::TooLong { bytes: text.len() });
        }
        if text.trim().is_empty() {
            return Err(ChatError::Empty);
        }
        if let Some(target) = &to {
            if target == author.id {
                return Err(ChatError::ToSelf);
            }
            if !recipient_present {
                return Err(ChatError::UnknownRecipient(target.clone()));
            }
        }
        let message = ChatMessage {
            id: ChatMessageId::compose(author.id, sent_at_ms, counter),
            from: author.id.clone(),
            from_name: author.display_name.to_owned(),
            sent_at_ms,
            to,
            text,
        };
        if !message.is_private() {
            self.record(message.clone());
        }
        Ok(message)
    }

    /// Keeps a room message (one accepted here, or by another bridge of the room). Returns
    /// `false` for a private message, one already kept, or one older than everything a full
    /// history keeps: nobody needs to be told of it again.
    pub fn record(&mut self, message: ChatMessage) -> bool {
        if message.is_private() || self.history.iter().any(|m| m.id == message.id) {
            return false;
        }
        let order = |m: &ChatMessage| (m.sent_at_ms, m.id.clone());
        let position = self.history.partition_point(|m| order(m) < order(&message));
        if position == 0 && self.history.len() >= self.capacity {
            return false;
        }
        self.history.insert(position, message);
        if self.history.len() > self.capacity {
            self.history.pop_front();
        }
        true
    }

    /// A moderator deletes a room message: gone from history; the caller tells everyone.
    pub fn delete(&mut self, author: Author<'_>, id: &ChatMessageId) -> Result<(), ChatError> {
        if !author.moderator {
            return Err(ChatError::NotModerator);
        }
        if self.forget(id) {
            Ok(())
        } else {
            Err(ChatError::UnknownMessage(id.clone()))
        }
    }

    /// Removes a message another bridge's moderator deleted; `false` when it was not kept here.
    pub fn forget(&mut self, id: &ChatMessageId) -> bool {
        let before = self.history.len();
        self.history.retain(|m| m.id != *id);
        self.history.len() != before
    }

    /// The kept room messages, oldest first.
    pub fn history(&self) -> impl ExactSizeIterator<Item = &ChatMessage> {
        self.history.iter()
    }
}

/// Where a chat message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin<C, L> {
    /// A participant this bridge hosts (its key).
    Local(C),
    /// Another bridge of the room, over this link.
    Link(L),
}

/// Who must receive a message: local clients and links to other bridges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery<C, L> {
    pub clients: Vec<C>,
    pub links: Vec<L>,
}

/// Routes `message`: a room message goes to every local participant (the sender too: its echo
/// carries the id and time) and, when accepted here, to every link of the room; a private one to
/// the sender if local, and to the target where it is (a local client, or the link it is behind).
/// A message from a link never goes back out on a link: every bridge of a room has a link to
/// every other.
pub fn route<'a, C: Copy + PartialEq + 'a, L: Copy + PartialEq + 'a>(
    message: &ChatMessage,
    origin: Origin<C, L>,
    locals: impl IntoIterator<Item = (C, &'a ParticipantId)>,
    remotes: impl IntoIterator<Item = (L, &'a ParticipantId)>,
    peers: impl IntoIterator<Item = L>,
) -> Delivery<C, L> {
    let mut delivery = Delivery {
        clients: Vec::new(),
        links: Vec::new(),
    };
    match &message.to {
        None => {
            delivery.clients = locals.into_iter().map(|(key, _)| key).collect();
            if matches!(origin, Origin::Local(_)) {
                delivery.links = peers.into_iter().collect();
            }
        }
        Some(target) => {
            if let Origin::Local(sender) = origin {
                delivery.clients.push(sender);
            }
            if let Some((key, _)) = locals.into_iter().find(|(_, id)| *id == target) {
                if !delivery.clients.contains(&key) {
                    delivery.clients.push(key);
                }
            } else if matches!(origin, Origin::Local(_))
                && let Some((link, _)) = remotes.into_iter().find(|(_, id)| *id == target)
            {
                delivery.links.push(link);
            }
        }
    }
    delivery
}

#[cfg(test)]
mod tests;
