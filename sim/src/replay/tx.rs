//! What a replay participant publishes: one VP8-shaped video stream of stamped payloads
//! ([`crate::payload::vp8_frame`]), sealed with the bridge's own SRTP code
//! ([`SrtpSendStream`]) under the keys exported from the participant's DTLS handshake. Sans-IO:
//! the caller says how many packets a frame has and gets the sealed datagrams.

use crate::payload::{self, MAX_PACKET_PAYLOAD};
use bridgemesh_bridge::fastpath::srtp::{SrtpKeys, SrtpSendStream};
use bridgemesh_proto::signaling::MediaSource;

/// RTP header without CSRCs or extensions.
const RTP_HEADER_LEN: usize = 12;
/// Room for the header, the largest payload and the longest SRTP tag (16 bytes).
const PACKET_MAX_BYTES: usize = RTP_HEADER_LEN + MAX_PACKET_PAYLOAD + 16;
/// One keyframe every this many frames (at the pacer's 200 frames/s, every 2 s).
pub const KEYFRAME_EVERY_FRAMES: u64 = 400;

/// One published stream.
pub struct Source {
    ssrc: u32,
    payload_type: u8,
    tag: u64,
    keys: SrtpKeys,
    srtp: SrtpSendStream,
    seq: u16,
    stamp_seq: u64,
    frames: u64,
    timestamp_base: u32,
    buf: Box<[u8; PACKET_MAX_BYTES]>,
}

impl Source {
    /// `tag`: the publisher's stamp tag ([`payload::publisher_tag`]); `timestamp_base`: the RTP
    /// timestamp of time zero.
    pub fn new(
        ssrc: u32,
        payload_type: u8,
        tag: u64,
        keys: SrtpKeys,
        first_seq: u16,
        timestamp_base: u32,
    ) -> Self {
        Self {
            ssrc,
            payload_type,
            tag,
            keys,
            srtp: SrtpSendStream::new(ssrc),
            seq: first_seq,
            stamp_seq: 0,
            frames: 0,
            timestamp_base,
            buf: Box::new([0; PACKET_MAX_BYTES]),
        }
    }

    /// Seals one frame of `packets` full-size packets, stamped `sent_at_us` (unix µs, also the
    /// RTP timestamp's clock), and hands each datagram to `out`. Returns how many it sealed.
    pub fn frame(&mut self, packets: usize, sent_at_us: u64, out: &mut dyn FnMut(&[u8])) -> usize {
        if packets == 0 {
            return 0;
        }
        let keyframe = self.frames.is_multiple_of(KEYFRAME_EVERY_FRAMES);
        self.frames += 1;
        let payloads = payload::vp8_frame(
            self.tag,
            MediaSource::Camera,
            self.stamp_seq,
            keyframe,
            packets * MAX_PACKET_PAYLOAD,
            sent_at_us,
        );
        self.stamp_seq += payloads.len() as u64;
        // 90 kHz from microseconds: the media clock the stamps also carry.
        let timestamp = self
            .timestamp_base
            .wrapping_add((sent_at_us.wrapping_mul(9) / 100) as u32);
        let last = payloads.len().saturating_sub(1);
        let mut sealed = 0;
        for (i, body) in payloads.iter().enumerate() {
            let buf = &mut self.buf[..];
            buf[0] = 0x80;
            buf[1] = self.payload_type | if i == last { 0x80 } else { 0 };
            buf[2..4].copy_from_slice(&self.seq.to_be_bytes());
            buf[4..8].copy_from_slice(&timestamp.to_be_bytes());
            buf[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
            let rtp_len = RTP_HEADER_LEN + body.len();
            buf[RTP_HEADER_LEN..rtp_len].copy_from_slice(body);
            self.seq = self.seq.wrapping_add(1);
            if let Ok(len) = self.srtp.protect(&self.keys, buf, rtp_len) {
                out(&buf[..len]);
                sealed += 1;
            }
        }
        sealed
    }
}
