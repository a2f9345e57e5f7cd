//! What a meeting shares besides media: chat messages, reactions and raised hands (the latter as
//! [`crate::signaling::ParticipantInfo::hand_raised_at_ms`]). The messages that carry them are in
//! [`crate::signaling`] (client ↔ bridge) and [`crate::cascade`] (bridge ↔ bridge); `docs/meeting.md`
//! describes them.

use crate::ids::ParticipantId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest chat text the bridge accepts, in bytes of UTF-8.
pub const CHAT_TEXT_MAX_BYTES: usize = 2000;
/// Room messages a bridge keeps for late joiners; older ones are forgotten.
pub const CHAT_HISTORY_MAX: usize = 200;
/// Longest chat message id a client may name (ids are made by bridges and are much shorter).
pub const CHAT_MESSAGE_ID_MAX_BYTES: usize = 160;

/// A chat message's id, made by the bridge that accepted it and unique in its room:
/// `<sender>.<sent_at_ms>.<counter>`. Clients treat it as opaque.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChatMessageId(String);

/// Why a string is not a chat message id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChatMessageIdError {
    #[error("a chat message id is empty")]
    Empty,
    #[error("a chat message id is longer than {CHAT_MESSAGE_ID_MAX_BYTES} bytes")]
    TooLong,
}

impl ChatMessageId {
    pub fn new(value: impl Into<String>) -> Result<Self, ChatMessageIdError> {
        let value = value.into();
        if value.is_empty() {
            return Err(ChatMessageIdError::Empty);
        }
        if value.len() > CHAT_MESSAGE_ID_MAX_BYTES {
            return Err(ChatMessageIdError::TooLong);
        }
        Ok(Self(value))
    }

    /// The id of the `counter`th message a bridge accepted, sent by `sender` at `sent_at_ms`.
    pub fn compose(sender: &ParticipantId, sent_at_ms: u64, counter: u64) -> Self {
        Self(format!("{}.{sent_at_ms}.{counter}", sender.as_str()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ChatMessageId {
    type Error = ChatMessageIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<ChatMessageId> for String {
    fn from(id: ChatMessageId) -> String {
        id.0
    }
}

impl fmt::Display for ChatMessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A chat message as the bridge accepted it: who sent it, when (the accepting bridge's clock,
/// milliseconds since the Unix epoch) and to whom (`to`: a private message; absent: the room).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub id: ChatMessageId,
    pub from: ParticipantId,
    pub from_name: String,
    pub sent_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<ParticipantId>,
    pub text: String,
}

impl ChatMessage {
    pub fn is_private(&self) -> bool {
        self.to.is_some()
    }
}

/// The reactions a participant can send: a fixed set, so a reaction is a few bytes and never
/// free text. On the wire each is its emoji.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Reaction {
    #[serde(rename = "👍")]
    ThumbsUp,
    #[serde(rename = "👏")]
    Clap,
    #[serde(rename = "😂")]
    Laugh,
    #[serde(rename = "😮")]
    Surprised,
    #[serde(rename = "❤️")]
    Heart,
    #[serde(rename = "🎉")]
    Party,
}

impl Reaction {
    pub const ALL: [Reaction; 6] = [
        Reaction::ThumbsUp,
        Reaction::Clap,
        Reaction::Laugh,
        Reaction::Surprised,
        Reaction::Heart,
        Reaction::Party,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reaction::ThumbsUp => "👍",
            Reaction::Clap => "👏",
            Reaction::Laugh => "😂",
            Reaction::Surprised => "😮",
            Reaction::Heart => "❤️",
            Reaction::Party => "🎉",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reactions_are_their_emoji_on_the_wire_and_others_are_refused() {
        for reaction in Reaction::ALL {
            let json = serde_json::to_string(&reaction).unwrap();
            assert_eq!(json, format!("\"{}\"", reaction.as_str()));
            assert_eq!(serde_json::from_str::<Reaction>(&json).unwrap(), reaction);
        }
        assert!(serde_json::from_str::<Reaction>("\"💩\"").is_err());
        assert!(serde_json::from_str::<Reaction>("\"thumbs_up\"").is_err());
    }

    #[test]
    fn chat_message_ids_are_bounded() {
        assert!(ChatMessageId::new("").is_err());
        assert!(ChatMessageId::new("x".repeat(CHAT_MESSAGE_ID_MAX_BYTES + 1)).is_err());
        let id = ChatMessageId::compose(&ParticipantId::new("p-1").unwrap(), 1700, 3);
        assert_eq!(id.as_str(), "p-1.1700.3");
        assert!(serde_json::from_str::<ChatMessageId>("\"\"").is_err());
    }
}
