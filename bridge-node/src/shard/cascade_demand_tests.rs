//! What a bridge asks of a remote publisher's bridge (`demand`): how many of its subscribers show
//! each remote stream, and the largest height they show it at, from their receiver constraints;
//! a simulcast camera then crosses the link only as the layer covering that height
//! (`simulcast_tests` shows the sending side).

use super::test_support::*;
use super::*;
use bridgemesh_proto::signaling::{ReceiverConstraints, SourceRef};

const LINK: LinkIndex = LinkIndex(5);
const MICROPHONE: u32 = 1;
const CAMERA: u32 = 2;

/// The (stream, subscribers, max height) demands `outputs` send over the link.
fn demands(outputs: &[ShardOutput]) -> Vec<(u32, u32, u16)> {
    let mut demands: Vec<_> = outputs
        .iter()
        .filter_map(|o| match o {
            ShardOutput::ToLink {
                link: LINK,
                message:
                    LinkMessage::Demand {
                        id,
                        subscribers,
                        max_height,
                    },
            } => Some((*id, *subscribers, *max_height)),
            _ => None,
        })
        .collect();
    demands.sort();
    demands
}

/// Two local subscribers, 1 and 2, of a remote participant `cy` whose microphone and camera
/// arrive over [`LINK`]; their legs negotiated.
fn room_with_a_remote_publisher(now: Instant) -> Shard {
    let mut shard = shard();
    for key in [1, 2] {
        connect(&mut shard, now, key, &format!("p{key}"), false);
    }
    let codecs = [
        (MICROPHONE, MediaSource::Microphone, "audio/opus", 48_000),
        (CAMERA, MediaSource::Camera, "video/VP8", 90_000),
    ];
    announce_remote(&mut shard, now, LINK, "cy", &codecs);
    // The subscribers answered the offers that added Cy's legs.
    let state = shard.rooms.get_mut(&room()).unwrap();
    let cy = *state.cascade.remote.keys().next().expect("Cy announced");
    for key in [1, 2] {
        let subscriber = state.participants.get_mut(&ParticipantKey(key)).unwrap();
        let desired: Vec<_> = codecs
            .iter()
            .map(|(_, source, mime_type, clock_rate)| {
                let codec = RTCRtpCodec {
                    mime_type: (*mime_type).to_owned(),
                    clock_rate: *clock_rate,
                    ..Default::default()
                };
                (cy, *source, id("cy"), codec)
            })
            .collect();
        sync_legs(subscriber, &desired).unwrap();
        for leg in subscriber.legs.values_mut() {
            leg.payload_type = Some(96);
        }
    }
    shard
}

fn constrain(
    shard: &mut Shard,
    now: Instant,
    key: u64,
    constraints: ReceiverConstraints,
) -> Vec<ShardOutput> {
    shard.handle_input(
        now,
        ShardInput::Client {
            key: ParticipantKey(key),
            message: ClientMessage::ReceiverConstraints(constraints),
        },
    );
    drain(shard)
}

fn grid(default_max_height: u16, on_stage: &[&str]) -> ReceiverConstraints {
    ReceiverConstraints {
        default_max_height,
        on_stage_max_height: 720,
        sources: Vec::new(),
        on_stage: on_stage
            .iter()
            .map(|id| SourceRef {
                participant_id: ParticipantId::new(*id).unwrap(),
                source: MediaSource::Camera,
            })
            .collect(),
        last_n: None,
    }
}

#[test]
fn the_far_side_asks_for_the_largest_height_its_subscribers_show_and_nothing_for_hidden_tiles() {
    let now = Instant::now();
    let mut shard = room_with_a_remote_publisher(now);
    // Clients that never said what they show get everything, as before layers were asked for.
    shard.refresh_demand(&room());
    let out = drain(&mut shard);
    assert_eq!(demands(&out), [(MICROPHONE, 2, u16::MAX), (CAMERA, 2, u16::MAX)]);
    // Both show Cy as a thumbnail: the camera is asked for at 180 (audio is unchanged: no message).
    constrain(&mut shard, now, 1, grid(180, &[]));
    let out = constrain(&mut shard, now, 2, grid(180, &[]));
    assert_eq!(demands(&out), [(CAMERA, 2, 180)]);
    // One of them puts Cy on stage.
    let out = constrain(&mut shard, now, 2, grid(180, &["cy"]));
    assert_eq!(demands(&out), [(CAMERA, 2, 720)]);
    // Both hide their tiles (a hidden tab): Cy's camera is not asked for at all.
    constrain(&mut shard, now, 1, grid(0, &[]));
    let out = constrain(&mut shard, now, 2, grid(0, &[]));
    assert_eq!(demands(&out), [(CAMERA, 0, 0)]);
    // The same constraints again change nothing on the link.
    let out = constrain(&mut shard, now, 2, grid(0, &[]));
    assert_eq!(demands(&out), []);
}
