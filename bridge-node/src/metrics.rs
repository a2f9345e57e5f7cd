//! The bridge's `/metrics`, through `prometheus-client`: the shards' counters, the cascade links'
//! and the process's CPU and memory, from a snapshot taken at each scrape. Every series has the
//! `bridge` label; link series also `peer`. The exposition is the Prometheus text format 0.0.4;
//! counters are named with their `_total` suffix by the encoder.

use crate::cascade::LinkStats;
use crate::driver::{Bridge, BridgeStats};
use bridgemesh_proto::BridgeId;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType::{self, Counter, Gauge};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// `Content-Type` of [`render`].
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Every metric of `bridge`, read now.
pub fn render(bridge: &Bridge) -> String {
    let snapshot = Snapshot {
        id: bridge.id().clone(),
        stats: bridge.stats(),
        links: bridge.cascade_links(),
        cpu_s: process_cpu_s(),
        resident_bytes: process_resident_bytes(),
    };
    encode(snapshot)
}

/// One gauge of this bridge, e.g. a driver's own state (`/metrics/control`).
pub fn render_gauge(id: &BridgeId, name: &'static str, help: &'static str, value: u64) -> String {
    #[derive(Debug)]
    struct One(BridgeId, &'static str, &'static str, u64);
    impl Collector for One {
        fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
            let labels = [("bridge", self.0.as_str())];
            family(&mut encoder, self.1, Gauge, self.2, &labels, self.3 as f64)
        }
    }
    encode(One(id.clone(), name, help, value))
}

fn encode(collector: impl Collector) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
        .expect("writing to a String cannot fail");
    text
}

#[derive(Debug)]
struct Snapshot {
    id: BridgeId,
    stats: BridgeStats,
    links: Vec<LinkStats>,
    cpu_s: Option<f64>,
    resident_bytes: Option<u64>,
}

/// One series: a counter or gauge, written as an integer when it is one.
fn series(
    metric: prometheus_client::encoding::MetricEncoder,
    kind: MetricType,
    value: f64,
) -> std::fmt::Result {
    let whole = value.fract() == 0.0 && value.abs() < 9.0e15;
    match (kind, whole) {
        (Counter, true) => ConstCounter::new(value as u64).encode(metric),
        (Counter, false) => ConstCounter::new(value).encode(metric),
        (_, true) => ConstGauge::new(value as i64).encode(metric),
        (_, false) => ConstGauge::new(value).encode(metric),
    }
}

fn family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    kind: MetricType,
    help: &str,
    labels: &[(&str, &str)],
    value: f64,
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    series(family.encode_family(&labels)?, kind, value)
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let bridge = [("bridge", self.id.as_str())];
        for (name, kind, help, value) in self.scalars().into_iter().chain(self.socket_scalars()) {
            family(&mut encoder, name, kind, help, &bridge, value as f64)?;
        }
        // Publisher packets of a stream the fast path opens, dropped, by why.
        let inbound = &self.stats.shards.inbound;
        let mut failures = encoder.encode_descriptor(
            "bridgemesh_srtp_unprotect_failures",
            "Publisher SRTP packets the bridge dropped: bad authentication tag, replayed, malformed.",
            None,
            Counter,
        )?;
        for (reason, value) in [
            ("bad_tag", inbound.unprotect_bad_tag),
            ("replayed", inbound.unprotect_replayed),
            ("malformed", inbound.unprotect_malformed),
        ] {
            let labels = [("bridge", self.id.as_str()), ("reason", reason)];
            series(failures.encode_family(&labels)?, Counter, value as f64)?;
        }
        self.encode_simulcast(&mut encoder)?;
        self.encode_bandwidth(&mut encoder)?;
        // One family per link figure, one series per link (a family is declared with no link too).
        for (name, kind, help, value) in LINK_FAMILIES {
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for link in &self.links {
                let peer = link.peer.to_string();
                let labels = [("bridge", self.id.as_str()), ("peer", peer.as_str())];
                series(family.encode_family(&labels)?, kind, value(link))?;
            }
        }
        // A figure that cannot be read (not Linux, a restricted `/proc`) is left out rather than
        // reported as 0. Under `bridgemesh up` several bridges share one process (with control
        // and TURN), and each reports the whole process.
        if let Some(cpu_s) = self.cpu_s {
            family(
                &mut encoder,
                "bridgemesh_process_cpu_seconds",
                Counter,
                "User and system CPU time of the bridge's process.",
                &bridge,
                cpu_s,
            )?;
        }
        if let Some(resident_bytes) = self.resident_bytes {
            family(
                &mut encoder,
                "bridgemesh_process_resident_memory_bytes",
                Gauge,
                "Resident memory of the bridge's process.",
                &bridge,
                resident_bytes as f64,
            )?;
        }
        Ok(())
    }
}

/// A figure of the bridge: name (counters without `_total`), kind, help, value.
type Scalar = (&'static str, MetricType, &'static str, u64);

impl Snapshot {
    /// The media sockets' batched I/O and the handoff between shards.
    fn socket_scalars(&self) -> [Scalar; 4] {
        let stats = &self.stats;
        [
            (
                "bridgemesh_bridge_datagrams_dropped_by_kernel",
                Counter,
                "Datagrams the kernel dropped at the media sockets for a full receive buffer (see media_socket.recv_buffer_bytes).",
                stats.datagrams_dropped_by_kernel,
            ),
            (
                "bridgemesh_bridge_send_syscalls",
                Counter,
                "sendmmsg calls (sendto for an oversized datagram) on the media sockets; datagrams_sent over this is the batch size.",
                stats.send_syscalls,
            ),
            (
                "bridgemesh_bridge_datagrams_handed_over",
                Counter,
                "Datagrams one shard's socket read for a participant of another shard, handed over.",
                stats.datagrams_handed_over,
            ),
            (
                "bridgemesh_bridge_datagrams_handoff_dropped",
                Counter,
                "Datagrams dropped because the owning shard's handoff channel was full.",
                stats.datagrams_handoff_dropped,
            ),
        ]
    }
}

impl Snapshot {
    fn scalars(&self) -> [Scalar; 38] {
        let stats = &self.stats;
        [
            (
                "bridgemesh_bridge_participants",
                Gauge,
                "Participants connected.",
                stats.shards.participants,
            ),
            (
                "bridgemesh_bridge_rooms",
                Gauge,
                "Rooms with at least one participant here.",
                stats.shards.rooms,
            ),
            (
                "bridgemesh_bridge_datagrams_received",
                Counter,
                "Datagrams routed to a participant.",
                stats.shards.datagrams_in,
            ),
            (
                "bridgemesh_bridge_datagram_received_bytes",
                Counter,
                "Bytes of the datagrams routed to a participant (UDP payloads).",
                stats.shards.datagram_bytes_in,
            ),
            (
                "bridgemesh_bridge_datagrams_sent",
                Counter,
                "Datagrams the shards handed to the socket (media, RTCP, ICE, DTLS).",
                stats.shards.datagrams_out,
            ),
            (
                "bridgemesh_bridge_datagrams_unroutable",
                Counter,
                "Datagrams from unknown addresses without a known ICE ufrag.",
                stats.datagrams_unroutable,
            ),
            (
                "bridgemesh_bridge_datagrams_dropped",
                Counter,
                "Datagrams dropped because a shard inbox was full.",
                stats.datagrams_dropped_inbox_full,
            ),
            (
                "bridgemesh_bridge_datagrams_send_failed",
                Counter,
                "Datagrams the socket refused to send.",
                stats.datagrams_send_failed,
            ),
            (
                "bridgemesh_bridge_signaling_refused",
                Counter,
                "Client signaling messages refused for exceeding their kind's rate limit.",
                stats.signaling_refused,
            ),
            (
                "bridgemesh_bridge_signaling_flood_disconnects",
                Counter,
                "Clients disconnected for sending refused messages past their budget.",
                stats.signaling_flood_disconnects,
            ),
            (
                "bridgemesh_bridge_media_routes",
                Gauge,
                "Remote addresses routed to a participant.",
                stats.media_routes,
            ),
            (
                "bridgemesh_bridge_rtp_received",
                Counter,
                "RTP packets received from publishers.",
                stats.shards.rtp_in,
            ),
            (
                "bridgemesh_bridge_rtp_received_bytes",
                Counter,
                "Bytes of RTP received from publishers (header and payload, decrypted).",
                stats.shards.rtp_in_bytes,
            ),
            (
                "bridgemesh_bridge_rtp_forwarded",
                Counter,
                "RTP packets forwarded to subscribers.",
                stats.shards.rtp_forwarded,
            ),
            (
                "bridgemesh_bridge_keyframe_requests",
                Counter,
                "Keyframe requests sent to publishers.",
                stats.shards.keyframe_requests_sent,
            ),
            (
                "bridgemesh_bridge_cascade_rtp_received",
                Counter,
                "RTP packets of remote publishers received over cascade links.",
                stats.shards.cascade_rtp_in,
            ),
            (
                "bridgemesh_bridge_cascade_rtp_unknown_stream",
                Counter,
                "Cascade media datagrams of a stream the link did not announce, dropped.",
                stats.shards.cascade_rtp_unknown_stream,
            ),
            (
                "bridgemesh_bridge_cascade_rtp_sent",
                Counter,
                "RTP packets of local publishers handed to cascade links (once per link).",
                stats.shards.cascade_rtp_out,
            ),
            (
                "bridgemesh_bridge_rtp_retransmitted",
                Counter,
                "Packets resent from a retransmission ring in answer to a subscriber's NACK.",
                stats.shards.rtp_retransmitted,
            ),
            (
                "bridgemesh_bridge_rtp_nack_missed",
                Counter,
                "NACKed packets no longer in the retransmission ring.",
                stats.shards.rtp_nack_missed,
            ),
            (
                "bridgemesh_bridge_sender_reports_translated",
                Counter,
                "Publisher sender reports written onto subscriber legs.",
                stats.shards.sender_reports_translated,
            ),
            (
                "bridgemesh_bridge_sender_reports_generated",
                Counter,
                "Sender reports the bridge wrote from its own clock onto legs of remote publishers.",
                stats.shards.sender_reports_generated,
            ),
            (
                "bridgemesh_bridge_rtp_forward_failed",
                Counter,
                "Publisher packets the fast path could not forward (malformed).",
                stats.shards.rtp_forward_failed,
            ),
            (
                "bridgemesh_bridge_srtp_key_export_failed",
                Counter,
                "Peer connections disconnected because no SRTP keys came out of DTLS.",
                stats.shards.srtp_key_export_failed,
            ),
            (
                "bridgemesh_bridge_srtp_sessions_gcm",
                Counter,
                "Peer connections whose DTLS negotiated AEAD_AES_128_GCM.",
                stats.shards.srtp_sessions_gcm,
            ),
            (
                "bridgemesh_bridge_srtp_sessions_cm",
                Counter,
                "Peer connections whose DTLS negotiated AES_CM_128_HMAC_SHA1_80.",
                stats.shards.srtp_sessions_cm,
            ),
            (
                "bridgemesh_bridge_ice_disconnects",
                Counter,
                "Times a participant's path went 15 s without a consent check or media (RFC 7675).",
                stats.shards.ice_disconnects,
            ),
            (
                "bridgemesh_bridge_rtp_not_sent_declined",
                Counter,
                "Packets not sent on a subscriber leg whose answer declined the stream (inactive).",
                stats.shards.rtp_not_sent_declined,
            ),
            (
                "bridgemesh_bridge_chat_messages_accepted",
                Counter,
                "Chat messages from this bridge's participants that it accepted (room and private).",
                stats.shards.meeting.chat_accepted,
            ),
            (
                "bridgemesh_bridge_chat_messages_refused",
                Counter,
                "Chat messages and deletes refused (too long, empty, unknown target, not a moderator); rate-limited ones are in signaling_refused.",
                stats.shards.meeting.chat_refused,
            ),
            (
                "bridgemesh_bridge_chat_messages_from_links",
                Counter,
                "Chat messages other bridges of a room sent this one (live or history).",
                stats.shards.meeting.chat_from_links,
            ),
            (
                "bridgemesh_bridge_reactions",
                Counter,
                "Reactions from this bridge's participants.",
                stats.shards.meeting.reactions,
            ),
            (
                "bridgemesh_bridge_hands_raised",
                Counter,
                "Hands raised by this bridge's participants.",
                stats.shards.meeting.hands_raised,
            ),
            (
                "bridgemesh_bridge_rtp_opened",
                Counter,
                "Publisher RTP packets the bridge decrypted itself (the rest went through rtc).",
                stats.shards.inbound.rtp_opened,
            ),
            (
                "bridgemesh_bridge_receiver_reports_sent",
                Counter,
                "Receiver reports the bridge sent to publishers.",
                stats.shards.inbound.receiver_reports_sent,
            ),
            (
                "bridgemesh_bridge_nacks_sent",
                Counter,
                "Sequence numbers the bridge asked publishers to resend (each request counted).",
                stats.shards.inbound.nacks_sent,
            ),
            (
                "bridgemesh_bridge_transport_cc_feedback_sent",
                Counter,
                "Transport-wide congestion control feedback packets sent to publishers.",
                stats.shards.inbound.transport_cc_feedback_sent,
            ),
            (
                "bridgemesh_bridge_feedback_failed",
                Counter,
                "RTCP toward publishers the peer connection refused to write.",
                stats.shards.inbound.feedback_failed,
            ),
        ]
    }
}

impl Snapshot {
    /// Layer selection: the video legs by the layer they carry, keyframe requests by layer, and
    /// the counters of switches, unselected packets and constraints.
    fn encode_simulcast(&self, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        let simulcast = &self.stats.shards.simulcast;
        let layers = ["q", "h", "f"];
        let mut legs = encoder.encode_descriptor(
            "bridgemesh_simulcast_legs",
            "Video legs (subscriber, source) by the simulcast layer they carry now (q lowest; a source without simulcast is q); paused: the receiver shows nothing of it.",
            None,
            Gauge,
        )?;
        let by_layer = layers.iter().zip(simulcast.legs_on_layer);
        for (layer, value) in by_layer.chain([(&"paused", simulcast.legs_paused)]) {
            let labels = [("bridge", self.id.as_str()), ("layer", *layer)];
            series(legs.encode_family(&labels)?, Gauge, value as f64)?;
        }
        let mut requests = encoder.encode_descriptor(
            "bridgemesh_simulcast_keyframe_requests",
            "Keyframe requests (PLI) sent to publishers, by the layer they name.",
            None,
            Counter,
        )?;
        for (layer, value) in layers.iter().zip(simulcast.keyframe_requests_by_layer) {
            let labels = [("bridge", self.id.as_str()), ("layer", *layer)];
            series(requests.encode_family(&labels)?, Counter, value as f64)?;
        }
        let mut link_bytes = encoder.encode_descriptor(
            "bridgemesh_simulcast_link_bytes",
            "RTP bytes of simulcast sources sent over cascade links, by layer (counted once per link): a link carries the layer its far side's largest tile needs.",
            None,
            Counter,
        )?;
        for (layer, value) in layers.iter().zip(simulcast.link_bytes_by_layer) {
            let labels = [("bridge", self.id.as_str()), ("layer", *layer)];
            series(link_bytes.encode_family(&labels)?, Counter, value as f64)?;
        }
        let bridge = [("bridge", self.id.as_str())];
        for (name, help, value) in [
            (
                "bridgemesh_simulcast_layer_switches",
                "Times a leg moved to another simulcast layer (on that layer's keyframe).",
                simulcast.layer_switches,
            ),
            (
                "bridgemesh_simulcast_packets_not_selected",
                "Publisher video packets not sent on a leg: another layer, a paused source, or a switch waiting for its keyframe.",
                simulcast.packets_not_selected,
            ),
            (
                "bridgemesh_simulcast_constraints_applied",
                "receiver_constraints messages applied.",
                simulcast.constraints_applied,
            ),
            (
                "bridgemesh_simulcast_constraints_refused",
                "receiver_constraints messages refused (audio sources, too many sources).",
                simulcast.constraints_refused,
            ),
        ] {
            family(encoder, name, Counter, help, &bridge, value as f64)?;
        }
        Ok(())
    }
}

impl Snapshot {
    /// Bandwidth estimation and allocation toward subscribers (`crate::bwe`).
    fn encode_bandwidth(&self, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        let bandwidth = &self.stats.shards.bandwidth;
        let bridge = [("bridge", self.id.as_str())];
        family(
            encoder,
            "bridgemesh_bwe_feedback_received",
            Counter,
            "Transport-cc feedback packets received from subscribers.",
            &bridge,
            bandwidth.feedback_received as f64,
        )?;
        let mean = if bandwidth.subscribers_estimated == 0 {
            0.0
        } else {
            bandwidth.estimates_bps_sum as f64 / bandwidth.subscribers_estimated as f64
        };
        for (name, help, value) in [
            (
                "bridgemesh_bwe_subscribers_estimated",
                "Subscribers with a bandwidth estimate (their browser sends transport-cc feedback).",
                bandwidth.subscribers_estimated as f64,
            ),
            (
                "bridgemesh_bwe_estimate_mean_bits_per_second",
                "Mean bandwidth estimate of the subscribers with one.",
                mean,
            ),
            (
                "bridgemesh_bwe_legs_paused",
                "Video legs the allocator pauses (the estimate or last-N) though their tile shows them.",
                bandwidth.legs_paused_by_allocation as f64,
            ),
            (
                "bridgemesh_bwe_probe_packets",
                "Padding packets sent to probe the paths of the subscribers connected now.",
                bandwidth.probe_packets_sent as f64,
            ),
        ] {
            family(encoder, name, Gauge, help, &bridge, value)?;
        }
        Ok(())
    }
}

/// A figure of one cascade link: name (counters without `_total`), kind, help, value.
type LinkFamily = (&'static str, MetricType, &'static str, fn(&LinkStats) -> f64);

const LINK_FAMILIES: [LinkFamily; 15] = [
    (
        "bridgemesh_cascade_link_up",
        Gauge,
        "A cascade link to the peer is established.",
        |_| 1.0,
    ),
    (
        "bridgemesh_cascade_link_rtt_seconds",
        Gauge,
        "Round-trip time QUIC measures on the link.",
        |l| l.rtt.as_secs_f64(),
    ),
    (
        "bridgemesh_cascade_link_udp_sent_bytes",
        Counter,
        "Bytes the link's connection sent (all of QUIC).",
        |l| l.udp_bytes_out as f64,
    ),
    (
        "bridgemesh_cascade_link_udp_received_bytes",
        Counter,
        "Bytes the link's connection received (all of QUIC).",
        |l| l.udp_bytes_in as f64,
    ),
    (
        "bridgemesh_cascade_link_lost_packets",
        Counter,
        "QUIC packets declared lost on the link.",
        |l| l.lost_packets as f64,
    ),
    (
        "bridgemesh_cascade_link_media_sent_datagrams",
        Counter,
        "Media datagrams sent on the link.",
        |l| l.media_datagrams_out as f64,
    ),
    (
        "bridgemesh_cascade_link_media_sent_bytes",
        Counter,
        "Bytes of media datagrams sent on the link.",
        |l| l.media_bytes_out as f64,
    ),
    (
        "bridgemesh_cascade_link_media_send_dropped",
        Counter,
        "Media datagrams not sent (too large for the path, or the link closing).",
        |l| l.media_dropped_out as f64,
    ),
    (
        "bridgemesh_cascade_link_media_received_datagrams",
        Counter,
        "Media datagrams received on the link.",
        |l| l.media_datagrams_in as f64,
    ),
    (
        "bridgemesh_cascade_link_media_received_bytes",
        Counter,
        "Bytes of media datagrams received on the link.",
        |l| l.media_bytes_in as f64,
    ),
    (
        "bridgemesh_cascade_link_media_receive_dropped",
        Counter,
        "Media datagrams received and dropped (malformed, unknown stream, shard full).",
        |l| l.media_dropped_in as f64,
    ),
    (
        "bridgemesh_cascade_link_rooms_overflowed",
        Counter,
        "Rooms closed on the link for passing their budget of pending control messages.",
        |l| l.rooms_overflowed as f64,
    ),
    (
        "bridgemesh_cascade_link_messages",
        Counter,
        "Control messages sent and received on the link.",
        |l| (l.messages_out + l.messages_in) as f64,
    ),
    (
        "bridgemesh_cascade_link_rooms",
        Gauge,
        "Rooms shared on the link.",
        |l| l.shared_rooms as f64,
    ),
    (
        "bridgemesh_cascade_link_streams",
        Gauge,
        "Streams the peer announced on the link.",
        |l| l.streams_in as f64,
    ),
];

fn process_cpu_s() -> Option<f64> {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| crate::load::parse_proc_stat_cpu_s(&stat).ok())
}

fn process_resident_bytes() -> Option<u64> {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| parse_statm_resident_pages(&statm))
        .map(|pages| pages.saturating_mul(page_size_bytes()))
}

/// Resident pages: the second field of `/proc/<pid>/statm`.
fn parse_statm_resident_pages(statm: &str) -> Option<u64> {
    statm.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// The kernel's page size, from the process's auxiliary vector (`AT_PAGESZ`): reading it needs
/// neither libc nor `unsafe`. 4 KiB where `/proc/self/auxv` cannot be read.
fn page_size_bytes() -> u64 {
    std::fs::read("/proc/self/auxv")
        .ok()
        .and_then(|auxv| parse_auxv_page_size(&auxv))
        .unwrap_or(4096)
}

/// `AT_PAGESZ` from the bytes of `/proc/<pid>/auxv`: native-endian (key, value) word pairs,
/// ended by `AT_NULL`.
fn parse_auxv_page_size(auxv: &[u8]) -> Option<u64> {
    const AT_NULL: usize = 0;
    const AT_PAGESZ: usize = 6;
    const WORD: usize = std::mem::size_of::<usize>();
    let word = |bytes: &[u8]| usize::from_ne_bytes(bytes.try_into().expect("chunks of WORD bytes"));
    for pair in auxv.chunks_exact(2 * WORD) {
        match word(&pair[..WORD]) {
            AT_NULL => return None,
            AT_PAGESZ => return u64::try_from(word(&pair[WORD..])).ok().filter(|&size| size > 0),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_memory_is_read_from_statm_and_the_auxiliary_vector() {
        assert_eq!(
            parse_statm_resident_pages("6000 1500 300 20 0 900 0\n"),
            Some(1500)
        );
        assert_eq!(parse_statm_resident_pages("6000"), None);
        assert_eq!(parse_statm_resident_pages(""), None);

        let auxv = |pairs: &[(usize, usize)]| -> Vec<u8> {
            pairs
                .iter()
                .flat_map(|&(key, value)| key.to_ne_bytes().into_iter().chain(value.to_ne_bytes()))
                .collect()
        };
        assert_eq!(
            parse_auxv_page_size(&auxv(&[(33, 7), (6, 16384), (0, 0)])),
            Some(16384)
        );
        assert_eq!(
            parse_auxv_page_size(&auxv(&[(33, 7), (0, 0), (6, 4096)])),
            None,
            "after AT_NULL"
        );
        assert_eq!(parse_auxv_page_size(&auxv(&[(6, 0), (0, 0)])), None);
        assert_eq!(parse_auxv_page_size(&[1, 2, 3]), None);
        // This machine's own vector has a page size.
        if let Ok(own) = std::fs::read("/proc/self/auxv") {
            assert!(parse_auxv_page_size(&own).is_some_and(|size| size.is_power_of_two()));
        }
    }

    #[test]
    fn process_metrics_have_help_type_and_a_labelled_series() {
        let text = encode(Snapshot {
            id: BridgeId::new("b1").unwrap(),
            stats: BridgeStats::default(),
            links: Vec::new(),
            cpu_s: process_cpu_s(),
            resident_bytes: process_resident_bytes(),
        });
        if std::path::Path::new("/proc/self/stat").exists() {
            // A fresh test process may not have used a whole clock tick of CPU yet.
            for (name, least) in [
                ("bridgemesh_process_cpu_seconds_total", 0.0),
                ("bridgemesh_process_resident_memory_bytes", 1.0),
            ] {
                assert!(text.contains(&format!("# HELP {name} ")), "{text}");
                assert!(text.contains(&format!("# TYPE {name} ")), "{text}");
                let value = text
                    .lines()
                    .find_map(|line| line.strip_prefix(&format!("{name}{{bridge=\"b1\"}} ")))
                    .unwrap_or_else(|| panic!("no {name} series in {text}"));
                assert!(value.parse::<f64>().is_ok_and(|v| v >= least), "{name} = {value}");
            }
        }
    }

    #[test]
    fn every_series_keeps_its_name_and_labels() {
        let link = LinkStats {
            peer: BridgeId::new("b2").unwrap(),
            rtt: std::time::Duration::from_millis(3),
            udp_bytes_out: 0,
            udp_bytes_in: 0,
            lost_packets: 0,
            media_datagrams_out: 0,
            media_bytes_out: 0,
            media_dropped_out: 0,
            media_datagrams_in: 0,
            media_bytes_in: 0,
            media_dropped_in: 0,
            messages_out: 0,
            messages_in: 0,
            rooms_overflowed: 0,
            shared_rooms: 1,
            streams_in: 2,
        };
        let text = encode(Snapshot {
            id: BridgeId::new("b1").unwrap(),
            stats: BridgeStats::default(),
            links: vec![link],
            cpu_s: Some(1.5),
            resident_bytes: Some(4096),
        });
        for series in [
            "bridgemesh_bridge_participants{bridge=\"b1\"} 0",
            "bridgemesh_bridge_rtp_forwarded_total{bridge=\"b1\"} 0",
            "bridgemesh_bridge_datagrams_dropped_total{bridge=\"b1\"} 0",
            "bridgemesh_bridge_datagrams_dropped_by_kernel_total{bridge=\"b1\"} 0",
            "bridgemesh_bridge_datagrams_handed_over_total{bridge=\"b1\"} 0",
            "bridgemesh_cascade_link_up{bridge=\"b1\",peer=\"b2\"} 1",
            "bridgemesh_cascade_link_udp_sent_bytes_total{bridge=\"b1\",peer=\"b2\"} 0",
            "bridgemesh_process_cpu_seconds_total{bridge=\"b1\"} 1.5",
            "bridgemesh_process_resident_memory_bytes{bridge=\"b1\"} 4096",
            "bridgemesh_srtp_unprotect_failures_total{bridge=\"b1\",reason=\"bad_tag\"} 0",
            "bridgemesh_bridge_transport_cc_feedback_sent_total{bridge=\"b1\"} 0",
            "bridgemesh_bwe_feedback_received_total{bridge=\"b1\"} 0",
            "bridgemesh_bwe_estimate_mean_bits_per_second{bridge=\"b1\"} 0",
            "bridgemesh_bwe_legs_paused{bridge=\"b1\"} 0",
            "# TYPE bridgemesh_bridge_rtp_forwarded_total counter",
            "# TYPE bridgemesh_bridge_participants gauge",
        ] {
            assert!(
                text.lines().any(|line| line == series),
                "no line {series:?} in\n{text}"
            );
        }
    }
}
