//! Faults during the hold of a run against a [`LocalCluster`](super::local_cluster::LocalCluster),
//! and the recovery as the participants felt it.
//!
//! - A bridge kill SIGKILLs the bridge hosting the most participants. Its participants notice,
//!   call control's reconnect, and move; each one's recovery is the kill → its first media
//!   packet on the new bridge, read from its own reconnect record after the hold.
//! - A leader kill SIGKILLs the control node every node names leader. Then, for a window:
//!   surviving nodes are asked for a new leader, probe participants join (through the same front
//!   as the run's participants) and the run's participants' packet counts are sampled, to say
//!   whether any media stopped while control had no leader. The probes keep joining for
//!   [`PROBE_WINDOW`] after the kill, well past the election and the bridges' return to the new
//!   leader, and stay until the last one is in; then control's count of the probe room says
//!   whether a join was lost or committed twice.
//!
//! The folds here are pure (instants and stats in, report out); [`super::LoadRun::hold_with_faults`]
//! is the driver.

use super::histogram::{Histogram, Quantiles};
use bridgemesh_proto::BridgeId;
use bridgemesh_sim::ParticipantStats;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Most participants named as not recovered.
const EXAMPLES_MAX: usize = super::report::EXAMPLES_MAX;
/// Probe joins after a leader kill: one every [`PROBE_INTERVAL`] from the kill to
/// [`PROBE_WINDOW`] after it. A new leader is elected within about a second, and the bridges
/// find it within a few more; a shorter window would end before a new leader that does not yet
/// trust the bridges could refuse anyone.
pub const PROBE_JOINS: usize = 25;
/// Between two probe joins.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// From the kill to the last probe join's start.
pub const PROBE_WINDOW: Duration = Duration::from_millis(250 * (PROBE_JOINS as u64 - 1));
/// How long the media is watched after a leader kill.
pub const LEADER_WATCH: Duration = Duration::from_secs(6);
/// Bound on waiting for a new leader.
pub const NEW_LEADER_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the media is sampled while watched.
pub const MEDIA_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
/// Most participants whose media is sampled, the first to join: each sample copies a
/// participant's whole stats (latency samples included), ten times a second.
pub const WATCHED_MAX: usize = 64;
/// A participant whose packets stop for longer than this saw its media stop (loopback delivers
/// every 20 ms; this class of machine pauses for up to a few hundred milliseconds by itself).
pub const STALL_MS: u64 = 1_000;

/// When to break what, in seconds into the hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    /// SIGKILL the bridge hosting the most participants.
    pub kill_bridge_at_s: Option<f64>,
    /// SIGKILL the control leader.
    pub kill_leader_at_s: Option<f64>,
    /// Start a killed process again this long after its kill; `None`: it stays dead.
    pub restart_after_s: Option<f64>,
}

impl FaultPlan {
    pub fn is_empty(&self) -> bool {
        self.kill_bridge_at_s.is_none() && self.kill_leader_at_s.is_none()
    }

    /// Each time within a hold of `duration_s`; a restart only with a kill.
    pub fn validate(&self, duration_s: u64) -> Result<(), String> {
        for (name, at) in [
            ("--kill-bridge-at", self.kill_bridge_at_s),
            ("--kill-leader-at", self.kill_leader_at_s),
        ] {
            if let Some(at) = at
                && !(at.is_finite() && at >= 0.0 && at < duration_s as f64)
            {
                return Err(format!(
                    "{name} {at}: a fault must come within the hold, 0 to {duration_s} s"
                ));
            }
        }
        if let Some(after) = self.restart_after_s {
            if self.is_empty() {
                return Err("a restart needs a kill (--kill-bridge-at or --kill-leader-at)".into());
            }
            if !(after.is_finite() && after >= 0.0 && after <= duration_s as f64) {
                return Err(format!("--restart-after {after}: 0 to {duration_s} s"));
            }
            let last_kill = self
                .kill_bridge_at_s
                .into_iter()
                .chain(self.kill_leader_at_s)
                .fold(0.0, f64::max);
            if last_kill + after >= duration_s as f64 {
                return Err(format!(
                    "--restart-after {after}: the restart must come within the hold ({duration_s} s)"
                ));
            }
        }
        Ok(())
    }

    /// The kills in time order.
    pub(crate) fn kills(&self) -> Vec<(Duration, Kill)> {
        let mut kills: Vec<(Duration, Kill)> = [
            (self.kill_bridge_at_s, Kill::Bridge),
            (self.kill_leader_at_s, Kill::Leader),
        ]
        .into_iter()
        .filter_map(|(at, kill)| Some((Duration::from_secs_f64(at?), kill)))
        .collect();
        kills.sort_by_key(|(at, _)| *at);
        kills
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kill {
    Bridge,
    Leader,
}

/// What the faults did and what the participants felt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultReport {
    pub bridge_kill: Option<BridgeKillReport>,
    pub leader_kill: Option<LeaderKillReport>,
    /// Faults that could not be carried out (no leader to kill, a restart that failed, …).
    pub errors: Vec<String>,
}

impl FaultReport {
    pub fn is_empty(&self) -> bool {
        self.bridge_kill.is_none() && self.leader_kill.is_none() && self.errors.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BridgeKillReport {
    pub bridge: String,
    /// When it was killed, into the hold.
    pub at_s: f64,
    /// Its participants when it was killed.
    pub affected: u64,
    /// Affected participants with media again on another bridge by the end of the hold.
    pub recovered: u64,
    pub not_recovered: u64,
    /// `participant: why` for the first few not recovered.
    pub not_recovered_examples: Vec<String>,
    /// Per recovered participant: the kill → control's answer to its reconnect call.
    pub placed_ms: Quantiles,
    /// Per recovered participant: the kill → its first media packet from the new bridge.
    pub media_again_ms: Quantiles,
    /// Where the affected participants went: bridge → participants.
    pub moved_to: BTreeMap<String, u64>,
    /// When it was started again, into the hold.
    pub restarted_at_s: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LeaderKillReport {
    /// The control node killed.
    pub node_id: u64,
    pub at_s: f64,
    /// The leader the surviving nodes named afterwards, and when one first did.
    pub new_leader: Option<u64>,
    pub new_leader_ms: Option<u64>,
    /// Probe joins started at the kill, one every 250 ms for 6 s.
    pub probe_joins: ProbeJoins,
    /// How long the media was watched after the kill.
    pub watched_ms: u64,
    /// Participants whose media was watched (those already receiving something).
    pub participants_watched: u64,
    /// Watched participants whose packets stopped for longer than [`STALL_MS`].
    pub participants_stalled: u64,
    /// The longest stop of any watched participant's packets during the window.
    pub longest_pause_ms: u64,
    /// Sessions lost (reconnects begun) during the window.
    pub sessions_lost: u64,
    pub restarted_at_s: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeJoins {
    pub attempted: u64,
    pub ok: u64,
    pub failed: u64,
    /// Failures that were control refusing the join for want of a bridge (`no_capacity`).
    #[serde(default)]
    pub refused_no_capacity: u64,
    /// Participants control holds in the probe room once every probe is done, before they
    /// leave: `ok` when no join was lost and none committed twice; `None` if control could not
    /// be asked.
    #[serde(default)]
    pub in_control: Option<u64>,
    /// Probe joins that got the same participant id as another one.
    #[serde(default)]
    pub duplicate_ids: u64,
    /// Each failure's reason.
    pub failures: Vec<String>,
    /// Joins that succeeded: the `join` call from start to first answer.
    pub join_ms: Quantiles,
}

/// An affected participant of a bridge kill, as the fold needs it.
pub(crate) struct Affected<'a> {
    pub(crate) name: &'a str,
    /// When its `join` started: the origin of its reconnect records' times.
    pub(crate) join_started: Instant,
    pub(crate) stats: &'a ParticipantStats,
    /// Whether anyone publishes to it (otherwise no media can come, and being welcomed by the
    /// new bridge counts as recovered).
    pub(crate) expects_media: bool,
    /// Its bridge at the end.
    pub(crate) bridge_now: BridgeId,
}

/// The recovery of `affected` from the kill of `bridge` at `killed_at`, from each one's reconnect
/// record for that loss.
pub(crate) fn bridge_kill_recovery(
    bridge: &BridgeId,
    killed_at: Instant,
    at_s: f64,
    affected: &[Affected<'_>],
) -> BridgeKillReport {
    let mut report = BridgeKillReport {
        bridge: bridge.to_string(),
        at_s,
        affected: affected.len() as u64,
        ..BridgeKillReport::default()
    };
    let (mut placed_us, mut media_us) = (Histogram::default(), Histogram::default());
    for participant in affected {
        let record = participant
            .stats
            .reconnects
            .iter()
            // The last loss of the bridge (the kill's), not an earlier one.
            .rev()
            .find(|r| &r.lost_bridge == bridge);
        let since_kill = |ms: Option<u64>, record: &bridgemesh_sim::ReconnectRecord| {
            let lost_at = participant.join_started + record.lost_after_join;
            ms.map(|ms| (lost_at + Duration::from_millis(ms)).saturating_duration_since(killed_at))
        };
        let why = match record {
            None => Some("never noticed the loss".to_owned()),
            Some(record) => {
                let back = if participant.expects_media {
                    record.first_media_ms
                } else {
                    record.welcome_ms
                };
                match (since_kill(back, record), &record.error) {
                    (Some(media_again), _) => {
                        media_us.record(media_again.as_micros() as u64);
                        if let Some(placed) = since_kill(record.answer_ms, record) {
                            placed_us.record(placed.as_micros() as u64);
                        }
                        None
                    }
                    (None, Some(error)) => Some(format!("gave up: {error}")),
                    (None, None) => Some(match record.bridge.as_ref() {
                        Some(to) => format!("placed on {to}, no media by the end"),
                        None => "still reconnecting at the end".to_owned(),
                    }),
                }
            }
        };
        match why {
            None => {
                report.recovered += 1;
                *report
                    .moved_to
                    .entry(participant.bridge_now.to_string())
                    .or_insert(0) += 1;
            }
            Some(why) => {
                report.not_recovered += 1;
                if report.not_recovered_examples.len() < EXAMPLES_MAX {
                    report
                        .not_recovered_examples
                        .push(format!("{}: {why}", participant.name));
                }
            }
        }
    }
    report.placed_ms = placed_us.summary(1000.0);
    report.media_again_ms = media_us.summary(1000.0);
    report
}

/// Each watched participant's packets over time: the longest stretch without a new one.
#[derive(Debug, Default)]
pub(crate) struct PauseWatch {
    /// Per participant: packets at the last change, when it changed, the longest pause.
    watched: Vec<Option<(u64, Instant, Duration)>>,
}

impl PauseWatch {
    /// Starts watching `packets` (one total per participant); only participants that already
    /// received something are watched.
    pub(crate) fn new(now: Instant, packets: &[u64]) -> Self {
        Self {
            watched: packets
                .iter()
                .map(|&n| (n > 0).then_some((n, now, Duration::ZERO)))
                .collect(),
        }
    }

    pub(crate) fn sample(&mut self, now: Instant, packets: &[u64]) {
        for (slot, &n) in self.watched.iter_mut().zip(packets) {
            if let Some((last, since, longest)) = slot {
                let paused = now.saturating_duration_since(*since);
                *longest = (*longest).max(paused);
                if n != *last {
                    (*last, *since) = (n, now);
                }
            }
        }
    }

    /// Participants watched, those paused longer than `stall`, the longest pause.
    pub(crate) fn finish(&self, stall: Duration) -> (u64, u64, Duration) {
        let longest: Vec<Duration> = self.watched.iter().flatten().map(|w| w.2).collect();
        (
            longest.len() as u64,
            longest.iter().filter(|l| **l > stall).count() as u64,
            longest.iter().copied().max().unwrap_or_default(),
        )
    }
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.0} ms"))
}

impl std::fmt::Display for FaultReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(b) = &self.bridge_kill {
            writeln!(
                f,
                "fault:      bridge {} killed {:.1} s into the hold, hosting {} participants: {} back \
                 with media, {} not",
                b.bridge, b.at_s, b.affected, b.recovered, b.not_recovered
            )?;
            writeln!(
                f,
                "            kill → media again p50 {} p95 {} max {}; kill → placed p50 {} max {}",
                ms(b.media_again_ms.p50),
                ms(b.media_again_ms.p95),
                ms(b.media_again_ms.max),
                ms(b.placed_ms.p50),
                ms(b.placed_ms.max)
            )?;
            if !b.moved_to.is_empty() {
                let moved: Vec<String> = b.moved_to.iter().map(|(to, n)| format!("{n} to {to}")).collect();
                writeln!(f, "            moved {}", moved.join(", "))?;
            }
            for example in &b.not_recovered_examples {
                writeln!(f, "            not recovered: {example}")?;
            }
            if let Some(at) = b.restarted_at_s {
                writeln!(f, "            restarted {at:.1} s into the hold")?;
            }
        }
        if let Some(l) = &self.leader_kill {
            writeln!(
                f,
                "fault:      control leader {} killed {:.1} s into the hold; new leader {} after {}",
                l.node_id,
                l.at_s,
                l.new_leader.map_or_else(|| "none".to_owned(), |n| n.to_string()),
                l.new_leader_ms
                    .map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms"))
            )?;
            let p = &l.probe_joins;
            writeln!(
                f,
                "            joins during the outage: {} ok, {} failed ({} refused for capacity) of {}; took p50 {} max {}; control holds {}",
                p.ok,
                p.failed,
                p.refused_no_capacity,
                p.attempted,
                ms(p.join_ms.p50),
                ms(p.join_ms.max),
                p.in_control.map_or_else(|| "-".to_owned(), |n| n.to_string())
            )?;
            for failure in &p.failures {
                writeln!(f, "            join failed: {failure}")?;
            }
            writeln!(
                f,
                "            media over {} ms after the kill: {} of {} participants stopped > {STALL_MS} ms, \
                 longest pause {} ms, {} sessions lost",
                l.watched_ms,
                l.participants_stalled,
                l.participants_watched,
                l.longest_pause_ms,
                l.sessions_lost
            )?;
            if let Some(at) = l.restarted_at_s {
                writeln!(f, "            restarted {at:.1} s into the hold")?;
            }
        }
        for error in &self.errors {
            writeln!(f, "fault:      not done: {error}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridgemesh_sim::{ReconnectRecord, SessionLoss};

    #[test]
    fn a_plan_is_checked_against_the_hold() {
        let plan = FaultPlan {
            kill_bridge_at_s: Some(8.0),
            kill_leader_at_s: Some(3.0),
            restart_after_s: Some(2.0),
        };
        plan.validate(15).unwrap();
        let kills: Vec<Kill> = plan.kills().into_iter().map(|(_, k)| k).collect();
        assert_eq!(kills, [Kill::Leader, Kill::Bridge], "in time order");
        assert!(FaultPlan::default().is_empty());
        for bad in [
            FaultPlan {
                kill_bridge_at_s: Some(15.0),
                ..FaultPlan::default()
            },
            FaultPlan {
                kill_leader_at_s: Some(f64::NAN),
                ..FaultPlan::default()
            },
            FaultPlan {
                kill_leader_at_s: Some(-1.0),
                ..FaultPlan::default()
            },
            FaultPlan {
                restart_after_s: Some(1.0),
                ..FaultPlan::default()
            },
        ] {
            assert!(bad.validate(15).is_err(), "{bad:?}");
        }
    }

    fn stats_with(record: Option<ReconnectRecord>) -> ParticipantStats {
        ParticipantStats {
            reconnects: record.into_iter().collect(),
            ..ParticipantStats::default()
        }
    }

    #[test]
    fn recovery_counts_from_the_kill_to_media_on_the_new_bridge() {
        let b1 = BridgeId::new("b1").unwrap();
        let b2 = BridgeId::new("b2").unwrap();
        let t0 = Instant::now();
        let killed_at = t0 + Duration::from_secs(10);
        // Joined at t0, noticed the loss 10.2 s after its join, placed 100 ms later, media
        // 400 ms after noticing: 600 ms after the kill.
        let mut back = ReconnectRecord::new(
            SessionLoss::SocketClosed,
            b1.clone(),
            Duration::from_millis(10_200),
        );
        back.answer_ms = Some(100);
        back.first_media_ms = Some(400);
        back.bridge = Some(b2.clone());
        // It had lost b1 once before, and given up on that session: only the kill's loss counts.
        let mut earlier = ReconnectRecord::new(SessionLoss::SocketClosed, b1.clone(), Duration::from_secs(2));
        earlier.error = Some("an earlier loss".into());
        let mut back = stats_with(Some(back));
        back.reconnects.insert(0, earlier);
        let mut gave_up =
            ReconnectRecord::new(SessionLoss::SocketClosed, b1.clone(), Duration::from_secs(10));
        gave_up.error = Some("budget spent".into());
        let gave_up = stats_with(Some(gave_up));
        let mut placed = ReconnectRecord::new(SessionLoss::SocketClosed, b1.clone(), Duration::from_secs(10));
        placed.bridge = Some(b2.clone());
        let placed = stats_with(Some(placed));
        let unaware = stats_with(None);
        // Alone in its room: the new bridge's welcome is all it can get.
        let mut alone = ReconnectRecord::new(SessionLoss::SocketClosed, b1.clone(), Duration::from_secs(9));
        alone.welcome_ms = Some(1_500);
        let alone = stats_with(Some(alone));
        let affected = |name, stats, expects_media| Affected {
            name,
            join_started: t0,
            stats,
            expects_media,
            bridge_now: b2.clone(),
        };
        let report = bridge_kill_recovery(
            &b1,
            killed_at,
            4.0,
            &[
                affected("back", &back, true),
                affected("gave-up", &gave_up, true),
                affected("placed", &placed, true),
                affected("unaware", &unaware, true),
                affected("alone", &alone, false),
            ],
        );
        assert_eq!(
            (report.affected, report.recovered, report.not_recovered),
            (5, 2, 3)
        );
        assert_eq!(
            report.media_again_ms.min,
            Some(500.0),
            "alone: 9 s + 1.5 s - 10 s"
        );
        assert_eq!(report.media_again_ms.max, Some(600.0));
        assert_eq!(report.placed_ms.count, 1);
        assert_eq!(report.placed_ms.max, Some(300.0));
        assert_eq!(report.moved_to["b2"], 2);
        assert_eq!(
            report.not_recovered_examples,
            [
                "gave-up: gave up: budget spent",
                "placed: placed on b2, no media by the end",
                "unaware: never noticed the loss"
            ]
        );
    }

    #[test]
    fn a_pause_is_the_longest_stretch_without_a_new_packet() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut watch = PauseWatch::new(t0, &[10, 0, 5]);
        watch.sample(at(100), &[12, 0, 6]);
        watch.sample(at(600), &[12, 0, 7]);
        watch.sample(at(1_300), &[12, 3, 8]);
        watch.sample(at(1_400), &[20, 3, 9]);
        let (watched, stalled, longest) = watch.finish(Duration::from_millis(1_000));
        assert_eq!(watched, 2, "the one that had received nothing is not watched");
        assert_eq!(stalled, 1);
        assert_eq!(longest, Duration::from_millis(1_300));
    }
}
