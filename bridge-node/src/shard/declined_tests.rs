//! Streams only where wanted: a subscriber whose answer declines a leg (`inactive`) gets no
//! packets on it, and a keyframe when its next answer takes the leg again. The answers are a
//! real `rtc` client's; DTLS is taken as done (keys given, as in `fastpath_tests`).

use super::consent_tests::client;
use super::*;
use crate::fastpath::split_keying_material;
use crate::fastpath::srtp::SrtpProfile;
use rtc::peer_connection::RTCPeerConnection;

const PUBLISHER: ParticipantKey = ParticipantKey(1);
const SUBSCRIBER: ParticipantKey = ParticipantKey(2);
const SUBSCRIBER_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 50_002);

pub(super) fn room() -> RoomId {
    RoomId::new("r").unwrap()
}

/// Answers every offer to the subscriber in `outputs` with `client`, receiving the publisher's
/// camera leg in `leg_direction` (`Recvonly` takes it, `Inactive` declines it). Returns how many
/// offers it answered.
fn answer_offers(
    shard: &mut Shard,
    client: &mut RTCPeerConnection,
    now: Instant,
    leg_direction: RTCRtpTransceiverDirection,
) -> usize {
    let outputs: Vec<_> = std::iter::from_fn(|| shard.poll_output()).collect();
    let mut answered = 0;
    for output in outputs {
        let ShardOutput::ToClient {
            key: SUBSCRIBER,
            message: ServerMessage::Offer { sdp, tracks },
        } = output
        else {
            continue;
        };
        client
            .set_remote_description(now, RTCSessionDescription::offer(sdp).unwrap())
            .unwrap();
        for track in tracks {
            let id = client
                .get_transceivers()
                .collect::<Vec<_>>()
                .into_iter()
                .find(|id| {
                    client
                        .rtp_transceiver(*id)
                        .is_some_and(|t| t.mid().as_deref() == Some(track.mid.as_str()))
                })
                .expect("a transceiver for every forwarded track");
            client.rtp_transceiver(id).unwrap().set_direction(leg_direction);
        }
        let answer = client.create_answer(None).unwrap();
        client.set_local_description(now, answer.clone()).unwrap();
        shard.handle_input(
            now,
            ShardInput::Client {
                key: SUBSCRIBER,
                message: ClientMessage::Answer { sdp: answer.sdp },
            },
        );
        answered += 1;
    }
    answered
}

/// Opens `key`'s camera track as its first packet would (VP8): the room's others are offered a
/// leg for it once renegotiated.
pub(super) fn open_camera(shard: &mut Shard, key: ParticipantKey) {
    let room = shard.rooms.get_mut(&room()).unwrap();
    let publisher = room.participants.get_mut(&key).unwrap();
    let transceiver = publisher.slot(MediaSource::Camera).unwrap().transceiver;
    let receiver_id = publisher
        .pc
        .rtp_transceiver(transceiver)
        .and_then(|t| t.receiver())
        .unwrap();
    publisher.slot_mut(MediaSource::Camera).unwrap().track = Some(InboundTrack::new(
        "camera".to_owned(),
        receiver_id,
        0xABCD_0001,
        Some(RTCRtpCodec {
            mime_type: "video/VP8".to_owned(),
            clock_rate: 90_000,
            ..Default::default()
        }),
    ));
    mark_others_for_renegotiation(room, key);
}

fn publish(shard: &mut Shard, seq: u16) {
    let mut packet = vec![0x80, 100];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
    packet.extend_from_slice(&0xABCD_0001u32.to_be_bytes());
    packet.extend(std::iter::repeat_n(seq as u8, 200));
    let state = shard.rooms.get_mut(&room()).unwrap();
    deliver(
        Instant::now(),
        state,
        PUBLISHER,
        MediaSource::Camera,
        Incoming::Raw(&packet),
        &mut shard.tx,
        &mut shard.outputs,
        &mut shard.stats,
    );
}

fn sent_to_subscriber(shard: &mut Shard) -> usize {
    std::iter::from_fn(|| shard.poll_output())
        .filter(|o| matches!(o, ShardOutput::Transmit { to, .. } if *to == SUBSCRIBER_ADDR))
        .count()
}

fn renegotiate(shard: &mut Shard, now: Instant) {
    let state = shard.rooms.get_mut(&room()).unwrap();
    let subscriber = state.participants.get_mut(&SUBSCRIBER).unwrap();
    subscriber.renegotiate = true;
    subscriber.dirty = true;
    shard.pump(now, &room());
}

fn leg(shard: &Shard) -> &crate::participant::SendLeg {
    shard.rooms[&room()].participants[&SUBSCRIBER]
        .legs
        .get(&(PUBLISHER, MediaSource::Camera))
        .expect("the subscriber has a leg for the camera")
}

fn keyframe_requested_at(shard: &Shard) -> Option<Instant> {
    shard.rooms[&room()].participants[&PUBLISHER]
        .slot(MediaSource::Camera)
        .and_then(|s| s.track.as_ref())
        .and_then(|t| t.keyframe_requested_at)
}

#[test]
fn a_declined_leg_gets_nothing_until_an_answer_takes_it_with_a_keyframe() {
    let now = Instant::now();
    let mut shard = Shard::new(
        0,
        "127.0.0.1:40000".parse().unwrap(),
        Arc::new(RouteTable::default()),
        4,
    );
    for (key, name) in [(PUBLISHER, "pub"), (SUBSCRIBER, "sub")] {
        shard.handle_input(
            now,
            ShardInput::Connect(ConnectRequest {
                key,
                room: room(),
                participant_id: ParticipantId::new(name).unwrap(),
                display_name: name.to_owned(),
                media: Default::default(),
                moderator: false,
            }),
        );
    }
    let mut subscriber_client = client(now, Duration::from_secs(5));
    // The first offer has no legs: the publisher's codec is not known yet.
    assert_eq!(
        answer_offers(
            &mut shard,
            &mut subscriber_client,
            now,
            RTCRtpTransceiverDirection::Recvonly
        ),
        1
    );
    // The publisher's camera track opens (as its first packet would make it) and the subscriber
    // is offered a leg for it, which its answer declines.
    {
        open_camera(&mut shard, PUBLISHER);
        let room = shard.rooms.get_mut(&room()).unwrap();
        let subscriber = room.participants.get_mut(&SUBSCRIBER).unwrap();
        subscriber.connected = true;
        subscriber.media_addr = Some(SUBSCRIBER_ADDR);
        let material: Vec<u8> = (0..SrtpProfile::AeadAes128Gcm.keying_material_len() as u8).collect();
        subscriber.media_keys =
            Some(split_keying_material(SrtpProfile::AeadAes128Gcm, &material, false).unwrap());
    }
    renegotiate(&mut shard, now);
    assert_eq!(
        answer_offers(
            &mut shard,
            &mut subscriber_client,
            now,
            RTCRtpTransceiverDirection::Inactive
        ),
        1
    );
    assert!(leg(&shard).declined, "the answer said inactive");
    assert!(
        leg(&shard).writer.is_some(),
        "the leg is negotiated, only not wanted"
    );
    assert_eq!(keyframe_requested_at(&shard), None, "nobody watches: no keyframe");
    for seq in 1..=10 {
        publish(&mut shard, seq);
    }
    assert_eq!(
        sent_to_subscriber(&mut shard),
        0,
        "a declined leg gets no packets"
    );
    assert_eq!(shard.stats().rtp_not_sent_declined, 10);
    assert_eq!(shard.stats().rtp_forwarded, 0);

    // The next answer takes the leg: packets flow, and the publisher is asked for a keyframe.
    let later = now + Duration::from_secs(2);
    renegotiate(&mut shard, later);
    assert_eq!(
        answer_offers(
            &mut shard,
            &mut subscriber_client,
            later,
            RTCRtpTransceiverDirection::Recvonly
        ),
        1
    );
    assert!(!leg(&shard).declined);
    assert_eq!(
        keyframe_requested_at(&shard),
        Some(later),
        "a keyframe for the returning leg"
    );
    for seq in 11..=20 {
        publish(&mut shard, seq);
    }
    assert_eq!(sent_to_subscriber(&mut shard), 10);
    assert_eq!(shard.stats().rtp_not_sent_declined, 10);
    assert_eq!(shard.stats().rtp_forwarded, 10);
}
