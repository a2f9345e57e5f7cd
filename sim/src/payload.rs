//! The RTP payloads a synthetic participant sends, and how a receiver verifies them.
//!
//! Pure functions, no I/O. Every payload is a codec-shaped prefix followed by a *stamp*:
//!
//! ```text
//! offset  size  field
//!      0     4  magic b"BMSH"
//!      4     1  version (1)
//!      5     8  publisher tag, big-endian: FNV-1a 64 of the publisher's participant id
//!     13     1  source: 1 microphone, 2 camera, 3 screen
//!     14     8  sequence, big-endian: the publisher's own per-source packet counter
//!     22     8  send time, big-endian: unix epoch microseconds
//!     30     2  stamp length, big-endian: bytes from the magic to the end of the payload
//!     32     …  filler: a deterministic function of (tag, source, sequence, send time)
//! ```
//!
//! The filler is seeded from the header fields, so a flipped bit anywhere — header or filler —
//! fails verification; only the length field is checked against the bytes that arrived instead.
//!
//! A receiver can therefore check every byte it got (`intact` vs `corrupt`), that the packet
//! came from the participant the signaling `tracks` map claims (tag), and measure one-way
//! latency and loss without any side channel.
//!
//! Prefixes: audio is one Opus-like TOC byte ([`OPUS_TOC`]). Video is VP8 per RFC 7741: a
//! one-byte payload descriptor (X=0, S=1 on the first packet of a frame, PID=0) and, on the
//! first packet of a frame, the VP8 frame tag (3 bytes, bit 0 = P, the *inverse* keyframe flag)
//! plus, for keyframes, the start code `9d 01 2a` and the 14-bit width and height.

use bridgemesh_proto::ParticipantId;
use bridgemesh_proto::signaling::MediaSource;
use std::time::Duration;

/// First four bytes of every stamp.
pub const MAGIC: [u8; 4] = *b"BMSH";
/// Stamp format version.
pub const VERSION: u8 = 1;
/// Bytes of the stamp before the filler.
pub const STAMP_HEADER_LEN: usize = 32;
/// Largest RTP payload a synthetic participant sends.
pub const MAX_PACKET_PAYLOAD: usize = 1100;

/// The TOC byte of every audio payload: Opus config 31 (CELT fullband 20 ms), mono, one frame.
pub const OPUS_TOC: u8 = 0xF8;
/// Audio RTP payload size: an Opus-sized 48 kbit/s payload.
pub const AUDIO_PAYLOAD_LEN: usize = 120;
/// Audio packets per second (20 ms frames).
pub const AUDIO_PACKETS_PER_SECOND: u32 = 50;
/// RTP timestamp increment per audio packet at 48 kHz.
pub const AUDIO_SAMPLES_PER_PACKET: u32 = 48_000 / AUDIO_PACKETS_PER_SECOND;
/// RTP clock rate of VP8.
pub const VIDEO_CLOCK_RATE: u32 = 90_000;

/// A keyframe is this many times larger than a delta frame.
pub const KEYFRAME_SIZE_FACTOR: usize = 5;
/// Dimensions written into keyframe headers.
pub const VIDEO_WIDTH: u16 = 640;
pub const VIDEO_HEIGHT: u16 = 360;

/// VP8 payload descriptor with X=0, N=0, S=1, PID=0.
const VP8_DESCRIPTOR_START: u8 = 0x10;
/// VP8 payload descriptor with X=0, N=0, S=0, PID=0.
const VP8_DESCRIPTOR_CONTINUATION: u8 = 0x00;
const VP8_START_CODE: [u8; 3] = [0x9d, 0x01, 0x2a];
/// Frame tag (3 bytes) of a delta frame.
const VP8_DELTA_HEADER_LEN: usize = 3;
/// Frame tag (3) + start code (3) + width (2) + height (2) of a keyframe.
const VP8_KEYFRAME_HEADER_LEN: usize = 10;
/// Smallest video packet: descriptor + keyframe header + stamp header.
pub const MIN_VIDEO_PACKET: usize = 1 + VP8_KEYFRAME_HEADER_LEN + STAMP_HEADER_LEN;

/// FNV-1a, 64 bit.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The tag a publisher writes into every stamp: FNV-1a 64 of its participant id.
pub fn publisher_tag(id: &ParticipantId) -> u64 {
    fnv1a64(id.as_str().as_bytes())
}

pub fn source_code(source: MediaSource) -> u8 {
    match source {
        MediaSource::Microphone => 1,
        MediaSource::Camera => 2,
        MediaSource::Screen => 3,
    }
}

pub fn source_from_code(code: u8) -> Option<MediaSource> {
    match code {
        1 => Some(MediaSource::Microphone),
        2 => Some(MediaSource::Camera),
        3 => Some(MediaSource::Screen),
        _ => None,
    }
}

/// What a stamp says about its packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub tag: u64,
    pub source: MediaSource,
    pub seq: u64,
    pub sent_at_us: u64,
}

/// Why a payload did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("payload of {len} bytes is too short")]
    Truncated { len: usize },
    #[error("codec prefix is not what a synthetic participant sends")]
    BadPrefix,
    #[error("stamp magic missing")]
    BadMagic,
    #[error("stamp version {0} unknown")]
    BadVersion(u8),
    #[error("stamp source code {0} unknown")]
    BadSource(u8),
    #[error("stamp declares {declared} bytes but {actual} arrived")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("filler differs at stamp offset {offset}")]
    FillerMismatch { offset: usize },
    /// The bytes are intact but were published by someone other than the expected participant.
    #[error("published by tag {found:#018x}, expected {expected:#018x}")]
    WrongPublisher { expected: u64, found: u64 },
    /// The bytes are intact but carry another source than the m-line claims.
    #[error("stamp says source {found:?}, expected {expected:?}")]
    WrongSource {
        expected: MediaSource,
        found: MediaSource,
    },
}

impl VerifyError {
    /// The packet arrived intact but is attributed to the wrong publisher or source.
    pub fn is_misattribution(&self) -> bool {
        matches!(
            self,
            VerifyError::WrongPublisher { .. } | VerifyError::WrongSource { .. }
        )
    }
}

/// A verified packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub stamp: Stamp,
    /// First packet of a video frame (S=1, PID=0). Always false for audio.
    pub frame_start: bool,
    /// First packet of a video keyframe. Always false for audio.
    pub keyframe: bool,
}

/// splitmix64: the filler generator.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn filler_seed(stamp: &Stamp) -> u64 {
    stamp.tag
        ^ stamp.seq.wrapping_mul(0xd6e8_feb8_6659_fd93).rotate_left(17)
        ^ stamp.sent_at_us.rotate_left(29)
        ^ u64::from(source_code(stamp.source)) << 56
}

/// Fills `out` with the filler of `stamp`.
pub fn fill(stamp: &Stamp, out: &mut [u8]) {
    let mut state = filler_seed(stamp);
    for chunk in out.chunks_mut(8) {
        let word = splitmix64(&mut state).to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

/// Appends a stamp of exactly `stamp_len` bytes (at least [`STAMP_HEADER_LEN`], at most
/// `u16::MAX`) to `buf`.
pub fn write_stamp(buf: &mut Vec<u8>, stamp: &Stamp, stamp_len: usize) {
    let stamp_len = stamp_len.clamp(STAMP_HEADER_LEN, usize::from(u16::MAX));
    let start = buf.len();
    buf.extend_from_slice(&MAGIC);
    buf.push(VERSION);
    buf.extend_from_slice(&stamp.tag.to_be_bytes());
    buf.push(source_code(stamp.source));
    buf.extend_from_slice(&stamp.seq.to_be_bytes());
    buf.extend_from_slice(&stamp.sent_at_us.to_be_bytes());
    buf.extend_from_slice(&(stamp_len as u16).to_be_bytes());
    buf.resize(start + stamp_len, 0);
    fill(stamp, &mut buf[start + STAMP_HEADER_LEN..]);
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(a)
}

/// Checks a stamp's integrity (every byte), then its attribution. `expected_tag` /
/// `expected_source` of `None` skip the attribution check.
pub fn verify_stamp(
    bytes: &[u8],
    expected_tag: Option<u64>,
    expected_source: Option<MediaSource>,
) -> Result<Stamp, VerifyError> {
    if bytes.len() < STAMP_HEADER_LEN {
        return Err(VerifyError::Truncated { len: bytes.len() });
    }
    if bytes[..4] != MAGIC {
        return Err(VerifyError::BadMagic);
    }
    if bytes[4] != VERSION {
        return Err(VerifyError::BadVersion(bytes[4]));
    }
    let tag = be_u64(&bytes[5..13]);
    let source = source_from_code(bytes[13]).ok_or(VerifyError::BadSource(bytes[13]))?;
    let seq = be_u64(&bytes[14..22]);
    let sent_at_us = be_u64(&bytes[22..30]);
    let declared = usize::from(u16::from_be_bytes([bytes[30], bytes[31]]));
    if declared != bytes.len() {
        return Err(VerifyError::LengthMismatch {
            declared,
            actual: bytes.len(),
        });
    }
    let stamp = Stamp {
        tag,
        source,
        seq,
        sent_at_us,
    };
    let mut state = filler_seed(&stamp);
    for (i, chunk) in bytes[STAMP_HEADER_LEN..].chunks(8).enumerate() {
        let word = splitmix64(&mut state).to_le_bytes();
        if chunk != &word[..chunk.len()] {
            let within = chunk.iter().zip(word).position(|(a, b)| *a != b).unwrap_or(0);
            return Err(VerifyError::FillerMismatch {
                offset: STAMP_HEADER_LEN + i * 8 + within,
            });
        }
    }
    if let Some(expected) = expected_tag
        && expected != tag
    {
        return Err(VerifyError::WrongPublisher { expected, found: tag });
    }
    if let Some(expected) = expected_source
        && expected != source
    {
        return Err(VerifyError::WrongSource {
            expected,
            found: source,
        });
    }
    Ok(stamp)
}

/// One audio payload: [`OPUS_TOC`] and a stamp, [`AUDIO_PAYLOAD_LEN`] bytes in all.
pub fn audio_payload(tag: u64, seq: u64, sent_at_us: u64) -> Vec<u8> {
    let mut buf = Vec::with_capacity(AUDIO_PAYLOAD_LEN);
    buf.push(OPUS_TOC);
    let stamp = Stamp {
        tag,
        source: MediaSource::Microphone,
        seq,
        sent_at_us,
    };
    write_stamp(&mut buf, &stamp, AUDIO_PAYLOAD_LEN - 1);
    buf
}

/// Verifies an audio payload made by [`audio_payload`].
pub fn verify_audio(
    payload: &[u8],
    expected_tag: Option<u64>,
    expected_source: Option<MediaSource>,
) -> Result<Verified, VerifyError> {
    let (&toc, rest) = payload.split_first().ok_or(VerifyError::Truncated { len: 0 })?;
    if toc != OPUS_TOC {
        return Err(VerifyError::BadPrefix);
    }
    let stamp = verify_stamp(rest, expected_tag, expected_source)?;
    Ok(Verified {
        stamp,
        frame_start: false,
        keyframe: false,
    })
}

/// Frame sizes that hit a bitrate: one keyframe ([`KEYFRAME_SIZE_FACTOR`] × a delta frame)
/// per keyframe interval, delta frames in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSizes {
    pub keyframe_bytes: usize,
    pub delta_bytes: usize,
}

/// Sizes frames (total RTP payload bytes per frame) so that `fps` frames per second with one
/// keyframe per `keyframe_interval` average `bitrate_bps`. Never below one minimal packet.
pub fn frame_sizes(bitrate_bps: u32, fps: u32, keyframe_interval: Duration) -> FrameSizes {
    let fps = fps.max(1);
    let interval_s = keyframe_interval.as_secs_f64().max(1.0 / f64::from(fps));
    let frames_per_interval = (f64::from(fps) * interval_s).round().max(1.0);
    let budget = f64::from(bitrate_bps) / 8.0 * interval_s;
    let factor = KEYFRAME_SIZE_FACTOR as f64;
    let delta = budget / (frames_per_interval - 1.0 + factor);
    let delta_bytes = (delta.round() as usize).max(MIN_VIDEO_PACKET);
    FrameSizes {
        keyframe_bytes: delta_bytes * KEYFRAME_SIZE_FACTOR,
        delta_bytes,
    }
}

/// How many packets a frame of `frame_bytes` is split into.
pub fn packets_per_frame(frame_bytes: usize) -> usize {
    frame_bytes.max(1).div_ceil(MAX_PACKET_PAYLOAD)
}

/// Packetizes one VP8 frame of about `frame_bytes` payload bytes into packets of at most
/// [`MAX_PACKET_PAYLOAD`] bytes. Packet `i` carries stamp sequence `first_seq + i`. The caller
/// sets the RTP marker bit on the last packet.
pub fn vp8_frame(
    tag: u64,
    source: MediaSource,
    first_seq: u64,
    keyframe: bool,
    frame_bytes: usize,
    sent_at_us: u64,
) -> Vec<Vec<u8>> {
    let frame_bytes = frame_bytes.max(MIN_VIDEO_PACKET);
    let count = packets_per_frame(frame_bytes);
    let base = frame_bytes / count;
    let remainder = frame_bytes % count;
    let mut packets = Vec::with_capacity(count);
    for i in 0..count {
        let size = (base + usize::from(i < remainder)).clamp(MIN_VIDEO_PACKET, MAX_PACKET_PAYLOAD);
        let mut buf = Vec::with_capacity(size);
        if i == 0 {
            buf.push(VP8_DESCRIPTOR_START);
            // Frame tag: P (bit 0, 0 = keyframe), version 0 (bits 1-3), show_frame (bit 4),
            // first partition size (bits 5-23).
            let first_partition = (frame_bytes as u32).min(0x7_ffff);
            let frame_tag = (first_partition << 5) | (1 << 4) | u32::from(!keyframe);
            buf.extend_from_slice(&frame_tag.to_le_bytes()[..3]);
            if keyframe {
                buf.extend_from_slice(&VP8_START_CODE);
                buf.extend_from_slice(&VIDEO_WIDTH.to_le_bytes());
                buf.extend_from_slice(&VIDEO_HEIGHT.to_le_bytes());
            }
        } else {
            buf.push(VP8_DESCRIPTOR_CONTINUATION);
        }
        let stamp = Stamp {
            tag,
            source,
            seq: first_seq + i as u64,
            sent_at_us,
        };
        let stamp_len = size.saturating_sub(buf.len());
        write_stamp(&mut buf, &stamp, stamp_len);
        packets.push(buf);
    }
    packets
}

/// Where the VP8 payload starts after the RFC 7741 payload descriptor, and the descriptor's S
/// bit and partition index.
fn vp8_descriptor(payload: &[u8]) -> Option<(usize, bool, u8)> {
    let b0 = *payload.first()?;
    let start = b0 & 0x10 != 0;
    let pid = b0 & 0x07;
    let mut at = 1;
    if b0 & 0x80 != 0 {
        let x = *payload.get(at)?;
        at += 1;
        if x & 0x80 != 0 {
            // PictureID: one byte, or two when its M bit is set.
            let m = *payload.get(at)?;
            at += if m & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            at += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            at += 1; // TID / Y / KEYIDX
        }
    }
    (at <= payload.len()).then_some((at, start, pid))
}

/// Whether an RTP payload is the first packet of a VP8 keyframe (RFC 7741: S=1, PID=0 and the
/// frame tag's P bit clear). Works on any VP8 payload, not only on synthetic ones.
pub fn vp8_is_keyframe_start(payload: &[u8]) -> bool {
    match vp8_descriptor(payload) {
        Some((at, true, 0)) => payload.get(at).is_some_and(|tag| tag & 0x01 == 0),
        _ => false,
    }
}

/// Verifies a video payload made by [`vp8_frame`].
pub fn verify_video(
    payload: &[u8],
    expected_tag: Option<u64>,
    expected_source: Option<MediaSource>,
) -> Result<Verified, VerifyError> {
    let (at, start, pid) = vp8_descriptor(payload).ok_or(VerifyError::Truncated { len: payload.len() })?;
    // Exactly the descriptors `vp8_frame` writes: X=0, N=0, PID=0.
    if pid != 0 || ![VP8_DESCRIPTOR_START, VP8_DESCRIPTOR_CONTINUATION].contains(&payload[0]) {
        return Err(VerifyError::BadPrefix);
    }
    let mut rest = &payload[at..];
    let mut keyframe = false;
    if start {
        if rest.len() < VP8_DELTA_HEADER_LEN {
            return Err(VerifyError::Truncated { len: payload.len() });
        }
        let frame_tag = u32::from_le_bytes([rest[0], rest[1], rest[2], 0]);
        // version 0, show_frame 1
        if frame_tag & 0x0e != 0 || frame_tag & 0x10 == 0 {
            return Err(VerifyError::BadPrefix);
        }
        keyframe = frame_tag & 0x01 == 0;
        if keyframe {
            if rest.len() < VP8_KEYFRAME_HEADER_LEN {
                return Err(VerifyError::Truncated { len: payload.len() });
            }
            let dims = [VIDEO_WIDTH.to_le_bytes(), VIDEO_HEIGHT.to_le_bytes()].concat();
            if rest[3..6] != VP8_START_CODE || rest[6..10] != dims[..] {
                return Err(VerifyError::BadPrefix);
            }
            rest = &rest[VP8_KEYFRAME_HEADER_LEN..];
        } else {
            rest = &rest[VP8_DELTA_HEADER_LEN..];
        }
    }
    let stamp = verify_stamp(rest, expected_tag, expected_source)?;
    Ok(Verified {
        stamp,
        frame_start: start,
        keyframe,
    })
}

/// Verifies a payload of either kind.
pub fn verify(
    payload: &[u8],
    video: bool,
    expected_tag: Option<u64>,
    expected_source: Option<MediaSource>,
) -> Result<Verified, VerifyError> {
    if video {
        verify_video(payload, expected_tag, expected_source)
    } else {
        verify_audio(payload, expected_tag, expected_source)
    }
}

/// Microseconds since the unix epoch (0 if the clock is before it).
pub fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(s: &str) -> ParticipantId {
        ParticipantId::new(s).unwrap()
    }

    #[test]
    fn fnv1a_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        assert_ne!(publisher_tag(&pid("p-1")), publisher_tag(&pid("p-2")));
    }

    #[test]
    fn source_codes_round_trip() {
        for source in MediaSource::ALL {
            assert_eq!(source_from_code(source_code(source)), Some(source));
        }
        assert_eq!(source_from_code(0), None);
        assert_eq!(source_from_code(4), None);
    }

    #[test]
    fn audio_round_trip() {
        let tag = publisher_tag(&pid("alice"));
        let payload = audio_payload(tag, 42, 1_700_000_000_000_000);
        assert_eq!(payload.len(), AUDIO_PAYLOAD_LEN);
        assert_eq!(payload[0], OPUS_TOC);
        assert_eq!(&payload[1..5], b"BMSH");
        let v = verify_audio(&payload, Some(tag), Some(MediaSource::Microphone)).unwrap();
        assert_eq!(
            v.stamp,
            Stamp {
                tag,
                source: MediaSource::Microphone,
                seq: 42,
                sent_at_us: 1_700_000_000_000_000
            }
        );
        assert!(!v.keyframe && !v.frame_start);
        // Without expectations it still verifies.
        assert!(verify(&payload, false, None, None).is_ok());
    }

    #[test]
    fn filler_depends_on_every_header_field() {
        let a = audio_payload(1, 1, 0);
        let b = audio_payload(1, 2, 0);
        let c = audio_payload(2, 1, 0);
        let d = audio_payload(1, 1, 1);
        assert_ne!(a[33..], b[33..]);
        assert_ne!(a[33..], c[33..]);
        assert_ne!(a[33..], d[33..]);
        assert_eq!(a, audio_payload(1, 1, 0));
        // Rewriting the source byte alone (camera → screen) is caught even without expectations.
        let mut packet = vp8_frame(1, MediaSource::Camera, 0, false, 200, 0).remove(0);
        packet[1 + 3 + 13] = source_code(MediaSource::Screen);
        assert!(matches!(
            verify_video(&packet, None, None),
            Err(VerifyError::FillerMismatch { .. })
        ));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let tag = publisher_tag(&pid("bob"));
        let payload = audio_payload(tag, 7, 123);
        for i in 0..payload.len() {
            let mut bad = payload.clone();
            bad[i] ^= 0x01;
            let result = verify_audio(&bad, Some(tag), Some(MediaSource::Microphone));
            assert!(result.is_err(), "flip at {i} went unnoticed");
        }
        let frames = vp8_frame(tag, MediaSource::Camera, 0, true, 2500, 99);
        for (n, packet) in frames.iter().enumerate() {
            for i in 0..packet.len() {
                // Bits 5.. of the frame tag (first partition size) are not checked.
                if n == 0 && (1..4).contains(&i) {
                    continue;
                }
                let mut bad = packet.clone();
                bad[i] ^= 0x01;
                let result = verify_video(&bad, Some(tag), Some(MediaSource::Camera));
                assert!(result.is_err(), "flip at packet {n} byte {i} went unnoticed");
            }
        }
    }

    #[test]
    fn truncation_and_extension_are_detected() {
        let payload = audio_payload(5, 5, 5);
        assert_eq!(
            verify_audio(&payload[..payload.len() - 1], None, None),
            Err(VerifyError::LengthMismatch {
                declared: AUDIO_PAYLOAD_LEN - 1,
                actual: AUDIO_PAYLOAD_LEN - 2
            })
        );
        let mut longer = payload.clone();
        longer.push(0);
        assert!(matches!(
            verify_audio(&longer, None, None),
            Err(VerifyError::LengthMismatch { .. })
        ));
        assert_eq!(
            verify_audio(&payload[..10], None, None),
            Err(VerifyError::Truncated { len: 9 })
        );
        assert_eq!(
            verify_audio(&[], None, None),
            Err(VerifyError::Truncated { len: 0 })
        );
        let mut zeroed = payload.clone();
        zeroed[100] = zeroed[100].wrapping_add(1);
        assert!(matches!(
            verify_audio(&zeroed, None, None),
            Err(VerifyError::FillerMismatch { offset: 99 })
        ));
    }

    #[test]
    fn wrong_publisher_and_source_are_misattributions() {
        let alice = publisher_tag(&pid("alice"));
        let bob = publisher_tag(&pid("bob"));
        let payload = audio_payload(alice, 1, 1);
        let err = verify_audio(&payload, Some(bob), Some(MediaSource::Microphone)).unwrap_err();
        assert_eq!(
            err,
            VerifyError::WrongPublisher {
                expected: bob,
                found: alice
            }
        );
        assert!(err.is_misattribution());
        let err = verify_audio(&payload, Some(alice), Some(MediaSource::Camera)).unwrap_err();
        assert!(matches!(err, VerifyError::WrongSource { .. }));
        assert!(err.is_misattribution());
        let corrupt = verify_audio(&payload[..50], Some(alice), None).unwrap_err();
        assert!(!corrupt.is_misattribution());
    }

    #[test]
    fn vp8_keyframe_bit_and_descriptor() {
        let tag = 77;
        let key = vp8_frame(tag, MediaSource::Camera, 10, true, 5000, 1);
        let delta = vp8_frame(tag, MediaSource::Camera, 20, false, 1000, 1);
        // First packet: X=0, S=1, PID=0; the rest S=0.
        assert_eq!(key[0][0], 0x10);
        assert!(key[1..].iter().all(|p| p[0] == 0x00));
        assert_eq!(delta[0][0], 0x10);
        // P bit: 0 on keyframes, 1 on delta frames; show_frame set; version 0.
        assert_eq!(key[0][1] & 0x1f, 0x10);
        assert_eq!(delta[0][1] & 0x1f, 0x11);
        assert_eq!(&key[0][4..7], &[0x9d, 0x01, 0x2a]);
        assert!(vp8_is_keyframe_start(&key[0]));
        assert!(!vp8_is_keyframe_start(&key[1]));
        assert!(!vp8_is_keyframe_start(&delta[0]));

        let v = verify_video(&key[0], Some(tag), Some(MediaSource::Camera)).unwrap();
        assert!(v.frame_start && v.keyframe);
        assert_eq!(v.stamp.seq, 10);
        let v = verify_video(&key[1], Some(tag), Some(MediaSource::Camera)).unwrap();
        assert!(!v.frame_start && !v.keyframe);
        assert_eq!(v.stamp.seq, 11);
        let v = verify_video(&delta[0], Some(tag), Some(MediaSource::Camera)).unwrap();
        assert!(v.frame_start && !v.keyframe);
    }

    #[test]
    fn keyframe_detection_handles_extended_descriptors() {
        // X=1, I=1 with a 15-bit picture id, L=1, T=1, then S=1 PID=0 and a keyframe tag.
        let pkt = [0x90, 0xe0, 0x80, 0x01, 0x00, 0x00, 0x10, 0x00, 0x00];
        assert!(vp8_is_keyframe_start(&pkt));
        let pkt = [0x90, 0xe0, 0x80, 0x01, 0x00, 0x00, 0x11, 0x00, 0x00];
        assert!(!vp8_is_keyframe_start(&pkt));
        // PID != 0 is never a frame start.
        assert!(!vp8_is_keyframe_start(&[0x11, 0x10, 0, 0]));
        assert!(!vp8_is_keyframe_start(&[0x90]));
        assert!(!vp8_is_keyframe_start(&[]));
    }

    #[test]
    fn frames_are_split_into_bounded_packets_that_add_up() {
        for &(bytes, key) in &[
            (43usize, false),
            (1100, false),
            (1101, false),
            (9765, true),
            (50_000, true),
        ] {
            let packets = vp8_frame(1, MediaSource::Camera, 0, key, bytes, 0);
            assert_eq!(packets.len(), packets_per_frame(bytes));
            assert!(
                packets
                    .iter()
                    .all(|p| p.len() <= MAX_PACKET_PAYLOAD && p.len() >= MIN_VIDEO_PACKET)
            );
            let total: usize = packets.iter().map(Vec::len).sum();
            assert_eq!(total, bytes.max(MIN_VIDEO_PACKET), "frame of {bytes}");
            for (i, p) in packets.iter().enumerate() {
                let v = verify_video(p, Some(1), Some(MediaSource::Camera)).unwrap();
                assert_eq!(v.stamp.seq, i as u64);
            }
        }
        // Tiny frames are raised to one minimal packet.
        let packets = vp8_frame(1, MediaSource::Camera, 0, true, 1, 0);
        assert_eq!(packets.len(), 1);
        assert!(verify_video(&packets[0], None, None).unwrap().keyframe);
    }

    #[test]
    fn frame_sizes_hit_the_bitrate() {
        let sizes = frame_sizes(500_000, 30, Duration::from_secs(2));
        assert_eq!(sizes.keyframe_bytes, sizes.delta_bytes * KEYFRAME_SIZE_FACTOR);
        // 2 s at 30 fps: one keyframe and 59 delta frames.
        let per_interval = sizes.keyframe_bytes + 59 * sizes.delta_bytes;
        let target = 500_000 / 8 * 2;
        assert!(per_interval.abs_diff(target) < 100, "{per_interval} vs {target}");
        assert_eq!(sizes.delta_bytes, 1953);

        let low = frame_sizes(1_000, 30, Duration::from_secs(2));
        assert_eq!(low.delta_bytes, MIN_VIDEO_PACKET);
        // Keyframe interval shorter than a frame: every frame is a keyframe's worth.
        let every = frame_sizes(240_000, 10, Duration::ZERO);
        assert_eq!(every.delta_bytes, 3000 / KEYFRAME_SIZE_FACTOR);
        let zero_fps = frame_sizes(100_000, 0, Duration::from_secs(1));
        assert!(zero_fps.delta_bytes >= MIN_VIDEO_PACKET);
    }
}
