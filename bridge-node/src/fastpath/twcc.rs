//! Transport-wide congestion control feedback toward a publisher
//! (draft-holmer-rmcat-transport-wide-cc-extensions-01): the arrival time of every packet carrying
//! the transport-wide sequence number, reported back every [`TWCC_INTERVAL`] so the publisher's
//! send-side bandwidth estimator (libwebrtc's GoogCC) sees delay and loss. A publisher that gets
//! no feedback lowers its bitrate.
//!
//! One recorder per peer connection (the sequence is transport-wide: audio and video share it).
//! Sans-IO and bounded: arrivals live in a ring of [`TWCC_WINDOW`] slots allocated once; a
//! packet further ahead than that pushes the oldest unreported ones out (reported as lost).

use super::srtp::nearest_index;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::{
    PacketStatusChunk, RecvDelta, RunLengthChunk, StatusChunkTypeTcc, StatusVectorChunk, SymbolSizeTypeTcc,
    SymbolTypeTcc, TransportLayerCc,
};
use std::time::{Duration, Instant};

/// How often feedback is sent (libwebrtc's receiver sends every 50–250 ms depending on rate).
pub const TWCC_INTERVAL: Duration = Duration::from_millis(100);
/// Arrivals held between two feedbacks at most.
pub const TWCC_WINDOW: usize = 1024;
/// Packets described by one feedback packet at most, so it stays well under the MTU.
pub const TWCC_PACKETS_PER_FEEDBACK: u64 = 400;
/// The extension's URI, as negotiated in SDP.
pub const TRANSPORT_CC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
/// Receive deltas are in units of 250 µs; the reference time in units of 64 ms (256 of those).
const TICK_US: u128 = 250;
const TICKS_PER_REFERENCE: i64 = 256;

pub struct TwccRecorder {
    epoch: Option<Instant>,
    /// Arrival of extended sequence `i` at slot `i % TWCC_WINDOW`: 250 µs ticks since `epoch`,
    /// plus one (0: not received).
    arrivals: Box<[u32]>,
    /// The first sequence number not yet reported, and one past the highest received.
    start: Option<u64>,
    end: u64,
    feedback_count: u8,
    sender_ssrc: u32,
}

impl TwccRecorder {
    pub fn new(sender_ssrc: u32) -> Self {
        Self {
            epoch: None,
            arrivals: vec![0; TWCC_WINDOW].into_boxed_slice(),
            start: None,
            end: 0,
            feedback_count: 0,
            sender_ssrc,
        }
    }

    /// A packet with transport-wide sequence `seq` arrived at `now`.
    pub fn record(&mut self, now: Instant, seq: u16) {
        let epoch = *self.epoch.get_or_insert(now);
        let ticks =
            (now.saturating_duration_since(epoch).as_micros() / TICK_US).min(u128::from(u32::MAX - 1));
        let index = match self.start {
            // Extended numbers start one wrap up, so a packet from before the first unwraps too.
            None => {
                let index = (1 << 16) | u64::from(seq);
                self.start = Some(index);
                self.end = index;
                index
            }
            // Unwrapped near the newest, so a wrap of the 16-bit sequence counts.
            Some(_) => nearest_index(self.end - 1, seq),
        };
        let start = self.start.expect("set above");
        if index < start {
            return; // Already reported (a duplicate, or too late to matter).
        }
        let window = TWCC_WINDOW as u64;
        if index >= start + window {
            // Further ahead than the ring holds: the oldest unreported packets are dropped.
            let new_start = index + 1 - window;
            for old in start..new_start.min(self.end) {
                self.arrivals[(old % window) as usize] = 0;
            }
            self.start = Some(new_start);
        }
        self.arrivals[(index % window) as usize] = ticks as u32 + 1;
        self.end = self.end.max(index + 1);
    }

    /// The feedback for what arrived since the last one, if anything did; `media_ssrc` names one
    /// of the publisher's streams (the feedback is about the transport, not that stream).
    pub fn feedback(&mut self, media_ssrc: u32) -> Option<TransportLayerCc> {
        let start = self.start?;
        let window = TWCC_WINDOW as u64;
        let slot = |arrivals: &[u32], index: u64| arrivals[(index % window) as usize];
        let first = (start..self.end).find(|i| slot(&self.arrivals, *i) != 0)?;
        let reference = i64::from(slot(&self.arrivals, first) - 1) / TICKS_PER_REFERENCE;
        let mut previous = reference * TICKS_PER_REFERENCE;
        let mut symbols = Vec::new();
        let mut recv_deltas = Vec::new();
        let mut end = start;
        while end < self.end && end - start < TWCC_PACKETS_PER_FEEDBACK {
            let arrival = slot(&self.arrivals, end);
            if arrival == 0 {
                symbols.push(SymbolTypeTcc::PacketNotReceived);
            } else {
                let ticks = i64::from(arrival - 1);
                let delta = ticks - previous;
                let symbol = if (0..=255).contains(&delta) {
                    SymbolTypeTcc::PacketReceivedSmallDelta
                } else if (i64::from(i16::MIN)..=i64::from(i16::MAX)).contains(&delta) {
                    SymbolTypeTcc::PacketReceivedLargeDelta
                } else {
                    break; // Not expressible: the next feedback starts here with its own reference.
                };
                symbols.push(symbol);
                recv_deltas.push(RecvDelta {
                    type_tcc_packet: symbol,
                    delta: delta * TICK_US as i64,
                });
                previous = ticks;
            }
            self.arrivals[(end % window) as usize] = 0;
            end += 1;
        }
        self.start = Some(end);
        let feedback = TransportLayerCc {
            sender_ssrc: self.sender_ssrc,
            media_ssrc,
            base_sequence_number: start as u16,
            packet_status_count: symbols.len() as u16,
            reference_time: (reference as u32) & 0xFF_FFFF,
            fb_pkt_count: self.feedback_count,
            packet_chunks: status_chunks(&symbols),
            recv_deltas,
        };
        self.feedback_count = self.feedback_count.wrapping_add(1);
        Some(feedback)
    }

    /// Arrivals waiting to be reported.
    pub fn pending(&self) -> u64 {
        self.start.map_or(0, |start| self.end.saturating_sub(start))
    }
}

/// Encodes the symbols: a run-length chunk for 14 or more equal symbols in a row, else a status
/// vector of 14 one-bit symbols, or of 7 two-bit ones where a large delta is among them.
fn status_chunks(symbols: &[SymbolTypeTcc]) -> Vec<PacketStatusChunk> {
    let mut chunks = Vec::new();
    let mut rest = symbols;
    while let Some(first) = rest.first() {
        let run = rest.iter().take_while(|s| *s == first).count();
        if run >= 14 {
            let run = run.min(8191);
            chunks.push(PacketStatusChunk::RunLengthChunk(RunLengthChunk {
                type_tcc: StatusChunkTypeTcc::RunLengthChunk,
                packet_status_symbol: *first,
                run_length: run as u16,
            }));
            rest = &rest[run..];
            continue;
        }
        let one_bit = rest
            .iter()
            .take(14)
            .all(|s| *s != SymbolTypeTcc::PacketReceivedLargeDelta);
        let (size, count) = if one_bit {
            (SymbolSizeTypeTcc::OneBit, 14)
        } else {
            (SymbolSizeTypeTcc::TwoBit, 7)
        };
        let taken = count.min(rest.len());
        let mut symbol_list = rest[..taken].to_vec();
        // Padding past the packet status count is ignored by the reader.
        symbol_list.resize(count, SymbolTypeTcc::PacketNotReceived);
        chunks.push(PacketStatusChunk::StatusVectorChunk(StatusVectorChunk {
            type_tcc: StatusChunkTypeTcc::StatusVectorChunk,
            symbol_size: size,
            symbol_list,
        }));
        rest = &rest[taken..];
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::shared::marshal::{Marshal, Unmarshal};

    const US: Duration = Duration::from_micros(1);

    /// Marshals the feedback and parses it back with `rtc`'s parser, then expands it into
    /// (sequence, arrival in µs since the recorder's epoch) pairs, `None` for a lost packet.
    fn decode(feedback: &TransportLayerCc) -> (u32, Vec<(u16, Option<i64>)>) {
        let bytes = feedback.marshal().unwrap();
        let parsed = TransportLayerCc::unmarshal(&mut &bytes[..]).unwrap();
        let mut symbols = Vec::new();
        for chunk in &parsed.packet_chunks {
            match chunk {
                PacketStatusChunk::RunLengthChunk(run) => symbols.extend(std::iter::repeat_n(
                    run.packet_status_symbol,
                    run.run_length.into(),
                )),
                PacketStatusChunk::StatusVectorChunk(vector) => symbols.extend(&vector.symbol_list),
            }
        }
        symbols.truncate(parsed.packet_status_count.into());
        let mut deltas = parsed.recv_deltas.iter();
        let mut at = i64::from(parsed.reference_time) * 64_000;
        let packets = symbols
            .iter()
            .enumerate()
            .map(|(i, symbol)| {
                let seq = parsed.base_sequence_number.wrapping_add(i as u16);
                if *symbol == SymbolTypeTcc::PacketNotReceived {
                    return (seq, None);
                }
                at += deltas.next().expect("a delta per received packet").delta;
                (seq, Some(at))
            })
            .collect();
        (parsed.reference_time, packets)
    }

    #[test]
    fn feedback_decodes_with_rtcs_parser_to_what_was_recorded() {
        let t = Instant::now();
        let mut twcc = TwccRecorder::new(1);
        // 65 534.. across the wrap; 65 535 and 2 lost; 3 arrives 100 ms late (a large delta),
        // then 1 arrives after 3 (a negative delta).
        let arrivals: [(u16, u64); 5] = [(65_534, 0), (0, 1_000), (3, 101_000), (1, 101_500), (4, 101_750)];
        for (seq, at) in arrivals {
            twcc.record(t + US * at as u32, seq);
        }
        let feedback = twcc.feedback(0xABCD).unwrap();
        assert_eq!(feedback.media_ssrc, 0xABCD);
        let (reference, packets) = decode(&feedback);
        assert_eq!(reference, 0);
        assert_eq!(
            packets,
            [
                (65_534, Some(0)),
                (65_535, None),
                (0, Some(1_000)),
                (1, Some(101_500)),
                (2, None),
                (3, Some(101_000)),
                (4, Some(101_750)),
            ]
        );
        assert!(twcc.feedback(0xABCD).is_none(), "nothing new");
        // The next feedback starts where this one ended; its count goes up.
        twcc.record(t + Duration::from_millis(200), 5);
        let next = twcc.feedback(0xABCD).unwrap();
        assert_eq!((next.base_sequence_number, next.fb_pkt_count), (5, 1));
        assert_eq!(decode(&next).1, [(5, Some(200_000))]);
        assert_eq!(next.reference_time, 3, "64 ms units");
    }

    #[test]
    fn long_runs_and_many_packets_split_into_chunks_and_feedbacks() {
        let t = Instant::now();
        let mut twcc = TwccRecorder::new(1);
        // 30 in a row (a run), 20 lost (a run), then alternating received and lost.
        let mut expected = Vec::new();
        for seq in 0u16..600 {
            let received = seq < 30 || (seq >= 50 && seq % 2 == 0);
            if received {
                twcc.record(t + Duration::from_millis(u64::from(seq)), seq);
            }
            expected.push((seq, received.then_some(i64::from(seq) * 1000)));
        }
        let first = twcc.feedback(7).unwrap();
        assert!(
            first
                .packet_chunks
                .iter()
                .any(|c| matches!(c, PacketStatusChunk::RunLengthChunk(_)))
        );
        let (_, packets) = decode(&first);
        assert_eq!(packets.len() as u64, TWCC_PACKETS_PER_FEEDBACK);
        // Sequence 599 was lost, so the recorder's end is 599.
        let (_, rest) = decode(&twcc.feedback(7).unwrap());
        let all: Vec<_> = packets.into_iter().chain(rest).collect();
        assert_eq!(all, expected[..599]);
        assert!(twcc.feedback(7).is_none());
    }

    #[test]
    fn the_ring_is_bounded_and_a_jump_ahead_drops_the_oldest() {
        let t = Instant::now();
        let mut twcc = TwccRecorder::new(1);
        twcc.record(t, 0);
        twcc.record(t, 5000);
        assert_eq!(twcc.pending(), TWCC_WINDOW as u64);
        let feedback = twcc.feedback(1).unwrap();
        assert_eq!(feedback.base_sequence_number, 5001 - TWCC_WINDOW as u16);
    }
}
