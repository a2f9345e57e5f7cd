//! Deciding that a bridge is dead, without mistaking a blip between control and one bridge for
//! a death. A pure state machine: times come in as arguments, verdicts go out as the statuses to
//! commit. The leader's bridge hub drives it (`bridge_hub.rs`); the simulator can drive it too.
//!
//! Signals:
//! - the bridge's session with the leader: heartbeats, and the socket closing;
//! - participants' clients, which report the bridge they lost when they ask control where to go.
//!
//! Verdicts:
//! - **unreachable** as soon as the session closes or no heartbeat came for
//!   [`FailureDetectorConfig::suspect_after_ms`]: no new participants go there, nobody moves;
//! - **down** once an unreachable bridge is corroborated: it hosts nobody, or enough distinct
//!   participants reported losing it ([`FailureDetectorConfig::loss_reports_needed`], or all of
//!   them when fewer), or it stayed silent for [`FailureDetectorConfig::down_after_ms`]. Down
//!   moves its participants;
//! - **up** again when an unreachable bridge is heard from. A down bridge comes back by
//!   registering again.
//!
//! So a control↔bridge blip shorter than `down_after_ms` costs new placements on that bridge
//! only, while a bridge that really died is declared down as soon as two of its participants say
//! so, typically within milliseconds of the socket closing.
//!
//! A new leader has heard from no bridge. The bridges lost their session with the old leader and
//! find the new one on their own, through their reconnect backoff, which may take a few seconds
//! after the election. Until a bridge's session opens here, the leader gives it
//! [`FailureDetectorConfig::leader_grace_ms`] instead of `suspect_after_ms`: a healthy bridge
//! keeps taking joins across a leader change instead of being marked unreachable for the second
//! or two before it finds the new leader. The grace is cut short by the same evidence that
//! condemns any bridge: its participants reporting its loss. So a bridge that died together with
//! the old leader is declared down as soon as its participants say so, and only one that dies
//! unseen by anyone in that window (hosting nobody) is offered new joins until the grace ends.
//! The choice against the alternatives (bridges holding sessions to every control node, or
//! followers relaying their heartbeats) is argued in docs/regions.md, "Leader changes".

use crate::state::{BridgeStatus, ControlState};
use bridgemesh_proto::{BridgeId, ParticipantId};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureDetectorConfig {
    /// Silence after which a connected bridge is unreachable.
    pub suspect_after_ms: u64,
    /// Silence after which a bridge is down even without reports.
    pub down_after_ms: u64,
    /// Distinct participants' loss reports that make an unreachable bridge down.
    pub loss_reports_needed: usize,
    /// How long a loss report counts.
    pub report_window_ms: u64,
    /// On a new leader, silence after which a bridge it has not yet heard from is unreachable
    /// (instead of `suspect_after_ms`): long enough for the bridge's session to find the new
    /// leader through its reconnect backoff (at most 2 s per attempt, see the bridge's
    /// `control_session.rs`, and a dead old leader may cost one attempt).
    pub leader_grace_ms: u64,
}

impl Default for FailureDetectorConfig {
    fn default() -> Self {
        Self {
            suspect_after_ms: 1_000,
            down_after_ms: 10_000,
            loss_reports_needed: 2,
            report_window_ms: 10_000,
            leader_grace_ms: 5_000,
        }
    }
}

impl FailureDetectorConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.suspect_after_ms == 0 || self.down_after_ms < self.suspect_after_ms {
            return Err("suspect_after_ms must be positive and at most down_after_ms".into());
        }
        if self.loss_reports_needed == 0 {
            return Err("loss_reports_needed must be at least 1".into());
        }
        if self.leader_grace_ms < self.suspect_after_ms || self.leader_grace_ms > self.down_after_ms {
            return Err("leader_grace_ms must be between suspect_after_ms and down_after_ms".into());
        }
        Ok(())
    }
}

/// Loss reports remembered per bridge; more distinct reporters than this add nothing.
const REPORTS_PER_BRIDGE_MAX: usize = 64;

#[derive(Debug, Clone, Default)]
struct Liveness {
    connected: bool,
    /// A session of this bridge opened since this node became leader: the leader's grace is over.
    seen: bool,
    /// Last heartbeat, session start, or when this node became leader.
    heard_ms: u64,
    /// When the session closed, while it is closed.
    closed_ms: Option<u64>,
    reports: BTreeMap<ParticipantId, u64>,
}

/// Whether a bridge was heard from after some moment (a client's loss report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveliness {
    HeardSince,
    Silent,
}

#[derive(Debug, Clone, Default)]
pub struct FailureDetector {
    config: FailureDetectorConfig,
    bridges: BTreeMap<BridgeId, Liveness>,
    /// When this node became leader: bridges it has not heard from count as silent from then.
    grace_start: Option<u64>,
}

impl FailureDetector {
    pub fn new(config: FailureDetectorConfig) -> Self {
        Self {
            config,
            bridges: BTreeMap::new(),
            grace_start: None,
        }
    }

    /// This node just became leader: it knows nothing about the bridges yet, so each gets
    /// [`FailureDetectorConfig::leader_grace_ms`] from now to reconnect.
    pub fn became_leader(&mut self, now_ms: u64) {
        self.bridges.clear();
        self.grace_start = Some(now_ms);
    }

    pub fn session_opened(&mut self, bridge: &BridgeId, now_ms: u64) {
        let liveness = self.bridges.entry(bridge.clone()).or_default();
        liveness.connected = true;
        liveness.seen = true;
        liveness.heard_ms = now_ms;
        liveness.closed_ms = None;
        liveness.reports.clear();
    }

    pub fn heard(&mut self, bridge: &BridgeId, now_ms: u64) {
        if let Some(liveness) = self.bridges.get_mut(bridge) {
            liveness.heard_ms = liveness.heard_ms.max(now_ms);
        }
    }

    pub fn session_closed(&mut self, bridge: &BridgeId, now_ms: u64) {
        if let Some(liveness) = self.bridges.get_mut(bridge) {
            liveness.connected = false;
            liveness.closed_ms = Some(now_ms);
        }
    }

    /// A participant's client says it lost `bridge`.
    pub fn report_loss(&mut self, bridge: &BridgeId, participant: &ParticipantId, now_ms: u64) {
        let grace_start = self.grace_start.unwrap_or(0);
        let liveness = self.bridges.entry(bridge.clone()).or_insert_with(|| Liveness {
            heard_ms: grace_start,
            ..Liveness::default()
        });
        if liveness.reports.len() >= REPORTS_PER_BRIDGE_MAX && !liveness.reports.contains_key(participant) {
            return;
        }
        liveness.reports.insert(participant.clone(), now_ms);
    }

    /// Whether `bridge` was heard from after `since_ms`.
    pub fn heard_since(&self, bridge: &BridgeId, since_ms: u64) -> Liveliness {
        match self.bridges.get(bridge) {
            Some(l) if l.connected && l.heard_ms > since_ms => Liveliness::HeardSince,
            _ => Liveliness::Silent,
        }
    }

    /// The status changes to commit now, given the replicated `state`.
    ///
    /// Called every hub tick (and by the simulator with a thousand bridges), so it walks its own
    /// map and the state's in their common key order instead of looking each bridge up.
    pub fn poll(&mut self, now_ms: u64, state: &ControlState) -> Vec<(BridgeId, BridgeStatus)> {
        let grace_start = self.grace_start.unwrap_or(0);
        let window = self.config.report_window_ms;
        let mut verdicts = Vec::new();
        let mut known = std::mem::take(&mut self.bridges).into_iter().peekable();
        let mut seats = state.bridge_load.iter().peekable();
        let mut kept = Vec::with_capacity(state.bridges.len());
        for bridge in state.bridges.values() {
            // Bridges the state no longer has are dropped on the way.
            while known.next_if(|(id, _)| *id < bridge.id).is_some() {}
            let existing = known.next_if(|(id, _)| *id == bridge.id);
            // Bridges registered by hand have no session to watch.
            if bridge.instance.is_none() {
                kept.extend(existing);
                continue;
            }
            let (id, mut liveness) = existing.unwrap_or_else(|| {
                (
                    bridge.id.clone(),
                    Liveness {
                        heard_ms: grace_start.max(bridge.status_since_ms.min(now_ms)),
                        ..Liveness::default()
                    },
                )
            });
            if !liveness.reports.is_empty() {
                liveness
                    .reports
                    .retain(|_, at| now_ms.saturating_sub(*at) < window);
            }
            let silent_for_ms = match liveness.closed_ms {
                Some(closed) => now_ms.saturating_sub(closed.min(liveness.heard_ms)),
                None => now_ms.saturating_sub(liveness.heard_ms),
            };
            let closed_now = liveness.closed_ms.is_some();
            while seats.next_if(|(seated_id, _)| **seated_id < bridge.id).is_some() {}
            let seated = seats
                .next_if(|(seated_id, _)| **seated_id == bridge.id)
                .map_or(0, |(_, n)| *n as usize);
            let reports_needed = self.config.loss_reports_needed.min(seated).max(1);
            let suspected = closed_now
                || if liveness.seen {
                    silent_for_ms >= self.config.suspect_after_ms
                } else {
                    // Not heard from since this node leads: its session may still be finding us.
                    silent_for_ms >= self.config.leader_grace_ms
                        || (seated > 0 && liveness.reports.len() >= reports_needed)
                };
            match bridge.status {
                BridgeStatus::Up if suspected => {
                    verdicts.push((bridge.id.clone(), BridgeStatus::Unreachable));
                }
                // Back only once heard from on a session with this leader.
                BridgeStatus::Unreachable if !suspected && liveness.connected => {
                    verdicts.push((bridge.id.clone(), BridgeStatus::Up));
                }
                BridgeStatus::Unreachable | BridgeStatus::Draining if suspected => {
                    let corroborated = seated == 0
                        || liveness.reports.len() >= reports_needed
                        || silent_for_ms >= self.config.down_after_ms;
                    if corroborated {
                        verdicts.push((bridge.id.clone(), BridgeStatus::Down));
                    }
                }
                _ => {}
            }
            kept.push((id, liveness));
        }
        // Sorted already: the map is built in one pass.
        self.bridges = kept.into_iter().collect();
        verdicts
    }
}

#[cfg(test)]
mod tests;
