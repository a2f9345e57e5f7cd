//! RFC 3550 reception statistics of one published stream, as the bridge reports them to its
//! publisher in receiver reports: extended highest sequence number (A.1), cumulative and fractional
//! loss (A.3), interarrival jitter (A.8), and LSR/DLSR from the publisher's sender reports (§6.4.1).
//!
//! Sans-IO: every packet and every report is given its `now`. Fixed size, nothing allocated.

use rtc::rtcp::reception_report::ReceptionReport;
use std::time::{Duration, Instant};

/// A jump ahead of more than this many sequence numbers is taken as a restart of the stream
/// only when the packet after it confirms it (RFC 3550 A.1's `MAX_DROPOUT`).
const MAX_DROPOUT: u16 = 3000;
/// Packets this far behind the highest one are late arrivals, not a restart (`MAX_MISORDER`).
const MAX_MISORDER: u16 = 100;
/// RFC 3550's cumulative loss is a signed 24-bit field.
const TOTAL_LOST_MAX: i64 = 0x7F_FFFF;

#[derive(Debug, Clone)]
pub struct ReceiveStats {
    ssrc: u32,
    clock_rate: u32,
    started: Option<Started>,
    /// The last sender report: its middle 32 NTP bits and when it arrived.
    last_sr: Option<(u32, Instant)>,
}

#[derive(Debug, Clone, Copy)]
struct Started {
    /// The instant RTP arrival times are counted from.
    epoch: Instant,
    base_seq: u32,
    max_seq: u16,
    /// Sequence number wraps, shifted left 16 (A.1's `cycles`).
    cycles: u32,
    /// The sequence number after a suspected restart; a packet with it confirms the restart.
    bad_seq: Option<u16>,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Arrival minus RTP timestamp of the previous packet, in RTP units.
    transit: Option<u32>,
    /// Interarrival jitter in RTP units, times 16 (A.8's integer form).
    jitter_q4: u32,
}

impl Started {
    fn new(epoch: Instant, seq: u16) -> Self {
        Self {
            epoch,
            base_seq: u32::from(seq),
            max_seq: seq,
            cycles: 0,
            bad_seq: None,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            transit: None,
            jitter_q4: 0,
        }
    }

    fn extended_max(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    fn expected(&self) -> u64 {
        u64::from(self.extended_max().wrapping_sub(self.base_seq)) + 1
    }
}

impl ReceiveStats {
    pub fn new(ssrc: u32, clock_rate: u32) -> Self {
        Self {
            ssrc,
            clock_rate: clock_rate.max(1),
            started: None,
            last_sr: None,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// One packet that verified: its sequence number, RTP timestamp and arrival.
    pub fn record(&mut self, now: Instant, seq: u16, rtp_time: u32) {
        let clock_rate = self.clock_rate;
        let stats = self.started.get_or_insert_with(|| Started::new(now, seq));
        let delta = seq.wrapping_sub(stats.max_seq);
        if stats.received == 0 {
            // The first packet: nothing to compare with.
        } else if delta < MAX_DROPOUT {
            if seq < stats.max_seq {
                stats.cycles = stats.cycles.wrapping_add(1 << 16);
            }
            stats.max_seq = seq;
        } else if delta <= u16::MAX - MAX_MISORDER {
            // A large jump: a restarted sender, or a stray packet; the next packet decides.
            if stats.bad_seq == Some(seq) {
                *stats = Started::new(stats.epoch, seq);
            } else {
                stats.bad_seq = Some(seq.wrapping_add(1));
                return;
            }
        }
        // Else a duplicate or a late packet: counted, the highest stays.
        stats.received += 1;
        let arrival = rtp_units(now.saturating_duration_since(stats.epoch), clock_rate);
        let transit = arrival.wrapping_sub(rtp_time);
        if let Some(previous) = stats.transit {
            let d = (transit.wrapping_sub(previous) as i32).unsigned_abs();
            // J += (|D| - J) / 16, with J kept times 16.
            stats.jitter_q4 = stats
                .jitter_q4
                .wrapping_add(d)
                .wrapping_sub((stats.jitter_q4 + 8) >> 4);
        }
        stats.transit = Some(transit);
    }

    /// A sender report of this stream: `ntp_time` is its 64-bit NTP timestamp.
    pub fn on_sender_report(&mut self, now: Instant, ntp_time: u64) {
        self.last_sr = Some(((ntp_time >> 16) as u32, now));
    }

    /// The report block for a receiver report sent at `now`; starts the next interval of the
    /// fraction lost. `None` before the first packet.
    pub fn report(&mut self, now: Instant) -> Option<ReceptionReport> {
        let stats = self.started.as_mut()?;
        let expected = stats.expected();
        let lost = (expected as i64 - stats.received as i64).clamp(-TOTAL_LOST_MAX - 1, TOTAL_LOST_MAX);
        let expected_interval = expected.saturating_sub(stats.expected_prior);
        let received_interval = stats.received.saturating_sub(stats.received_prior);
        stats.expected_prior = expected;
        stats.received_prior = stats.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        };
        let (last_sender_report, delay) = match self.last_sr {
            Some((lsr, at)) => {
                let waited = now.saturating_duration_since(at);
                (
                    lsr,
                    (waited.as_micros() * 65_536 / 1_000_000).min(u128::from(u32::MAX)) as u32,
                )
            }
            None => (0, 0),
        };
        Some(ReceptionReport {
            ssrc: self.ssrc,
            fraction_lost,
            // 24-bit two's complement, as the field is signed.
            total_lost: (lost as i32 as u32) & 0xFF_FFFF,
            last_sequence_number: stats.extended_max(),
            jitter: stats.jitter_q4 >> 4,
            last_sender_report,
            delay,
        })
    }
}

/// A duration in RTP timestamp units (wrapping, as RTP timestamps do).
fn rtp_units(elapsed: Duration, clock_rate: u32) -> u32 {
    (elapsed.as_nanos() * u128::from(clock_rate) / 1_000_000_000) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn loss_and_fraction_lost_follow_rfc3550_a3() {
        let start = Instant::now();
        let mut stats = ReceiveStats::new(9, 90_000);
        // 10 sent (100..=109), 102 and 105 lost.
        for seq in (100u16..110).filter(|s| *s != 102 && *s != 105) {
            stats.record(start, seq, 0);
        }
        let report = stats.report(start).unwrap();
        assert_eq!(report.ssrc, 9);
        assert_eq!(report.total_lost, 2);
        assert_eq!(report.last_sequence_number, 109);
        // 2 of 10: 2 * 256 / 10 = 51.
        assert_eq!(report.fraction_lost, 51);
        // Next interval: 110..=119 with none lost; the cumulative count stays, the fraction resets.
        for seq in 110u16..120 {
            stats.record(start, seq, 0);
        }
        let report = stats.report(start).unwrap();
        assert_eq!((report.total_lost, report.fraction_lost), (2, 0));
        // A late arrival of 102 lowers the cumulative loss; the interval's fraction stays 0.
        stats.record(start, 102, 0);
        let report = stats.report(start).unwrap();
        assert_eq!((report.total_lost, report.fraction_lost), (1, 0));
    }

    #[test]
    fn the_extended_sequence_number_counts_wraps_and_ignores_a_single_stray_jump() {
        let start = Instant::now();
        let mut stats = ReceiveStats::new(1, 48_000);
        for seq in (65_530u16..=65_535).chain(0..5) {
            stats.record(start, seq, 0);
        }
        let report = stats.report(start).unwrap();
        assert_eq!(report.last_sequence_number, (1 << 16) + 4);
        assert_eq!(report.total_lost, 0);
        // One stray packet far ahead changes nothing...
        stats.record(start, 30_000, 0);
        assert_eq!(stats.report(start).unwrap().last_sequence_number, (1 << 16) + 4);
        // ...two in sequence are a restart.
        stats.record(start, 30_001, 0);
        let report = stats.report(start).unwrap();
        assert_eq!((report.last_sequence_number, report.total_lost), (30_001, 0));
    }

    #[test]
    fn jitter_matches_a_hand_computed_a8_run() {
        // 8 kHz clock, a packet every 20 ms (160 units); the third arrives 5 ms late (40 units),
        // the fourth on time again.
        let start = Instant::now();
        let mut stats = ReceiveStats::new(1, 8_000);
        let arrivals = [0u64, 20, 45, 60];
        for (i, at) in arrivals.iter().enumerate() {
            stats.record(start + MS * (*at as u32), i as u16, 160 * i as u32);
        }
        // D = 0, 40, 40 (the fourth is 40 earlier than the third's transit):
        // J16 = 0 → 0 + 40 - 0 = 40 → 40 + 40 - (48 >> 4 = 3) = 77; J = 77 >> 4 = 4.
        // (Float form: 0 → 2.5 → 2.5 + (40 - 2.5)/16 = 4.84.)
        assert_eq!(stats.report(start + MS * 60).unwrap().jitter, 4);
    }

    #[test]
    fn lsr_and_dlsr_come_from_the_last_sender_report() {
        let start = Instant::now();
        let mut stats = ReceiveStats::new(1, 90_000);
        assert!(stats.report(start).is_none(), "no report before a packet");
        stats.record(start, 1, 0);
        let report = stats.report(start).unwrap();
        assert_eq!((report.last_sender_report, report.delay), (0, 0));
        let ntp = 0x1122_3344_5566_7788u64;
        stats.on_sender_report(start, ntp);
        let report = stats.report(start + Duration::from_millis(500)).unwrap();
        assert_eq!(report.last_sender_report, 0x3344_5566);
        assert_eq!(report.delay, 32_768, "half a second in 1/65536 s");
    }
}
