//! One bounded ring of recent packets per published stream, shared by all its subscribers:
//! a NACK from any leg is answered from it, rewritten for that leg.
//!
//! The packets are kept back to back in one byte buffer sized by what the stream needs: the
//! buffer starts small and grows (by a quarter, up to a cap) only when a packet would overwrite one
//! younger than [`HISTORY`], so a stream holds about [`HISTORY`] × its bitrate, not a fixed
//! number of MTU-sized slots (256 slots of 1,500 bytes were 375 KiB per camera whatever its
//! bitrate). Growing is the only allocation, while a stream's rate climbs to a new high.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a packet is kept at least (while the caps allow): a retransmission asked for later
/// than this arrives too late to be played (a receiver's jitter buffer waits a few hundred
/// milliseconds at most).
pub const HISTORY: Duration = Duration::from_secs(1);
/// Packets kept per video stream at most: a second of 2.5 Mbit/s video.
pub const VIDEO_PACKETS: usize = 256;
/// Audio is rarely retransmitted (Opus has its own FEC) but Chromium does NACK it when negotiated.
pub const AUDIO_PACKETS: usize = 64;
/// Largest packet kept; larger ones (none on a 1500-byte MTU path) are not kept.
pub const PACKET_MAX_BYTES: usize = 1500;
/// A video stream's buffer when its first packet arrives, and at most.
pub const VIDEO_START_BYTES: usize = 16 * 1024;
pub const VIDEO_MAX_BYTES: usize = VIDEO_PACKETS * PACKET_MAX_BYTES;
/// An audio stream's buffer when its first packet arrives, and at most.
pub const AUDIO_START_BYTES: usize = 4 * 1024;
pub const AUDIO_MAX_BYTES: usize = AUDIO_PACKETS * 512;

/// Where one kept packet is: its bytes are `data[start % data.len()..][..len]`.
#[derive(Clone, Copy)]
struct Entry {
    seq: u16,
    /// Position in the stream of all bytes written (a `u64` never wraps).
    start: u64,
    len: u16,
    at: Instant,
}

pub struct RetransmitRing {
    /// Kept packets in arrival order, oldest first; at most `packets`, none overwritten.
    entries: VecDeque<Entry>,
    packets: usize,
    /// The ring's bytes; its length is the ring's size (empty until the first packet).
    data: Vec<u8>,
    start_bytes: usize,
    max_bytes: usize,
    /// Position after the last packet written.
    head: u64,
}

impl RetransmitRing {
    /// A ring of at most `packets` packets in a buffer of `start_bytes`, allocated on the first
    /// packet, that grows up to `max_bytes` when the stream's last [`HISTORY`] does not fit.
    pub fn new(packets: usize, start_bytes: usize, max_bytes: usize) -> Self {
        assert!(packets > 0, "a ring holds at least one packet");
        assert!(
            start_bytes >= PACKET_MAX_BYTES && max_bytes >= start_bytes,
            "a ring's buffer holds any packet and its cap is no smaller"
        );
        Self {
            entries: VecDeque::new(),
            packets,
            data: Vec::new(),
            start_bytes,
            max_bytes,
            head: 0,
        }
    }

    /// A video stream's ring.
    pub fn video() -> Self {
        Self::new(VIDEO_PACKETS, VIDEO_START_BYTES, VIDEO_MAX_BYTES)
    }

    /// An audio stream's ring.
    pub fn audio() -> Self {
        Self::new(AUDIO_PACKETS, AUDIO_START_BYTES, AUDIO_MAX_BYTES)
    }

    /// Keeps a copy of the packet (plain RTP, the publisher's header) written by `write`, which
    /// fills `len` bytes and returns how many it wrote; returns the kept bytes.
    pub fn store(
        &mut self,
        now: Instant,
        seq: u16,
        len: usize,
        write: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<&[u8]> {
        if len > PACKET_MAX_BYTES {
            return None;
        }
        if self.data.is_empty() {
            self.entries.reserve_exact(self.packets);
            self.data = vec![0; self.start_bytes];
        }
        let mut start = self.aligned_start(len);
        // Forget what this packet overwrites; grow instead while that is younger than HISTORY.
        while let Some(oldest) = self.entries.front().copied() {
            let overwritten = oldest.start + (self.data.len() as u64) < start + len as u64;
            if !overwritten && self.entries.len() < self.packets {
                break;
            }
            if overwritten
                && self.entries.len() < self.packets
                && now.saturating_duration_since(oldest.at) < HISTORY
                && self.data.len() < self.max_bytes
            {
                self.grow();
                start = self.aligned_start(len);
                continue;
            }
            self.entries.pop_front();
        }
        let at = (start % self.data.len() as u64) as usize;
        let written = write(&mut self.data[at..at + len]);
        let Some(written) = written.filter(|w| *w <= len) else {
            // Nothing kept, and nothing that was kept is lost.
            return None;
        };
        self.head = start + written as u64;
        self.entries.push_back(Entry {
            seq,
            start,
            len: written as u16,
            at: now,
        });
        Some(&self.data[at..at + written])
    }

    /// Where a packet of `len` bytes goes: after the last one, or at the buffer's start when it
    /// would not fit before the end (a packet is never split).
    fn aligned_start(&self, len: usize) -> u64 {
        let size = self.data.len() as u64;
        if self.head % size + len as u64 > size {
            self.head.next_multiple_of(size)
        } else {
            self.head
        }
    }

    /// A quarter larger (at most the cap), the kept packets copied over in order. By a quarter,
    /// not doubled: the buffer ends at most a quarter above what the stream needs, for a few
    /// more copies while it ramps up.
    fn grow(&mut self) {
        let size = (self.data.len() + self.data.len() / 4).min(self.max_bytes);
        let old = std::mem::replace(&mut self.data, vec![0; size]);
        let old_size = old.len() as u64;
        let mut head = 0u64;
        for entry in self.entries.iter_mut() {
            let from = (entry.start % old_size) as usize;
            let len = usize::from(entry.len);
            self.data[head as usize..head as usize + len].copy_from_slice(&old[from..from + len]);
            entry.start = head;
            head += len as u64;
        }
        self.head = head;
    }

    /// The packet with sequence number `seq`, if still kept (the latest one with that number).
    pub fn get(&self, seq: u16) -> Option<&[u8]> {
        let entry = self.entries.iter().rev().find(|e| e.seq == seq)?;
        let at = (entry.start % self.data.len() as u64) as usize;
        Some(&self.data[at..at + usize::from(entry.len)])
    }

    /// Bytes held by the ring (for the memory accounting of a participant).
    pub fn capacity_bytes(&self) -> usize {
        self.data.capacity() + self.entries.capacity() * std::mem::size_of::<Entry>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(ring: &mut RetransmitRing, now: Instant, seq: u16, len: usize) {
        ring.store(now, seq, len, |buf| {
            buf.fill(seq as u8);
            Some(len)
        });
    }

    #[test]
    fn keeps_the_last_packets_and_forgets_overwritten_ones() {
        let now = Instant::now();
        let mut ring = RetransmitRing::new(4, PACKET_MAX_BYTES, PACKET_MAX_BYTES);
        for seq in 65_534..=65_535u16 {
            fill(&mut ring, now, seq, 3);
        }
        for seq in 0..3u16 {
            fill(&mut ring, now, seq, 3);
        }
        assert_eq!(ring.get(2), Some(&[2u8, 2, 2][..]));
        assert_eq!(ring.get(65_535), Some(&[255u8, 255, 255][..]));
        assert_eq!(ring.get(65_534), None, "the fifth packet of a ring of four");
        assert_eq!(ring.get(3), None, "never stored");
        assert!(ring.store(now, 9, PACKET_MAX_BYTES + 1, |_| Some(0)).is_none());
        assert!(ring.store(now, 9, 10, |_| None).is_none());
        assert_eq!(ring.get(9), None, "a failed write keeps nothing");
        assert_eq!(ring.get(2), Some(&[2u8, 2, 2][..]), "nor loses anything");
    }

    #[test]
    fn bytes_not_slots_bound_what_is_kept_once_the_cap_is_reached() {
        let now = Instant::now();
        let mut ring = RetransmitRing::new(64, 3000, 3000);
        // Three packets of 1,000 bytes fill the buffer; the fourth overwrites the first.
        for seq in 0..4u16 {
            fill(&mut ring, now, seq, 1000);
        }
        assert_eq!(ring.get(0), None);
        for seq in 1..4u16 {
            assert_eq!(ring.get(seq), Some(&[seq as u8; 1000][..]), "packet {seq}");
        }
        // A packet that does not fit before the end starts over at the beginning, intact.
        fill(&mut ring, now, 4, 1200);
        assert_eq!(ring.get(4), Some(&[4u8; 1200][..]));
        assert_eq!(ring.get(3), Some(&[3u8; 1000][..]));
        assert_eq!(ring.get(1), None);
    }

    #[test]
    fn grows_to_hold_the_last_second_and_no_more() {
        let start = Instant::now();
        let mut ring = RetransmitRing::new(256, 4096, 64 * 1024);
        // 50 packets of 1,000 bytes a second: a second is 50 KB, more than the 4 KiB start.
        for seq in 0..500u16 {
            fill(
                &mut ring,
                start + Duration::from_millis(20 * u64::from(seq)),
                seq,
                1000,
            );
        }
        let size = ring.capacity_bytes();
        assert!(
            (50_000..64 * 1024 + 256 * 64).contains(&size),
            "holds a second of this stream, got {size} bytes"
        );
        assert_eq!(
            ring.get(499 - 49),
            Some(&[(499u16 - 49) as u8; 1000][..]),
            "a second ago"
        );
        // The rate stays: the buffer no longer grows.
        for seq in 500..1000u16 {
            fill(
                &mut ring,
                start + Duration::from_millis(20 * u64::from(seq)),
                seq,
                1000,
            );
        }
        assert_eq!(ring.capacity_bytes(), size);
        // At the cap, the oldest packets make room whatever their age.
        for seq in 1000..1300u16 {
            fill(&mut ring, start + Duration::from_secs(20), seq, 1000);
        }
        assert!(ring.capacity_bytes() <= 64 * 1024 + 256 * 64);
        assert_eq!(ring.get(1299), Some(&[(1299u16) as u8; 1000][..]));
    }
}
