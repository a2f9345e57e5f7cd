//! The shard's fast path with keys given by the test instead of a DTLS handshake: the test plays
//! the subscribers, decrypting what the shard sends them with the keys their side would hold.

use super::forwarding::translate_report;
use super::*;
use crate::fastpath::leg::LegWriter;
use crate::fastpath::split_keying_material;
use crate::fastpath::srtp::{SrtpKeys, SrtpProfile, SrtpRecvStream};
use rtc::rtcp::transport_feedbacks::transport_layer_nack::nack_pairs_from_sequence_numbers;

pub(super) const PUBLISHER: ParticipantKey = ParticipantKey(1);
pub(super) const SUBSCRIBERS: [ParticipantKey; 2] = [ParticipantKey(2), ParticipantKey(3)];
pub(super) const PROFILE: SrtpProfile = SrtpProfile::AeadAes128Gcm;

pub(super) fn material(key: ParticipantKey) -> Vec<u8> {
    (0..PROFILE.keying_material_len())
        .map(|i| (i as u64 * 7 + key.0) as u8)
        .collect()
}

/// The keys a subscriber's own stack would decrypt the bridge's packets with.
fn subscriber_keys(key: ParticipantKey) -> SrtpKeys {
    split_keying_material(PROFILE, &material(key), true)
        .unwrap()
        .remote
}

pub(super) fn subscriber_addr(key: ParticipantKey) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 50_000 + key.0 as u16))
}

fn vp8() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "video/VP8".to_owned(),
        clock_rate: 90_000,
        ..Default::default()
    }
}

/// A room "r" where participant 1 publishes its camera to participants 2 and 3, whose legs are
/// negotiated (payload type 96) and whose DTLS is done.
pub(super) fn room_with_legs() -> (Shard, Instant) {
    let now = Instant::now();
    let mut shard = Shard::new(
        0,
        "127.0.0.1:40000".parse().unwrap(),
        Arc::new(RouteTable::default()),
        16,
    );
    for (key, name) in [
        (PUBLISHER, "pub"),
        (SUBSCRIBERS[0], "sub-a"),
        (SUBSCRIBERS[1], "sub-b"),
    ] {
        shard.handle_input(
            now,
            ShardInput::Connect(ConnectRequest {
                key,
                room: RoomId::new("r").unwrap(),
                participant_id: ParticipantId::new(name).unwrap(),
                display_name: name.to_owned(),
                media: Default::default(),
                moderator: false,
            }),
        );
    }
    while shard.poll_output().is_some() {}
    let room = shard.rooms.get_mut(&RoomId::new("r").unwrap()).unwrap();
    for key in SUBSCRIBERS {
        let subscriber = room.participants.get_mut(&key).unwrap();
        let desired = [(
            PUBLISHER,
            MediaSource::Camera,
            ParticipantId::new("pub").unwrap(),
            vp8(),
        )];
        sync_legs(subscriber, &desired).unwrap();
        let leg = subscriber
            .legs
            .get_mut(&(PUBLISHER, MediaSource::Camera))
            .unwrap();
        leg.payload_type = Some(96);
        leg.writer = Some(LegWriter::new(leg.ssrc, 96, Vec::new()));
        subscriber.connected = true;
        subscriber.media_addr = Some(subscriber_addr(key));
        subscriber.media_keys = Some(split_keying_material(PROFILE, &material(key), false).unwrap());
    }
    (shard, now)
}

pub(super) fn publisher_packet(seq: u16) -> Vec<u8> {
    let mut packet = vec![0x80, 100];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
    packet.extend_from_slice(&0xABCD_0001u32.to_be_bytes());
    packet.extend(std::iter::repeat_n(seq as u8, 200));
    packet
}

fn publish(shard: &mut Shard, seq: u16) {
    let room = shard.rooms.get_mut(&RoomId::new("r").unwrap()).unwrap();
    deliver(
        Instant::now(),
        room,
        StreamRef::single(PUBLISHER, MediaSource::Camera, false),
        Incoming::Raw(&publisher_packet(seq)),
        &mut shard.tx,
        &mut shard.outputs,
        &mut shard.stats,
    );
}

/// Datagrams sent to `key`, decrypted as its stack would, as (sequence number, RTP bytes).
pub(super) fn received(
    outputs: &[ShardOutput],
    key: ParticipantKey,
    stream: &mut SrtpRecvStream,
) -> Vec<(u16, Vec<u8>)> {
    let keys = subscriber_keys(key);
    outputs
        .iter()
        .filter_map(|output| match output {
            ShardOutput::Transmit { to, data } if *to == subscriber_addr(key) => {
                let mut packet = data.to_vec();
                let len = stream
                    .unprotect(&keys, &mut packet)
                    .expect("the subscriber decrypts it");
                packet.truncate(len);
                Some((u16::from_be_bytes([packet[2], packet[3]]), packet))
            }
            _ => None,
        })
        .collect()
}

fn leg_ssrc(shard: &Shard, key: ParticipantKey) -> u32 {
    shard.rooms[&RoomId::new("r").unwrap()].participants[&key].legs[&(PUBLISHER, MediaSource::Camera)].ssrc
}

pub(super) fn drain(shard: &mut Shard) -> Vec<ShardOutput> {
    std::iter::from_fn(|| shard.poll_output()).collect()
}

#[test]
fn each_leg_gets_the_packet_under_its_own_ssrc_and_payload_type() {
    let (mut shard, _) = room_with_legs();
    publish(&mut shard, 7);
    let outputs = drain(&mut shard);
    for key in SUBSCRIBERS {
        let got = received(&outputs, key, &mut SrtpRecvStream::new());
        assert_eq!(got.len(), 1);
        let packet = &got[0].1;
        assert_eq!(packet[1] & 0x7F, 96);
        assert_eq!(&packet[8..12], &leg_ssrc(&shard, key).to_be_bytes());
        assert_eq!(&packet[12..], &publisher_packet(7)[12..]);
    }
    assert_eq!(shard.stats().rtp_forwarded, 2);
}

/// A subscriber that lost two packets NACKs them and gets them back, rewritten for its leg, from
/// the one ring the publisher's stream keeps for all its subscribers; the other subscriber gets
/// nothing more, and a packet the ring never held is counted as missed.
#[test]
fn a_subscriber_that_drops_packets_gets_them_back_from_the_shared_ring() {
    let (mut shard, _) = room_with_legs();
    let [lossy, other] = SUBSCRIBERS;
    let mut lossy_stream = SrtpRecvStream::new();
    let mut delivered = Vec::new();
    for seq in 100..110u16 {
        publish(&mut shard, seq);
        let outputs = drain(&mut shard);
        if seq != 103 && seq != 105 {
            delivered.extend(received(&outputs, lossy, &mut lossy_stream));
        }
    }
    assert_eq!(delivered.len(), 8);
    let nack = TransportLayerNack {
        sender_ssrc: 1,
        media_ssrc: leg_ssrc(&shard, lossy),
        nacks: nack_pairs_from_sequence_numbers(&[50, 103, 105]),
    };
    shard.answer_nack(Instant::now(), &RoomId::new("r").unwrap(), lossy, &nack);
    let outputs = drain(&mut shard);
    let resent = received(&outputs, lossy, &mut lossy_stream);
    let seqs: Vec<u16> = resent.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, [103, 105]);
    for (seq, packet) in &resent {
        assert_eq!(&packet[8..12], &leg_ssrc(&shard, lossy).to_be_bytes());
        assert_eq!(&packet[12..], &publisher_packet(*seq)[12..]);
    }
    assert!(received(&outputs, other, &mut SrtpRecvStream::new()).is_empty());
    let stats = shard.stats();
    assert_eq!((stats.rtp_retransmitted, stats.rtp_nack_missed), (2, 1));
}

#[test]
fn one_nack_resends_a_bounded_number_of_packets() {
    let (mut shard, _) = room_with_legs();
    for seq in 0..200u16 {
        publish(&mut shard, seq);
    }
    drain(&mut shard);
    let all: Vec<u16> = (0..200).collect();
    let nack = TransportLayerNack {
        sender_ssrc: 1,
        media_ssrc: leg_ssrc(&shard, SUBSCRIBERS[0]),
        nacks: nack_pairs_from_sequence_numbers(&all),
    };
    shard.answer_nack(Instant::now(), &RoomId::new("r").unwrap(), SUBSCRIBERS[0], &nack);
    assert_eq!(drain(&mut shard).len(), RETRANSMISSIONS_PER_NACK_MAX);
}

/// The leg's report carries the publisher's NTP/RTP pair (timestamps cross unchanged) and the
/// leg's own SSRC and counts.
#[test]
fn a_sender_report_is_translated_onto_the_leg() {
    let (mut shard, _) = room_with_legs();
    for seq in 0..5u16 {
        publish(&mut shard, seq);
    }
    let report = SenderReport {
        ssrc: 0xABCD_0001,
        ntp_time: 0x1122_3344_5566_7788,
        rtp_time: 12_345,
        packet_count: 999,
        octet_count: 99_999,
        ..Default::default()
    };
    let room = &shard.rooms[&RoomId::new("r").unwrap()];
    let leg = &room.participants[&SUBSCRIBERS[0]].legs[&(PUBLISHER, MediaSource::Camera)];
    let translated = translate_report(&report, leg.writer.as_ref().unwrap());
    assert_eq!(translated.ssrc, leg.ssrc);
    assert_eq!(
        (translated.ntp_time, translated.rtp_time),
        (report.ntp_time, report.rtp_time)
    );
    assert_eq!((translated.packet_count, translated.octet_count), (5, 5 * 200));
}

#[test]
fn cascade_packets_take_the_same_path_and_malformed_ones_are_counted() {
    let (mut shard, _) = room_with_legs();
    let room = shard.rooms.get_mut(&RoomId::new("r").unwrap()).unwrap();
    deliver(
        Instant::now(),
        room,
        StreamRef::single(PUBLISHER, MediaSource::Camera, false),
        Incoming::Raw(&[0x80, 0x60, 0, 1]),
        &mut shard.tx,
        &mut shard.outputs,
        &mut shard.stats,
    );
    assert!(drain(&mut shard).is_empty());
    assert_eq!(shard.stats().rtp_forward_failed, 1);
}
