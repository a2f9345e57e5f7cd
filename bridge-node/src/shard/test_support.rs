//! What the shard's tests share: a shard with rooms named `r`, participants joined and messages
//! sent as the driver hands them in, and another bridge's participant announced over a link.

use super::cascade::{CascadeInput, LinkIndex};
use super::*;
use bridgemesh_proto::cascade::LinkCodec;
use bridgemesh_proto::signaling::ParticipantInfo;

pub(super) fn shard() -> Shard {
    Shard::new(
        0,
        "127.0.0.1:40000".parse().unwrap(),
        Arc::new(RouteTable::default()),
        16,
    )
}

pub(super) fn room() -> RoomId {
    RoomId::new("r").unwrap()
}

pub(super) fn id(name: &str) -> ParticipantId {
    ParticipantId::new(name).unwrap()
}

pub(super) fn drain(shard: &mut Shard) -> Vec<ShardOutput> {
    std::iter::from_fn(|| shard.poll_output()).collect()
}

/// `name` joins room `r` as participant `key` (its display name in capitals).
pub(super) fn connect(
    shard: &mut Shard,
    now: Instant,
    key: u64,
    name: &str,
    moderator: bool,
) -> Vec<ShardOutput> {
    shard.handle_input(
        now,
        ShardInput::Connect(ConnectRequest {
            key: ParticipantKey(key),
            room: room(),
            participant_id: id(name),
            display_name: name.to_uppercase(),
            media: Default::default(),
            moderator,
        }),
    );
    drain(shard)
}

pub(super) fn send(shard: &mut Shard, now: Instant, key: u64, message: ClientMessage) -> Vec<ShardOutput> {
    shard.handle_input(
        now,
        ShardInput::Client {
            key: ParticipantKey(key),
            message,
        },
    );
    drain(shard)
}

/// `link` opens room `r` and announces its participant `name` (display name capitalized: `bob`
/// shows as `Bob`) publishing `streams`: (stream id, source, MIME type, clock rate). Returns the
/// outputs.
pub(super) fn announce_remote(
    shard: &mut Shard,
    now: Instant,
    link: LinkIndex,
    name: &str,
    streams: &[(u32, MediaSource, &str, u32)],
) -> Vec<ShardOutput> {
    let message = |message| ShardInput::Cascade(CascadeInput::Message { link, message });
    shard.handle_input(
        now,
        ShardInput::Cascade(CascadeInput::PeerOpened { room: room(), link }),
    );
    shard.handle_input(
        now,
        message(LinkMessage::Participant {
            room: room(),
            participant: ParticipantInfo {
                id: id(name),
                display_name: name[..1].to_uppercase() + &name[1..],
                microphone_muted: false,
                camera_muted: false,
                sources: streams.iter().map(|s| s.1).collect(),
                hand_raised_at_ms: None,
            },
        }),
    );
    for &(stream, source, mime_type, clock_rate) in streams {
        shard.handle_input(
            now,
            message(LinkMessage::Stream {
                id: stream,
                room: room(),
                participant: id(name),
                source,
                codec: LinkCodec {
                    mime_type: mime_type.into(),
                    clock_rate,
                    channels: 2,
                    sdp_fmtp_line: String::new(),
                },
                extensions: Vec::new(),
            }),
        );
    }
    drain(shard)
}
