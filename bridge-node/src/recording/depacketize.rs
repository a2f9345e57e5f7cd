//! Frames out of forwarded RTP, without decoding: VP8 (RFC 7741) from its payload descriptor and
//! the marker bit, keyframes from the VP8 payload header; Opus (RFC 7587) one packet per frame.
//! Sequence numbers and timestamps are extended to 64 bits before they are compared.

use crate::fastpath::srtp::rtp_header_len;

/// The parts of an RTP packet a depacketizer reads.
#[derive(Debug, Clone, Copy)]
pub struct RtpView<'a> {
    pub sequence: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: &'a [u8],
}

impl<'a> RtpView<'a> {
    /// `None` for a malformed packet (or one whose padding runs past its payload).
    pub fn parse(packet: &'a [u8]) -> Option<Self> {
        let header = rtp_header_len(packet).ok()?;
        let mut end = packet.len();
        if packet[0] & 0x20 != 0 {
            let padding = usize::from(*packet.last()?);
            end = end.checked_sub(padding).filter(|end| *end >= header)?;
        }
        Some(Self {
            sequence: u16::from_be_bytes([packet[2], packet[3]]),
            timestamp: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
            marker: packet[1] & 0x80 != 0,
            payload: &packet[header..end],
        })
    }
}

/// Extends a wrapping counter of `BITS` bits to 64 bits, taking each value as the one nearest
/// to the previous (RFC 3550 A.1's idea, for sequence numbers and timestamps alike).
#[derive(Debug, Default, Clone, Copy)]
pub struct Unwrapper<const BITS: u32> {
    last: Option<u64>,
}

impl<const BITS: u32> Unwrapper<BITS> {
    pub fn extend(&mut self, value: u64) -> u64 {
        let modulus = 1u64 << BITS;
        let Some(last) = self.last else {
            // Start one cycle up, so a value just before the first does not go below zero.
            let extended = modulus + value;
            self.last = Some(extended);
            return extended;
        };
        let base = last & !(modulus - 1);
        let candidates = [base.wrapping_sub(modulus), base, base + modulus].map(|b| b + value);
        let extended = candidates
            .into_iter()
            .min_by_key(|c| c.abs_diff(last))
            .expect("three candidates");
        if extended > last {
            self.last = Some(extended);
        }
        extended
    }
}

/// What one packet completed.
#[derive(Debug, PartialEq, Eq)]
pub enum Depacketized<'a> {
    /// Nothing yet (a frame in progress, or a packet dropped).
    Nothing,
    /// A whole frame, at the extended RTP timestamp `timestamp`.
    Frame {
        timestamp: u64,
        keyframe: bool,
        data: &'a [u8],
    },
}

/// Assembles one VP8 stream's frames. A frame with a missing packet is dropped, and so is every
/// frame after it up to the next keyframe (they refer to what was lost): [`Vp8Depacketizer::wants_keyframe`]
/// says when the publisher should be asked for one. The stream starts waiting for a keyframe.
#[derive(Debug, Default)]
pub struct Vp8Depacketizer {
    sequence: Unwrapper<16>,
    timestamp: Unwrapper<32>,
    next_sequence: Option<u64>,
    frame: Vec<u8>,
    frame_timestamp: Option<u64>,
    /// The frame in progress began with its first partition's start and has lost nothing.
    frame_started: bool,
    frame_broken: bool,
    frame_keyframe: bool,
    /// Frames are dropped until a keyframe arrives.
    keyframe_seen: bool,
    wants_keyframe: bool,
    /// Packets that belonged to no usable frame, and frames dropped.
    pub packets_lost: u64,
    pub frames_dropped: u64,
}

/// Largest VP8 frame assembled (a 4K keyframe is well under this).
pub const VP8_FRAME_BYTES_MAX: usize = 4 * 1024 * 1024;

impl Vp8Depacketizer {
    /// The publisher should be asked for a keyframe (none seen yet, or a frame was lost since
    /// the last one). Cleared by [`Vp8Depacketizer::keyframe_requested`].
    pub fn wants_keyframe(&self) -> bool {
        self.wants_keyframe || !self.keyframe_seen
    }

    pub fn keyframe_requested(&mut self) {
        self.wants_keyframe = false;
    }

    pub fn push(&mut self, packet: RtpView<'_>) -> Depacketized<'_> {
        let sequence = self.sequence.extend(u64::from(packet.sequence));
        let timestamp = self.timestamp.extend(u64::from(packet.timestamp));
        if self.next_sequence.is_some_and(|next| sequence < next) {
            // A duplicate, or a retransmission too late for its frame.
            return Depacketized::Nothing;
        }
        if let Some(next) = self.next_sequence
            && sequence != next
        {
            // Whatever was lost (a part of this frame, a whole frame) is something later frames
            // may refer to: nothing is usable until a keyframe.
            self.packets_lost += sequence - next;
            self.keyframe_seen = false;
            self.wants_keyframe = true;
            self.frame_broken = true;
        }
        self.next_sequence = Some(sequence + 1);
        if packet.payload.is_empty() {
            // Padding only (a sender probing bandwidth without RTX): it takes a sequence number
            // and belongs to no frame.
            return Depacketized::Nothing;
        }
        if self.frame_timestamp != Some(timestamp) {
            if self.frame_timestamp.is_some() {
                // The previous frame never saw its marker: its last packet was lost.
                self.lose_frame();
            }
            self.frame.clear();
            self.frame_timestamp = Some(timestamp);
            self.frame_started = false;
            self.frame_broken = false;
        }
        let Some((start, header_len)) = vp8_descriptor(packet.payload) else {
            self.frame_broken = true;
            return self.end_if_marked(packet.marker);
        };
        let data = &packet.payload[header_len..];
        if !self.frame_started {
            if start && !data.is_empty() {
                self.frame_started = true;
                // VP8 payload header (RFC 6386 §9.1): bit 0 of the first byte clear on keyframes.
                self.frame_keyframe = data[0] & 1 == 0;
            } else {
                self.frame_broken = true;
            }
        }
        if !self.frame_broken {
            if self.frame.len() + data.len() > VP8_FRAME_BYTES_MAX {
                self.frame_broken = true;
            } else {
                self.frame.extend_from_slice(data);
            }
        }
        self.end_if_marked(packet.marker)
    }

    fn end_if_marked(&mut self, marker: bool) -> Depacketized<'_> {
        if !marker {
            return Depacketized::Nothing;
        }
        let Some(timestamp) = self.frame_timestamp.take() else {
            return Depacketized::Nothing;
        };
        if !self.frame_started || self.frame_broken {
            self.lose_frame();
            return Depacketized::Nothing;
        }
        if !self.frame_keyframe && !self.keyframe_seen {
            self.frames_dropped += 1;
            return Depacketized::Nothing;
        }
        if self.frame_keyframe {
            self.keyframe_seen = true;
            self.wants_keyframe = false;
        }
        Depacketized::Frame {
            timestamp,
            keyframe: self.frame_keyframe,
            data: &self.frame,
        }
    }

    fn lose_frame(&mut self) {
        self.frames_dropped += 1;
        self.keyframe_seen = false;
        self.wants_keyframe = true;
    }
}

/// The VP8 payload descriptor (RFC 7741 §4.2): whether the packet starts partition 0 of a frame,
/// and the descriptor's length. `None` when the packet is shorter than its descriptor.
pub fn vp8_descriptor(payload: &[u8]) -> Option<(bool, usize)> {
    let first = *payload.first()?;
    let start = first & 0x10 != 0 && first & 0x07 == 0;
    let mut len = 1;
    if first & 0x80 != 0 {
        let extension = *payload.get(1)?;
        len = 2;
        if extension & 0x80 != 0 {
            // PictureID: 15 bits when its M bit is set, else 7.
            len += if payload.get(2)? & 0x80 != 0 { 2 } else { 1 };
        }
        if extension & 0x40 != 0 {
            len += 1; // TL0PICIDX
        }
        if extension & 0x30 != 0 {
            len += 1; // TID, Y, KEYIDX
        }
    }
    (len <= payload.len()).then_some((start, len))
}

/// A VP8 keyframe's size (RFC 6386 §9.1: after the 3-byte frame tag and the start code, 14 bits of
/// width and of height).
pub fn vp8_keyframe_size(frame: &[u8]) -> Option<(u16, u16)> {
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9D, 0x01, 0x2A] {
        return None;
    }
    let width = u16::from_le_bytes([frame[6], frame[7]]) & 0x3FFF;
    let height = u16::from_le_bytes([frame[8], frame[9]]) & 0x3FFF;
    Some((width, height))
}

/// One Opus stream: every packet is one frame (RFC 7587 §4.2); duplicates and late packets are
/// dropped, a lost packet is a gap the player fills.
#[derive(Debug, Default)]
pub struct OpusDepacketizer {
    sequence: Unwrapper<16>,
    timestamp: Unwrapper<32>,
    next_sequence: Option<u64>,
    pub packets_lost: u64,
}

impl OpusDepacketizer {
    pub fn push<'a>(&mut self, packet: RtpView<'a>) -> Depacketized<'a> {
        let sequence = self.sequence.extend(u64::from(packet.sequence));
        let timestamp = self.timestamp.extend(u64::from(packet.timestamp));
        if let Some(next) = self.next_sequence {
            if sequence < next {
                return Depacketized::Nothing;
            }
            self.packets_lost += sequence - next;
        }
        self.next_sequence = Some(sequence + 1);
        if packet.payload.is_empty() {
            return Depacketized::Nothing;
        }
        Depacketized::Frame {
            timestamp,
            keyframe: true,
            data: packet.payload,
        }
    }
}

#[cfg(test)]
mod tests;
