//! The VP8 payload descriptor (RFC 7741 §4.2) as far as layer switching needs it: where a
//! packet's PictureID and TL0PICIDX are (to rewrite them in place), whether it starts a keyframe,
//! and a keyframe's height. Everything read here is in the clear under end-to-end encryption
//! (which leaves the descriptor and the first 10 bytes of a keyframe untouched).

/// A PictureID field: where it starts in the packet and whether it is the 15-bit form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PictureIdField {
    pub at: usize,
    pub long: bool,
    pub value: u16,
}

impl PictureIdField {
    /// The modulus of the field's value: 2^15 or 2^7.
    pub fn modulus(self) -> u16 {
        if self.long { 1 << 15 } else { 1 << 7 }
    }
}

/// What the bridge reads from one VP8 packet's descriptor and payload header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8Descriptor {
    pub picture_id: Option<PictureIdField>,
    /// Where TL0PICIDX is, and its value.
    pub tl0_pic_idx: Option<(usize, u8)>,
    /// The packet is the first of a keyframe (S = 1, partition 0, P = 0 in the payload header).
    pub keyframe_start: bool,
    /// The frame's height, from a keyframe's first packet (RFC 6386 §9.1; scaling bits dropped).
    pub height: Option<u16>,
}

/// Reads the descriptor of the VP8 payload that starts at `payload_at` in `packet`; `None` when
/// it runs past the packet.
pub fn parse(packet: &[u8], payload_at: usize) -> Option<Vp8Descriptor> {
    let mut at = payload_at;
    let first = *packet.get(at)?;
    at += 1;
    let extended = first & 0x80 != 0;
    let start = first & 0x10 != 0 && first & 0x07 == 0;
    let mut descriptor = Vp8Descriptor::default();
    if extended {
        let flags = *packet.get(at)?;
        at += 1;
        let (has_picture_id, has_tl0, has_tid, has_key_idx) = (
            flags & 0x80 != 0,
            flags & 0x40 != 0,
            flags & 0x20 != 0,
            flags & 0x10 != 0,
        );
        if has_picture_id {
            let high = *packet.get(at)?;
            if high & 0x80 != 0 {
                let low = *packet.get(at + 1)?;
                descriptor.picture_id = Some(PictureIdField {
                    at,
                    long: true,
                    value: u16::from_be_bytes([high & 0x7F, low]),
                });
                at += 2;
            } else {
                descriptor.picture_id = Some(PictureIdField {
                    at,
                    long: false,
                    value: u16::from(high),
                });
                at += 1;
            }
        }
        if has_tl0 {
            descriptor.tl0_pic_idx = Some((at, *packet.get(at)?));
            at += 1;
        }
        if has_tid || has_key_idx {
            packet.get(at)?;
            at += 1;
        }
    }
    if start {
        // The payload header: bit 0 of its first byte is P, the inverse keyframe flag.
        let header = packet.get(at..)?;
        if header.first().is_some_and(|b| b & 0x01 == 0) {
            descriptor.keyframe_start = true;
            // Keyframe: 3 bytes of frame tag, start code 9d 01 2a, width and height (LE, 14 bits).
            if header.len() >= 10 && header[3..6] == [0x9D, 0x01, 0x2A] {
                descriptor.height = Some(u16::from_le_bytes([header[8], header[9]]) & 0x3FFF);
            }
        }
    }
    Some(descriptor)
}

/// Writes `value` into a PictureID field in place, in the field's own width.
pub fn write_picture_id(packet: &mut [u8], field: PictureIdField, value: u16) {
    if field.long {
        let value = value & 0x7FFF;
        packet[field.at] = 0x80 | (value >> 8) as u8;
        packet[field.at + 1] = value as u8;
    } else {
        packet[field.at] = (value & 0x7F) as u8;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A VP8 RTP packet (12-byte header, no extension) with an extended descriptor: PictureID
    /// (15-bit when `long`), TL0PICIDX, TID; a keyframe's payload header when `keyframe`.
    pub fn vp8_packet(
        seq: u16,
        picture_id: u16,
        long: bool,
        tl0: u8,
        start: bool,
        keyframe: bool,
    ) -> Vec<u8> {
        let mut packet = vec![0x80, 96];
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&9000u32.to_be_bytes());
        packet.extend_from_slice(&1u32.to_be_bytes());
        packet.push(if start { 0x90 } else { 0x80 });
        packet.push(0xE0); // I, L, T
        if long {
            packet.extend_from_slice(&(0x8000 | picture_id).to_be_bytes());
        } else {
            packet.push(picture_id as u8 & 0x7F);
        }
        packet.push(tl0);
        packet.push(0x40); // TID 1, Y
        if keyframe {
            // Frame tag (P = 0), start code, 1280 x 720.
            packet.extend_from_slice(&[0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A, 0x00, 0x05, 0xD0, 0x02]);
        } else {
            packet.extend_from_slice(&[0x11, 0x02, 0x00]);
        }
        packet.extend_from_slice(&[0xAB; 20]);
        packet
    }

    #[test]
    fn reads_both_picture_id_widths_tl0_and_keyframes() {
        let key = vp8_packet(1, 0x1234, true, 7, true, true);
        let d = parse(&key, 12).unwrap();
        assert_eq!(
            d.picture_id,
            Some(PictureIdField {
                at: 14,
                long: true,
                value: 0x1234
            })
        );
        assert_eq!(d.tl0_pic_idx, Some((16, 7)));
        assert!(d.keyframe_start);
        assert_eq!(d.height, Some(720));

        let delta = vp8_packet(2, 100, false, 9, true, false);
        let d = parse(&delta, 12).unwrap();
        assert_eq!(
            d.picture_id,
            Some(PictureIdField {
                at: 14,
                long: false,
                value: 100
            })
        );
        assert_eq!(d.tl0_pic_idx, Some((15, 9)));
        assert!(!d.keyframe_start && d.height.is_none());

        // A keyframe's later packet (S = 0) does not start it.
        let middle = vp8_packet(3, 5, true, 1, false, true);
        assert!(!parse(&middle, 12).unwrap().keyframe_start);
        // Minimal descriptor (no X): a keyframe still shows.
        let mut minimal = vec![0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0x10];
        minimal.extend_from_slice(&[0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A, 0x80, 0x02, 0x68, 0x01]);
        let d = parse(&minimal, 12).unwrap();
        assert!(d.keyframe_start && d.picture_id.is_none());
        assert_eq!(d.height, Some(360));
    }

    #[test]
    fn truncated_descriptors_are_refused_and_rewrites_keep_the_width() {
        let key = vp8_packet(1, 0x1234, true, 7, true, true);
        for len in 12..17 {
            assert_eq!(parse(&key[..len], 12), None, "{len} bytes");
        }
        let mut packet = key.clone();
        let field = parse(&packet, 12).unwrap().picture_id.unwrap();
        write_picture_id(&mut packet, field, 0x8001);
        assert_eq!(
            parse(&packet, 12).unwrap().picture_id.unwrap().value,
            1,
            "mod 2^15"
        );
        let mut short = vp8_packet(2, 100, false, 9, true, false);
        let field = parse(&short, 12).unwrap().picture_id.unwrap();
        write_picture_id(&mut short, field, 130);
        assert_eq!(parse(&short, 12).unwrap().picture_id.unwrap().value, 2, "mod 2^7");
        assert_eq!(short[15], 9, "TL0PICIDX untouched");
    }
}
