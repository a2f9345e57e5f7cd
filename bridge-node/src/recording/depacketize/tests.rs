use super::*;

/// An RTP packet (version 2, no CSRC, no extension) with `payload`.
pub fn rtp(sequence: u16, timestamp: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![0x80, if marker { 0x80 | 96 } else { 96 }];
    packet.extend_from_slice(&sequence.to_be_bytes());
    packet.extend_from_slice(&timestamp.to_be_bytes());
    packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    packet.extend_from_slice(payload);
    packet
}

/// A VP8 payload: a descriptor with a 15-bit picture id, then `data`.
fn vp8(start: bool, data: &[u8]) -> Vec<u8> {
    let mut payload = vec![0x80 | if start { 0x10 } else { 0 }, 0x80, 0x80, 0x01];
    payload.extend_from_slice(data);
    payload
}

const KEY: [u8; 12] = [
    0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A, 0x40, 0x01, 0xF0, 0x00, 0xAA, 0xBB,
];
const DELTA: [u8; 4] = [0x31, 0x00, 0x00, 0xCC];

fn push(d: &mut Vp8Depacketizer, packet: &[u8]) -> Option<(u64, bool, Vec<u8>)> {
    match d.push(RtpView::parse(packet).unwrap()) {
        Depacketized::Nothing => None,
        Depacketized::Frame {
            timestamp,
            keyframe,
            data,
        } => Some((timestamp, keyframe, data.to_vec())),
    }
}

#[test]
fn a_keyframe_in_two_packets_is_one_frame_with_its_size() {
    let mut d = Vp8Depacketizer::default();
    assert!(d.wants_keyframe());
    assert_eq!(push(&mut d, &rtp(10, 9000, false, &vp8(true, &KEY[..6]))), None);
    let (ts, key, data) = push(&mut d, &rtp(11, 9000, true, &vp8(false, &KEY[6..]))).unwrap();
    assert!(key);
    assert_eq!(data, KEY);
    assert_eq!(ts & 0xFFFF_FFFF, 9000);
    assert_eq!(vp8_keyframe_size(&data), Some((320, 240)));
    assert!(!d.wants_keyframe());
    let (ts2, key2, data2) = push(&mut d, &rtp(12, 12000, true, &vp8(true, &DELTA))).unwrap();
    assert!(!key2);
    assert_eq!(data2, DELTA);
    assert_eq!(ts2 - ts, 3000);
}

#[test]
fn delta_frames_before_the_first_keyframe_are_dropped() {
    let mut d = Vp8Depacketizer::default();
    assert_eq!(push(&mut d, &rtp(1, 0, true, &vp8(true, &DELTA))), None);
    assert!(d.wants_keyframe());
    assert!(push(&mut d, &rtp(2, 3000, true, &vp8(true, &KEY))).is_some());
}

#[test]
fn a_lost_packet_drops_its_frame_and_the_frames_after_it_until_a_keyframe() {
    let mut d = Vp8Depacketizer::default();
    assert!(push(&mut d, &rtp(1, 0, true, &vp8(true, &KEY))).is_some());
    d.keyframe_requested();
    // A two-packet delta frame loses its second half (seq 3); the next frame's first packet shows it.
    assert_eq!(push(&mut d, &rtp(2, 3000, false, &vp8(true, &DELTA))), None);
    assert_eq!(push(&mut d, &rtp(4, 6000, true, &vp8(true, &DELTA))), None);
    assert!(d.wants_keyframe());
    assert_eq!(d.packets_lost, 1);
    assert_eq!(push(&mut d, &rtp(5, 9000, true, &vp8(true, &DELTA))), None);
    d.keyframe_requested();
    assert!(d.wants_keyframe(), "wanted until one arrives");
    let (_, key, _) = push(&mut d, &rtp(6, 12000, true, &vp8(true, &KEY))).unwrap();
    assert!(key);
    assert!(!d.wants_keyframe());
    assert!(push(&mut d, &rtp(7, 15000, true, &vp8(true, &DELTA))).is_some());
}

#[test]
fn a_whole_lost_frame_between_complete_ones_is_noticed() {
    let mut d = Vp8Depacketizer::default();
    assert!(push(&mut d, &rtp(1, 0, true, &vp8(true, &KEY))).is_some());
    // Seq 2 (a one-packet frame) never arrives.
    assert_eq!(push(&mut d, &rtp(3, 6000, true, &vp8(true, &DELTA))), None);
    assert!(d.wants_keyframe());
}

#[test]
fn duplicates_and_late_retransmissions_are_ignored() {
    let mut d = Vp8Depacketizer::default();
    assert!(push(&mut d, &rtp(1, 0, true, &vp8(true, &KEY))).is_some());
    assert_eq!(push(&mut d, &rtp(1, 0, true, &vp8(true, &KEY))), None);
    assert!(push(&mut d, &rtp(2, 3000, true, &vp8(true, &DELTA))).is_some());
    assert_eq!(d.frames_dropped, 0);
}

#[test]
fn sequence_numbers_and_timestamps_wrap() {
    let mut d = Vp8Depacketizer::default();
    let (t0, _, _) = push(&mut d, &rtp(65_535, u32::MAX - 1499, true, &vp8(true, &KEY))).unwrap();
    let (t1, _, _) = push(&mut d, &rtp(0, 1500, true, &vp8(true, &DELTA))).unwrap();
    assert_eq!(t1 - t0, 3000);
    assert_eq!(d.packets_lost, 0);
}

#[test]
fn unwrapper_takes_the_nearest_value_and_goes_back_without_moving() {
    let mut u = Unwrapper::<16>::default();
    let a = u.extend(65_530);
    let b = u.extend(5);
    assert_eq!(b - a, 11);
    let c = u.extend(65_534); // reordered, from before the wrap
    assert_eq!(b - c, 7);
    assert_eq!(u.extend(6), b + 1);
}

#[test]
fn descriptors_of_every_shape_are_measured() {
    assert_eq!(vp8_descriptor(&[0x10, 0xAA]), Some((true, 1)));
    // X, I (7-bit picture id), L, T.
    assert_eq!(
        vp8_descriptor(&[0x90, 0xE0, 0x05, 0x01, 0x20, 0xAA]),
        Some((true, 5))
    );
    // Partition 1 does not start a frame.
    assert_eq!(vp8_descriptor(&[0x11, 0xAA]), Some((false, 1)));
    assert_eq!(vp8_descriptor(&[0x90, 0x80]), None);
    assert_eq!(vp8_descriptor(&[]), None);
}

#[test]
fn opus_packets_are_frames_and_gaps_are_counted() {
    let mut d = OpusDepacketizer::default();
    let packets = [rtp(1, 960, false, &[0xF8, 1]), rtp(3, 2880, false, &[0xF8, 3])];
    let mut frames = Vec::new();
    for packet in &packets {
        if let Depacketized::Frame { timestamp, data, .. } = d.push(RtpView::parse(packet).unwrap()) {
            frames.push((timestamp, data.to_vec()));
        }
    }
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[1].0 - frames[0].0, 1920);
    assert_eq!(d.packets_lost, 1);
}

#[test]
fn padding_is_not_payload() {
    let mut packet = rtp(1, 0, true, &[0xF8, 1, 0, 0, 3]);
    packet[0] |= 0x20;
    assert_eq!(RtpView::parse(&packet).unwrap().payload, [0xF8, 1]);
    let mut bad = rtp(1, 0, true, &[200]);
    bad[0] |= 0x20;
    assert!(RtpView::parse(&bad).is_none());
}

#[test]
fn padding_only_packets_take_a_sequence_number_and_break_nothing() {
    let mut d = Vp8Depacketizer::default();
    assert!(push(&mut d, &rtp(1, 0, true, &vp8(true, &KEY))).is_some());
    // Two padding-only packets with the last frame's timestamp, as a sender probing bandwidth sends.
    for seq in [2, 3] {
        let mut padding = rtp(seq, 0, false, &[0, 0, 0, 4]);
        padding[0] |= 0x20;
        assert_eq!(push(&mut d, &padding), None);
    }
    let (_, key, data) = push(&mut d, &rtp(4, 3000, true, &vp8(true, &DELTA))).unwrap();
    assert!(!key);
    assert_eq!(data, DELTA);
    assert!(!d.wants_keyframe());
    assert_eq!((d.packets_lost, d.frames_dropped), (0, 0));
}
