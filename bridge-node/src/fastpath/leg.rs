//! One subscriber leg's rewrite state: the publisher's packet is copied once into the leg's
//! output buffer, its header rewritten in place to the leg's SSRC, payload type and
//! header-extension ids, then protected in place by the leg's own SRTP stream.

use super::srtp::{SrtpError, SrtpKeys, SrtpSendStream};
use super::tx::TxArena;
use crate::simulcast::Rewrite;
use crate::simulcast::vp8::Vp8Descriptor;
use bytes::BytesMut;

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
            srtp: SrtpSendStream::new(ssrc),
            packets_sent: 0,
            octets_sent: 0,
        }
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
        let rtp_len = publisher_packet.len();
        let buf = tx.start(rtp_len + keys.profile().rtp_tag_len());
        buf[..rtp_len].copy_from_slice(publisher_packet);
        let payload_len = self.rewrite(&mut buf[..rtp_len])?;
        if let Some((numbers, descriptor)) = renumber {
            crate::simulcast::apply(&mut buf[..rtp_len], numbers, descriptor);
        }
        let srtp_len = self.srtp.protect(keys, buf, rtp_len)?;
        self.packets_sent = self.packets_sent.wrapping_add(1);
        self.octets_sent = self.octets_sent.wrapping_add(payload_len as u32);
        Ok(tx.finish(srtp_len))
    }

    /// Rewrites SSRC, payload type and extension ids in place; returns the payload length.
    fn rewrite(&self, packet: &mut [u8]) -> Result<usize, SrtpError> {
        let header_len = super::srtp::rtp_header_len(packet)?;
        packet[1] = (packet[1] & 0x80) | (self.payload_type & 0x7F);
        packet[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        if packet[0] & 0x10 != 0 {
            let start = 12 + 4 * usize::from(packet[0] & 0x0F);
            let profile = u16::from_be_bytes([packet[start], packet[start + 1]]);
            self.rewrite_extensions(profile, &mut packet[start + 4..header_len]);
        }
        Ok(packet.len() - header_len)
    }

    /// Maps each extension element's id to this leg's, or blanks an unmapped element to padding
    /// bytes (id 0), which RFC 8285 §4.2 has receivers skip: the packet keeps its length, so no
    /// byte of the payload moves.
    fn rewrite_extensions(&self, profile: u16, block: &mut [u8]) {
        let two_byte = profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE;
        if profile != ONE_BYTE_PROFILE && !two_byte {
            // An unknown profile: nothing we can map, so nothing the subscriber may read.
            block.fill(0);
            return;
        }
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
            match self.extension_map.iter().find(|(from, _)| *from == id) {
                Some((_, to)) if two_byte => block[at] = *to,
                Some((_, to)) => block[at] = (to << 4) | (block[at] & 0x0F),
                None => block[at..end].fill(0),
            }
            at = end;
        }
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
