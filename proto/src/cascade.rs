//! Bridge ↔ bridge cascade: what crosses a link between two bridges that share rooms.
//!
//! One QUIC connection per bridge pair (ALPN `bridgemesh-cascade/1`, mutual TLS with cluster
//! certificates), shared by every room the two have in common. The bridge that dials opens one
//! bidirectional stream, the **control stream**; both sides write [`LinkMessage`]s on it, each a
//! 4-byte big-endian length and that many bytes of JSON. Media rides QUIC DATAGRAMs: a 4-byte
//! big-endian stream id ([`MEDIA_HEADER_LEN`]) and one RTP packet, unencrypted by us (QUIC
//! encrypts the link).
//!
//! Stream ids are chosen by the sending bridge and announced with [`LinkMessage::Stream`] before
//! any datagram carries them; the receiver drops datagrams of ids it was not told of.
//! Everything is described in `docs/cascade.md`.

use crate::ids::{BridgeId, ParticipantId, RoomId};
use crate::meeting::{ChatMessage, ChatMessageId, Reaction};
use crate::signaling::{MediaSource, ParticipantInfo};
use serde::{Deserialize, Serialize};

/// Version both sides state in [`LinkMessage::Hello`]; a link between versions that differ closes.
pub const CASCADE_PROTOCOL_VERSION: u32 = 1;
/// Largest control-stream message either side accepts.
pub const LINK_MESSAGE_MAX_BYTES: usize = 64 * 1024;
/// Bytes before the RTP packet in a media datagram: the stream id.
pub const MEDIA_HEADER_LEN: usize = 4;

/// A published stream's codec, as the publisher negotiated it with its own bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkCodec {
    pub mime_type: String,
    pub clock_rate: u32,
    pub channels: u16,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sdp_fmtp_line: String,
}

/// An RTP header extension of a published stream: its URI and the id its packets carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkExtension {
    pub uri: String,
    pub id: u8,
}

/// One message on a link's control stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LinkMessage {
    /// First message each way: who is speaking (it must match the certificate) and which version.
    Hello { bridge: BridgeId, version: u32 },
    /// The sender hosts participants of `room` and wants to hear about the receiver's: the
    /// receiver announces its participants and streams of the room from now on.
    Open { room: RoomId },
    /// The sender left `room`: the receiver forgets the sender's participants of it and stops
    /// sending it anything of the room.
    Close { room: RoomId },
    /// A participant of the sender's joined or changed (display name, mute state, sources).
    Participant {
        room: RoomId,
        participant: ParticipantInfo,
    },
    /// A participant of the sender's left the room.
    ParticipantLeft {
        room: RoomId,
        participant: ParticipantId,
    },
    /// A stream the sender can forward, and the id its datagrams will carry.
    Stream {
        id: u32,
        room: RoomId,
        participant: ParticipantId,
        source: MediaSource,
        codec: LinkCodec,
        extensions: Vec<LinkExtension>,
    },
    /// The stream's id is retired; datagrams carrying it are dropped from now on.
    StreamEnded { id: u32 },
    /// Receiver constraint for one stream: how many subscribers behind the sender of this
    /// message can receive it (zero: do not send it over this link), and the largest height any
    /// of them shows it at: of a simulcast source, the receiver sends the lowest layer covering
    /// it. Absent: no limit (the top layer), as before layers were asked for.
    Demand {
        id: u32,
        subscribers: u32,
        #[serde(default = "unbounded_height", skip_serializing_if = "is_unbounded_height")]
        max_height: u16,
    },
    /// A subscriber behind the sender lost the picture: ask the publisher for a keyframe.
    KeyframeRequest { id: u32 },
    /// A chat message the sender's bridge accepted (or, after `open`, one of its history): room
    /// messages go to every peer of the room, private ones only to the peer hosting the target.
    Chat { room: RoomId, message: ChatMessage },
    /// A moderator deleted a room chat message.
    ChatDeleted {
        room: RoomId,
        id: ChatMessageId,
        by: ParticipantId,
    },
    /// A moderator behind the sender lowered the hand of `participant`, who is behind the receiver.
    LowerHand {
        room: RoomId,
        participant: ParticipantId,
    },
    /// A participant of the sender's reacted.
    Reaction {
        room: RoomId,
        participant: ParticipantId,
        reaction: Reaction,
    },
    /// The room's end-to-end encryption flag as the sender holds it: after a moderator behind the
    /// sender changed it, and after `open` when it was ever set. The later `changed_at_ms` wins
    /// (ties: the greater `by`), so bridges that hear changes in any order agree.
    E2ee {
        room: RoomId,
        required: bool,
        by: ParticipantId,
        changed_at_ms: u64,
    },
    /// The sender's bridge records the room (or stopped): the receiver shows its participants the
    /// recording indicator. Sent when it changes and after `open`.
    Recording { room: RoomId, active: bool },
}

impl LinkMessage {
    /// The room the message is about, for those that name one (stream ends, demands and
    /// keyframe requests name a stream id instead).
    pub fn room(&self) -> Option<&RoomId> {
        match self {
            LinkMessage::Open { room }
            | LinkMessage::Close { room }
            | LinkMessage::Participant { room, .. }
            | LinkMessage::ParticipantLeft { room, .. }
            | LinkMessage::Stream { room, .. }
            | LinkMessage::Chat { room, .. }
            | LinkMessage::ChatDeleted { room, .. }
            | LinkMessage::LowerHand { room, .. }
            | LinkMessage::Reaction { room, .. }
            | LinkMessage::Recording { room, .. }
            | LinkMessage::E2ee { room, .. } => Some(room),
            LinkMessage::Hello { .. }
            | LinkMessage::StreamEnded { .. }
            | LinkMessage::Demand { .. }
            | LinkMessage::KeyframeRequest { .. } => None,
        }
    }
}

fn unbounded_height() -> u16 {
    u16::MAX
}

fn is_unbounded_height(height: &u16) -> bool {
    *height == u16::MAX
}

/// Prefixes `packet` with its stream id, making a media datagram.
pub fn media_datagram(stream: u32, packet: &[u8]) -> Vec<u8> {
    let mut datagram = Vec::with_capacity(MEDIA_HEADER_LEN + packet.len());
    datagram.extend_from_slice(&stream.to_be_bytes());
    datagram.extend_from_slice(packet);
    datagram
}

/// Splits a media datagram into its stream id and RTP packet; `None` when it is too short.
pub fn parse_media_datagram(datagram: &[u8]) -> Option<(u32, &[u8])> {
    if datagram.len() <= MEDIA_HEADER_LEN {
        return None;
    }
    let (header, packet) = datagram.split_at(MEDIA_HEADER_LEN);
    Some((u32::from_be_bytes(header.try_into().ok()?), packet))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_datagrams_round_trip_and_short_ones_are_refused() {
        let datagram = media_datagram(0x0102_0304, b"rtp");
        assert_eq!(&datagram[..4], &[1, 2, 3, 4]);
        assert_eq!(parse_media_datagram(&datagram), Some((0x0102_0304, &b"rtp"[..])));
        assert_eq!(parse_media_datagram(&[0, 0, 0, 1]), None);
        assert_eq!(parse_media_datagram(&[]), None);
    }

    #[test]
    fn link_messages_have_their_documented_shape() {
        let msg = LinkMessage::Demand {
            id: 7,
            subscribers: 5,
            max_height: u16::MAX,
        };
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(
            json, r#"{"type":"demand","id":7,"subscribers":5}"#,
            "no limit: as before"
        );
        assert_eq!(serde_json::from_str::<LinkMessage>(&json).unwrap(), msg);
        let thumbnails = LinkMessage::Demand {
            id: 7,
            subscribers: 2,
            max_height: 180,
        };
        let json = serde_json::to_string(&thumbnails).unwrap();
        assert_eq!(
            json,
            r#"{"type":"demand","id":7,"subscribers":2,"max_height":180}"#
        );
        assert_eq!(serde_json::from_str::<LinkMessage>(&json).unwrap(), thumbnails);
        let open: LinkMessage = serde_json::from_str(r#"{"type":"open","room":"standup"}"#).unwrap();
        assert_eq!(
            open,
            LinkMessage::Open {
                room: RoomId::new("standup").unwrap()
            }
        );
        assert!(serde_json::from_str::<LinkMessage>(r#"{"type":"open","room":""}"#).is_err());
    }
}
