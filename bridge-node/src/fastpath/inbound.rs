//! One participant's published media as the bridge receives it once DTLS is done: SRTP opened in
//! place per (participant, SSRC) with replay protection, and the receive-side RTCP the bridge
//! owes the publisher — receiver reports, NACKs, transport-wide congestion feedback.
//!
//! Sans-IO: [`InboundMedia::open`] takes a datagram and `now`, [`InboundMedia::poll_feedback`]
//! hands out the RTCP due at `now`; the shard writes it through the peer connection (`rtc` owns
//! SRTCP). A stream is known here once the shard binds its SSRC ([`InboundMedia::bind`]), which it
//! does when `rtc` has announced the track and its first packet named the codec; until then the
//! stream's packets go through `rtc`, which binds unknown SSRCs by MID.

use super::nack_generator::{NackConfig, NackGenerator};
use super::receive_stats::ReceiveStats;
use super::srtp::{SrtpError, SrtpKeys, SrtpRecvStream, rtp_header_len};
use super::twcc::{TWCC_INTERVAL, TwccRecorder};
use crate::simulcast::Layer;
use bridgemesh_proto::signaling::MediaSource;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    TransportLayerNack, nack_pairs_from_sequence_numbers,
};
use std::time::{Duration, Instant};

/// How often receiver reports go to a publisher (RFC 3550 leaves it to the profile; browsers
/// send theirs about once a second).
pub const RECEIVER_REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Streams one participant publishes at most (microphone, camera, screen, and room to spare):
/// [`InboundMedia::bind`] refuses more.
pub const INBOUND_STREAMS_MAX: usize = 8;
/// SSRCs `rtc` opens (repair streams, a stream's first packets) whose datagrams the bridge
/// authenticates itself before their transport-wide sequence counts; a further one replaces the
/// oldest.
pub const VERIFIED_UNBOUND_MAX: usize = 4;

/// Whether a datagram is RTP rather than RTCP, DTLS or STUN: first byte 128..=191 (RFC 7983) and
/// a second byte outside RTCP's packet types 192..=223 (RFC 5761 §4).
pub fn is_rtp(datagram: &[u8]) -> bool {
    datagram.len() >= 12 && (128..=191).contains(&datagram[0]) && !(192..=223).contains(&datagram[1])
}

/// The SSRC of an RTP datagram ([`is_rtp`] checked).
pub fn ssrc_of(datagram: &[u8]) -> u32 {
    u32::from_be_bytes([datagram[8], datagram[9], datagram[10], datagram[11]])
}

/// Why a datagram of a known stream was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    BadTag,
    Replayed,
    Malformed,
}

impl From<SrtpError> for OpenError {
    fn from(err: SrtpError) -> Self {
        match err {
            SrtpError::BadTag => OpenError::BadTag,
            SrtpError::Replayed => OpenError::Replayed,
            _ => OpenError::Malformed,
        }
    }
}

/// What [`InboundMedia::open`] made of a datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// Decrypted in place: the RTP packet is `datagram[..len]`, of the stream `source`, with
    /// the audio level it carries (RFC 6464, -dBov; audio streams with the extension only).
    Media {
        source: MediaSource,
        /// The simulcast layer (0 for a stream that does not simulcast).
        layer: Layer,
        len: usize,
        audio_level: Option<u8>,
    },
    /// Not RTP of a bound stream: `rtc` takes it.
    NotOurs,
    Dropped(OpenError),
}

pub struct InboundStream {
    pub ssrc: u32,
    pub source: MediaSource,
    /// The simulcast layer its RID named (0 without simulcast).
    pub layer: Layer,
    srtp: SrtpRecvStream,
    pub stats: ReceiveStats,
    /// Video only: NACK is negotiated for video codecs.
    pub nacks: Option<NackGenerator>,
}

/// RTCP for the publisher, built at `now`.
pub enum Feedback {
    Report(ReceiverReport),
    Nack(TransportLayerNack),
    TransportCc(TransportLayerCc),
}

/// The receive side of one participant's peer connection.
pub struct InboundMedia {
    streams: Vec<InboundStream>,
    /// The negotiated transport-cc extension id and the arrivals recorded under it.
    twcc: Option<(u8, TwccRecorder)>,
    /// The negotiated `ssrc-audio-level` extension id.
    audio_level: Option<u8>,
    next_report: Option<Instant>,
    next_twcc: Option<Instant>,
    /// The SSRC the bridge's RTCP toward this participant names as its sender.
    sender_ssrc: u32,
    scratch_seqs: Vec<u16>,
    /// Replay state of the SSRCs `rtc` opens, for authenticating their datagrams' copies.
    unbound: Vec<(u32, SrtpRecvStream)>,
    next_unbound_evicted: usize,
    /// The copy an unbound datagram is authenticated in (the original goes to `rtc` intact).
    unbound_scratch: Vec<u8>,
}

impl InboundMedia {
    pub fn new(sender_ssrc: u32) -> Self {
        Self {
            streams: Vec::with_capacity(INBOUND_STREAMS_MAX),
            twcc: None,
            audio_level: None,
            next_report: None,
            next_twcc: None,
            sender_ssrc,
            scratch_seqs: Vec::new(),
            unbound: Vec::new(),
            next_unbound_evicted: 0,
            unbound_scratch: Vec::new(),
        }
    }

    /// Takes over the stream `ssrc` from `rtc`: its later packets are opened here. `last_seq`
    /// is the last packet `rtc` delivered of it, with its RTP timestamp (rollover counter 0, as for `rtc`: the hand-over
    /// happens at the stream's first packet). A stream of the same source with another SSRC is
    /// replaced. Returns false when the participant already has too many streams.
    pub fn bind(
        &mut self,
        now: Instant,
        ssrc: u32,
        source: MediaSource,
        clock_rate: u32,
        last: (u16, u32),
    ) -> bool {
        self.bind_layer(now, ssrc, (source, 0), clock_rate, last)
    }

    /// [`InboundMedia::bind`] for one simulcast layer of `source`: the stream of the same
    /// (source, layer) with another SSRC is replaced, the source's other layers are kept.
    pub fn bind_layer(
        &mut self,
        now: Instant,
        ssrc: u32,
        (source, layer): (MediaSource, Layer),
        clock_rate: u32,
        last: (u16, u32),
    ) -> bool {
        let (last_seq, last_rtp_time) = last;
        self.streams
            .retain(|s| (s.source != source || s.layer != layer) && s.ssrc != ssrc);
        if self.streams.len() == INBOUND_STREAMS_MAX {
            return false;
        }
        let mut stats = ReceiveStats::new(ssrc, clock_rate);
        let mut nacks = (!source.is_audio()).then(|| NackGenerator::new(NackConfig::default()));
        if let Some(nacks) = nacks.as_mut() {
            nacks.record(now, last_seq);
        }
        stats.record(now, last_seq, last_rtp_time);
        self.streams.push(InboundStream {
            ssrc,
            source,
            layer,
            srtp: SrtpRecvStream::after(last_seq),
            stats,
            nacks,
        });
        self.next_report.get_or_insert(now + RECEIVER_REPORT_INTERVAL);
        true
    }

    /// Forgets the stream of `source` (its track ended or was replaced).
    pub fn unbind(&mut self, source: MediaSource) {
        self.streams.retain(|s| s.source != source);
    }

    /// Records transport-wide sequence numbers under extension `id` (from the publisher's
    /// negotiated header extensions); `None` turns the feedback off.
    pub fn set_transport_cc(&mut self, now: Instant, id: Option<u8>) {
        match (id, self.twcc.as_mut()) {
            (Some(id), Some((current, _))) => *current = id,
            (Some(id), None) => {
                self.twcc = Some((id, TwccRecorder::new(self.sender_ssrc)));
                self.next_twcc = Some(now + TWCC_INTERVAL);
            }
            (None, _) => {
                self.twcc = None;
                self.next_twcc = None;
            }
        }
    }

    /// Reads audio levels under extension `id` (the publisher's negotiated `ssrc-audio-level`).
    pub fn set_audio_level(&mut self, id: Option<u8>) {
        self.audio_level = id;
    }

    pub fn is_bound(&self, ssrc: u32) -> bool {
        self.streams.iter().any(|s| s.ssrc == ssrc)
    }

    pub fn streams(&self) -> &[InboundStream] {
        &self.streams
    }

    /// Opens an SRTP datagram of a bound stream in place with the publisher's `keys`, and counts
    /// it for the feedback. Allocates nothing.
    pub fn open(&mut self, now: Instant, keys: &SrtpKeys, datagram: &mut [u8]) -> Opened {
        if !is_rtp(datagram) {
            return Opened::NotOurs;
        }
        let ssrc = ssrc_of(datagram);
        let Some(stream) = self.streams.iter_mut().find(|s| s.ssrc == ssrc) else {
            return Opened::NotOurs;
        };
        let len = match stream.srtp.unprotect(keys, datagram) {
            Ok(len) => len,
            Err(err) => return Opened::Dropped(err.into()),
        };
        let seq = u16::from_be_bytes([datagram[2], datagram[3]]);
        let rtp_time = u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]);
        stream.stats.record(now, seq, rtp_time);
        if let Some(nacks) = stream.nacks.as_mut() {
            nacks.record(now, seq);
        }
        let (source, layer) = (stream.source, stream.layer);
        let packet = &datagram[..len];
        let audio_level = match self.audio_level {
            Some(id) if source.is_audio() => find_extension(packet, id)
                .and_then(|value| value.first())
                .map(|byte| byte & 0x7F),
            _ => None,
        };
        self.record_transport_cc(now, packet);
        Opened::Media {
            source,
            layer,
            len,
            audio_level,
        }
    }

    /// A packet of a bound stream that reached the bridge another way (through `rtc`, e.g. a
    /// retransmission on the RTX stream): fills its gap.
    pub fn repaired(&mut self, now: Instant, ssrc: u32, seq: u16) {
        if let Some(nacks) = self
            .streams
            .iter_mut()
            .find(|s| s.ssrc == ssrc)
            .and_then(|s| s.nacks.as_mut())
        {
            nacks.record(now, seq);
        }
    }

    /// Records the transport-wide sequence number of an RTP packet the bridge opened and
    /// authenticated (never a datagram not yet opened: anyone can forge a clear header).
    fn record_transport_cc(&mut self, now: Instant, packet: &[u8]) {
        let Some((id, recorder)) = self.twcc.as_mut() else {
            return;
        };
        if let Some(value) = find_extension(packet, *id)
            && value.len() >= 2
        {
            recorder.record(now, u16::from_be_bytes([value[0], value[1]]));
        }
    }

    /// A datagram [`InboundMedia::open`] left to `rtc` (an SSRC not bound here: a repair stream
    /// carrying retransmissions or the publisher's own bandwidth probes, or a stream's first
    /// packets): its transport-wide sequence number counts for the publisher's estimator once
    /// a copy of it authenticates with the publisher's `keys`; a forged one from the publisher's
    /// address is not counted. Costs a copy and a decryption, for these datagrams only.
    pub fn record_unbound(&mut self, now: Instant, keys: &SrtpKeys, datagram: &[u8]) {
        let Some((id, _)) = self.twcc else {
            return;
        };
        if !is_rtp(datagram) || find_extension(datagram, id).is_none() {
            return;
        }
        let ssrc = ssrc_of(datagram);
        let index = match self.unbound.iter().position(|(s, _)| *s == ssrc) {
            Some(index) => index,
            None if self.unbound.len() < VERIFIED_UNBOUND_MAX => {
                self.unbound.push((ssrc, SrtpRecvStream::new()));
                self.unbound.len() - 1
            }
            None => {
                let index = self.next_unbound_evicted;
                self.next_unbound_evicted = (index + 1) % VERIFIED_UNBOUND_MAX;
                self.unbound[index] = (ssrc, SrtpRecvStream::new());
                index
            }
        };
        self.unbound_scratch.clear();
        self.unbound_scratch.extend_from_slice(datagram);
        let Ok(len) = self.unbound[index].1.unprotect(keys, &mut self.unbound_scratch) else {
            return;
        };
        if let Some(value) = find_extension(&self.unbound_scratch[..len], id)
            && value.len() >= 2
            && let Some((_, recorder)) = self.twcc.as_mut()
        {
            recorder.record(now, u16::from_be_bytes([value[0], value[1]]));
        }
    }

    /// Arrivals recorded and not yet reported to the publisher.
    pub fn transport_cc_pending(&self) -> u64 {
        self.twcc.as_ref().map_or(0, |(_, recorder)| recorder.pending())
    }

    /// A sender report of one of this participant's streams (LSR/DLSR of the next report).
    pub fn on_sender_report(&mut self, now: Instant, ssrc: u32, ntp_time: u64) {
        if let Some(stream) = self.streams.iter_mut().find(|s| s.ssrc == ssrc) {
            stream.stats.on_sender_report(now, ntp_time);
        }
    }

    /// The earliest instant [`InboundMedia::poll_feedback`] has something to send.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let nacks = self
            .streams
            .iter()
            .filter_map(|s| s.nacks.as_ref()?.poll_timeout());
        [self.next_report, self.next_twcc]
            .into_iter()
            .flatten()
            .chain(nacks)
            .min()
    }

    /// The RTCP due at `now`, into `out`; the receiver reports name `media_ssrc`-less blocks.
    pub fn poll_feedback(&mut self, now: Instant, out: &mut Vec<Feedback>) {
        for stream in &mut self.streams {
            let Some(nacks) = stream.nacks.as_mut() else {
                continue;
            };
            nacks.poll(now, &mut self.scratch_seqs);
            if !self.scratch_seqs.is_empty() {
                out.push(Feedback::Nack(TransportLayerNack {
                    sender_ssrc: self.sender_ssrc,
                    media_ssrc: stream.ssrc,
                    nacks: nack_pairs_from_sequence_numbers(&self.scratch_seqs),
                }));
            }
        }
        if self.next_twcc.is_some_and(|at| at <= now) {
            self.next_twcc = Some(now + TWCC_INTERVAL);
            let media_ssrc = self.streams.first().map_or(0, |s| s.ssrc);
            if let Some((_, recorder)) = self.twcc.as_mut() {
                // More than one feedback's worth after a stall: all of it, a packet each.
                while let Some(feedback) = recorder.feedback(media_ssrc) {
                    out.push(Feedback::TransportCc(feedback));
                }
            }
        }
        if self.next_report.is_some_and(|at| at <= now) {
            self.next_report = Some(now + RECEIVER_REPORT_INTERVAL);
            let reports: Vec<_> = self
                .streams
                .iter_mut()
                .filter_map(|s| s.stats.report(now))
                .collect();
            if !reports.is_empty() {
                out.push(Feedback::Report(ReceiverReport {
                    ssrc: self.sender_ssrc,
                    reports,
                    ..Default::default()
                }));
            }
        }
    }
}

/// The value of header extension `id` in an RTP packet (RFC 8285, one- and two-byte forms).
pub fn find_extension(packet: &[u8], id: u8) -> Option<&[u8]> {
    if packet.first()? & 0x10 == 0 {
        return None;
    }
    let header_len = rtp_header_len(packet).ok()?;
    let start = 12 + 4 * usize::from(packet[0] & 0x0F);
    let profile = u16::from_be_bytes([packet[start], packet[start + 1]]);
    let block = &packet[start + 4..header_len];
    let two_byte = profile & 0xFFF0 == 0x1000;
    if profile != 0xBEDE && !two_byte {
        return None;
    }
    let mut at = 0;
    while at < block.len() {
        let (element_id, value_at, len) = if two_byte {
            if block[at] == 0 {
                at += 1;
                continue;
            }
            (block[at], at + 2, usize::from(*block.get(at + 1)?))
        } else {
            let element_id = block[at] >> 4;
            if element_id == 0 {
                at += 1;
                continue;
            }
            if element_id == 15 {
                return None;
            }
            (element_id, at + 1, usize::from(block[at] & 0x0F) + 1)
        };
        let value = block.get(value_at..value_at + len)?;
        if element_id == id {
            return Some(value);
        }
        at = value_at + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fastpath::srtp::{SrtpProfile, SrtpSendStream};

    fn keys() -> SrtpKeys {
        SrtpKeys::new(SrtpProfile::AeadAes128Gcm, &[7; 16], &[9; 12]).unwrap()
    }

    /// A protected video packet with a transport-cc extension (id 3) carrying `twcc`.
    fn packet(send: &mut SrtpSendStream, ssrc: u32, seq: u16, twcc: u16) -> Vec<u8> {
        let mut packet = vec![0x90, 96];
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
        packet.extend_from_slice(&ssrc.to_be_bytes());
        packet.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x31]);
        packet.extend_from_slice(&twcc.to_be_bytes());
        packet.push(0);
        packet.extend_from_slice(&[0x55; 100]);
        let len = packet.len();
        packet.resize(len + 16, 0);
        send.protect(&keys(), &mut packet, len).unwrap();
        packet
    }

    #[test]
    fn rtp_is_told_from_rtcp_dtls_and_stun() {
        let mut rtp = [0u8; 12];
        rtp[0] = 0x80;
        for (second, want) in [
            (96, true),
            (96 | 0x80, true),
            (200, false),
            (201, false),
            (223, false),
        ] {
            rtp[1] = second;
            assert_eq!(is_rtp(&rtp), want, "second byte {second}");
        }
        assert!(!is_rtp(&[22; 20]), "DTLS");
        assert!(!is_rtp(&[0; 20]), "STUN");
        assert!(!is_rtp(&[0x80; 11]), "too short");
    }

    #[test]
    fn bound_streams_open_here_and_the_rest_is_left_to_rtc() {
        let t = Instant::now();
        let keys = keys();
        let mut inbound = InboundMedia::new(1);
        inbound.set_transport_cc(t, Some(3));
        let mut send = SrtpSendStream::new(0xAA);
        let mut first = packet(&mut send, 0xAA, 10, 500);
        assert_eq!(
            inbound.open(t, &keys, &mut first),
            Opened::NotOurs,
            "not bound yet"
        );
        assert!(inbound.bind(t, 0xAA, MediaSource::Camera, 90_000, (10, 30_000)));
        let mut good = packet(&mut send, 0xAA, 12, 502);
        let sealed = good.clone();
        assert_eq!(
            inbound.open(t, &keys, &mut good),
            Opened::Media {
                source: MediaSource::Camera,
                layer: 0,
                len: sealed.len() - 16,
                audio_level: None,
            }
        );
        assert_eq!(&good[20..30], &[0x55; 10], "decrypted in place");
        assert_eq!(
            inbound.open(t, &keys, &mut sealed.clone()),
            Opened::Dropped(OpenError::Replayed)
        );
        let mut bad = packet(&mut send, 0xAA, 13, 503);
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(
            inbound.open(t, &keys, &mut bad),
            Opened::Dropped(OpenError::BadTag)
        );
        let mut other = packet(&mut SrtpSendStream::new(0xBB), 0xBB, 1, 504);
        assert_eq!(inbound.open(t, &keys, &mut other), Opened::NotOurs);

        // 11 is missing: a NACK; a receiver report; a TWCC feedback with 502 received.
        let mut out = Vec::new();
        inbound.poll_feedback(t + Duration::from_secs(1), &mut out);
        let nacked: Vec<u16> = out
            .iter()
            .filter_map(|f| match f {
                Feedback::Nack(nack) => Some(nack.nacks[0].packet_id),
                _ => None,
            })
            .collect();
        assert_eq!(nacked, [11]);
        let report = out.iter().find_map(|f| match f {
            Feedback::Report(report) => Some(report),
            _ => None,
        });
        let block = &report.expect("a receiver report").reports[0];
        assert_eq!(
            (block.ssrc, block.last_sequence_number, block.total_lost),
            (0xAA, 12, 1)
        );
        let twcc = out.iter().find_map(|f| match f {
            Feedback::TransportCc(twcc) => Some(twcc),
            _ => None,
        });
        assert_eq!(twcc.expect("a TWCC feedback").base_sequence_number, 502);
    }

    #[test]
    fn extensions_are_found_in_both_forms() {
        let one_byte = [
            0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0xBE, 0xDE, 0, 2, 0x10, 0xAA, 0, 0x31, 0x12, 0x34, 0, 0,
        ];
        assert_eq!(find_extension(&one_byte, 3), Some(&[0x12, 0x34][..]));
        assert_eq!(find_extension(&one_byte, 1), Some(&[0xAA][..]));
        assert_eq!(find_extension(&one_byte, 4), None);
        let two_byte = [
            0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0x10, 0x00, 0, 1, 5, 2, 0xAB, 0xCD,
        ];
        assert_eq!(find_extension(&two_byte, 5), Some(&[0xAB, 0xCD][..]));
        let mut lying = one_byte;
        lying[19] = 0x3F; // a length past the block
        assert_eq!(find_extension(&lying, 3), None);
    }
}
