//! Client ↔ bridge signaling: JSON text frames on a WebSocket, tagged by `"type"`.
//! The bridge is always the SDP offerer; the client only answers. `docs/signaling.md` has the sequence.

use crate::api::ErrorCode;
use crate::ids::{ParticipantId, RoomId};
use crate::meeting::{ChatMessage, ChatMessageId, Reaction};
use serde::{Deserialize, Serialize};

/// Largest client → bridge frame the bridge reads; an answer SDP for a full room fits easily.
pub const CLIENT_MESSAGE_MAX_BYTES: usize = 256 * 1024;

/// What a participant publishes. Each source is one track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaSource {
    Microphone,
    Camera,
    Screen,
}

impl MediaSource {
    pub const ALL: [MediaSource; 3] = [MediaSource::Microphone, MediaSource::Camera, MediaSource::Screen];

    pub fn is_audio(self) -> bool {
        matches!(self, MediaSource::Microphone)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MediaSource::Microphone => "microphone",
            MediaSource::Camera => "camera",
            MediaSource::Screen => "screen",
        }
    }
}

/// What a participant exchanges with the bridge, chosen at `hello`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaMode {
    /// Publishes and receives (a meeting's participant).
    #[default]
    Both,
    /// Publishes, receives nothing: the bridge offers it no legs (a speaker, a recorder's feed).
    SendOnly,
    /// Receives, publishes nothing: the bridge offers it no receiving slots (a webinar's viewer).
    ReceiveOnly,
}

impl MediaMode {
    pub fn is_both(&self) -> bool {
        *self == MediaMode::Both
    }

    pub fn publishes(self) -> bool {
        self != MediaMode::ReceiveOnly
    }

    pub fn receives(self) -> bool {
        self != MediaMode::SendOnly
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum ClientMessage {
    /// First message on a new socket: the ticket from the join response, and what the
    /// participant sends and receives (absent: both).
    Hello {
        ticket: String,
        #[serde(default, skip_serializing_if = "MediaMode::is_both")]
        media: MediaMode,
    },
    /// Answer to the bridge's latest `offer`.
    Answer { sdp: String },
    /// Mute state as the participant's own UI shows it; relayed to everyone.
    Mute { microphone: bool, camera: bool },
    /// Ask for a receiving slot for one more source (screen share); the bridge re-offers.
    Publish { source: MediaSource },
    /// The source stopped; the bridge stops forwarding it and re-offers.
    Unpublish { source: MediaSource },
    /// Clean exit; the bridge tells the room at once instead of waiting for a timeout.
    Leave,
    /// A chat message to the room, or privately to one participant (`to`). The bridge stamps it
    /// with an id, the sender's name and the time, and echoes it to the sender as `chat`.
    Chat {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<ParticipantId>,
    },
    /// A moderator deletes a room chat message for everyone, from history too.
    DeleteChat { id: ChatMessageId },
    /// Raise the participant's own hand; it joins the end of the room's queue of raised hands.
    RaiseHand,
    /// Lower the participant's own hand, or (a moderator) `participant`'s.
    LowerHand {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        participant: Option<ParticipantId>,
    },
    /// A short-lived reaction shown to everyone; not kept.
    React { reaction: Reaction },
    /// What the receiver's layout shows (simulcast, `docs/simulcast.md`): the largest height
    /// each video tile needs, 0 for a source not shown (paused). Replaces the previous one.
    ReceiverConstraints(ReceiverConstraints),
    /// A moderator requires (or stops requiring) end-to-end encryption of the room's media. The
    /// bridge keeps only this flag, never a key (`docs/e2ee.md`).
    SetE2ee { required: bool },
    /// A moderator starts recording the room on the bridge (answered by `recording` to everyone,
    /// or an `error`).
    StartRecording,
    /// A moderator stops the room's recording.
    StopRecording,
}

/// A receiver's constraints on the video it is sent. A client that never sends them receives
/// every source's highest layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConstraints {
    /// Largest height, in pixels, for video sources neither listed in `sources` nor on stage.
    pub default_max_height: u16,
    /// Largest height for sources on stage that `sources` does not list.
    #[serde(default = "ReceiverConstraints::unbounded")]
    pub on_stage_max_height: u16,
    /// Per-source heights (at most 256 entries with `on_stage`).
    #[serde(default)]
    pub sources: Vec<SourceConstraint>,
    /// Sources the layout gives the most room (pinned, the speaker): what a bandwidth allocator
    /// serves first.
    #[serde(default)]
    pub on_stage: Vec<SourceRef>,
    /// Last-N: video sources sent at most, on-stage ones first, then in speaker order; the rest
    /// are paused. Absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_n: Option<u32>,
}

impl ReceiverConstraints {
    fn unbounded() -> u16 {
        u16::MAX
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConstraint {
    pub participant_id: ParticipantId,
    pub source: MediaSource,
    /// Largest height the tile shows; 0: not shown, nothing is sent.
    pub max_height: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRef {
    pub participant_id: ParticipantId,
    pub source: MediaSource,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    pub id: ParticipantId,
    pub display_name: String,
    pub microphone_muted: bool,
    pub camera_muted: bool,
    /// Sources this participant currently publishes.
    pub sources: Vec<MediaSource>,
    /// When the participant raised its hand (its bridge's clock, milliseconds since the Unix
    /// epoch); absent while the hand is down. Raised hands are shown in this order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hand_raised_at_ms: Option<u64>,
}

/// Which remote participant and source an m-line of the offer carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInfo {
    pub mid: String,
    pub participant_id: ParticipantId,
    pub source: MediaSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ByeReason {
    /// The participant sent `leave`.
    Left,
    /// The same participant connected again on another socket.
    Replaced,
    /// The bridge is shutting down or draining; join again to be placed elsewhere.
    BridgeShutdown,
    /// A protocol error ended the session; an `error` message preceded this.
    ProtocolError,
    /// A moderator removed the participant from the meeting; the bridge refuses its ticket from now on.
    Kicked,
    /// A moderator ended the meeting for everyone.
    MeetingEnded,
    /// Control placed the participant on another bridge (this one is draining, or was declared
    /// down): ask control where to go with `POST /api/v1/rooms/{room}/participants/{id}/reconnect`.
    Moved,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerMessage {
    Welcome {
        protocol_version: u32,
        room: RoomId,
        participant_id: ParticipantId,
        /// Everyone else already in the room.
        participants: Vec<ParticipantInfo>,
    },
    /// A new session description; the client answers with `answer`. `tracks` maps every sending
    /// m-line of this offer to its participant and source.
    Offer {
        sdp: String,
        tracks: Vec<TrackInfo>,
    },
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    ParticipantUpdated {
        participant: ParticipantInfo,
    },
    ParticipantLeft {
        participant_id: ParticipantId,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    Bye {
        reason: ByeReason,
    },
    /// A moderator asks everyone else to mute their microphone. Only a request: the client mutes
    /// itself (and reports it with `mute`); the bridge cannot switch off a remote microphone.
    MuteRequested {
        by: ParticipantId,
    },
    /// The deployment's operator (admin API) asks this participant to mute its microphone; only a
    /// request, as `mute_requested` is.
    MuteRequestedByOperator,
    /// A chat message: to the room, or a private one the receiver sent or is the target of.
    Chat {
        message: ChatMessage,
    },
    /// Right after `welcome`: the room's recent chat messages, oldest first (at most
    /// [`crate::meeting::CHAT_HISTORY_MAX`]). Private messages are not kept.
    ChatHistory {
        messages: Vec<ChatMessage>,
    },
    /// A moderator deleted a chat message: remove it from view.
    ChatDeleted {
        id: ChatMessageId,
        by: ParticipantId,
    },
    /// A participant reacted; show it briefly.
    Reaction {
        participant_id: ParticipantId,
        reaction: Reaction,
    },
    /// Who is speaking now, from the audio levels the publishers send (sent when it changes, and
    /// to a newcomer once someone has spoken). The last speaker stays while nobody speaks.
    DominantSpeaker {
        participant_id: ParticipantId,
    },
    /// Whether the room requires end-to-end encryption, who said so last and when (that bridge's
    /// clock, milliseconds since the Unix epoch). Sent right after `welcome` once a moderator has
    /// set it, and to everyone whenever it changes (`docs/e2ee.md`).
    E2ee {
        required: bool,
        by: ParticipantId,
        changed_at_ms: u64,
    },
    /// Whether the room is being recorded: sent to everyone when it changes, and to a newcomer
    /// after `welcome` while it is. Every client shows it.
    Recording {
        active: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_are_tagged() {
        let m: ClientMessage = serde_json::from_str(r#"{"type":"hello","ticket":"t"}"#).unwrap();
        assert_eq!(
            m,
            ClientMessage::Hello {
                ticket: "t".into(),
                media: MediaMode::Both
            }
        );
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"hello","ticket":"t","media":"receive_only"}"#).unwrap();
        assert_eq!(
            m,
            ClientMessage::Hello {
                ticket: "t".into(),
                media: MediaMode::ReceiveOnly
            }
        );
        assert!(
            serde_json::from_str::<ClientMessage>(r#"{"type":"hello","ticket":"t","media":"all"}"#).is_err()
        );
        let m: ClientMessage = serde_json::from_str(r#"{"type":"publish","source":"screen"}"#).unwrap();
        assert_eq!(
            m,
            ClientMessage::Publish {
                source: MediaSource::Screen
            }
        );
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"hello"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"shutdown"}"#).is_err());
    }

    #[test]
    fn receiver_constraints_read_as_documented() {
        let text = r#"{"type":"receiver_constraints","default_max_height":180,
            "sources":[{"participant_id":"a","source":"camera","max_height":0}],
            "on_stage":[{"participant_id":"b","source":"screen"}]}"#;
        let ClientMessage::ReceiverConstraints(c) = serde_json::from_str(text).unwrap() else {
            panic!("not constraints");
        };
        assert_eq!(c.default_max_height, 180);
        assert_eq!(c.on_stage_max_height, u16::MAX, "absent: unbounded");
        assert_eq!(c.sources[0].max_height, 0);
        assert_eq!(c.on_stage[0].source, MediaSource::Screen);
        assert_eq!(c.last_n, None, "absent: unlimited");
        let limited = r#"{"type":"receiver_constraints","default_max_height":180,"last_n":2}"#;
        let ClientMessage::ReceiverConstraints(limited) = serde_json::from_str(limited).unwrap() else {
            panic!("not constraints");
        };
        assert_eq!(limited.last_n, Some(2));
        let back = serde_json::to_string(&ClientMessage::ReceiverConstraints(c.clone())).unwrap();
        assert_eq!(
            serde_json::from_str::<ClientMessage>(&back).unwrap(),
            ClientMessage::ReceiverConstraints(c)
        );
        for bad in [
            r#"{"type":"receiver_constraints"}"#,
            r#"{"type":"receiver_constraints","default_max_height":-1}"#,
            r#"{"type":"receiver_constraints","default_max_height":70000}"#,
            r#"{"type":"receiver_constraints","default_max_height":1,"extra":1}"#,
        ] {
            assert!(serde_json::from_str::<ClientMessage>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn server_messages_round_trip() {
        let msg = ServerMessage::ParticipantLeft {
            participant_id: ParticipantId::new("p-1").unwrap(),
        };
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(json, r#"{"type":"participant_left","participant_id":"p-1"}"#);
        assert_eq!(serde_json::from_str::<ServerMessage>(&json).unwrap(), msg);
    }

    #[test]
    fn e2ee_messages_have_their_documented_shape() {
        let m: ClientMessage = serde_json::from_str(r#"{"type":"set_e2ee","required":true}"#).unwrap();
        assert_eq!(m, ClientMessage::SetE2ee { required: true });
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"set_e2ee"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"set_e2ee","required":"yes"}"#).is_err());
        let msg = ServerMessage::E2ee {
            required: true,
            by: ParticipantId::new("p-mod").unwrap(),
            changed_at_ms: 1_700_000_000_000,
        };
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(
            json,
            r#"{"type":"e2ee","required":true,"by":"p-mod","changed_at_ms":1700000000000}"#
        );
        assert_eq!(serde_json::from_str::<ServerMessage>(&json).unwrap(), msg);
    }

    #[test]
    fn moderation_messages_have_their_documented_shape() {
        let msg = ServerMessage::MuteRequested {
            by: ParticipantId::new("p-mod").unwrap(),
        };
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(json, r#"{"type":"mute_requested","by":"p-mod"}"#);
        assert_eq!(serde_json::from_str::<ServerMessage>(&json).unwrap(), msg);
        for (reason, text) in [
            (ByeReason::Kicked, "kicked"),
            (ByeReason::MeetingEnded, "meeting_ended"),
        ] {
            let json = serde_json::to_string(&ServerMessage::Bye { reason }).unwrap();
            assert_eq!(json, format!(r#"{{"type":"bye","reason":"{text}"}}"#));
            assert_eq!(
                serde_json::from_str::<ServerMessage>(&json).unwrap(),
                ServerMessage::Bye { reason }
            );
        }
    }
}
