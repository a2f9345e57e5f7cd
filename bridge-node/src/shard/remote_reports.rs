//! Sender reports for the legs of remote publishers.
//!
//! A local publisher's own sender reports are translated onto its legs (`translate_sender_report`).
//! A remote publisher's reports stay on its own bridge: links carry RTP, not RTCP. Without a
//! report a subscriber cannot relate the RTP clocks of a participant's audio and video, so it
//! cannot lip-sync them. Carrying reports over links would need a new frame and both bridges
//! upgraded; instead the bridge states each remote stream's RTP clock against its own clock, as
//! `rtc`'s report generator did for every leg before the fast path: the RTP timestamp of the
//! latest in-order frame maps to the instant it arrived, and advances at the codec's clock rate
//! from there. All streams of a remote participant travel the same link to the same shard, so
//! their mappings share the bridge's clock and the link's delay, and audio and video stay in
//! step as well as they arrive (what a receiver's jitter buffer already copes with).

use super::{Room, Shard};
use crate::demux::ParticipantKey;
use bridgemesh_proto::signaling::MediaSource;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::shared::time::SystemInstant;
use std::time::{Duration, Instant};

/// How often each leg of a remote stream gets a sender report (`rtc`'s generator default).
pub const SENDER_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// A remote stream's RTP clock as seen on this bridge.
#[derive(Debug, Default, Clone, Copy)]
pub struct RemoteStreamClock {
    /// (sequence number, RTP timestamp, arrival) of the first packet of the latest in-order frame.
    anchor: Option<(u16, u32, Instant)>,
    /// When the stream's legs get their next report; `None` until its first packet.
    next_report: Option<Instant>,
}

impl RemoteStreamClock {
    /// Notes a packet of the stream (plain RTP, as it crossed the link). Only the first packet
    /// of a newer frame moves the anchor, so neither reordering nor the time a large frame takes
    /// to arrive bends the mapping.
    pub fn on_packet(&mut self, now: Instant, packet: &[u8]) {
        if packet.len() < 12 || packet[0] >> 6 != 2 {
            return;
        }
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let timestamp = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let newer = match self.anchor {
            None => true,
            Some((last_seq, last_timestamp, _)) => {
                let ahead = seq.wrapping_sub(last_seq);
                ahead != 0 && ahead < 0x8000 && timestamp != last_timestamp
            }
        };
        if newer {
            self.anchor = Some((seq, timestamp, now));
        } else if let Some((last_seq, _, _)) = &mut self.anchor {
            // A later packet of the same frame: the frame stays anchored where it began.
            let ahead = seq.wrapping_sub(*last_seq);
            if ahead != 0 && ahead < 0x8000 {
                *last_seq = seq;
            }
        }
        // The first report goes out at the next timeout, not a second later.
        self.next_report.get_or_insert(now);
    }

    /// The stream's RTP timestamp at `now`, at `clock_rate` ticks per second.
    pub fn rtp_time_at(&self, now: Instant, clock_rate: u32) -> Option<u32> {
        let (_, timestamp, arrived) = self.anchor?;
        let ticks = now.saturating_duration_since(arrived).as_secs_f64() * f64::from(clock_rate);
        Some(timestamp.wrapping_add(ticks as u64 as u32))
    }

    pub fn next_report(&self) -> Option<Instant> {
        self.next_report
    }
}

/// A report due on one subscriber's leg of a remote stream.
#[derive(Debug, Clone)]
pub struct DueReport {
    pub subscriber: ParticipantKey,
    pub sender: RTCRtpSenderId,
    pub publisher: ParticipantKey,
    pub source: MediaSource,
    pub report: SenderReport,
}

impl Shard {
    /// The earliest report due on a remote stream's legs.
    pub(super) fn next_remote_report(&self) -> Option<Instant> {
        self.rooms
            .values()
            .flat_map(|room| room.cascade.remote.values())
            .flat_map(|remote| remote.streams.values())
            .filter_map(|stream| stream.clock.next_report())
            .min()
    }

    /// Writes the reports due at `now` through each leg's RTP sender, the way translated reports
    /// go, and schedules the next ones. The rooms' pumps send them.
    pub(super) fn send_remote_sender_reports(&mut self, now: Instant) {
        if self.next_remote_report().is_none_or(|at| now < at) {
            return;
        }
        let mut due = std::mem::take(&mut self.scratch_reports);
        for room in self.rooms.values_mut() {
            due.clear();
            let wall_clock = *self.wall_clock.get_or_insert_with(|| SystemInstant::now(now));
            remote_reports_due(room, now, wall_clock, &mut due);
            for report in due.drain(..) {
                let Some(subscriber) = room.participants.get_mut(&report.subscriber) else {
                    continue;
                };
                if let Some(mut sender) = subscriber.pc.rtp_sender(report.sender) {
                    match sender.write_rtcp(now, vec![Box::new(report.report)]) {
                        Ok(()) => self.stats.sender_reports_generated += 1,
                        Err(err) => {
                            tracing::debug!(%err, publisher = ?report.publisher, source = report.source.as_str(), "sender report not written")
                        }
                    }
                    subscriber.dirty = true;
                }
            }
        }
        self.scratch_reports = due;
    }
}

/// Collects into `out` the reports due at `now` on the legs of the room's remote streams, each
/// with the leg's SSRC and counts, and schedules each such stream's next report.
pub(super) fn remote_reports_due(
    room: &mut Room,
    now: Instant,
    wall_clock: SystemInstant,
    out: &mut Vec<DueReport>,
) {
    let ntp_time = wall_clock.ntp(now);
    for (publisher, remote) in room.cascade.remote.iter_mut() {
        for (source, stream) in remote.streams.iter_mut() {
            if stream.clock.next_report.is_none_or(|at| now < at) {
                continue;
            }
            stream.clock.next_report = Some(now + SENDER_REPORT_INTERVAL);
            let Some(rtp_time) = stream.clock.rtp_time_at(now, stream.codec.clock_rate) else {
                continue;
            };
            for subscriber in room.participants.values() {
                if !subscriber.connected {
                    continue;
                }
                let Some(leg) = subscriber.legs.get(&(*publisher, *source)) else {
                    continue;
                };
                // Like `rtc`'s generator: no report on a leg that has sent nothing yet.
                let Some(writer) = leg.writer.as_ref().filter(|w| w.packets_sent > 0) else {
                    continue;
                };
                out.push(DueReport {
                    subscriber: subscriber.key,
                    sender: leg.sender_id,
                    publisher: *publisher,
                    source: *source,
                    report: SenderReport {
                        ssrc: writer.ssrc(),
                        ntp_time,
                        rtp_time,
                        packet_count: writer.packets_sent,
                        octet_count: writer.octets_sent,
                        ..Default::default()
                    },
                });
            }
        }
    }
}
