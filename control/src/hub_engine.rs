//! The hub engine: everything the leader decides about the bridges' sessions, with no I/O.
//!
//! Events come in as `handle_*(now_ms, …)` calls: leadership gained or lost, a session opened,
//! its `register`, its messages (heartbeats, load, joined / left, drain, media), its end, a
//! client's loss report, an applied outcome, a proposal's result, a tick. Decisions go out
//! through [`HubEngine::poll_output`]: commit a command, send a message on a session, close a
//! session. [`HubEngine::poll_timeout`] says when the engine wants its next tick.
//!
//! It owns the [`FailureDetector`] (and its new-leader grace), each session's
//! [`LoadCommitThrottle`], the [`MembershipPush`], [`reconcile`] and [`instructions_for`]. The
//! real driver is `bridge_hub.rs` (WebSockets, the clock, openraft); the simulator drives the
//! same engine on virtual time.
//!
//! # Ordering
//! A bridge's events are committed in the order it sent them: each session has one queue, and
//! one of its proposals is in flight at a time. A registration's answer (`registered`, the
//! rooms it shares, `room_bridges_complete`) is one output, emitted after any membership change
//! that was due, so nothing queued to the session later overtakes it.

use crate::cascade_membership::MembershipPush;
use crate::failure_detector::{FailureDetector, FailureDetectorConfig, Liveliness};
use crate::load_throttle::LoadCommitThrottle;
use crate::participant_media::ParticipantMediaTable;
use crate::placement::PlacementPolicy;
use crate::state::{ApplyError, Command, ControlState, Outcome};
use bridgemesh_proto::bridge_session::{ControlToBridge, HostedParticipant, LoadReport, ParticipantMedia};
use bridgemesh_proto::{BridgeId, ParticipantId, RoomId};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

mod reconcile;
mod sessions;
#[cfg(test)]
mod tests;

pub use reconcile::{LossReport, LossVerdict, Reconciliation, instructions_for, reconcile};

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

    /// A session silent this long is closed: a bridge whose host vanished closes nothing, and it
    /// is declared down by then anyway, so dead sessions do not pile up.
    pub fn idle_limit_ms(&self) -> u64 {
        self.detector.down_after_ms.max(self.heartbeat_interval_ms * 3)
    }
}

/// How often the engine looks at the detector and the membership when nothing else happens.
pub const HUB_TICK_MS: u64 = 50;
/// Events from one bridge waiting to be committed, in order.
pub const FROM_BRIDGE_QUEUE_MAX: usize = 4_096;

/// One connection from a bridge, from [`HubEngine::open_session`] to
/// [`HubEngine::handle_session_closed`].
pub type SessionId = u64;
/// One command handed to the driver to commit; its result comes back under the same id.
pub type ProposalId = u64;
/// What committing a command gave: the state machine's answer, or why it was not committed.
pub type Committed = Result<Result<Outcome, ApplyError>, String>;

/// What the engine asks its driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum HubOutput {
    /// Commit `command` through consensus, then call [`HubEngine::handle_committed`] with `id`.
    Propose { id: ProposalId, command: Command },
    /// Queue `message` on the session (dropped when the session is gone or its queue is full:
    /// a bridge that far behind is reconciled when it registers again).
    Send {
        session: SessionId,
        message: ControlToBridge,
    },
    /// The answer to a session's `register`, written in this order before anything sent to the
    /// session after it (it may exceed the session's queue: a bridge may share many rooms).
    Registered {
        session: SessionId,
        messages: Vec<ControlToBridge>,
    },
    /// Send `last` (if any) after what is queued, then close the session.
    Close {
        session: SessionId,
        last: Option<ControlToBridge>,
    },
}

struct Session {
    bridge: BridgeId,
    instance: String,
    load_commits: LoadCommitThrottle,
    last_message_ms: u64,
}

/// A `register` being committed.
struct Pending {
    bridge: BridgeId,
    instance: String,
    hosted: BTreeSet<HostedParticipant>,
    load: LoadReport,
}

#[derive(Debug, Clone, PartialEq)]
enum BridgeWork {
    Joined(HostedParticipant),
    Left(HostedParticipant),
    Dropped(HostedParticipant),
    Drain(u64),
}

/// One session's events, committed one at a time; outlives the session until it is empty.
struct WorkQueue {
    bridge: BridgeId,
    items: VecDeque<BridgeWork>,
    in_flight: bool,
    open: bool,
}

enum Purpose {
    Register {
        session: SessionId,
    },
    Verdict {
        bridge: BridgeId,
    },
    Work {
        session: SessionId,
        item: BridgeWork,
    },
    /// Load reports and the placement policy: nothing follows from their result.
    Plain,
}

pub struct HubEngine {
    config: HubConfig,
    detector: FailureDetector,
    leading: bool,
    /// Where bridges are sent when this node does not lead (the leader's session URL).
    leader_url: Option<String>,
    /// Registered sessions; `current` says which one each bridge is on.
    sessions: BTreeMap<SessionId, Session>,
    current: BTreeMap<BridgeId, SessionId>,
    pending: BTreeMap<SessionId, Pending>,
    queues: BTreeMap<SessionId, WorkQueue>,
    proposals: BTreeMap<ProposalId, Purpose>,
    /// Status changes proposed and not yet answered, so a slow commit is not proposed again.
    verdicts_in_flight: BTreeSet<BridgeId>,
    /// What the bridges were told about who shares their rooms; empty again on gaining
    /// leadership (every bridge registers with a new leader and is told everything then).
    membership: MembershipPush,
    /// The participants' media state as their bridges report it (admin API).
    media: ParticipantMediaTable,
    next_session: SessionId,
    next_proposal: ProposalId,
    next_tick_ms: u64,
    outputs: VecDeque<HubOutput>,
}

impl HubEngine {
    pub fn new(config: HubConfig) -> Self {
        Self {
            detector: FailureDetector::new(config.detector.clone()),
            config,
            leading: false,
            leader_url: None,
            sessions: BTreeMap::new(),
            current: BTreeMap::new(),
            pending: BTreeMap::new(),
            queues: BTreeMap::new(),
            proposals: BTreeMap::new(),
            verdicts_in_flight: BTreeSet::new(),
            membership: MembershipPush::default(),
            media: ParticipantMediaTable::default(),
            next_session: 1,
            next_proposal: 1,
            next_tick_ms: 0,
            outputs: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    pub fn is_leading(&self) -> bool {
        self.leading
    }

    /// The next thing the driver must do.
    pub fn poll_output(&mut self) -> Option<HubOutput> {
        self.outputs.pop_front()
    }

    /// When [`HubEngine::handle_tick`] is due next.
    pub fn poll_timeout(&self) -> u64 {
        self.next_tick_ms
    }

    /// Whether this node leads now, and where the leader's sessions are when it does not.
    pub fn handle_leadership(
        &mut self,
        now_ms: u64,
        leading: bool,
        leader_url: Option<String>,
        state: &ControlState,
    ) {
        self.leader_url = leader_url;
        let was = std::mem::replace(&mut self.leading, leading);
        if leading && !was {
            tracing::info!("leading: bridge sessions are served here");
            self.detector.became_leader(now_ms);
            self.membership = MembershipPush::default();
            self.verdicts_in_flight.clear();
            // Sessions that registered in the instant before leadership was seen here.
            for bridge in self.current.keys() {
                self.detector.session_opened(bridge, now_ms);
            }
            if state.placement != self.config.placement {
                self.propose(
                    Command::SetPlacementPolicy(self.config.placement.clone()),
                    Purpose::Plain,
                );
            }
        }
        if was && !leading {
            tracing::info!("no longer leading: closing bridge sessions so they reconnect to the leader");
            let leader_url = self.leader_url.clone();
            self.close_all_sessions(now_ms, leader_url);
        }
    }

    /// Ends every registered session, telling the bridges where the leader is when known (on
    /// losing leadership, on shutdown, or when the driver missed applied outcomes: the bridges
    /// then reconcile as they register again).
    pub fn close_all_sessions(&mut self, now_ms: u64, leader_url: Option<String>) {
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for session in ids {
            self.outputs.push_back(HubOutput::Close {
                session,
                last: Some(ControlToBridge::NotLeader {
                    leader_url: leader_url.clone(),
                }),
            });
            self.session_gone(now_ms, session);
        }
    }

    /// The periodic work: the detector's verdicts, silent sessions, membership pushes.
    pub fn handle_tick(&mut self, now_ms: u64, state: &ControlState) {
        self.next_tick_ms = now_ms + HUB_TICK_MS;
        if !self.leading {
            return;
        }
        let idle_limit = self.config.idle_limit_ms();
        let silent: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| now_ms.saturating_sub(s.last_message_ms) >= idle_limit)
            .map(|(id, _)| *id)
            .collect();
        for session in silent {
            tracing::info!(bridge = %self.sessions[&session].bridge, "bridge session silent too long; closing it");
            self.outputs.push_back(HubOutput::Close { session, last: None });
            self.session_gone(now_ms, session);
        }
        for (bridge, status) in self.detector.poll(now_ms, state) {
            if !self.verdicts_in_flight.insert(bridge.clone()) {
                continue;
            }
            tracing::info!(%bridge, ?status, "bridge status changes");
            let command = Command::SetBridgeStatus {
                bridge: bridge.clone(),
                status,
                at_ms: now_ms,
            };
            self.propose(command, Purpose::Verdict { bridge });
        }
        self.push_membership(state);
    }

    /// An outcome applied to the replicated state: the bridges concerned are told.
    pub fn handle_applied(&mut self, outcome: &Outcome) {
        for (bridge, message) in instructions_for(outcome) {
            self.send_to_bridge(&bridge, message);
        }
    }

    /// A client says it lost `report.bridge` (counted on the leader only).
    pub fn handle_loss_report(&mut self, now_ms: u64, report: &LossReport) {
        if self.leading {
            self.detector
                .report_loss(&report.bridge, &report.participant, now_ms);
        }
    }

    /// The verdict on a loss report made at `reported_at_ms`, once there is one.
    pub fn loss_verdict(
        &self,
        report: &LossReport,
        reported_at_ms: u64,
        state: &ControlState,
    ) -> Option<LossVerdict> {
        let on_bridge = state
            .rooms
            .get(&report.room)
            .and_then(|r| r.participants.get(&report.participant))
            .is_some_and(|p| p.status.on_bridge() && p.bridge.as_ref() == Some(&report.bridge));
        if !on_bridge {
            return Some(LossVerdict::Moved);
        }
        // A heartbeat that left the bridge after the report reached us proves it alive.
        let alive_after = reported_at_ms + self.config.heartbeat_interval_ms / 2;
        (self.detector.heard_since(&report.bridge, alive_after) == Liveliness::HeardSince)
            .then_some(LossVerdict::Alive)
    }

    /// Asks `bridge` to tell `participant` to mute (admin API); `false` when this node holds no
    /// session with that bridge (it does not lead, or the bridge is away).
    pub fn request_mute(&mut self, bridge: &BridgeId, room: &RoomId, participant: &ParticipantId) -> bool {
        if !self.current.contains_key(bridge) {
            return false;
        }
        let message = ControlToBridge::RequestMute {
            room: room.clone(),
            participant: participant.clone(),
        };
        self.send_to_bridge(bridge, message);
        true
    }

    /// What `participant`'s bridge last reported of its media, and which bridge that was.
    pub fn participant_media(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
    ) -> Option<(&BridgeId, &ParticipantMedia)> {
        self.media.get(room, participant)
    }

    /// The bridges with a registered session here.
    pub fn connected_bridges(&self) -> impl Iterator<Item = &BridgeId> {
        self.current.keys()
    }

    fn push_membership(&mut self, state: &ControlState) {
        for (bridge, message) in self.membership.poll(state) {
            self.send_to_bridge(&bridge, message);
        }
    }

    fn send_to_bridge(&mut self, bridge: &BridgeId, message: ControlToBridge) {
        if let Some(&session) = self.current.get(bridge) {
            self.outputs.push_back(HubOutput::Send { session, message });
        }
    }

    fn propose(&mut self, command: Command, purpose: Purpose) {
        let id = self.next_proposal;
        self.next_proposal += 1;
        self.proposals.insert(id, purpose);
        self.outputs.push_back(HubOutput::Propose { id, command });
    }
}
