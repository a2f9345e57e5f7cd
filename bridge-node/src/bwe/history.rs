//! The send side of transport-wide congestion control toward one subscriber
//! (draft-holmer-rmcat-transport-wide-cc-extensions-01): every packet the bridge sends the
//! subscriber carries the next transport-wide sequence number, and what was sent under it (when,
//! how many bytes, which probe) is kept in a ring of [`SEND_HISTORY`] slots, allocated on the
//! first packet and never again. The subscriber's feedback names sequence numbers with their
//! arrival times (or none: lost); [`SendHistory::on_feedback`] pairs them with the sends.

use super::PacketResult;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::{
    PacketStatusChunk, SymbolTypeTcc, TransportLayerCc,
};
use std::time::{Duration, Instant};

/// Sends remembered: about a second at 2,000 packets a second, far more than one feedback
/// interval (Chromium reports every 50–100 ms).
pub const SEND_HISTORY: usize = 2048;
/// Packets one feedback may describe at most: a feedback naming more is cut there.
const FEEDBACK_PACKETS_MAX: usize = 4096;

#[derive(Debug, Clone, Copy, Default)]
struct Sent {
    /// Microseconds since the history's epoch, plus one (0: free).
    at_us: u32,
    size_bytes: u16,
    /// Probe cluster id plus one (0: media).
    probe: u16,
    /// A feedback already reported it received.
    acked: bool,
}

#[derive(Debug, Default)]
pub struct SendHistory {
    slots: Box<[Sent]>,
    epoch: Option<Instant>,
    /// The next extended sequence number; the wire carries its low 16 bits.
    next: u64,
    /// Where the subscriber's arrival clock starts, in its µs, as this history maps it.
    remote_base_us: Option<i64>,
    /// Smoothed round-trip (send to feedback), for the estimator's pacing of decreases.
    rtt: Option<Duration>,
}

impl SendHistory {
    /// Takes the next sequence number for a packet of `size_bytes` sent at `now`.
    pub fn stamp(&mut self, now: Instant, size_bytes: usize, probe_cluster: Option<u32>) -> u16 {
        if self.slots.is_empty() {
            self.slots = vec![Sent::default(); SEND_HISTORY].into_boxed_slice();
            // Extended numbers start one wrap up, so a feedback reaching back before 0 unwraps.
            self.next = 1 << 16;
        }
        let epoch = *self.epoch.get_or_insert(now);
        let at_us = now
            .saturating_duration_since(epoch)
            .as_micros()
            .min(u128::from(u32::MAX - 1)) as u32;
        let seq = self.next;
        self.slots[(seq % SEND_HISTORY as u64) as usize] = Sent {
            at_us: at_us + 1,
            size_bytes: size_bytes.min(usize::from(u16::MAX)) as u16,
            probe: probe_cluster.map_or(0, |id| (id % u32::from(u16::MAX)) as u16 + 1),
            acked: false,
        };
        self.next += 1;
        seq as u16
    }

    /// Packets stamped so far.
    pub fn sent(&self) -> u64 {
        self.next.saturating_sub(1 << 16)
    }

    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// A feedback from the subscriber, received at `now`: one result per packet it describes
    /// that the history still holds, in sequence (send) order, into `out`.
    pub fn on_feedback(&mut self, now: Instant, feedback: &TransportLayerCc, out: &mut Vec<PacketResult>) {
        let Some(epoch) = self.epoch else {
            return;
        };
        if self.next == 0 {
            return;
        }
        let count = usize::from(feedback.packet_status_count).min(FEEDBACK_PACKETS_MAX);
        let base = extend(self.next - 1, feedback.base_sequence_number);
        let remote_reference_us = i64::from(feedback.reference_time) * 64_000;
        let remote_base = *self.remote_base_us.get_or_insert(remote_reference_us);
        let mut arrival_us = remote_reference_us;
        let mut deltas = feedback.recv_deltas.iter();
        let mut newest_send = None;
        let mut index = 0usize;
        for chunk in &feedback.packet_chunks {
            let mut visit = |symbol: SymbolTypeTcc| {
                if index >= count {
                    return;
                }
                let seq = base + index as u64;
                index += 1;
                let received = symbol != SymbolTypeTcc::PacketNotReceived;
                if received {
                    match deltas.next() {
                        Some(delta) => arrival_us += delta.delta,
                        None => return,
                    }
                }
                if seq >= self.next || seq + SEND_HISTORY as u64 <= self.next {
                    return; // Never sent, or no longer held.
                }
                let slot = &mut self.slots[(seq % SEND_HISTORY as u64) as usize];
                if slot.at_us == 0 || slot.acked {
                    return;
                }
                let send_time = epoch + Duration::from_micros(u64::from(slot.at_us - 1));
                // The subscriber's clock, placed an hour after the epoch so that arrivals
                // reported before the first one still map to an instant.
                let arrival = received.then(|| {
                    let offset = (arrival_us - remote_base + 3_600_000_000).max(0) as u64;
                    epoch + Duration::from_micros(offset)
                });
                if received {
                    slot.acked = true;
                    newest_send = Some(send_time);
                }
                out.push(PacketResult {
                    send_time,
                    size_bytes: slot.size_bytes,
                    arrival,
                    probe_cluster: (slot.probe != 0).then(|| u32::from(slot.probe - 1)),
                });
            };
            match chunk {
                PacketStatusChunk::RunLengthChunk(run) => {
                    for _ in 0..run.run_length {
                        visit(run.packet_status_symbol);
                    }
                }
                PacketStatusChunk::StatusVectorChunk(vector) => {
                    for symbol in &vector.symbol_list {
                        visit(*symbol);
                    }
                }
            }
        }
        if let Some(sent) = newest_send {
            let sample = now.saturating_duration_since(sent);
            self.rtt = Some(match self.rtt {
                None => sample,
                Some(rtt) => (rtt * 7 + sample) / 8,
            });
        }
    }
}

/// `seq` extended next to `reference`, within 2^15 of it.
fn extend(reference: u64, seq: u16) -> u64 {
    let diff = i64::from(seq.wrapping_sub(reference as u16) as i16);
    reference.wrapping_add_signed(diff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fastpath::twcc::TwccRecorder;

    /// The bridge's own receive-side recorder plays the subscriber: what it reports, the send
    /// history pairs back with what was sent.
    #[test]
    fn feedback_pairs_arrivals_with_sends_across_the_wrap() {
        let t = Instant::now();
        let mut history = SendHistory::default();
        let mut receiver = TwccRecorder::new(9);
        // Take the sequence near its wrap first.
        for _ in 0..65_530 {
            history.stamp(t, 100, None);
        }
        let mut out = Vec::new();
        let mut sent = Vec::new();
        for i in 0..10u64 {
            let at = t + Duration::from_millis(i * 10);
            let seq = history.stamp(at, 1000 + i as usize, (i == 4).then_some(7));
            sent.push(seq);
            if i != 3 {
                // 30 ms of path delay, and i = 3 lost.
                receiver.record(at + Duration::from_millis(30), seq);
            }
        }
        assert!(sent.contains(&65_535) && sent.contains(&0), "wrapped: {sent:?}");
        let feedback = receiver.feedback(1).unwrap();
        history.on_feedback(t + Duration::from_millis(150), &feedback, &mut out);
        assert_eq!(out.len(), 10);
        for (i, result) in out.iter().enumerate() {
            assert_eq!(result.send_time, t + Duration::from_millis(i as u64 * 10));
            assert_eq!(result.size_bytes, 1000 + i as u16);
            assert_eq!(result.arrival.is_none(), i == 3);
            assert_eq!(result.probe_cluster, (i == 4).then_some(7));
        }
        // Arrival spacing is the send spacing (constant delay), to the 250 µs of the feedback.
        let gap = out[9].arrival.unwrap() - out[0].arrival.unwrap();
        assert!(gap.abs_diff(Duration::from_millis(90)) <= Duration::from_micros(250));
        assert!(history.rtt().unwrap() >= Duration::from_millis(60));
        // The same feedback again reports nothing received twice.
        let mut again = Vec::new();
        history.on_feedback(t, &feedback, &mut again);
        assert!(again.iter().all(|r| r.arrival.is_none()));
    }
}
