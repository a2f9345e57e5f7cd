//! Allocation through the shard: six participants each publishing a camera to the five others;
//! last-N, a subscriber whose estimate (from its transport-cc feedback) cannot carry every
//! source, and a probe paced out as padding. Keys and legs are given by the test instead of DTLS
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
    ParticipantId::new(format!("p{key}")).unwrap()
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

/// Subscriber 1's legs stamp its transport-wide sequence (publisher id 3, leg id 5).
fn stamping_for_one(shard: &mut Shard) {
    let room = shard.rooms.get_mut(&room_id()).unwrap();
    let subscriber = room.participants.get_mut(&ParticipantKey(1)).unwrap();
    for leg in subscriber.legs.values_mut() {
        leg.writer = Some(LegWriter::new(leg.ssrc, 96, Vec::new()).with_transport_cc(3, 5));
    }
}

/// 1.2 s of video from the five others at `bytes` per packet, 50 packets a second each (a whole
/// window of the layer-rate meter), with the publishers' transport-cc element; subscriber 1's
/// arrivals (20 ms after sending) recorded as its browser would, and its feedback handed to the
/// shard. Returns the time after.
fn video_and_feedback(shard: &mut Shard, mut now: Instant, first_seq: u16, bytes: usize) -> Instant {
    let mut receiver = crate::fastpath::twcc::TwccRecorder::new(1);
    for i in 0..60u16 {
        now += Duration::from_millis(20);
        let seq = first_seq + i;
        for publisher in 2..=PEOPLE {
            let mut packet = vec![0x90, 100];
            packet.extend_from_slice(&seq.to_be_bytes());
            packet.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
            packet.extend_from_slice(&(0x1000 + publisher as u32).to_be_bytes());
            packet.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x31, 0, 0, 0]);
            packet.resize(bytes, 0x42);
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
        for output in drain(shard) {
            if let ShardOutput::Transmit { to, data } = output
                && to == addr(1)
            {
                let seq = crate::fastpath::inbound::find_extension(&data, 5).expect("stamped");
                receiver.record(
                    now + Duration::from_millis(20),
                    u16::from_be_bytes([seq[0], seq[1]]),
                );
            }
        }
    }
    now += Duration::from_millis(40);
    while let Some(feedback) = receiver.feedback(1) {
        shard.on_transport_cc_feedback(now, &room_id(), ParticipantKey(1), &feedback);
    }
    now
}

/// The five cameras send 300 kbit/s each; subscriber 1's first estimate (1 Mbit/s) carries
/// three of them: the other two are paused for it, and only for it.
#[test]
fn a_subscriber_whose_estimate_cannot_carry_every_source_gets_the_first_ranked_ones() {
    let (mut shard, now) = room_of_six();
    stamping_for_one(&mut shard);
    let now = video_and_feedback(&mut shard, now, 1, 750);
    let room = shard.rooms.get(&room_id()).unwrap();
    let estimate = room.participants[&ParticipantKey(1)]
        .bwe
        .estimate_bps()
        .expect("an estimate");
    assert!(estimate <= 1_100_000, "{estimate}");
    let got = videos_received(&mut shard, now, 100);
    assert_eq!(got[&1], BTreeSet::from([2, 3, 4]), "{got:?}");
    assert!(
        got.iter().filter(|(k, _)| **k != 1).all(|(_, p)| p.len() == 5),
        "{got:?}"
    );
    assert_eq!(shard.stats().bandwidth.subscribers_estimated, 1);

    // One of its sources arrives without a transport-cc element to stamp (as from a cascade
    // link): the estimate no longer sees all it receives, and limits nothing.
    let room = shard.rooms.get_mut(&room_id()).unwrap();
    let subscriber = room.participants.get_mut(&ParticipantKey(1)).unwrap();
    let leg = subscriber
        .legs
        .get_mut(&(ParticipantKey(6), MediaSource::Camera))
        .unwrap();
    leg.writer = Some(LegWriter::new(leg.ssrc, 96, Vec::new()));
    let now = video_and_feedback(&mut shard, now, 200, 750);
    let got = videos_received(&mut shard, now, 300);
    assert_eq!(got[&1].len(), 5, "{got:?}");
}

/// A probe is paced out as padding-only packets on one of the subscriber's video legs, each
/// with its own transport-wide sequence number, and the leg's media numbering goes on after
/// them.
#[test]
fn a_probe_goes_out_as_paced_padding_inside_a_legs_numbering() {
    let (mut shard, now) = room_of_six();
    stamping_for_one(&mut shard);
    // 60 kbit/s a camera: the subscriber's path is far from used.
    let now = video_and_feedback(&mut shard, now, 1, 150);
    let room = shard.rooms.get_mut(&room_id()).unwrap();
    let bwe = &mut room.participants.get_mut(&ParticipantKey(1)).unwrap().bwe;
    bwe.start_probe(now, 3_000_000);
    let cluster = bwe.probe.expect("a probe is due").cluster;
    let mut padding = Vec::new();
    let mut at = now;
    for _ in 0..1000 {
        let Some(due) = shard.poll_timeout() else { break };
        if shard.rooms[&room_id()].participants[&ParticipantKey(1)]
            .bwe
            .probe
            .is_none()
        {
            break;
        }
        at = at.max(due);
        shard.handle_timeout(at);
        for output in drain(&mut shard) {
            if let ShardOutput::Transmit { to, data } = output
                && to == addr(1)
                && data[0] & 0x20 != 0
            {
                padding.push((at, data));
            }
        }
    }
    assert_eq!(padding.len() as u32, cluster.packets);
    let span = padding.last().unwrap().0 - padding[0].0;
    assert!(
        span >= cluster.spacing * (cluster.packets - 2),
        "paced over {span:?}"
    );
    let ssrc = &padding[0].1[8..12];
    assert!(padding.iter().all(|(_, d)| &d[8..12] == ssrc), "one leg");
    let seqs: Vec<u16> = padding
        .iter()
        .map(|(_, d)| u16::from_be_bytes([d[2], d[3]]))
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)), "{seqs:?}");
    // The leg's next media packet follows the padding.
    let publisher = shard.rooms[&room_id()].participants[&ParticipantKey(1)]
        .legs
        .iter()
        .find(|(_, leg)| leg.ssrc.to_be_bytes() == ssrc)
        .map(|(k, _)| k.0.0)
        .unwrap();
    let mut packet = vec![0x90, 100, 0, 61, 0, 0, 0, 0];
    packet.extend_from_slice(&(0x1000 + publisher as u32).to_be_bytes());
    packet.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x31, 0, 0, 0]);
    packet.resize(150, 0x42);
    let room = shard.rooms.get_mut(&room_id()).unwrap();
    deliver(
        at,
        room,
        StreamRef::single(ParticipantKey(publisher), MediaSource::Camera, false),
        Incoming::Raw(&packet),
        &mut shard.tx,
        &mut shard.outputs,
        &mut shard.stats,
    );
    let next = drain(&mut shard)
        .into_iter()
        .find_map(|o| match o {
            ShardOutput::Transmit { to, data } if to == addr(1) => Some(data),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        u16::from_be_bytes([next[2], next[3]]),
        seqs.last().unwrap().wrapping_add(1)
    );
    assert!(shard.stats().bandwidth.probe_packets_sent >= u64::from(cluster.packets));
}
