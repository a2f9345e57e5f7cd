//! What a synthetic participant measured: snapshot types, and the bounded accumulators behind
//! them (a latency ring, a sequence-window loss tracker, the reconnect log).
//!
//! Everything here outlives one peer connection: a participant that reconnects to another bridge
//! keeps accumulating into the same per-(participant, source) streams, so counters, loss and
//! the longest gap between packets span the reconnect.

use crate::payload::Verified;
use bridgemesh_proto::api::ErrorCode;
use bridgemesh_proto::signaling::{ByeReason, MediaSource};
use bridgemesh_proto::{BridgeId, ParticipantId};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::time::Duration;
use webrtc::peer_connection::RTCPeerConnectionState;

/// How many one-way latency samples each received stream keeps (the most recent ones).
pub const LATENCY_SAMPLES: usize = 4096;
/// How far behind the highest sequence a late packet still counts as recovering a loss.
pub const SEQ_WINDOW: u64 = 1024;
/// How many reconnect records a participant keeps (the most recent ones); the count is kept
/// separately in [`ParticipantStats::reconnect_count`].
pub const MAX_RECONNECT_RECORDS: usize = 64;

/// Snapshot of everything a participant measured. Cheap to take: a few locks and copies.
#[derive(Debug, Clone, Default)]
pub struct ParticipantStats {
    pub sent: BTreeMap<MediaSource, SentStats>,
    pub received: BTreeMap<(ParticipantId, MediaSource), ReceivedStats>,
    /// Video keyframes sent (periodic and on request).
    pub keyframes_sent: u64,
    /// PLIs received from the bridge on the video sender.
    pub plis_received: u64,
    /// FIRs received from the bridge on the video sender.
    pub firs_received: u64,
    /// PLIs this participant sent (see `request_keyframe`).
    pub plis_sent: u64,
    /// Offers applied and answered.
    pub offers_answered: u64,
    /// Offers that could not be applied (the session is probably broken afterwards).
    pub offers_failed: u64,
    /// The mid each published source was negotiated on, per the latest answer.
    pub local_mids: BTreeMap<MediaSource, String>,
    /// RTP packets on tracks whose mid the latest offer's `tracks` did not map.
    pub unattributed_packets: u64,
    /// Remote streams not tracked because the per-participant cap was reached.
    pub dropped_streams: u64,
    /// State of the peer connection to the bridge.
    pub connection_state: RTCPeerConnectionState,
    /// Whether the signaling WebSocket is still open.
    pub signaling_open: bool,
    /// The `bye` the bridge sent, if any.
    pub bye: Option<ByeReason>,
    /// The last `error` the bridge sent, if any.
    pub last_server_error: Option<(ErrorCode, String)>,
    /// The last local failure of the signaling driver (bad message, failed offer, …).
    pub last_local_error: Option<String>,
    /// The bridge of the current (or last) session; `None` from a bare [`crate::MediaSession`].
    pub bridge_id: Option<BridgeId>,
    /// Between losing a session and the next welcome (or giving up).
    pub reconnecting: bool,
    /// Sessions lost and handled by asking control where to go (final byes not counted).
    pub reconnect_count: u64,
    /// The most recent reconnects, oldest first, at most [`MAX_RECONNECT_RECORDS`].
    pub reconnects: Vec<ReconnectRecord>,
}

/// Why a session with a bridge ended without a final `bye`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionLoss {
    /// The bridge said `bye` with a reason that is not final (`moved`, `bridge_shutdown`,
    /// `protocol_error`).
    Bye(ByeReason),
    /// The signaling socket closed or failed without a `bye`.
    SocketClosed,
    /// The peer connection failed, or stayed disconnected past the grace period.
    PeerConnectionFailed,
}

/// One lost session and how the participant got back. Times are measured from the moment the
/// loss was noticed; a field stays `None` until that step happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectRecord {
    pub cause: SessionLoss,
    /// The bridge of the lost session.
    pub lost_bridge: BridgeId,
    /// When the loss was noticed, from the start of the first join.
    pub lost_after_join: Duration,
    /// Reconnect calls made to control for this loss (retries included).
    pub attempts: u32,
    /// The bridge control sent the participant to (the latest answer).
    pub bridge: Option<BridgeId>,
    /// Loss → control's `200` answer that led to the new session.
    pub answer_ms: Option<u64>,
    /// Loss → `welcome` from the new bridge.
    pub welcome_ms: Option<u64>,
    /// Loss → first media packet received on the new peer connection (from any remote).
    pub first_media_ms: Option<u64>,
    /// Why the participant gave up (budget spent, refused by control, …); it then stays
    /// disconnected.
    pub error: Option<String>,
}

impl ReconnectRecord {
    pub fn new(cause: SessionLoss, lost_bridge: BridgeId, lost_after_join: Duration) -> Self {
        Self {
            cause,
            lost_bridge,
            lost_after_join,
            attempts: 0,
            bridge: None,
            answer_ms: None,
            welcome_ms: None,
            first_media_ms: None,
            error: None,
        }
    }
}

/// The bounded log of reconnects: the newest [`MAX_RECONNECT_RECORDS`] records, addressed by a
/// running id so a driver can fill in a record later (or find it gone).
#[derive(Debug, Default)]
pub(crate) struct ReconnectLog {
    records: VecDeque<ReconnectRecord>,
    /// Records ever added; the id of the next one.
    total: u64,
}

impl ReconnectLog {
    /// Adds a record and returns its id.
    pub(crate) fn push(&mut self, record: ReconnectRecord) -> u64 {
        if self.records.len() == MAX_RECONNECT_RECORDS {
            self.records.pop_front();
        }
        self.records.push_back(record);
        self.total += 1;
        self.total - 1
    }

    /// Applies `f` to record `id` if it is still kept.
    pub(crate) fn update(&mut self, id: u64, f: impl FnOnce(&mut ReconnectRecord)) {
        let oldest = self.total - self.records.len() as u64;
        if let Some(index) = id.checked_sub(oldest)
            && let Some(record) = self.records.get_mut(index as usize)
        {
            f(record);
        }
    }

    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    pub(crate) fn to_vec(&self) -> Vec<ReconnectRecord> {
        self.records.iter().cloned().collect()
    }
}

/// What one published source sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SentStats {
    pub packets: u64,
    pub payload_bytes: u64,
    /// Video frames (0 for audio).
    pub frames: u64,
}

/// What arrived from one remote participant's source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivedStats {
    /// Every RTP packet attributed to this stream, whatever its content.
    pub packets: u64,
    pub payload_bytes: u64,
    /// Packets whose every byte verified and whose stamp names this participant and source.
    pub intact: u64,
    /// Packets that did not verify (`intact + corrupt == packets`); includes `misattributed`.
    pub corrupt: u64,
    /// Of `corrupt`: intact bytes, but stamped by another publisher or source than the
    /// signaling `tracks` map claims.
    pub misattributed: u64,
    /// First packets of VP8 keyframes.
    pub keyframes: u64,
    /// Time from the start of `join` to the first packet of this stream.
    pub first_packet_after_join: Option<Duration>,
    /// Time from the start of `join` to the latest packet of this stream.
    pub last_packet_after_join: Option<Duration>,
    /// The longest time between two consecutive packets of this stream, in ms: how long the
    /// stream was interrupted at worst (a reconnect of either side shows here). 0 until two
    /// packets arrived; the time since the last packet is not included.
    pub max_gap_ms: u64,
    /// When the longest gap ended (its packet's arrival), from the start of `join`.
    pub max_gap_ended_after_join: Option<Duration>,
    /// The most recent one-way latency samples (µs, send stamp to arrival, same machine),
    /// oldest first, at most [`LATENCY_SAMPLES`].
    pub latency_us: Vec<u32>,
    /// Highest stamp sequence seen on an intact packet.
    pub highest_seq: Option<u64>,
    /// Stamp sequences skipped and not (yet) arrived late.
    pub lost: u64,
    /// Intact packets whose sequence had already arrived.
    pub duplicates: u64,
}

impl ReceivedStats {
    /// The `q`-quantile (0.0..=1.0) of the kept latency samples.
    pub fn latency_quantile_us(&self, q: f64) -> Option<u32> {
        if self.latency_us.is_empty() {
            return None;
        }
        let mut sorted = self.latency_us.clone();
        sorted.sort_unstable();
        let index = ((sorted.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        Some(sorted[index])
    }
}

impl ParticipantStats {
    /// The stream received from `participant`'s `source`, if any packet arrived.
    pub fn from(&self, participant: &ParticipantId, source: MediaSource) -> Option<&ReceivedStats> {
        self.received.get(&(participant.clone(), source))
    }

    /// Intact packets received from `participant`'s `source` (0 if none).
    pub fn intact_from(&self, participant: &ParticipantId, source: MediaSource) -> u64 {
        self.from(participant, source).map_or(0, |s| s.intact)
    }

    /// Sum of `corrupt` over all received streams.
    pub fn total_corrupt(&self) -> u64 {
        self.received.values().map(|s| s.corrupt).sum()
    }

    /// Packets sent on `source` (0 if not published).
    pub fn sent_packets(&self, source: MediaSource) -> u64 {
        self.sent.get(&source).map_or(0, |s| s.packets)
    }

    /// A compact multi-line description, without the latency samples.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "connection={:?} signaling_open={} bye={:?} server_error={:?} local_error={:?}",
            self.connection_state,
            self.signaling_open,
            self.bye,
            self.last_server_error,
            self.last_local_error
        );
        let _ = writeln!(
            out,
            "bridge={:?} reconnecting={} reconnect_count={}",
            self.bridge_id.as_ref().map(BridgeId::as_str),
            self.reconnecting,
            self.reconnect_count
        );
        for r in &self.reconnects {
            let _ = writeln!(
                out,
                "reconnect at {:?}: {:?} from {} to {:?} attempts={} answer_ms={:?} welcome_ms={:?} \
                 first_media_ms={:?} error={:?}",
                r.lost_after_join,
                r.cause,
                r.lost_bridge,
                r.bridge.as_ref().map(BridgeId::as_str),
                r.attempts,
                r.answer_ms,
                r.welcome_ms,
                r.first_media_ms,
                r.error
            );
        }
        let _ = writeln!(
            out,
            "offers_answered={} offers_failed={} keyframes_sent={} plis_received={} firs_received={} \
             plis_sent={} unattributed_packets={} dropped_streams={} local_mids={:?}",
            self.offers_answered,
            self.offers_failed,
            self.keyframes_sent,
            self.plis_received,
            self.firs_received,
            self.plis_sent,
            self.unattributed_packets,
            self.dropped_streams,
            self.local_mids
        );
        for (source, s) in &self.sent {
            let _ = writeln!(
                out,
                "sent {}: packets={} bytes={} frames={}",
                source.as_str(),
                s.packets,
                s.payload_bytes,
                s.frames
            );
        }
        for ((from, source), r) in &self.received {
            let _ = writeln!(
                out,
                "recv {from}/{}: packets={} bytes={} intact={} corrupt={} misattributed={} keyframes={} \
                 lost={} dup={} highest_seq={:?} first={:?} last={:?} max_gap_ms={} (ended {:?}) \
                 latency_us p50={:?} p99={:?} max={:?}",
                source.as_str(),
                r.packets,
                r.payload_bytes,
                r.intact,
                r.corrupt,
                r.misattributed,
                r.keyframes,
                r.lost,
                r.duplicates,
                r.highest_seq,
                r.first_packet_after_join,
                r.last_packet_after_join,
                r.max_gap_ms,
                r.max_gap_ended_after_join,
                r.latency_quantile_us(0.5),
                r.latency_quantile_us(0.99),
                r.latency_us.iter().max(),
            );
        }
        out
    }
}

/// A fixed-capacity ring of the most recent samples.
#[derive(Debug, Clone)]
pub struct LatencyRing {
    samples: Vec<u32>,
    next: usize,
    capacity: usize,
}

impl LatencyRing {
    pub fn new(capacity: usize) -> Self {
        Self {
            samples: Vec::new(),
            next: 0,
            capacity: capacity.max(1),
        }
    }

    pub fn push(&mut self, sample: u32) {
        if self.samples.len() < self.capacity {
            self.samples.push(sample);
        } else {
            self.samples[self.next] = sample;
        }
        self.next = (self.next + 1) % self.capacity;
    }

    /// The kept samples, oldest first.
    pub fn to_vec(&self) -> Vec<u32> {
        if self.samples.len() < self.capacity {
            self.samples.clone()
        } else {
            let mut out = Vec::with_capacity(self.capacity);
            out.extend_from_slice(&self.samples[self.next..]);
            out.extend_from_slice(&self.samples[..self.next]);
            out
        }
    }
}

/// What [`SeqTracker::observe`] made of a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqEvent {
    /// The next one, or the first one.
    InOrder,
    /// Ahead of the highest by more than one: `missing` sequences were skipped.
    Gap { missing: u64 },
    /// A skipped sequence arrived late; it no longer counts as lost.
    Recovered,
    /// Already seen.
    Duplicate,
    /// Older than the window; not accounted.
    TooOld,
}

/// Loss and duplicate accounting over a stream of sequence numbers, with a bounded
/// [`SEQ_WINDOW`] of memory.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    highest: Option<u64>,
    window: [u64; (SEQ_WINDOW / 64) as usize],
    pub lost: u64,
    pub duplicates: u64,
    pub too_old: u64,
}

impl SeqTracker {
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    fn bit(seq: u64) -> (usize, u64) {
        let index = seq % SEQ_WINDOW;
        ((index / 64) as usize, 1u64 << (index % 64))
    }

    fn set(&mut self, seq: u64) {
        let (word, mask) = Self::bit(seq);
        self.window[word] |= mask;
    }

    fn is_set(&self, seq: u64) -> bool {
        let (word, mask) = Self::bit(seq);
        self.window[word] & mask != 0
    }

    fn clear(&mut self, seq: u64) {
        let (word, mask) = Self::bit(seq);
        self.window[word] &= !mask;
    }

    pub fn observe(&mut self, seq: u64) -> SeqEvent {
        let Some(highest) = self.highest else {
            self.highest = Some(seq);
            self.set(seq);
            return SeqEvent::InOrder;
        };
        if seq > highest {
            let ahead = seq - highest;
            if ahead >= SEQ_WINDOW {
                self.window = Default::default();
            } else {
                for s in highest + 1..seq {
                    self.clear(s);
                }
            }
            self.set(seq);
            self.highest = Some(seq);
            let missing = ahead - 1;
            self.lost += missing;
            if missing == 0 {
                SeqEvent::InOrder
            } else {
                SeqEvent::Gap { missing }
            }
        } else if highest - seq >= SEQ_WINDOW {
            self.too_old += 1;
            SeqEvent::TooOld
        } else if self.is_set(seq) {
            self.duplicates += 1;
            SeqEvent::Duplicate
        } else {
            self.set(seq);
            self.lost = self.lost.saturating_sub(1);
            SeqEvent::Recovered
        }
    }
}

/// Accumulates one received stream; lives behind a mutex, touched once per packet.
#[derive(Debug)]
pub(crate) struct StreamAccumulator {
    stats: ReceivedStats,
    latency: LatencyRing,
    seq: SeqTracker,
}

impl StreamAccumulator {
    pub(crate) fn new() -> Self {
        Self {
            stats: ReceivedStats::default(),
            latency: LatencyRing::new(LATENCY_SAMPLES),
            seq: SeqTracker::default(),
        }
    }

    /// Accounts one packet of `payload_len` bytes that arrived `since_join` after the start of
    /// the join, at `now_us` (unix µs), with the outcome of its verification.
    pub(crate) fn record(
        &mut self,
        payload_len: usize,
        since_join: Duration,
        now_us: u64,
        verdict: &Result<Verified, crate::payload::VerifyError>,
    ) {
        let s = &mut self.stats;
        s.packets += 1;
        s.payload_bytes += payload_len as u64;
        s.first_packet_after_join.get_or_insert(since_join);
        if let Some(last) = s.last_packet_after_join {
            // Two receive tasks can feed one stream around a reconnect and take their clock
            // readings before the lock: a reading a little older than the last is no gap.
            let gap_ms = since_join.saturating_sub(last).as_millis() as u64;
            if gap_ms > s.max_gap_ms {
                s.max_gap_ms = gap_ms;
                s.max_gap_ended_after_join = Some(since_join);
            }
        }
        s.last_packet_after_join = Some(s.last_packet_after_join.map_or(since_join, |l| l.max(since_join)));
        match verdict {
            Ok(v) => {
                s.intact += 1;
                if v.keyframe {
                    s.keyframes += 1;
                }
                let latency = now_us.saturating_sub(v.stamp.sent_at_us).min(u64::from(u32::MAX));
                self.latency.push(latency as u32);
                self.seq.observe(v.stamp.seq);
                s.highest_seq = self.seq.highest();
                s.lost = self.seq.lost;
                s.duplicates = self.seq.duplicates;
            }
            Err(e) => {
                s.corrupt += 1;
                if e.is_misattribution() {
                    s.misattributed += 1;
                }
            }
        }
    }

    pub(crate) fn snapshot(&self) -> ReceivedStats {
        ReceivedStats {
            latency_us: self.latency.to_vec(),
            ..self.stats.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{self, Stamp, VerifyError};

    #[test]
    fn ring_keeps_the_most_recent_samples_in_order() {
        let mut ring = LatencyRing::new(4);
        assert!(ring.to_vec().is_empty());
        for v in 1..=3 {
            ring.push(v);
        }
        assert_eq!(ring.to_vec(), vec![1, 2, 3]);
        for v in 4..=10 {
            ring.push(v);
        }
        assert_eq!(ring.to_vec(), vec![7, 8, 9, 10]);
        let mut big = LatencyRing::new(LATENCY_SAMPLES);
        for v in 0..10_000 {
            big.push(v);
        }
        let kept = big.to_vec();
        assert_eq!(kept.len(), LATENCY_SAMPLES);
        assert_eq!(kept.first(), Some(&(10_000 - LATENCY_SAMPLES as u32)));
        assert_eq!(kept.last(), Some(&9_999));
    }

    #[test]
    fn seq_tracker_counts_gaps_recoveries_and_duplicates() {
        let mut t = SeqTracker::default();
        assert_eq!(t.observe(10), SeqEvent::InOrder);
        assert_eq!(t.observe(11), SeqEvent::InOrder);
        assert_eq!(t.observe(15), SeqEvent::Gap { missing: 3 });
        assert_eq!(t.lost, 3);
        assert_eq!(t.observe(13), SeqEvent::Recovered);
        assert_eq!(t.lost, 2);
        assert_eq!(t.observe(13), SeqEvent::Duplicate);
        assert_eq!(t.observe(15), SeqEvent::Duplicate);
        assert_eq!(t.observe(11), SeqEvent::Duplicate);
        assert_eq!(t.duplicates, 3);
        assert_eq!(t.lost, 2);
        assert_eq!(t.highest(), Some(15));
        // A jump beyond the window forgets everything but still counts the gap.
        assert_eq!(t.observe(15 + 5000), SeqEvent::Gap { missing: 4999 });
        assert_eq!(t.lost, 5001);
        assert_eq!(t.observe(16), SeqEvent::TooOld);
        assert_eq!(t.too_old, 1);
        // Within the window, a slot reused from an older lap is not mistaken for a duplicate.
        let mut t = SeqTracker::default();
        t.observe(0);
        t.observe(SEQ_WINDOW + 10);
        assert_eq!(t.observe(SEQ_WINDOW + 5), SeqEvent::Recovered);
        assert_eq!(t.lost, SEQ_WINDOW + 9 - 1);
    }

    #[test]
    fn accumulator_accounts_verdicts() {
        let tag = 9;
        let mut acc = StreamAccumulator::new();
        let ok = |seq, sent_at_us, keyframe| -> Result<Verified, VerifyError> {
            Ok(Verified {
                stamp: Stamp {
                    tag,
                    source: MediaSource::Camera,
                    seq,
                    sent_at_us,
                },
                frame_start: keyframe,
                keyframe,
            })
        };
        acc.record(100, Duration::from_millis(5), 1_000, &ok(0, 900, true));
        acc.record(100, Duration::from_millis(6), 2_000, &ok(2, 1_500, false));
        acc.record(50, Duration::from_millis(7), 2_000, &Err(VerifyError::BadMagic));
        acc.record(
            50,
            Duration::from_millis(8),
            2_000,
            &Err(VerifyError::WrongPublisher {
                expected: 1,
                found: 2,
            }),
        );
        acc.record(100, Duration::from_millis(9), 3_000, &ok(3, 4_000, false));
        let s = acc.snapshot();
        assert_eq!(s.packets, 5);
        assert_eq!(s.payload_bytes, 400);
        assert_eq!((s.intact, s.corrupt, s.misattributed), (3, 2, 1));
        assert_eq!(s.keyframes, 1);
        assert_eq!(s.first_packet_after_join, Some(Duration::from_millis(5)));
        assert_eq!(s.last_packet_after_join, Some(Duration::from_millis(9)));
        // A send time in the future (clock skew) saturates to 0.
        assert_eq!(s.latency_us, vec![100, 500, 0]);
        assert_eq!(s.highest_seq, Some(3));
        assert_eq!(s.lost, 1);
        assert_eq!(s.latency_quantile_us(0.5), Some(100));
        assert_eq!(s.latency_quantile_us(1.0), Some(500));
        // Real payloads go through the same path.
        let payload = payload::audio_payload(tag, 4, 2_500);
        let verdict = payload::verify_audio(&payload, Some(tag), Some(MediaSource::Microphone));
        acc.record(payload.len(), Duration::from_millis(10), 3_000, &verdict);
        assert_eq!(acc.snapshot().intact, 4);
    }

    #[test]
    fn the_longest_gap_between_packets_is_kept_with_when_it_ended() {
        let ok = |seq| -> Result<Verified, VerifyError> {
            Ok(Verified {
                stamp: Stamp {
                    tag: 1,
                    source: MediaSource::Microphone,
                    seq,
                    sent_at_us: 0,
                },
                frame_start: false,
                keyframe: false,
            })
        };
        let mut acc = StreamAccumulator::new();
        let ms = Duration::from_millis;
        acc.record(10, ms(1000), 0, &ok(0));
        assert_eq!(acc.snapshot().max_gap_ms, 0, "one packet is no gap");
        assert_eq!(acc.snapshot().max_gap_ended_after_join, None);
        for (i, at) in [1020, 1040, 1060].into_iter().enumerate() {
            acc.record(10, ms(at), 0, &ok(i as u64 + 1));
        }
        assert_eq!(acc.snapshot().max_gap_ms, 20);
        // An outage (a reconnect): 1.5 s without packets, then the stream goes on.
        acc.record(10, ms(2560), 0, &ok(4));
        acc.record(10, ms(2580), 0, &ok(5));
        // Corrupt packets still arrived: they end a gap too.
        acc.record(10, ms(2700), 0, &Err(VerifyError::BadMagic));
        let s = acc.snapshot();
        assert_eq!(s.max_gap_ms, 1500);
        assert_eq!(s.max_gap_ended_after_join, Some(ms(2560)));
        // A reading older than the last (two receive tasks around a reconnect) is no gap and
        // does not move the last arrival back.
        acc.record(10, ms(2650), 0, &ok(6));
        let s = acc.snapshot();
        assert_eq!(s.last_packet_after_join, Some(ms(2700)));
        assert_eq!(s.max_gap_ms, 1500);
        acc.record(10, ms(2720), 0, &ok(7));
        assert_eq!(
            acc.snapshot().max_gap_ms,
            1500,
            "20 ms after the latest, not 70 after the older"
        );
    }

    #[test]
    fn the_reconnect_log_keeps_the_newest_records_and_updates_by_id() {
        let bridge = |n: u64| BridgeId::new(format!("b-{n}")).unwrap();
        let mut log = ReconnectLog::default();
        let first = log.push(ReconnectRecord::new(
            SessionLoss::SocketClosed,
            bridge(0),
            Duration::ZERO,
        ));
        assert_eq!(first, 0);
        log.update(first, |r| r.answer_ms = Some(5));
        assert_eq!(log.to_vec()[0].answer_ms, Some(5));
        let mut last = first;
        for n in 1..(MAX_RECONNECT_RECORDS as u64 + 10) {
            last = log.push(ReconnectRecord::new(
                SessionLoss::Bye(ByeReason::Moved),
                bridge(n),
                Duration::from_secs(n),
            ));
        }
        assert_eq!(log.total(), MAX_RECONNECT_RECORDS as u64 + 10);
        let kept = log.to_vec();
        assert_eq!(kept.len(), MAX_RECONNECT_RECORDS);
        assert_eq!(kept.last().unwrap().lost_bridge, bridge(last));
        assert_eq!(kept[0].lost_bridge, bridge(10));
        // An evicted record is no longer updated, and nothing else is touched instead.
        log.update(first, |r| r.answer_ms = Some(99));
        assert!(log.to_vec().iter().all(|r| r.answer_ms.is_none()));
        log.update(last, |r| r.welcome_ms = Some(7));
        assert_eq!(log.to_vec().last().unwrap().welcome_ms, Some(7));
        log.update(last + 1, |r| r.welcome_ms = Some(8));
        assert_eq!(log.to_vec().iter().filter(|r| r.welcome_ms.is_some()).count(), 1);
    }

    #[test]
    fn summary_mentions_streams() {
        let mut stats = ParticipantStats::default();
        let p = ParticipantId::new("p-1").unwrap();
        stats.sent.insert(
            MediaSource::Camera,
            SentStats {
                packets: 3,
                payload_bytes: 30,
                frames: 1,
            },
        );
        stats.received.insert(
            (p.clone(), MediaSource::Microphone),
            ReceivedStats {
                intact: 7,
                ..Default::default()
            },
        );
        let text = stats.summary();
        assert!(text.contains("sent camera: packets=3"), "{text}");
        assert!(text.contains("recv p-1/microphone"), "{text}");
        assert_eq!(stats.intact_from(&p, MediaSource::Microphone), 7);
        assert_eq!(stats.intact_from(&p, MediaSource::Camera), 0);
        assert_eq!(stats.sent_packets(MediaSource::Camera), 3);
    }
}
