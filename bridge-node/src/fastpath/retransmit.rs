//! One bounded ring of recent packets per published stream, shared by all its subscribers:
//! a NACK from any leg is answered from it, rewritten for that leg.

/// Packets kept per video stream: about a second of 2.5 Mbit/s video, the window in which a
/// retransmission still arrives in time to be played.
pub const VIDEO_PACKETS: usize = 256;
/// Audio is rarely retransmitted (Opus has its own FEC) but Chromium does NACK it when negotiated.
pub const AUDIO_PACKETS: usize = 64;
/// Largest packet kept; larger ones (none on a 1500-byte MTU path) are not kept.
pub const PACKET_MAX_BYTES: usize = 1500;
/// A video slot's buffer: any packet on a 1500-byte path, so it is allocated once.
pub const VIDEO_SLOT_BYTES: usize = PACKET_MAX_BYTES;
/// An audio slot's buffer: Opus packets in WebRTC are well under this; a larger one grows its
/// slot once.
pub const AUDIO_SLOT_BYTES: usize = 512;

struct Slot {
    seq: Option<u16>,
    bytes: Vec<u8>,
}

pub struct RetransmitRing {
    slots: Vec<Slot>,
    slot_bytes: usize,
}

impl RetransmitRing {
    /// A ring of `packets` slots whose buffers are allocated at `slot_bytes` when first used.
    pub fn new(packets: usize, slot_bytes: usize) -> Self {
        assert!(packets > 0, "a ring holds at least one packet");
        Self {
            slot_bytes,
            slots: (0..packets)
                .map(|_| Slot {
                    seq: None,
                    bytes: Vec::new(),
                })
                .collect(),
        }
    }

    /// Keeps a copy of the packet (plain RTP, the publisher's header) written by `write`, which
    /// fills the slot and returns its length; returns the kept bytes. A slot's buffer is allocated
    /// when first used and reused after that.
    pub fn store(
        &mut self,
        seq: u16,
        len: usize,
        write: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<&[u8]> {
        if len > PACKET_MAX_BYTES {
            return None;
        }
        let index = usize::from(seq) % self.slots.len();
        let slot = &mut self.slots[index];
        slot.seq = None;
        slot.bytes.clear();
        if slot.bytes.capacity() < len {
            // Once at the slot's size, so that packets of varying size do not grow it again.
            slot.bytes.reserve_exact(self.slot_bytes.max(len));
        }
        slot.bytes.resize(len, 0);
        let written = write(&mut slot.bytes)?;
        slot.bytes.truncate(written);
        slot.seq = Some(seq);
        Some(&slot.bytes)
    }

    /// The packet with sequence number `seq`, if still kept.
    pub fn get(&self, seq: u16) -> Option<&[u8]> {
        let slot = &self.slots[usize::from(seq) % self.slots.len()];
        (slot.seq == Some(seq)).then_some(slot.bytes.as_slice())
    }

    /// Bytes held by the ring's buffers (for the memory accounting of a participant).
    pub fn capacity_bytes(&self) -> usize {
        self.slots.iter().map(|s| s.bytes.capacity()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(ring: &mut RetransmitRing, seq: u16) {
        ring.store(seq, 3, |buf| {
            buf.copy_from_slice(&[seq as u8, 1, 2]);
            Some(3)
        });
    }

    #[test]
    fn keeps_the_last_packets_and_forgets_overwritten_ones() {
        let mut ring = RetransmitRing::new(4, 16);
        for seq in 65_534..=65_535u16 {
            fill(&mut ring, seq);
        }
        for seq in 0..3u16 {
            fill(&mut ring, seq);
        }
        assert_eq!(ring.get(2), Some(&[2u8, 1, 2][..]));
        assert_eq!(ring.get(65_535), Some(&[255u8, 1, 2][..]));
        assert_eq!(ring.get(65_534), None, "overwritten by seq 2");
        assert_eq!(ring.get(3), None, "never stored");
        assert!(ring.store(9, PACKET_MAX_BYTES + 1, |_| Some(0)).is_none());
        assert!(ring.store(9, 10, |_| None).is_none());
        assert_eq!(ring.get(9), None, "a failed write keeps nothing");
    }
}
