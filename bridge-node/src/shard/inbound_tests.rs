//! A publisher's datagrams entering the shard once its stream is bound to the fast path: opened
//! by the bridge (keys given by the test instead of a DTLS handshake), forwarded to the
//! subscribers, and dropped and counted when their tag does not verify or they are replayed.

use super::fastpath_tests::{
    PROFILE, PUBLISHER, SUBSCRIBERS, drain, material, publisher_packet, received, room_with_legs,
};
use super::*;
use crate::fastpath::split_keying_material;
use crate::fastpath::srtp::{SrtpRecvStream, SrtpSendStream};

const PUBLISHER_SSRC: u32 = 0xABCD_0001;

fn publisher_addr() -> SocketAddr {
    "127.0.0.1:50001".parse().unwrap()
}

/// The room of `room_with_legs`, with the publisher's camera track known (VP8, as `rtc` would
/// have announced it and its first packet, 99, named the codec) and its DTLS done.
fn room_with_bound_publisher() -> (Shard, Instant) {
    let (mut shard, now) = room_with_legs();
    let room = shard.rooms.get_mut(&RoomId::new("r").unwrap()).unwrap();
    let publisher = room.participants.get_mut(&PUBLISHER).unwrap();
    let slot_index = publisher
        .slots
        .iter()
        .position(|s| s.source == MediaSource::Camera)
        .unwrap();
    let receiver_id = publisher
        .pc
        .rtp_transceiver(publisher.slots[slot_index].transceiver)
        .and_then(|t| t.receiver())
        .unwrap();
    publisher.slots[slot_index].track = Some(InboundTrack::new(
        "camera".to_owned(),
        receiver_id,
        PUBLISHER_SSRC,
        Some(RTCRtpCodec {
            mime_type: "video/VP8".to_owned(),
            clock_rate: 90_000,
            ..Default::default()
        }),
    ));
    publisher.connected = true;
    publisher.media_keys = Some(split_keying_material(PROFILE, &material(PUBLISHER), false).unwrap());
    assert!(
        publisher
            .inbound
            .bind(now, PUBLISHER_SSRC, MediaSource::Camera, 90_000, (99, 99 * 3000))
    );
    (shard, now)
}

/// A publisher packet protected as the publisher's own stack would.
fn sealed(send: &mut SrtpSendStream, seq: u16) -> BytesMut {
    let keys = split_keying_material(PROFILE, &material(PUBLISHER), true).unwrap();
    let mut packet = publisher_packet(seq);
    let len = packet.len();
    packet.resize(len + PROFILE.rtp_tag_len(), 0);
    send.protect(&keys.local, &mut packet, len).unwrap();
    BytesMut::from(&packet[..])
}

fn datagram(shard: &mut Shard, now: Instant, data: BytesMut) -> Vec<ShardOutput> {
    shard.handle_input(
        now,
        ShardInput::Datagram {
            from: publisher_addr(),
            key: PUBLISHER,
            data,
        },
    );
    drain(shard)
}

#[test]
fn a_bound_stream_is_opened_by_the_bridge_and_a_bad_tag_or_replay_is_dropped_and_counted() {
    let (mut shard, now) = room_with_bound_publisher();
    let mut send = SrtpSendStream::new(PUBLISHER_SSRC);
    let good = sealed(&mut send, 100);
    let outputs = datagram(&mut shard, now, good.clone());
    for key in SUBSCRIBERS {
        let got = received(&outputs, key, &mut SrtpRecvStream::new());
        assert_eq!(got.len(), 1, "the good packet reached {key:?}");
        assert_eq!(&got[0].1[12..], &publisher_packet(100)[12..]);
    }
    let mut tampered = sealed(&mut send, 101);
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(
        datagram(&mut shard, now, tampered).is_empty(),
        "a bad tag goes nowhere"
    );
    assert!(datagram(&mut shard, now, good).is_empty(), "nor does a replay");
    let stats = shard.stats();
    assert_eq!(stats.rtp_forwarded, 2);
    assert_eq!(stats.inbound.rtp_opened, 1);
    assert_eq!(
        (stats.inbound.unprotect_bad_tag, stats.inbound.unprotect_replayed),
        (1, 1)
    );
    // The stream stays usable after a bad packet.
    let outputs = datagram(&mut shard, now, sealed(&mut send, 102));
    assert_eq!(outputs.len(), 2);
    assert_eq!(shard.stats().inbound.rtp_opened, 2);
}

/// A stream the fast path has not bound (its track is not announced yet) is left to `rtc`, which
/// binds new SSRCs by MID; here nothing is forwarded and nothing counted as a failure.
#[test]
fn an_unbound_ssrc_is_left_to_rtc() {
    let (mut shard, now) = room_with_bound_publisher();
    let mut packet = publisher_packet(5);
    packet[8..12].copy_from_slice(&0x0BAD_F00Du32.to_be_bytes());
    packet.resize(packet.len() + PROFILE.rtp_tag_len(), 0);
    let outputs = datagram(&mut shard, now, BytesMut::from(&packet[..]));
    assert!(outputs.iter().all(|o| !matches!(o, ShardOutput::Transmit { .. })));
    let stats = shard.stats();
    assert_eq!(stats.inbound, InboundStats::default());
    assert_eq!(stats.rtp_forwarded, 0);
}

/// The receive-side feedback is on the shard's timer: the first receiver report is due a
/// second after the stream was bound.
#[test]
fn feedback_is_scheduled_on_the_shards_timer() {
    let (shard, now) = room_with_bound_publisher();
    let due = shard.poll_timeout().expect("a timer");
    assert!(due <= now + crate::fastpath::inbound::RECEIVER_REPORT_INTERVAL);
}

/// A datagram that reaches `rtc` unopened (an SSRC the fast path has not bound) is not yet
/// authenticated: anyone who can send from the publisher's address could forge its clear header,
/// so its transport-wide sequence number must not reach the feedback the publisher's rate
/// follows. It counts once a copy authenticates with the publisher's keys (the publisher's own
/// probes travel that way, and a publisher whose probes went unreported would never send its
/// upper simulcast layers).
#[test]
fn an_unauthenticated_datagram_does_not_feed_the_transport_cc_feedback() {
    let (mut shard, now) = room_with_bound_publisher();
    let room_id = RoomId::new("r").unwrap();
    let inbound = |shard: &mut Shard| {
        let room = shard.rooms.get_mut(&room_id).unwrap();
        room.participants
            .get_mut(&PUBLISHER)
            .unwrap()
            .inbound
            .transport_cc_pending()
    };
    shard
        .rooms
        .get_mut(&room_id)
        .unwrap()
        .participants
        .get_mut(&PUBLISHER)
        .unwrap()
        .inbound
        .set_transport_cc(now, Some(3));
    // An unbound SSRC, a transport-cc element (id 3) in the clear, and a tag that is garbage.
    let mut forged = vec![0x90, 100, 0, 5, 0, 0, 0, 0];
    forged.extend_from_slice(&0x0BAD_F00Du32.to_be_bytes());
    forged.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x31, 0x12, 0x34, 0]);
    forged.extend_from_slice(&[0x55; 100]);
    forged.resize(forged.len() + PROFILE.rtp_tag_len(), 0);
    datagram(&mut shard, now, BytesMut::from(&forged[..]));
    assert_eq!(inbound(&mut shard), 0, "a forged arrival was recorded");
    // The same from the publisher (its repair stream carrying a bandwidth probe, which `rtc`
    // opens and never hands on) authenticates, and counts.
    let keys = split_keying_material(PROFILE, &material(PUBLISHER), true).unwrap();
    let mut genuine = forged[..forged.len() - PROFILE.rtp_tag_len()].to_vec();
    let len = genuine.len();
    genuine.resize(len + PROFILE.rtp_tag_len(), 0);
    SrtpSendStream::new(0x0BAD_F00D)
        .protect(&keys.local, &mut genuine, len)
        .unwrap();
    datagram(&mut shard, now, BytesMut::from(&genuine[..]));
    assert_eq!(inbound(&mut shard), 1, "the publisher's own probe");
    // Replayed, it is not counted again (nor is anything forged on that SSRC).
    datagram(&mut shard, now, BytesMut::from(&genuine[..]));
    datagram(&mut shard, now, BytesMut::from(&forged[..]));
    assert_eq!(inbound(&mut shard), 1);
    // A packet the bridge opens itself still counts.
    let mut send = SrtpSendStream::new(PUBLISHER_SSRC);
    let mut packet = publisher_packet(100);
    packet[0] |= 0x10;
    packet.splice(12..12, [0xBE, 0xDE, 0, 1, 0x31, 0x12, 0x35, 0]);
    let len = packet.len();
    packet.resize(len + PROFILE.rtp_tag_len(), 0);
    send.protect(&keys.local, &mut packet, len).unwrap();
    datagram(&mut shard, now, BytesMut::from(&packet[..]));
    assert_eq!(inbound(&mut shard), 2);
}
