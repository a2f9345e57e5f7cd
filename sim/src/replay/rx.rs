//! What a replay participant does with the RTP it receives: counts every packet per SSRC from its
//! clear header (sequence gaps are loss), and opens and verifies one packet in
//! [`SAMPLE_EVERY`] of each stream with the bridge's own SRTP code and the payload verifier of
//! [`crate::payload`]. Sans-IO: datagrams in, counters out.

use crate::payload;
use bridgemesh_bridge::fastpath::srtp::{SrtpKeys, SrtpRecvStream, rtp_header_len};
use bridgemesh_proto::signaling::MediaSource;
use std::collections::HashMap;

/// One packet in this many of each stream is decrypted and verified (the first one included).
pub const SAMPLE_EVERY: u64 = 64;
/// Most streams (SSRCs) one participant tracks; packets of further SSRCs are counted only.
pub const MAX_STREAMS: usize = 1024;
/// Most latency samples kept per participant.
pub const MAX_LATENCY_SAMPLES: usize = 65_536;
/// Largest datagram a sample is copied from.
const SAMPLE_MAX_BYTES: usize = 2048;

/// Counters of everything received so far; `Copy` so a snapshot is cheap.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RxCounters {
    pub packets: u64,
    pub bytes: u64,
    /// Packets the sequence numbers say were sent to this participant but never arrived.
    pub lost: u64,
    /// Sampled packets that opened (SRTP tag right) and whose payload verified.
    pub verified: u64,
    /// Sampled packets whose SRTP authentication failed.
    pub auth_failed: u64,
    /// Sampled packets that opened but whose payload did not verify.
    pub corrupt: u64,
    /// Packets of SSRCs past [`MAX_STREAMS`] (counted, not tracked).
    pub untracked: u64,
    pub streams: u64,
}

struct Stream {
    /// Extended sequence number of the first packet seen and of the highest.
    first: u64,
    highest: u64,
    received: u64,
    srtp: SrtpRecvStream,
}

/// The receive side of one replay participant.
pub struct Receiver {
    keys: Option<SrtpKeys>,
    streams: HashMap<u32, Stream>,
    counters: RxCounters,
    scratch: Box<[u8; SAMPLE_MAX_BYTES]>,
    latency_us: Vec<u32>,
}

impl Default for Receiver {
    fn default() -> Self {
        Self::new()
    }
}

/// The extended sequence number nearest to `highest` for `seq`.
fn extend(highest: u64, seq: u16) -> u64 {
    let candidate = (highest & !0xFFFF) | u64::from(seq);
    if candidate + 0x8000 < highest {
        candidate + 0x1_0000
    } else if candidate > highest + 0x8000 && candidate >= 0x1_0000 {
        candidate - 0x1_0000
    } else {
        candidate
    }
}

impl Receiver {
    pub fn new() -> Self {
        Self {
            keys: None,
            streams: HashMap::new(),
            counters: RxCounters::default(),
            scratch: Box::new([0; SAMPLE_MAX_BYTES]),
            latency_us: Vec::new(),
        }
    }

    /// The keys the bridge protects this participant's legs with (the peer's, after DTLS).
    pub fn set_keys(&mut self, keys: SrtpKeys) {
        self.keys = Some(keys);
    }

    /// One SRTP datagram (first byte 128..=191, not RTCP). `now_us`: unix microseconds, for
    /// the latency of sampled packets.
    pub fn on_rtp(&mut self, datagram: &[u8], now_us: u64) {
        if datagram.len() < 12 {
            return;
        }
        self.counters.packets += 1;
        self.counters.bytes += datagram.len() as u64;
        let seq = u16::from_be_bytes([datagram[2], datagram[3]]);
        let ssrc = u32::from_be_bytes([datagram[8], datagram[9], datagram[10], datagram[11]]);
        if !self.streams.contains_key(&ssrc) && self.streams.len() >= MAX_STREAMS {
            self.counters.untracked += 1;
            return;
        }
        let stream = self.streams.entry(ssrc).or_insert_with(|| {
            // Start in the middle of the extended space so that a reordered first packet
            // cannot go below zero.
            let start = (1u64 << 32) | u64::from(seq);
            Stream {
                first: start,
                highest: start,
                received: 0,
                srtp: SrtpRecvStream::new(),
            }
        });
        let index = extend(stream.highest, seq);
        stream.first = stream.first.min(index);
        stream.highest = stream.highest.max(index);
        stream.received += 1;
        if !(stream.received - 1).is_multiple_of(SAMPLE_EVERY) {
            return;
        }
        let Some(keys) = &self.keys else {
            self.counters.auth_failed += 1;
            return;
        };
        let len = datagram.len().min(SAMPLE_MAX_BYTES);
        let packet = &mut self.scratch[..len];
        packet.copy_from_slice(&datagram[..len]);
        let Ok(rtp_len) = stream.srtp.unprotect(keys, packet) else {
            self.counters.auth_failed += 1;
            return;
        };
        let verified = rtp_header_len(&packet[..rtp_len]).ok().and_then(|header| {
            payload::verify_video(&packet[header..rtp_len], None, Some(MediaSource::Camera)).ok()
        });
        match verified {
            Some(ok) => {
                self.counters.verified += 1;
                if self.latency_us.len() < MAX_LATENCY_SAMPLES {
                    let latency = now_us.saturating_sub(ok.stamp.sent_at_us);
                    self.latency_us.push(u32::try_from(latency).unwrap_or(u32::MAX));
                }
            }
            None => self.counters.corrupt += 1,
        }
    }

    pub fn counters(&self) -> RxCounters {
        let lost = self
            .streams
            .values()
            .map(|s| (s.highest - s.first + 1).saturating_sub(s.received))
            .sum();
        RxCounters {
            lost,
            streams: self.streams.len() as u64,
            ..self.counters
        }
    }

    /// Latency of the verified samples, µs, in arrival order.
    pub fn latency_us(&self) -> &[u32] {
        &self.latency_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::tx::Source;
    use bridgemesh_bridge::fastpath::srtp::SrtpProfile;

    fn keys(byte: u8) -> (SrtpKeys, SrtpKeys) {
        let key = [byte; 16];
        let salt = [byte ^ 0x5a; 12];
        (
            SrtpKeys::new(SrtpProfile::AeadAes128Gcm, &key, &salt).unwrap(),
            SrtpKeys::new(SrtpProfile::AeadAes128Gcm, &key, &salt).unwrap(),
        )
    }

    fn sealed_packets(keys: SrtpKeys, count: usize, first_seq: u16) -> Vec<Vec<u8>> {
        let mut source = Source::new(0x1234_5678, 96, 7, keys, first_seq, 0);
        let mut packets = Vec::new();
        source.frame(count, 1_000, &mut |p| packets.push(p.to_vec()));
        packets
    }

    #[test]
    fn every_packet_counted_and_samples_verified_across_a_sequence_wrap() {
        let (send, recv) = keys(1);
        let packets = sealed_packets(send, 300, 65_500);
        let mut rx = Receiver::new();
        rx.set_keys(recv);
        for (i, p) in packets.iter().enumerate() {
            if i != 100 && i != 101 {
                rx.on_rtp(p, 2_000);
            }
        }
        let c = rx.counters();
        assert_eq!((c.packets, c.lost, c.streams), (298, 2, 1));
        assert_eq!(c.verified, 298_u64.div_ceil(SAMPLE_EVERY));
        assert_eq!((c.auth_failed, c.corrupt), (0, 0));
        assert!(rx.latency_us().iter().all(|&l| l == 1_000));
    }

    #[test]
    fn samples_sealed_with_other_keys_or_altered_fail() {
        let (send, _) = keys(1);
        let (_, other) = keys(2);
        let packets = sealed_packets(send, 10, 1);
        let mut rx = Receiver::new();
        rx.set_keys(other);
        rx.on_rtp(&packets[0], 0);
        assert_eq!(rx.counters().auth_failed, 1);

        let (send, recv) = keys(3);
        let mut packets = sealed_packets(send, 1, 1);
        let last = packets[0].len() - 20;
        packets[0][last] ^= 1;
        let mut rx = Receiver::new();
        rx.set_keys(recv);
        rx.on_rtp(&packets[0], 0);
        assert_eq!((rx.counters().auth_failed, rx.counters().verified), (1, 0));
    }

    #[test]
    fn extended_sequence_follows_wraps_both_ways() {
        assert_eq!(extend(0x1_FFFF, 0), 0x2_0000);
        assert_eq!(extend(0x2_0001, 0xFFFF), 0x1_FFFF);
        assert_eq!(extend(0x1_0005, 7), 0x1_0007);
    }
}
