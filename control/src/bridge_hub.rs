//! The control side of the bridges' sessions: one WebSocket per bridge, on the leader.
//!
//! # Layout
//! - [`reconcile`] and [`instructions_for`]: pure functions from the replicated state (or an
//!   applied outcome) to what a bridge must be told and what must be committed.
//! - [`BridgeHub`]: the driver. It serves the sessions, feeds the [`FailureDetector`] with their
//!   heartbeats and closures and with clients' loss reports, commits its verdicts, forwards
//!   applied outcomes (kicks, ended rooms, mute requests, moves) to the bridges concerned, and
//!   pushes each room's set of bridges to them ([`MembershipPush`]).
//!
//! # Run loop
//! ```text
//! session task (per bridge):  register → commit RegisterBridge → registered → its rooms'
//!                             RoomBridges → reconcile
//!                             heartbeat → detector.heard (+ commit the load now and then)
//!                             joined/left/drain → that bridge's ordered work queue → commit
//! hub task:                   every 50 ms or when woken: leadership changed? → (re)start or
//!                             close sessions; detector.poll(now, state) → commit verdicts;
//!                             membership.poll(state) → RoomBridges to the bridges concerned
//!                             applied outcome → instructions_for → the bridges' sessions
//! ```
//! Only the leader keeps sessions (others answer `not_leader`), so one detector sees every
//! bridge; a new leader gives every bridge a full silence period to reconnect.

use crate::cascade_membership::MembershipPush;
use crate::failure_detector::{FailureDetector, FailureDetectorConfig, Liveliness};
use crate::load_throttle::LoadCommitThrottle;
use crate::node::now_unix_ms;
use crate::placement::PlacementPolicy;
use crate::raft::cluster::ClusterNode;
use crate::raft::network::{peer_base_url, post_to_peer};
use crate::state::{ApplyError, Command, ControlState, Moved, Outcome, ParticipantStatus};
use axum::extract::ws::{Message, WebSocket};
use bridgemesh_proto::bridge_session::{
    BRIDGE_SESSION_PATH, BridgeToControl, ControlToBridge, HostedParticipant, LoadReport,
    REGISTER_PARTICIPANTS_MAX,
};
use bridgemesh_proto::{BridgeId, ParticipantId, RoomId};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, broadcast, mpsc, watch};

#[derive(Debug, Clone, PartialEq)]
pub struct HubConfig {
    pub heartbeat_interval_ms: u64,
    pub detector: FailureDetectorConfig,
    /// The leader writes this into the replicated state when it differs.
    pub placement: PlacementPolicy,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 250,
            detector: FailureDetectorConfig::default(),
            placement: PlacementPolicy::default(),
        }
    }
}

impl HubConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(10..=60_000).contains(&self.heartbeat_interval_ms) {
            return Err("heartbeat_interval_ms must be between 10 and 60000".into());
        }
        if self.detector.suspect_after_ms < self.heartbeat_interval_ms * 2 {
            return Err("suspect_after_ms must be at least two heartbeat intervals".into());
        }
        self.detector.validate()?;
        self.placement.validate()
    }
}

/// How often the hub looks at leadership and the detector when nothing wakes it.
const HUB_TICK: Duration = Duration::from_millis(50);
/// A bridge must say `register` this soon after connecting.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages queued toward one bridge; a bridge this far behind is reconciled after it reconnects.
const TO_BRIDGE_QUEUE_MAX: usize = 4_096;
/// Events from one bridge waiting to be committed, in order.
const FROM_BRIDGE_QUEUE_MAX: usize = 4_096;
/// How long a loss report waits on the leader for a verdict before answering "undecided".
const LOSS_VERDICT_WAIT: Duration = Duration::from_secs(3);

struct Session {
    /// Tells a session from the one that replaced it.
    serial: u64,
    instance: String,
    to_bridge: mpsc::Sender<ControlToBridge>,
    load_commits: LoadCommitThrottle,
}

#[derive(Default)]
struct HubState {
    detector: FailureDetector,
    sessions: BTreeMap<BridgeId, Session>,
    leading: bool,
    /// Status changes proposed and not yet answered, so a slow commit is not proposed again.
    verdicts_in_flight: BTreeSet<BridgeId>,
    /// What the bridges were told about who shares their rooms; empty again on gaining
    /// leadership (every bridge registers with a new leader and is told everything then).
    membership: MembershipPush,
    /// The participants' media state as their bridges report it (admin API).
    media: crate::participant_media::ParticipantMediaTable,
}

pub struct BridgeHub {
    cluster: Arc<ClusterNode>,
    config: HubConfig,
    state: Mutex<HubState>,
    wake: Notify,
    next_serial: AtomicU64,
}

fn lock(hub: &BridgeHub) -> std::sync::MutexGuard<'_, HubState> {
    hub.state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl BridgeHub {
    /// Sessions are authenticated by the cluster listener (each bridge's certificate); the hub
    /// holds them to the bridge their certificate names.
    pub fn new(cluster: Arc<ClusterNode>, config: HubConfig) -> Arc<Self> {
        let detector = FailureDetector::new(config.detector.clone());
        Arc::new(Self {
            cluster,
            state: Mutex::new(HubState {
                detector,
                ..HubState::default()
            }),
            config,
            wake: Notify::new(),
            next_serial: AtomicU64::new(1),
        })
    }

    /// The hub's task: leadership, the detector's verdicts, applied outcomes. Ends on `stop`.
    pub fn run(self: &Arc<Self>, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let hub = self.clone();
        let mut outcomes = self.cluster.subscribe_outcomes();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HUB_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = hub.wake.notified() => {}
                    outcome = outcomes.recv() => match outcome {
                        Ok(outcome) => hub.deliver(&outcome),
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            tracing::warn!(missed, "bridge hub fell behind the applied log; reconnecting bridges to reconcile");
                            hub.close_all_sessions(None);
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = stop.changed() => {
                        hub.close_all_sessions(None);
                        return;
                    }
                }
                hub.check_leadership().await;
                hub.commit_verdicts();
                hub.push_room_bridges();
            }
        })
    }

    fn deliver(&self, outcome: &Outcome) {
        let instructions = instructions_for(outcome);
        if instructions.is_empty() {
            return;
        }
        let hub = lock(self);
        for (bridge, message) in instructions {
            tell(&hub.sessions, &bridge, message);
        }
    }

    /// Tells the bridges whose rooms gained or lost a bridge (or whose peers moved) who they
    /// share those rooms with now: within one hub tick of the commit. Cheap when nothing changed
    /// (see [`MembershipPush`]).
    fn push_room_bridges(&self) {
        let mut guard = lock(self);
        if !guard.leading {
            return;
        }
        let hub = &mut *guard;
        let due = self.cluster.read(|state| hub.membership.poll(state));
        for (bridge, message) in due {
            tell(&hub.sessions, &bridge, message);
        }
    }

    async fn check_leadership(self: &Arc<Self>) {
        let leading = self.cluster.is_leader();
        let was = {
            let mut hub = lock(self);
            let was = hub.leading;
            hub.leading = leading;
            if leading && !was {
                let now = now_unix_ms();
                hub.detector.became_leader(now);
                hub.membership = MembershipPush::default();
                // Sessions that registered in the instant before this task saw the leadership.
                let connected: Vec<BridgeId> = hub.sessions.keys().cloned().collect();
                for bridge in &connected {
                    hub.detector.session_opened(bridge, now);
                }
            }
            was
        };
        if leading && !was {
            tracing::info!("leading: bridge sessions are served here");
            let desired = self.config.placement.clone();
            if self.cluster.read(|state| state.placement != desired)
                && let Err(err) = self.cluster.propose(Command::SetPlacementPolicy(desired)).await
            {
                tracing::warn!(%err, "cannot commit the placement policy");
            }
        }
        if was && !leading {
            tracing::info!("no longer leading: closing bridge sessions so they reconnect to the leader");
            self.close_all_sessions(self.leader_session_url());
        }
    }

    fn leader_session_url(&self) -> Option<String> {
        self.cluster
            .leader()
            .filter(|(id, _)| *id != self.cluster.id())
            .map(|(_, addr)| session_url(&addr))
    }

    /// Ends every bridge session, telling the bridges where the leader is when known.
    pub fn close_all_sessions(&self, leader_url: Option<String>) {
        let mut hub = lock(self);
        for (_, session) in std::mem::take(&mut hub.sessions) {
            let _ = session.to_bridge.try_send(ControlToBridge::NotLeader {
                leader_url: leader_url.clone(),
            });
        }
    }

    fn commit_verdicts(self: &Arc<Self>) {
        let now = now_unix_ms();
        let verdicts = {
            let mut hub = lock(self);
            if !hub.leading {
                return;
            }
            let verdicts = self.cluster.read(|state| hub.detector.poll(now, state));
            verdicts
                .into_iter()
                .filter(|(bridge, _)| hub.verdicts_in_flight.insert(bridge.clone()))
                .collect::<Vec<_>>()
        };
        for (bridge, status) in verdicts {
            tracing::info!(%bridge, ?status, "bridge status changes");
            let hub = self.clone();
            tokio::spawn(async move {
                let result = hub
                    .cluster
                    .propose(Command::SetBridgeStatus {
                        bridge: bridge.clone(),
                        status,
                        at_ms: now_unix_ms(),
                    })
                    .await;
                match result {
                    Ok(Ok(Outcome::BridgeStatusChanged { moved, .. })) if !moved.is_empty() => {
                        tracing::info!(%bridge, moved = moved.len(), "participants moved off the bridge");
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => tracing::debug!(%bridge, %err, "status change refused"),
                    Err(err) => tracing::warn!(%bridge, %err, "status change not committed"),
                }
                lock(&hub).verdicts_in_flight.remove(&bridge);
                hub.wake.notify_one();
            });
        }
    }

    /// Asks `bridge` to tell `participant` to mute (admin API); `false` when this node holds no
    /// session with that bridge (it does not lead, or the bridge is away).
    pub fn request_mute(&self, bridge: &BridgeId, room: &RoomId, participant: &ParticipantId) -> bool {
        let hub = lock(self);
        if !hub.sessions.contains_key(bridge) {
            return false;
        }
        let message = ControlToBridge::RequestMute {
            room: room.clone(),
            participant: participant.clone(),
        };
        tell(&hub.sessions, bridge, message);
        true
    }

    /// What `participant`'s bridge last reported of its media, and which bridge that was; known
    /// on the leader only (the bridges' sessions end there).
    pub fn participant_media(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
    ) -> Option<(BridgeId, bridgemesh_proto::bridge_session::ParticipantMedia)> {
        lock(self)
            .media
            .get(room, participant)
            .map(|(bridge, media)| (bridge.clone(), media.clone()))
    }

    /// A client lost `report.bridge`. On the leader: counts the report and waits (briefly) for
    /// the verdict; elsewhere: forwards it to the leader.
    pub async fn report_loss(self: &Arc<Self>, report: LossReport) -> LossVerdict {
        if self.cluster.is_leader() {
            return self.report_loss_here(report).await;
        }
        {
            let Some((_, addr)) = self.cluster.leader() else {
                return LossVerdict::Undecided;
            };
            let timeout = LOSS_VERDICT_WAIT + Duration::from_secs(1);
            return post_to_peer(
                self.cluster.network(),
                &peer_base_url(&addr),
                "bridge-loss",
                &report,
                timeout,
            )
            .await
            .unwrap_or(LossVerdict::Undecided);
        }
    }

    /// A loss report on this node, if it leads (a forwarded report is never forwarded again).
    pub async fn report_loss_here(self: &Arc<Self>, report: LossReport) -> LossVerdict {
        if !self.cluster.is_leader() {
            return LossVerdict::Undecided;
        }
        let reported_at = now_unix_ms();
        lock(self)
            .detector
            .report_loss(&report.bridge, &report.participant, reported_at);
        self.wake.notify_one();
        let deadline = tokio::time::Instant::now() + LOSS_VERDICT_WAIT;
        loop {
            let moved = self.cluster.read(|state| {
                let on_bridge = state
                    .rooms
                    .get(&report.room)
                    .and_then(|r| r.participants.get(&report.participant))
                    .is_some_and(|p| p.status.on_bridge() && p.bridge.as_ref() == Some(&report.bridge));
                !on_bridge
            });
            if moved {
                return LossVerdict::Moved;
            }
            // A heartbeat that left the bridge after the report reached us proves it alive.
            let alive_after = reported_at + self.config.heartbeat_interval_ms / 2;
            if lock(self).detector.heard_since(&report.bridge, alive_after) == Liveliness::HeardSince {
                return LossVerdict::Alive;
            }
            if tokio::time::Instant::now() >= deadline {
                return LossVerdict::Undecided;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
mod reconcile;
mod session;

pub use reconcile::{LossReport, LossVerdict, Reconciliation, instructions_for, reconcile};
use session::*;

#[cfg(test)]
mod tests;
