//! Last-N through the shard: six participants each publishing a camera to the five others, each
//! receiver asking for two videos at most. Keys and legs are given by the test instead of DTLS
//! and negotiation; the packets go through the real forwarding code.

use super::fastpath_tests::drain;
use super::*;
use crate::fastpath::leg::LegWriter;
use crate::fastpath::split_keying_material;
use crate::fastpath::srtp::SrtpProfile;
use std::collections::BTreeSet;
use std::time::Duration;

const PEOPLE: u64 = 6;

fn room_id() -> RoomId {
    RoomId::new("n").unwrap()
}

fn name(key: u64) -> ParticipantId {
    ParticipantId::new(&format!("p{key}")).unwrap()
}

fn addr(key: u64) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 51_000 + key as u16))
}

/// Six participants, each receiving the five others' cameras (VP8, payload type 96).
fn room_of_six() -> (Shard, Instant) {
    let now = Instant::now();
    let mut shard = Shard::new(
        0,
        "127.0.0.1:40000".parse().unwrap(),
        Arc::new(RouteTable::default()),
        16,
    );
    for key in 1..=PEOPLE {
        shard.handle_input(
            now,
            ShardInput::Connect(ConnectRequest {
                key: ParticipantKey(key),
                room: room_id(),
                participant_id: name(key),
                display_name: format!("p{key}"),
                media: Default::default(),
                moderator: false,
            }),
        );
    }
    while shard.poll_output().is_some() {}
    let codec = RTCRtpCodec {
        mime_type: "video/VP8".to_owned(),
        clock_rate: 90_000,
        ..Default::default()
    };
    let material: Vec<u8> = (0..SrtpProfile::AeadAes128Gcm.keying_material_len() as u8).collect();
    let room = shard.rooms.get_mut(&room_id()).unwrap();
    for key in 1..=PEOPLE {
        let subscriber = room.participants.get_mut(&ParticipantKey(key)).unwrap();
        let desired: Vec<_> = (1..=PEOPLE)
            .filter(|other| *other != key)
            .map(|other| {
                (
                    ParticipantKey(other),
                    MediaSource::Camera,
                    name(other),
                    codec.clone(),
                )
            })
            .collect();
        sync_legs(subscriber, &desired).unwrap();
        for leg in subscriber.legs.values_mut() {
            leg.payload_type = Some(96);
            leg.writer = Some(LegWriter::new(leg.ssrc, 96, Vec::new()));
        }
        subscriber.connected = true;
        subscriber.media_addr = Some(addr(key));
        subscriber.media_keys =
            Some(split_keying_material(SrtpProfile::AeadAes128Gcm, &material, false).unwrap());
    }
    (shard, now)
}

/// One packet of every camera, then which publishers' video each receiver got.
fn videos_received(shard: &mut Shard, now: Instant, seq: u16) -> BTreeMap<u64, BTreeSet<u64>> {
    for publisher in 1..=PEOPLE {
        let mut packet = vec![0x80, 100];
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
        packet.extend_from_slice(&(0x1000 + publisher as u32).to_be_bytes());
        packet.extend_from_slice(&[0x42; 100]);
        let room = shard.rooms.get_mut(&room_id()).unwrap();
        deliver(
            now,
            room,
            StreamRef::single(ParticipantKey(publisher), MediaSource::Camera, false),
            Incoming::Raw(&packet),
            &mut shard.tx,
            &mut shard.outputs,
            &mut shard.stats,
        );
    }
    let outputs = drain(shard);
    let room = shard.rooms.get(&room_id()).unwrap();
    let mut got: BTreeMap<u64, BTreeSet<u64>> = (1..=PEOPLE).map(|k| (k, BTreeSet::new())).collect();
    for output in outputs {
        let ShardOutput::Transmit { to, data } = output else {
            continue;
        };
        let receiver = (1..=PEOPLE)
            .find(|k| addr(*k) == to)
            .expect("a receiver's address");
        let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        let subscriber = &room.participants[&ParticipantKey(receiver)];
        let (publisher, _) = subscriber
            .legs
            .iter()
            .find(|(_, leg)| leg.ssrc == ssrc)
            .map(|(k, _)| *k)
            .expect("a leg's SSRC");
        got.get_mut(&receiver).unwrap().insert(publisher.0);
    }
    got
}

fn last_n(shard: &mut Shard, now: Instant, key: u64, n: Option<u32>) {
    shard.handle_input(
        now,
        ShardInput::Client {
            key: ParticipantKey(key),
            message: ClientMessage::ReceiverConstraints(bridgemesh_proto::signaling::ReceiverConstraints {
                default_max_height: 720,
                on_stage_max_height: 720,
                sources: Vec::new(),
                on_stage: Vec::new(),
                last_n: n,
            }),
        },
    );
    drain(shard);
}

#[test]
fn last_two_of_six_forwards_exactly_two_videos_to_each_and_follows_the_speaker() {
    let (mut shard, mut now) = room_of_six();
    let everyone = videos_received(&mut shard, now, 1);
    assert!(
        everyone.values().all(|got| got.len() == 5),
        "before last-N: {everyone:?}"
    );
    for key in 1..=PEOPLE {
        last_n(&mut shard, now, key, Some(2));
    }
    let mut seq = 2;
    let got = videos_received(&mut shard, now, seq);
    for (receiver, publishers) in &got {
        assert_eq!(publishers.len(), 2, "{receiver} got {publishers:?}");
    }
    // Nobody has spoken: the first two others in the room's order.
    assert_eq!(got[&1], BTreeSet::from([2, 3]));
    assert_eq!(got[&3], BTreeSet::from([1, 2]));
    assert_eq!(shard.stats().bandwidth.legs_paused_by_allocation, 6 * 3);

    // Participant 6 talks for two seconds: everyone else now receives 6, still two videos.
    for _ in 0..100 {
        now += Duration::from_millis(20);
        let room = shard.rooms.get_mut(&room_id()).unwrap();
        speakers::heard(now, room, ParticipantKey(6), 10, &mut shard.outputs);
        for quiet in 1..PEOPLE {
            speakers::heard(now, room, ParticipantKey(quiet), 127, &mut shard.outputs);
        }
    }
    drain(&mut shard);
    // A resumed source starts on a keyframe; these packets have no VP8 descriptor to read, so
    // any packet starts it.
    seq += 1;
    let got = videos_received(&mut shard, now, seq);
    for (receiver, publishers) in &got {
        assert_eq!(publishers.len(), 2, "{receiver} got {publishers:?}");
        if *receiver != 6 {
            assert!(publishers.contains(&6), "{receiver} got {publishers:?}");
        }
    }
    assert_eq!(got[&1], BTreeSet::from([2, 6]));

    // Lifted: everything again.
    for key in 1..=PEOPLE {
        last_n(&mut shard, now, key, None);
    }
    seq += 1;
    let got = videos_received(&mut shard, now, seq);
    assert!(got.values().all(|got| got.len() == 5), "after last-N: {got:?}");
}
