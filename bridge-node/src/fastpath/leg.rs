//! One subscriber leg's rewrite state: the publisher's packet is copied once into the leg's
//! output buffer, its header rewritten in place to the leg's SSRC, payload type and
//! header-extension ids, then protected in place by the leg's own SRTP stream.
//!
//! # Transport-wide sequence numbers
//! Where the subscriber negotiated transport-cc, every packet sent to it carries the
//! subscriber's own transport-wide sequence number (`crate::bwe::history`), for its feedback to
//! the bridge's estimator. It is written where the publisher's packet carried the publisher's
//! (browsers put one in every packet): the element keeps its place and length, only its id and
//! its two bytes change, so no byte of the payload moves and the cost is two stores. A packet
//! without one (a publisher that did not negotiate it) goes out unstamped, unseen by the
//! estimator.

use super::srtp::{SrtpError, SrtpKeys, SrtpSendStream};
use super::tx::TxArena;
use crate::bwe::history::SendHistory;
use crate::simulcast::Rewrite;
use crate::simulcast::vp8::Vp8Descriptor;
use bytes::BytesMut;
use std::time::Instant;

/// RFC 8285 profiles of the header-extension block.
const ONE_BYTE_PROFILE: u16 = 0xBEDE;
const TWO_BYTE_PROFILE_MASK: u16 = 0xFFF0;
const TWO_BYTE_PROFILE: u16 = 0x1000;

/// What a leg sends: the publisher's stream under this leg's identity.
pub struct LegWriter {
    ssrc: u32,
    payload_type: u8,
    /// (publisher's extension id, this leg's id); extensions not listed are blanked to padding.
    extension_map: Vec<(u8, u8)>,
    /// (publisher's transport-cc id, this leg's): the element the subscriber's sequence number is
    /// written into.
    transport_cc: Option<(u8, u8)>,
    srtp: SrtpSendStream,
    /// For the leg's sender reports (RFC 3550 §6.4.1: wrapping counts of RTP packets and payload
    /// octets sent on this SSRC).
    pub packets_sent: u32,
    pub octets_sent: u32,
}

impl LegWriter {
    pub fn new(ssrc: u32, payload_type: u8, extension_map: Vec<(u8, u8)>) -> Self {
        Self {
            ssrc,
            payload_type,
            extension_map,
            transport_cc: None,
            srtp: SrtpSendStream::new(ssrc),
            packets_sent: 0,
            octets_sent: 0,
        }
    }

    /// Stamps the subscriber's transport-wide sequence numbers into the element the publisher's
    /// packets carry under `publisher_id`, as this leg's `leg_id`.
    pub fn with_transport_cc(mut self, publisher_id: u8, leg_id: u8) -> Self {
        self.transport_cc = Some((publisher_id, leg_id));
        self
    }

    pub fn stamps_transport_cc(&self) -> bool {
        self.transport_cc.is_some()
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Copies the publisher's RTP packet into `tx`, rewrites it for this leg and protects it.
    /// Returns the SRTP datagram, split off the arena.
    pub fn write(
        &mut self,
        keys: &SrtpKeys,
        publisher_packet: &[u8],
        tx: &mut TxArena,
    ) -> Result<BytesMut, SrtpError> {
        self.write_rewritten(keys, publisher_packet, tx, None)
    }

    /// [`LegWriter::write`] that also writes a layer selector's numbers (sequence, timestamp,
    /// VP8 PictureID and TL0PICIDX at the places `renumber`'s descriptor names) into the copy.
    pub fn write_rewritten(
        &mut self,
        keys: &SrtpKeys,
        publisher_packet: &[u8],
        tx: &mut TxArena,
        renumber: Option<(&Rewrite, Option<&Vp8Descriptor>)>,
    ) -> Result<BytesMut, SrtpError> {
        self.write_stamped(keys, publisher_packet, tx, renumber, None)
    }

    /// [`LegWriter::write_rewritten`] that also stamps the next transport-wide sequence number of
    /// `stamp`'s history (the subscriber's, shared by all its legs) into the packet, sent at
    /// `stamp`'s instant, when this leg stamps and the packet has the element for it.
    pub fn write_stamped(
        &mut self,
        keys: &SrtpKeys,
        publisher_packet: &[u8],
        tx: &mut TxArena,
        renumber: Option<(&Rewrite, Option<&Vp8Descriptor>)>,
        stamp: Option<(&mut SendHistory, Instant)>,
    ) -> Result<BytesMut, SrtpError> {
        let rtp_len = publisher_packet.len();
        let tag_len = keys.profile().rtp_tag_len();
        let buf = tx.start(rtp_len + tag_len);
        buf[..rtp_len].copy_from_slice(publisher_packet);
        let stamping = stamp.is_some();
        let (payload_len, stamp_at) = self.rewrite(&mut buf[..rtp_len], stamping)?;
        if let Some((numbers, descriptor)) = renumber {
            crate::simulcast::apply(&mut buf[..rtp_len], numbers, descriptor);
        }
        if let (Some(at), Some((history, now))) = (stamp_at, stamp) {
            let seq = history.stamp(now, rtp_len + tag_len, None);
            buf[at..at + 2].copy_from_slice(&seq.to_be_bytes());
        }
        let srtp_len = self.srtp.protect(keys, buf, rtp_len)?;
        self.packets_sent = self.packets_sent.wrapping_add(1);
        self.octets_sent = self.octets_sent.wrapping_add(payload_len as u32);
        Ok(tx.finish(srtp_len))
    }

    /// A padding-only packet of `padding_len` bytes (1..=255) on this leg, under sequence number
    /// `seq` and timestamp `rtp_time` (from the leg's layer selector), carrying the next
    /// transport-wide sequence number of `history` as probe `cluster`: what a bandwidth probe is
    /// made of. `None` on a leg that does not stamp transport-cc (a probe nobody reports on is
    /// useless). Receivers drop the padding after counting it (RFC 3550 §5.1).
    #[allow(clippy::too_many_arguments)]
    pub fn write_padding(
        &mut self,
        keys: &SrtpKeys,
        tx: &mut TxArena,
        (seq, rtp_time): (u16, u32),
        padding_len: u8,
        history: &mut SendHistory,
        now: Instant,
        cluster: u32,
    ) -> Option<Result<BytesMut, SrtpError>> {
        let (_, leg_id) = self.transport_cc?;
        let padding_len = usize::from(padding_len.max(1));
        // Header, a one-byte-form extension block of one word (transport-cc), the padding.
        let rtp_len = 12 + 8 + padding_len;
        let buf = tx.start(rtp_len + keys.profile().rtp_tag_len());
        buf[0] = 0x80 | 0x20 | 0x10;
        buf[1] = self.payload_type & 0x7F;
        buf[2..4].copy_from_slice(&seq.to_be_bytes());
        buf[4..8].copy_from_slice(&rtp_time.to_be_bytes());
        buf[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        let transport_seq = history.stamp(now, rtp_len + keys.profile().rtp_tag_len(), Some(cluster));
        let [high, low] = transport_seq.to_be_bytes();
        buf[12..20].copy_from_slice(&[0xBE, 0xDE, 0, 1, (leg_id << 4) | 1, high, low, 0]);
        buf[20..rtp_len].fill(0);
        buf[rtp_len - 1] = padding_len as u8;
        Some(match self.srtp.protect(keys, buf, rtp_len) {
            Ok(srtp_len) => {
                // Padding is no payload: the sender report's octet count leaves it out.
                self.packets_sent = self.packets_sent.wrapping_add(1);
                Ok(tx.finish(srtp_len))
            }
            Err(err) => Err(err),
        })
    }

    /// Rewrites SSRC, payload type and extension ids in place; returns the payload length and,
    /// when `stamping`, where the transport-wide sequence number goes (two bytes).
    fn rewrite(&self, packet: &mut [u8], stamping: bool) -> Result<(usize, Option<usize>), SrtpError> {
        let header_len = super::srtp::rtp_header_len(packet)?;
        packet[1] = (packet[1] & 0x80) | (self.payload_type & 0x7F);
        packet[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        let mut stamp_at = None;
        if packet[0] & 0x10 != 0 {
            let start = 12 + 4 * usize::from(packet[0] & 0x0F);
            let profile = u16::from_be_bytes([packet[start], packet[start + 1]]);
            let block_at = start + 4;
            stamp_at = self
                .rewrite_extensions(profile, &mut packet[block_at..header_len], stamping)
                .map(|at| block_at + at);
        }
        Ok((packet.len() - header_len, stamp_at))
    }

    /// Maps each extension element's id to this leg's, or blanks an unmapped element to padding
    /// bytes (id 0), which RFC 8285 §4.2 has receivers skip: the packet keeps its length, so no
    /// byte of the payload moves. The transport-cc element is kept under the leg's id when
    /// `stamping` (its value's place in `block` is returned), blanked otherwise.
    fn rewrite_extensions(&self, profile: u16, block: &mut [u8], stamping: bool) -> Option<usize> {
        let two_byte = profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE;
        if profile != ONE_BYTE_PROFILE && !two_byte {
            // An unknown profile: nothing we can map, so nothing the subscriber may read.
            block.fill(0);
            return None;
        }
        let mut stamp_at = None;
        let mut at = 0;
        while at < block.len() {
            let (id, element_len) = if two_byte {
                if block[at] == 0 {
                    at += 1;
                    continue;
                }
                let Some(len) = block.get(at + 1) else { break };
                (block[at], 2 + usize::from(*len))
            } else {
                let id = block[at] >> 4;
                if id == 0 {
                    at += 1;
                    continue;
                }
                if id == 15 {
                    // RFC 8285: id 15 ends the block.
                    block[at..].fill(0);
                    break;
                }
                (id, 1 + usize::from(block[at] & 0x0F) + 1)
            };
            let end = (at + element_len).min(block.len());
            let value_at = at + if two_byte { 2 } else { 1 };
            let transport_cc = self
                .transport_cc
                .filter(|(from, _)| stamping && *from == id && end - value_at == 2 && stamp_at.is_none());
            let mapped =
                transport_cc.or_else(|| self.extension_map.iter().find(|(from, _)| *from == id).copied());
            match mapped {
                Some((_, to)) if two_byte => block[at] = to,
                Some((_, to)) => block[at] = (to << 4) | (block[at] & 0x0F),
                None => block[at..end].fill(0),
            }
            if transport_cc.is_some() {
                stamp_at = Some(value_at);
            }
            at = end;
        }
        stamp_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fastpath::srtp::{SrtpProfile, SrtpRecvStream};

    fn publisher_packet() -> Vec<u8> {
        let mut packet = vec![0x90, 0xE0, 0x01, 0x02, 0, 0, 0x10, 0, 0xAA, 0xAA, 0xAA, 0xAA];
        // One-byte extensions: id 1 (2 bytes), id 3 (1 byte), id 5 (4 bytes), then padding.
        packet.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x03]);
        packet.extend_from_slice(&[0x11, 0xA1, 0xA2, 0x30, 0xB1, 0x53, 0xC1, 0xC2, 0xC3, 0xC4, 0, 0]);
        packet.extend_from_slice(b"payload");
        packet
    }

    #[test]
    fn the_leg_rewrites_identity_maps_extensions_and_blanks_the_rest() {
        let keys = SrtpKeys::new(SrtpProfile::AeadAes128Gcm, &[7; 16], &[9; 12]).unwrap();
        let mut leg = LegWriter::new(0x0102_0304, 111, vec![(1, 4), (5, 2)]);
        let mut tx = TxArena::default();
        let source = publisher_packet();
        let mut out = leg.write(&keys, &source, &mut tx).unwrap().to_vec();
        let len = SrtpRecvStream::new().unprotect(&keys, &mut out).unwrap();
        let out = &out[..len];
        assert_eq!(out[1], 0x80 | 111, "marker kept, payload type the leg's");
        assert_eq!(&out[2..8], &source[2..8], "sequence and timestamp untouched");
        assert_eq!(&out[8..12], &[1, 2, 3, 4]);
        assert_eq!(
            &out[16..28],
            &[0x41, 0xA1, 0xA2, 0, 0, 0x23, 0xC1, 0xC2, 0xC3, 0xC4, 0, 0]
        );
        assert_eq!(&out[28..], b"payload");
        assert_eq!((leg.packets_sent, leg.octets_sent), (1, 7));
        // The publisher's copy is untouched, for the next leg.
        assert_eq!(source, publisher_packet());
    }

    /// The publisher's transport-cc element (id 3, 2 bytes) carries the subscriber's sequence
    /// under the leg's id (7); without a history to stamp from it is blanked like any
    /// leg-local extension.
    #[test]
    fn the_leg_stamps_the_subscribers_transport_wide_sequence_in_place() {
        let keys = SrtpKeys::new(SrtpProfile::AeadAes128Gcm, &[7; 16], &[9; 12]).unwrap();
        let mut leg = LegWriter::new(0x0102_0304, 111, vec![(1, 4)]).with_transport_cc(3, 7);
        let mut tx = TxArena::default();
        let mut history = SendHistory::default();
        let mut source = publisher_packet();
        // id 3 becomes a two-byte element: id 3 len 1, then padding.
        source[19..23].copy_from_slice(&[0x31, 0xEE, 0xFF, 0]);
        let now = Instant::now();
        let open = |data: BytesMut| {
            let mut out = data.to_vec();
            let len = SrtpRecvStream::new().unprotect(&keys, &mut out).unwrap();
            out.truncate(len);
            out
        };
        for expected in 0..2u16 {
            let sent = leg
                .write_stamped(&keys, &source, &mut tx, None, Some((&mut history, now)))
                .unwrap();
            let out = open(sent);
            assert_eq!(
                crate::fastpath::inbound::find_extension(&out, 7),
                Some(&expected.to_be_bytes()[..])
            );
            assert_eq!(out.len(), source.len(), "nothing moved");
            assert_eq!(&out[28..], b"payload");
        }
        assert_eq!(history.sent(), 2);
        let unstamped = open(leg.write(&keys, &source, &mut tx).unwrap());
        assert_eq!(crate::fastpath::inbound::find_extension(&unstamped, 7), None);
        assert_eq!(crate::fastpath::inbound::find_extension(&unstamped, 3), None);
    }

    #[test]
    fn a_padding_packet_carries_the_transport_wide_sequence_and_nothing_else() {
        let keys = SrtpKeys::new(SrtpProfile::AeadAes128Gcm, &[7; 16], &[9; 12]).unwrap();
        let mut tx = TxArena::default();
        let mut history = SendHistory::default();
        let now = Instant::now();
        let mut plain = LegWriter::new(5, 96, Vec::new());
        assert!(
            plain
                .write_padding(&keys, &mut tx, (1, 2), 200, &mut history, now, 1)
                .is_none()
        );
        let mut leg = LegWriter::new(5, 96, Vec::new()).with_transport_cc(3, 7);
        let sent = leg
            .write_padding(&keys, &mut tx, (0x1234, 0xABCD), 200, &mut history, now, 9)
            .unwrap()
            .unwrap();
        let mut out = sent.to_vec();
        let len = SrtpRecvStream::new().unprotect(&keys, &mut out).unwrap();
        let out = &out[..len];
        assert_eq!(out[0] & 0x20, 0x20, "padding bit");
        assert_eq!(&out[2..4], &[0x12, 0x34]);
        assert_eq!(
            crate::fastpath::inbound::find_extension(out, 7),
            Some(&[0, 0][..])
        );
        assert_eq!(usize::from(*out.last().unwrap()), 200);
        assert_eq!(out.len(), 20 + 200);
        assert_eq!(crate::fastpath::srtp::rtp_header_len(out), Ok(20));
        assert_eq!(history.sent(), 1);
    }

    #[test]
    fn malformed_packets_are_refused() {
        let keys = SrtpKeys::new(SrtpProfile::AeadAes128Gcm, &[7; 16], &[9; 12]).unwrap();
        let mut leg = LegWriter::new(1, 96, Vec::new());
        let mut tx = TxArena::default();
        let mut lying = publisher_packet();
        lying[15] = 0x40; // extension block longer than the packet
        assert!(leg.write(&keys, &lying, &mut tx).is_err());
        assert!(leg.write(&keys, &[0x80; 5], &mut tx).is_err());
    }
}
