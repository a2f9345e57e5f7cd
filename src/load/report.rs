//! What a load run measured: the report (serde, so `--json` writes the same thing the terminal
//! shows), the fold that builds it from one participant's stats at a time (pure: instants and
//! stats in, counters out), and the verdict.

use super::bridge_metrics::BridgeFigures;
use super::faults::FaultReport;
use super::histogram::{Histogram, Quantiles};
use super::local_cluster::ClusterReport;
use bridgemesh_proto::ParticipantId;
use bridgemesh_proto::signaling::MediaSource;
use bridgemesh_sim::{ParticipantError, ParticipantStats};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// Most examples of failed joins and missing streams a report names.
pub const EXAMPLES_MAX: usize = 10;
/// Most distinct join failure reasons counted; further reasons count as `other`.
const REASONS_MAX: usize = 32;

/// The run's settings, as the report repeats them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportSettings {
    pub control_url: String,
    pub rooms: u32,
    pub per_room: u32,
    pub publishers_per_room: u32,
    pub video_kbps: u32,
    pub duration_s: u64,
    pub ramp_up_s: u64,
    pub room_prefix: String,
    /// The participants' source addresses; empty: the system's choice for HTTP, loopback for
    /// media.
    #[serde(default)]
    pub bind_ips: Vec<std::net::IpAddr>,
    pub max_loss_percent: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JoinReport {
    pub attempted: u64,
    pub ok: u64,
    pub failed: u64,
    /// Failed joins by reason (`http 429 rate_limited`, `timeout`, …).
    pub failure_reasons: BTreeMap<String, u64>,
    /// The first failure of each reason in full (at most [`EXAMPLES_MAX`]).
    pub failure_examples: Vec<String>,
    /// `join` calls that succeeded: control's answer, the signaling handshake, the first answer.
    pub join_ms: Quantiles,
    /// From the first join's start to the last join's end.
    #[serde(default)]
    pub window_s: f64,
    /// Joins that succeeded per second of `window_s`: the join throughput, which the ramp-up
    /// caps unless it is 0.
    #[serde(default)]
    pub per_s: f64,
}

/// The streams every participant should receive: each other publisher of its room, audio and
/// (with video on) video.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamReport {
    pub expected: u64,
    /// Expected streams with at least one packet.
    pub received: u64,
    /// Expected streams without a single packet.
    pub missing: u64,
    /// `receiver <- publisher/source` for the first few missing streams.
    pub missing_examples: Vec<String>,
}

/// Packets of the expected streams, over the whole run (ramp-up included).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MediaReport {
    /// Every packet received.
    pub packets: u64,
    pub payload_bytes: u64,
    /// Packets whose every byte verified.
    pub intact: u64,
    /// Stamp sequences skipped and never arrived.
    pub lost: u64,
    /// `lost / (lost + intact - duplicates)`: of the packets a stream's first and highest stamp
    /// say were sent to this receiver, the share that never came.
    pub loss_percent: f64,
    pub duplicates: u64,
    /// Packets that failed verification (includes `misattributed`).
    pub corrupt: u64,
    /// Intact, but from another publisher or source than signaling said.
    pub misattributed: u64,
    /// The longest pause between two packets of one stream.
    pub longest_gap_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReconnectReport {
    /// Sessions lost and resumed through control, over all participants.
    pub total: u64,
    /// Participants that reconnected at least once.
    pub participants: u64,
    /// Reconnects given up (the participant stayed disconnected).
    pub gave_up: u64,
    /// Loss noticed → first media packet on the new session.
    pub first_media_ms: Quantiles,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    pub settings: ReportSettings,
    pub joins: JoinReport,
    pub streams: StreamReport,
    /// Per expected stream (receiver × publisher × source): from the start of the later of the
    /// two joins to the stream's first packet.
    pub time_to_first_packet_ms: Quantiles,
    pub media: MediaReport,
    /// One-way, publisher's send stamp to arrival (same machine clock); pooled from the most
    /// recent samples of each stream.
    pub latency_ms: Quantiles,
    pub reconnects: ReconnectReport,
    /// Participants without a working session when the hold ended (signaling closed, or still
    /// reconnecting).
    pub participants_disconnected: u64,
    /// `leave` calls that failed (the participant was torn down anyway).
    pub leaves_failed: u64,
    /// From the first join to the end of the hold.
    pub elapsed_s: f64,
    /// The hold: from the last join to the snapshot.
    pub held_s: f64,
    pub bridges: BridgeFigures,
    /// What the faults of a run against a local cluster did, and the recovery.
    #[serde(default)]
    pub faults: Option<FaultReport>,
    /// The local cluster the run started (`--local-cluster`).
    #[serde(default)]
    pub cluster: Option<ClusterReport>,
    /// Why the run failed; empty when it passed.
    pub failures: Vec<String>,
}

impl LoadReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// Fills in `failures`: failed joins, loss past the limit, missing streams, corrupt packets,
    /// participants left disconnected, participants of a killed bridge without media again and
    /// faults that could not be carried out each fail the run. (Loss counts the outage of a
    /// killed bridge's participants too; a run with a bridge kill needs a limit above it.)
    pub(crate) fn judge(&mut self) {
        let mut failures = Vec::new();
        if self.joins.failed > 0 {
            failures.push(format!(
                "{} of {} joins failed",
                self.joins.failed, self.joins.attempted
            ));
        }
        if self.media.loss_percent > self.settings.max_loss_percent {
            failures.push(format!(
                "loss {:.3}% is above the limit of {}%",
                self.media.loss_percent, self.settings.max_loss_percent
            ));
        }
        if self.streams.missing > 0 {
            failures.push(format!(
                "{} of {} expected streams never delivered a packet",
                self.streams.missing, self.streams.expected
            ));
        }
        if self.media.corrupt > 0 {
            failures.push(format!("{} corrupt packets", self.media.corrupt));
        }
        if self.participants_disconnected > 0 {
            failures.push(format!(
                "{} participants were not connected at the end",
                self.participants_disconnected
            ));
        }
        if let Some(faults) = &self.faults {
            if let Some(kill) = &faults.bridge_kill
                && kill.not_recovered > 0
            {
                failures.push(format!(
                    "{} of {} participants of killed bridge {} did not get media again",
                    kill.not_recovered, kill.affected, kill.bridge
                ));
            }
            if let Some(kill) = &faults.leader_kill {
                if kill.new_leader.is_none() {
                    failures.push(format!(
                        "no new leader after control node {} was killed",
                        kill.node_id
                    ));
                }
                if kill.probe_joins.attempted > 0 && kill.probe_joins.ok == 0 {
                    failures.push(format!(
                        "none of {} joins during the leader's kill succeeded",
                        kill.probe_joins.attempted
                    ));
                }
                let probes = &kill.probe_joins;
                if probes.in_control.is_some_and(|held| held != probes.ok) || probes.duplicate_ids > 0 {
                    failures.push(format!(
                        "{} joins during the leader's kill succeeded but control holds {} in their room ({} duplicate ids)",
                        probes.ok,
                        probes.in_control.unwrap_or_default(),
                        probes.duplicate_ids
                    ));
                }
            }
            for error in &faults.errors {
                failures.push(format!("fault not carried out: {error}"));
            }
        }
        self.failures = failures;
    }
}

/// A low-cardinality reason for a failed join, to count failures by.
pub fn failure_reason(error: &ParticipantError) -> String {
    match error {
        ParticipantError::Connect(_) => "control unreachable".into(),
        ParticipantError::Http { status, code, .. } => match code {
            Some(code) => format!(
                "http {status} {}",
                serde_json::to_value(code)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| format!("{code:?}"))
            ),
            None => format!("http {status}"),
        },
        ParticipantError::Server { code, .. } => format!("bridge error {code:?}"),
        ParticipantError::Signaling(_) => "signaling".into(),
        ParticipantError::WebRtc(_) => "webrtc".into(),
        ParticipantError::Timeout(_) => "timeout".into(),
        ParticipantError::Protocol(_) => "protocol".into(),
        _ => "other".into(),
    }
}

/// Join outcomes, counted as they come.
#[derive(Debug, Default)]
pub(crate) struct JoinTally {
    report: JoinReport,
    join_us: Histogram,
}

impl JoinTally {
    pub(crate) fn ok(&mut self, took: Duration) {
        self.report.attempted += 1;
        self.report.ok += 1;
        self.join_us.record(took.as_micros() as u64);
    }

    pub(crate) fn failed(&mut self, who: &str, error: &ParticipantError) {
        self.failed_with(who, failure_reason(error), &error.to_string());
    }

    /// A join that failed without a participant error (its task panicked).
    pub(crate) fn failed_without_error(&mut self, who: &str, detail: &str) {
        self.failed_with(who, "internal".into(), detail);
    }

    fn failed_with(&mut self, who: &str, mut reason: String, detail: &str) {
        self.report.attempted += 1;
        self.report.failed += 1;
        if !self.report.failure_reasons.contains_key(&reason)
            && self.report.failure_reasons.len() >= REASONS_MAX
        {
            reason = "other".into();
        }
        let count = self.report.failure_reasons.entry(reason).or_insert(0);
        *count += 1;
        if *count == 1 && self.report.failure_examples.len() < EXAMPLES_MAX {
            self.report.failure_examples.push(format!("{who}: {detail}"));
        }
    }

    pub(crate) fn ok_count(&self) -> u64 {
        self.report.ok
    }

    pub(crate) fn failed_count(&self) -> u64 {
        self.report.failed
    }

    pub(crate) fn finish(mut self) -> JoinReport {
        self.report.join_ms = self.join_us.summary(1000.0);
        self.report
    }
}

/// A participant of the run as the fold needs it.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) id: ParticipantId,
    /// When its `join` call started.
    pub(crate) join_started: Instant,
}

/// Builds the media part of the report one receiver at a time, so a run's memory does not grow
/// with its participants × streams × latency samples.
#[derive(Debug, Default)]
pub(crate) struct MediaFold {
    streams: StreamReport,
    media: MediaReport,
    first_packet_us: Histogram,
    latency_us: Histogram,
    reconnects: ReconnectReport,
    reconnect_first_media_ms: Histogram,
    disconnected: u64,
}

impl MediaFold {
    /// Adds what `receiver` measured of the streams it should get: `sources` of every member of
    /// `publishers` other than itself.
    pub(crate) fn add(
        &mut self,
        receiver: &Member,
        stats: &ParticipantStats,
        publishers: &[Member],
        sources: &[MediaSource],
    ) {
        for publisher in publishers.iter().filter(|p| p.id != receiver.id) {
            for &source in sources {
                self.streams.expected += 1;
                let Some(stream) = stats.from(&publisher.id, source).filter(|s| s.packets > 0) else {
                    self.streams.missing += 1;
                    if self.streams.missing_examples.len() < EXAMPLES_MAX {
                        self.streams.missing_examples.push(format!(
                            "{} <- {}/{}",
                            receiver.id,
                            publisher.id,
                            source.as_str()
                        ));
                    }
                    continue;
                };
                self.streams.received += 1;
                let m = &mut self.media;
                m.packets += stream.packets;
                m.payload_bytes += stream.payload_bytes;
                m.intact += stream.intact;
                m.lost += stream.lost;
                m.duplicates += stream.duplicates;
                m.corrupt += stream.corrupt;
                m.misattributed += stream.misattributed;
                m.longest_gap_ms = m.longest_gap_ms.max(stream.max_gap_ms);
                if let Some(first) = stream.first_packet_after_join {
                    // From when both had started joining: a publisher that joined later cannot
                    // have sent earlier.
                    let arrived = receiver.join_started + first;
                    let from = receiver.join_started.max(publisher.join_started);
                    let waited = arrived.saturating_duration_since(from);
                    self.first_packet_us.record(waited.as_micros() as u64);
                }
                for &sample in &stream.latency_us {
                    self.latency_us.record(u64::from(sample));
                }
            }
        }
        let r = &mut self.reconnects;
        r.total += stats.reconnect_count;
        r.participants += u64::from(stats.reconnect_count > 0);
        for record in &stats.reconnects {
            r.gave_up += u64::from(record.error.is_some());
            if let Some(ms) = record.first_media_ms {
                self.reconnect_first_media_ms.record(ms);
            }
        }
        if !stats.signaling_open || stats.reconnecting {
            self.disconnected += 1;
        }
    }

    pub(crate) fn packets(&self) -> u64 {
        self.media.packets
    }

    pub(crate) fn lost(&self) -> u64 {
        self.media.lost
    }

    pub(crate) fn loss_percent(&self) -> f64 {
        let m = &self.media;
        let sent = m.lost + m.intact.saturating_sub(m.duplicates);
        if sent == 0 {
            0.0
        } else {
            100.0 * m.lost as f64 / sent as f64
        }
    }

    /// The media parts of the report: streams, first packets, media, latency, reconnects,
    /// participants disconnected.
    pub(crate) fn finish(
        mut self,
    ) -> (
        StreamReport,
        Quantiles,
        MediaReport,
        Quantiles,
        ReconnectReport,
        u64,
    ) {
        self.media.loss_percent = self.loss_percent();
        self.reconnects.first_media_ms = self.reconnect_first_media_ms.summary(1.0);
        (
            self.streams,
            self.first_packet_us.summary(1000.0),
            self.media,
            self.latency_us.summary(1000.0),
            self.reconnects,
            self.disconnected,
        )
    }
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.1} ms"))
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(
        || "-".to_owned(),
        |b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    )
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        writeln!(
            f,
            "load against {}: {} rooms × {} participants ({} publishing, video {} kbit/s), ramp-up {} s, \
             held {:.1} s",
            s.control_url, s.rooms, s.per_room, s.publishers_per_room, s.video_kbps, s.ramp_up_s, self.held_s
        )?;
        if !s.bind_ips.is_empty() {
            let ips: Vec<String> = s.bind_ips.iter().map(ToString::to_string).collect();
            writeln!(f, "from:       {}", ips.join(" "))?;
        }
        let j = &self.joins;
        writeln!(
            f,
            "joins:      {} ok, {} failed of {}; join took p50 {} p99 {}; {:.1} joins/s over {:.1} s",
            j.ok,
            j.failed,
            j.attempted,
            ms(j.join_ms.p50),
            ms(j.join_ms.p99),
            j.per_s,
            j.window_s
        )?;
        for (reason, count) in &j.failure_reasons {
            writeln!(f, "            {count} × {reason}")?;
        }
        for example in &j.failure_examples {
            writeln!(f, "            e.g. {example}")?;
        }
        if j.failure_reasons
            .keys()
            .any(|reason| reason.contains("rate_limited"))
        {
            writeln!(
                f,
                "            (control limits joins per source address: a longer --ramp-up-s or more \
                 --bind-ip addresses)"
            )?;
        }
        let st = &self.streams;
        writeln!(
            f,
            "streams:    {} of {} expected received, {} missing",
            st.received, st.expected, st.missing
        )?;
        for example in &st.missing_examples {
            writeln!(f, "            missing {example}")?;
        }
        let t = &self.time_to_first_packet_ms;
        writeln!(
            f,
            "first packet: p50 {} p95 {} p99 {} (over {} streams)",
            ms(t.p50),
            ms(t.p95),
            ms(t.p99),
            t.count
        )?;
        let m = &self.media;
        writeln!(
            f,
            "packets:    {} received ({:.1} MB), {} lost ({:.3}%), {} duplicates, {} corrupt, longest gap {} ms",
            m.packets,
            m.payload_bytes as f64 / 1e6,
            m.lost,
            m.loss_percent,
            m.duplicates,
            m.corrupt,
            m.longest_gap_ms
        )?;
        writeln!(
            f,
            "latency:    one-way p50 {} p99 {}",
            ms(self.latency_ms.p50),
            ms(self.latency_ms.p99)
        )?;
        let r = &self.reconnects;
        writeln!(
            f,
            "reconnects: {} by {} participants, {} given up; back to media p50 {} max {}",
            r.total,
            r.participants,
            r.gave_up,
            ms(r.first_media_ms.p50),
            ms(r.first_media_ms.max)
        )?;
        if self.participants_disconnected > 0 {
            writeln!(f, "disconnected at the end: {}", self.participants_disconnected)?;
        }
        match &self.bridges {
            BridgeFigures::Skipped { reason } => writeln!(f, "bridges:    not measured: {reason}")?,
            BridgeFigures::Failed { error } => writeln!(f, "bridges:    not measured: {error}")?,
            BridgeFigures::Measured { bridges } => {
                for b in bridges {
                    match &b.error {
                        Some(error) if b.cpu_seconds.is_none() => {
                            writeln!(f, "bridge {}: not measured: {error}", b.id)?;
                        }
                        _ => writeln!(
                            f,
                            "bridge {}: CPU {:.1}% of a core over the hold ({:.1} s), {} RTP forwarded/s{}, \
                             RSS {} before the joins → {} after the hold",
                            b.id,
                            b.cpu_cores.unwrap_or(0.0) * 100.0,
                            b.window_s,
                            b.rtp_forwarded_per_s
                                .map_or_else(|| "-".to_owned(), |n| format!("{n:.0}")),
                            // The whole process's CPU over its packets: an upper bound per packet.
                            match (b.cpu_cores, b.rtp_forwarded_per_s) {
                                (Some(cores), Some(rate)) if rate > 0.0 =>
                                    format!(" ({:.1} µs CPU each)", cores * 1e6 / rate),
                                _ => String::new(),
                            },
                            mib(b.resident_memory_bytes_before),
                            mib(b.resident_memory_bytes_after),
                        )?,
                    }
                }
            }
        }
        if let Some(faults) = &self.faults {
            write!(f, "{faults}")?;
        }
        if let Some(cluster) = &self.cluster {
            let names: Vec<String> = cluster
                .processes
                .iter()
                .map(|p| match p.pid {
                    Some(pid) => format!("{} (pid {pid})", p.name),
                    None => p.name.clone(),
                })
                .collect();
            writeln!(
                f,
                "cluster:    {} in {} (stopped)",
                names.join(", "),
                cluster.dir.display()
            )?;
        }
        if self.passed() {
            writeln!(f, "result:     passed")
        } else {
            writeln!(f, "result:     FAILED: {}", self.failures.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridgemesh_sim::{ReceivedStats, ReconnectRecord, SessionLoss};

    fn member(name: &str, join_started: Instant) -> Member {
        Member {
            id: ParticipantId::new(name).unwrap(),
            join_started,
        }
    }

    fn stream(packets: u64, lost: u64, first_ms: u64) -> ReceivedStats {
        ReceivedStats {
            packets,
            payload_bytes: packets * 100,
            intact: packets,
            first_packet_after_join: Some(Duration::from_millis(first_ms)),
            latency_us: vec![500; 4],
            highest_seq: Some(packets + lost),
            lost,
            max_gap_ms: 40,
            ..Default::default()
        }
    }

    #[test]
    fn the_fold_counts_expected_streams_and_finds_the_missing_ones() {
        let t0 = Instant::now();
        let a = member("a", t0);
        let b = member("b", t0 + Duration::from_secs(1));
        let c = member("c", t0 + Duration::from_secs(2));
        let publishers = [a.clone(), b.clone()];
        let sources = [MediaSource::Microphone, MediaSource::Camera];

        let mut fold = MediaFold::default();
        // a hears b's microphone and camera; b's camera arrived 1.3 s after a's join, which is
        // 300 ms after b started joining.
        let mut stats_a = ParticipantStats {
            signaling_open: true,
            ..Default::default()
        };
        stats_a
            .received
            .insert((b.id.clone(), MediaSource::Microphone), stream(97, 3, 1_200));
        stats_a
            .received
            .insert((b.id.clone(), MediaSource::Camera), stream(100, 0, 1_300));
        fold.add(&a, &stats_a, &publishers, &sources);
        // c (not a publisher) got a's microphone only, and reconnected once.
        let mut stats_c = ParticipantStats {
            signaling_open: true,
            reconnect_count: 1,
            ..Default::default()
        };
        let mut record = ReconnectRecord::new(
            SessionLoss::SocketClosed,
            bridgemesh_proto::BridgeId::new("b1").unwrap(),
            Duration::from_secs(3),
        );
        record.first_media_ms = Some(800);
        stats_c.reconnects.push(record);
        stats_c
            .received
            .insert((a.id.clone(), MediaSource::Microphone), stream(50, 0, 100));
        fold.add(&c, &stats_c, &publishers, &sources);
        // b lost its session and received nothing.
        fold.add(&b, &ParticipantStats::default(), &publishers, &sources);

        assert_eq!(fold.packets(), 247);
        assert_eq!(fold.lost(), 3);
        let (streams, first, media, latency, reconnects, disconnected) = fold.finish();
        assert_eq!(streams.expected, 2 + 4 + 2);
        assert_eq!(streams.received, 3);
        assert_eq!(streams.missing, 5);
        assert!(streams.missing_examples.contains(&"c <- b/camera".to_owned()));
        assert!(!streams.missing_examples.iter().any(|e| e.starts_with("a <- a")));
        assert_eq!(first.count, 3);
        // c's stream from a: a was there first, so it counts from c's join.
        assert_eq!(first.min, Some(100.0));
        assert_eq!(first.max, Some(300.0), "b's camera, counted from b's join");
        assert_eq!(media.lost, 3);
        assert!((media.loss_percent - 100.0 * 3.0 / 250.0).abs() < 1e-9);
        assert_eq!(media.longest_gap_ms, 40);
        assert_eq!(latency.count, 12);
        assert_eq!(latency.p50, Some(0.5));
        assert_eq!(reconnects.total, 1);
        assert_eq!(reconnects.participants, 1);
        assert_eq!(reconnects.first_media_ms.max, Some(800.0));
        assert_eq!(disconnected, 1);
    }

    #[test]
    fn join_failures_are_counted_by_reason_with_a_few_examples() {
        let mut tally = JoinTally::default();
        tally.ok(Duration::from_millis(120));
        for n in 0..15 {
            tally.failed(
                &format!("p{n}"),
                &ParticipantError::Http {
                    status: 429,
                    code: Some(bridgemesh_proto::api::ErrorCode::RateLimited),
                    message: "slow down".into(),
                },
            );
        }
        tally.failed(
            "q",
            &ParticipantError::Timeout("join of r not done (HTTP join)".into()),
        );
        let report = tally.finish();
        assert_eq!((report.attempted, report.ok, report.failed), (17, 1, 16));
        assert_eq!(report.failure_reasons["http 429 rate_limited"], 15);
        assert_eq!(report.failure_reasons["timeout"], 1);
        assert_eq!(report.failure_examples.len(), 2, "one per reason");
        assert!(
            report.failure_examples[0].starts_with("p0: "),
            "{:?}",
            report.failure_examples
        );
        assert_eq!(report.join_ms.count, 1);
    }
}
