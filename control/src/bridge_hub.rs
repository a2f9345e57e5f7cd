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

/// The leader's answer to a client's loss report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossVerdict {
    /// The participant is no longer on that bridge (it was declared down, or the participant
    /// moved or left).
    Moved,
    /// The bridge is heard from after the report: the client's own path to it broke.
    Alive,
    /// Neither yet.
    Undecided,
}

/// A loss report forwarded to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LossReport {
    pub room: RoomId,
    pub participant: ParticipantId,
    pub bridge: BridgeId,
}

/// What a bridge that just (re-)registered must be told, and what control must commit, to agree
/// with the replicated state.
#[derive(Debug, Default, PartialEq)]
pub struct Reconciliation {
    pub to_bridge: Vec<ControlToBridge>,
    /// Hosted participants still `placed` here: the bridge saw them arrive.
    pub confirm: Vec<HostedParticipant>,
    /// Participants `connected` here that the bridge no longer hosts: they left or dropped meanwhile.
    pub leave: Vec<HostedParticipant>,
}

/// Compares what `bridge` hosts with what the state says it should.
pub fn reconcile(
    state: &ControlState,
    bridge: &BridgeId,
    hosted: &BTreeSet<HostedParticipant>,
) -> Reconciliation {
    let mut result = Reconciliation::default();
    let mut ended_rooms = BTreeSet::new();
    for entry in hosted {
        let Some(room) = state.rooms.get(&entry.room) else {
            if ended_rooms.insert(entry.room.clone()) {
                result.to_bridge.push(ControlToBridge::EndRoom {
                    room: entry.room.clone(),
                });
            }
            continue;
        };
        match room.participants.get(&entry.participant) {
            Some(p) if p.status.on_bridge() && p.bridge.as_ref() == Some(bridge) => {
                if p.status == ParticipantStatus::Placed {
                    result.confirm.push(entry.clone());
                }
            }
            Some(p) if p.status.on_bridge() => result.to_bridge.push(ControlToBridge::Move {
                room: entry.room.clone(),
                participant: entry.participant.clone(),
            }),
            _ => result.to_bridge.push(ControlToBridge::Kick {
                room: entry.room.clone(),
                participant: entry.participant.clone(),
            }),
        }
    }
    for (room_id, room) in &state.rooms {
        for (participant, p) in &room.participants {
            let entry = HostedParticipant {
                room: room_id.clone(),
                participant: participant.clone(),
            };
            if p.status == ParticipantStatus::Connected
                && p.bridge.as_ref() == Some(bridge)
                && !hosted.contains(&entry)
            {
                result.leave.push(entry);
            }
        }
    }
    result
}

/// What each bridge must be told about an applied outcome.
pub fn instructions_for(outcome: &Outcome) -> Vec<(BridgeId, ControlToBridge)> {
    let moves = |moved: &[Moved]| {
        moved
            .iter()
            .map(|m| {
                (
                    m.from.clone(),
                    ControlToBridge::Move {
                        room: m.room.clone(),
                        participant: m.participant.clone(),
                    },
                )
            })
            .collect::<Vec<_>>()
    };
    match outcome {
        Outcome::Kicked {
            room,
            participant,
            bridge: Some(bridge),
        } => vec![(
            bridge.clone(),
            ControlToBridge::Kick {
                room: room.clone(),
                participant: participant.clone(),
            },
        )],
        Outcome::RoomEnded { room, participants } => {
            let bridges: BTreeSet<&BridgeId> = participants.iter().filter_map(|(_, b)| b.as_ref()).collect();
            bridges
                .into_iter()
                .map(|b| (b.clone(), ControlToBridge::EndRoom { room: room.clone() }))
                .collect()
        }
        Outcome::MuteRequested { room, by, bridges } => bridges
            .iter()
            .map(|b| {
                (
                    b.clone(),
                    ControlToBridge::MuteAll {
                        room: room.clone(),
                        by: by.clone(),
                    },
                )
            })
            .collect(),
        Outcome::BridgeStatusChanged {
            bridge,
            status,
            moved,
        } => {
            let mut out = vec![(bridge.clone(), ControlToBridge::Status { status: *status })];
            out.extend(moves(moved));
            out
        }
        Outcome::Ticked { moved, .. } => moves(moved),
        _ => Vec::new(),
    }
}

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

    /// Serves one bridge's session until it ends. `authenticated` is the bridge the connection's
    /// certificate names: the session may register that bridge and no other.
    pub async fn serve(self: Arc<Self>, socket: WebSocket, authenticated: BridgeId) {
        let (mut sink, mut stream) = socket.split();
        let first = tokio::time::timeout(REGISTER_TIMEOUT, next_message(&mut stream)).await;
        let Ok(Some(Ok(BridgeToControl::Register {
            bridge: registration,
            instance,
            participants,
            load,
        }))) = first
        else {
            let _ = send(
                &mut sink,
                &refused("register_expected", "the first message must be register"),
            )
            .await;
            return;
        };
        if !self.cluster.is_leader() {
            let _ = send(
                &mut sink,
                &ControlToBridge::NotLeader {
                    leader_url: self.leader_session_url(),
                },
            )
            .await;
            return;
        }
        if participants.len() > REGISTER_PARTICIPANTS_MAX || instance.is_empty() || instance.len() > 128 {
            let _ = send(
                &mut sink,
                &refused(
                    "invalid",
                    "register lists too many participants or a bad instance",
                ),
            )
            .await;
            return;
        }
        let bridge = registration.id.clone();
        if bridge != authenticated {
            tracing::warn!(%authenticated, claimed = %bridge, "a bridge tried to register under another bridge's id");
            let _ = send(
                &mut sink,
                &refused(
                    "bridge_id_mismatch",
                    &format!("this connection's certificate is bridge {authenticated}'s, not {bridge}'s"),
                ),
            )
            .await;
            return;
        }
        if let Some(message) = self.claimed_by_another(&bridge, &instance) {
            let _ = send(&mut sink, &refused("bridge_id_in_use", &message)).await;
            return;
        }
        let committed = self
            .cluster
            .propose(Command::RegisterBridge {
                registration,
                instance: Some(instance.clone()),
                at_ms: now_unix_ms(),
            })
            .await;
        let status = match committed {
            Ok(Ok(Outcome::BridgeRegistered { status })) => status,
            Ok(Ok(other)) => {
                tracing::error!(?other, "unexpected outcome of a registration");
                return;
            }
            Ok(Err(err)) => {
                let _ = send(&mut sink, &refused("invalid", &err.to_string())).await;
                return;
            }
            Err(err) => {
                // Leadership moved while committing: the bridge retries and is redirected.
                let _ = send(&mut sink, &ControlToBridge::NotLeader { leader_url: None }).await;
                tracing::debug!(%err, "registration not committed");
                return;
            }
        };
        let (to_bridge, mut outgoing) = mpsc::channel(TO_BRIDGE_QUEUE_MAX);
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let shared_rooms = {
            let mut guard = lock(&self);
            let hub = &mut *guard;
            // Membership changes not pushed yet go out to the sessions as they stand (to this
            // bridge's old session, if any, as well). This session is then told its rooms' full
            // sets as of now, right after `registered` and before anything queued to it from
            // here on (a later change): taken under the same lock as the session's insertion.
            let due = self.cluster.read(|state| hub.membership.poll(state));
            for (to, message) in due {
                tell(&hub.sessions, &to, message);
            }
            if let Some(old) = hub.sessions.insert(
                bridge.clone(),
                Session {
                    serial,
                    instance,
                    to_bridge: to_bridge.clone(),
                    load_commits: LoadCommitThrottle::default(),
                },
            ) {
                let _ = old.to_bridge.try_send(ControlToBridge::Refused {
                    code: "replaced".into(),
                    message: "a newer session of this bridge took over".into(),
                });
            }
            hub.detector.session_opened(&bridge, now_unix_ms());
            // Sent straight to the socket below rather than queued: a bridge may share more
            // rooms than its queue holds.
            hub.membership.room_bridges_of(&bridge)
        };
        tracing::info!(%bridge, ?status, "bridge registered");
        let registered = ControlToBridge::Registered {
            heartbeat_interval_ms: self.config.heartbeat_interval_ms,
            status,
        };
        let complete = ControlToBridge::RoomBridgesComplete;
        for message in std::iter::once(&registered)
            .chain(&shared_rooms)
            .chain(std::iter::once(&complete))
        {
            if send(&mut sink, message).await.is_err() {
                self.session_ended(&bridge, serial);
                return;
            }
        }
        drop(shared_rooms);
        let (work, work_queue) = mpsc::channel(FROM_BRIDGE_QUEUE_MAX);
        let worker = tokio::spawn(self.clone().commit_bridge_events(
            bridge.clone(),
            work_queue,
            to_bridge.clone(),
        ));
        let hosted: BTreeSet<HostedParticipant> = participants.into_iter().collect();
        let _ = work.try_send(BridgeWork::Reconcile(hosted));
        self.note_load(&bridge, serial, load);

        // A bridge whose host vanished closes nothing; its session ends once it has been silent
        // long enough to be declared down anyway, so dead sessions do not pile up.
        let idle_limit = Duration::from_millis(
            self.config
                .detector
                .down_after_ms
                .max(self.config.heartbeat_interval_ms * 3),
        );
        let mut last_message = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(last_message + idle_limit) => {
                    tracing::info!(%bridge, "bridge session silent too long; closing it");
                    break;
                }
                message = outgoing.recv() => {
                    let Some(message) = message else { break };
                    let last = matches!(message, ControlToBridge::NotLeader { .. } | ControlToBridge::Refused { .. });
                    if send(&mut sink, &message).await.is_err() || last {
                        break;
                    }
                }
                incoming = next_message(&mut stream) => match incoming {
                    Some(Ok(message)) => {
                        last_message = tokio::time::Instant::now();
                        lock(&self).detector.heard(&bridge, now_unix_ms());
                        match message {
                            BridgeToControl::Heartbeat { load } => self.note_load(&bridge, serial, load),
                            BridgeToControl::ParticipantJoined { room, participant } => {
                                queue(&work, BridgeWork::Joined(HostedParticipant { room, participant }));
                            }
                            BridgeToControl::ParticipantLeft { room, participant, dropped } => {
                                lock(&self).media.forget(&bridge, &room, &participant);
                                let entry = HostedParticipant { room, participant };
                                queue(&work, if dropped { BridgeWork::Dropped(entry) } else { BridgeWork::Left(entry) });
                            }
                            BridgeToControl::Drain { grace_ms } => queue(&work, BridgeWork::Drain(grace_ms)),
                            BridgeToControl::ParticipantsMedia { updates } => lock(&self).media.note(&bridge, updates),
                            BridgeToControl::Register { .. } => {
                                tracing::warn!(%bridge, "second register on one session ignored");
                            }
                            other => tracing::debug!(%bridge, ?other, "unexpected bridge message"),
                        }
                    }
                    Some(Err(err)) => {
                        tracing::warn!(%bridge, %err, "bad message on a bridge session; closing it");
                        let _ = send(&mut sink, &refused("protocol_error", &err)).await;
                        break;
                    }
                    None => break,
                },
            }
        }
        drop(work);
        let _ = worker.await;
        self.session_ended(&bridge, serial);
        let _ = sink.close().await;
    }

    /// Another live process already holds this bridge id.
    fn claimed_by_another(&self, bridge: &BridgeId, instance: &str) -> Option<String> {
        let hub = lock(self);
        let session = hub.sessions.get(bridge)?;
        if session.instance == instance {
            return None;
        }
        let alive = hub.detector.heard_since(
            bridge,
            now_unix_ms().saturating_sub(self.config.detector.suspect_after_ms),
        );
        (alive == Liveliness::HeardSince)
            .then(|| format!("bridge id {bridge} is held by another live bridge process"))
    }

    fn session_ended(&self, bridge: &BridgeId, serial: u64) {
        let mut hub = lock(self);
        if hub.sessions.get(bridge).is_some_and(|s| s.serial == serial) {
            hub.sessions.remove(bridge);
            hub.media.forget_bridge(bridge);
            hub.detector.session_closed(bridge, now_unix_ms());
            tracing::info!(%bridge, "bridge session closed");
        }
        drop(hub);
        self.wake.notify_one();
    }

    /// Commits a load report when it changed enough or the last one is getting old.
    fn note_load(self: &Arc<Self>, bridge: &BridgeId, serial: u64, load: LoadReport) {
        let now = now_unix_ms();
        {
            let mut hub = lock(self);
            let Some(session) = hub.sessions.get_mut(bridge).filter(|s| s.serial == serial) else {
                return;
            };
            if !session.load_commits.take(now, load.stress) {
                return;
            }
        }
        let hub = self.clone();
        let bridge = bridge.clone();
        tokio::spawn(async move {
            let command = Command::ReportLoad {
                bridge,
                load,
                at_ms: now,
            };
            if let Err(err) = hub.cluster.propose(command).await {
                tracing::debug!(%err, "load report not committed");
            }
        });
    }

    /// Commits one bridge's events in the order it sent them.
    async fn commit_bridge_events(
        self: Arc<Self>,
        bridge: BridgeId,
        mut queue: mpsc::Receiver<BridgeWork>,
        to_bridge: mpsc::Sender<ControlToBridge>,
    ) {
        let tell = |message: ControlToBridge| {
            if to_bridge.try_send(message).is_err() {
                tracing::warn!(%bridge, "bridge session queue full");
            }
        };
        while let Some(work) = queue.recv().await {
            match work {
                BridgeWork::Reconcile(hosted) => {
                    let plan = self.cluster.read(|state| reconcile(state, &bridge, &hosted));
                    plan.to_bridge.into_iter().for_each(&tell);
                    for entry in plan.confirm {
                        self.confirm(&bridge, entry, &tell).await;
                    }
                    // Gone while the bridge was away from control: left or dropped, nobody knows;
                    // as a drop, a participant that is reconnecting keeps its place.
                    for entry in plan.leave {
                        self.unconfirm(&bridge, entry).await;
                    }
                }
                BridgeWork::Joined(entry) => self.confirm(&bridge, entry, &tell).await,
                BridgeWork::Left(entry) => self.leave(&bridge, entry).await,
                BridgeWork::Dropped(entry) => self.unconfirm(&bridge, entry).await,
                BridgeWork::Drain(grace_ms) => {
                    let command = Command::Drain {
                        bridge: bridge.clone(),
                        grace_ms,
                        by_operator: false,
                        at_ms: now_unix_ms(),
                    };
                    if let Err(err) = self.cluster.propose(command).await {
                        tracing::warn!(%bridge, %err, "drain not committed");
                    }
                }
            }
        }
    }

    async fn confirm(&self, bridge: &BridgeId, entry: HostedParticipant, tell: &impl Fn(ControlToBridge)) {
        let command = Command::Confirm {
            room: entry.room.clone(),
            participant: entry.participant.clone(),
            bridge: Some(bridge.clone()),
        };
        match self.cluster.propose(command).await {
            Ok(Ok(_)) => {}
            // Placed elsewhere since (moved while its ticket was in flight).
            Ok(Err(ApplyError::NotOnBridge(..))) => tell(ControlToBridge::Move {
                room: entry.room,
                participant: entry.participant,
            }),
            // Control no longer holds it: its meeting ended, or it was kicked or expired after its
            // ticket was issued. Its ticket must not outlive that decision.
            Ok(Err(ApplyError::UnknownParticipant(..))) => {
                let still_on = self.cluster.read(|state| {
                    state
                        .rooms
                        .get(&entry.room)
                        .and_then(|r| r.participants.get(&entry.participant))
                        .is_some_and(|p| {
                            p.status == ParticipantStatus::Connected && p.bridge.as_ref() == Some(bridge)
                        })
                });
                if still_on {
                    return; // already confirmed (a reconcile and the joined event raced)
                }
                if self.cluster.read(|state| state.rooms.contains_key(&entry.room)) {
                    tell(ControlToBridge::Kick {
                        room: entry.room,
                        participant: entry.participant,
                    });
                } else {
                    tell(ControlToBridge::EndRoom { room: entry.room });
                }
            }
            Ok(Err(err)) => tracing::debug!(%bridge, %err, "confirm refused"),
            Err(err) => tracing::warn!(%bridge, %err, "confirm not committed"),
        }
    }

    async fn unconfirm(&self, bridge: &BridgeId, entry: HostedParticipant) {
        let command = Command::Unconfirm {
            room: entry.room,
            participant: entry.participant,
            bridge: bridge.clone(),
            at_ms: now_unix_ms(),
        };
        match self.cluster.propose(command).await {
            Ok(Ok(_)) => {}
            // Moved off this bridge, or already gone.
            Ok(Err(err)) => tracing::debug!(%bridge, %err, "a drop did not change the room state"),
            Err(err) => tracing::warn!(%bridge, %err, "drop not committed"),
        }
    }

    async fn leave(&self, bridge: &BridgeId, entry: HostedParticipant) {
        let command = Command::Leave {
            room: entry.room,
            participant: entry.participant,
            bridge: Some(bridge.clone()),
        };
        match self.cluster.propose(command).await {
            Ok(Ok(_)) => {}
            // Already gone (expired, kicked, ended) or moved off this bridge.
            Ok(Err(err)) => tracing::debug!(%bridge, %err, "a leave did not change the room state"),
            Err(err) => tracing::warn!(%bridge, %err, "leave not committed"),
        }
    }
}

/// Queues `message` toward `bridge`'s session, if it has one.
fn tell(sessions: &BTreeMap<BridgeId, Session>, bridge: &BridgeId, message: ControlToBridge) {
    if let Some(session) = sessions.get(bridge)
        && session.to_bridge.try_send(message).is_err()
    {
        tracing::warn!(%bridge, "bridge session queue full; an instruction is lost until it reconnects");
    }
}

enum BridgeWork {
    Reconcile(BTreeSet<HostedParticipant>),
    Joined(HostedParticipant),
    Left(HostedParticipant),
    Dropped(HostedParticipant),
    Drain(u64),
}

fn queue(work: &mpsc::Sender<BridgeWork>, item: BridgeWork) {
    if work.try_send(item).is_err() {
        tracing::warn!("bridge event queue full; the bridge's next registration reconciles");
    }
}

/// The session URL of the control node whose API listens at `addr` (`host:port`).
pub fn session_url(addr: &str) -> String {
    format!(
        "wss://{}{BRIDGE_SESSION_PATH}",
        bridgemesh_pki::client::authority(addr)
    )
}

fn refused(code: &str, message: &str) -> ControlToBridge {
    ControlToBridge::Refused {
        code: code.into(),
        message: message.into(),
    }
}

async fn send(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    message: &ControlToBridge,
) -> Result<(), axum::Error> {
    let text = serde_json::to_string(message).expect("control messages serialize");
    sink.send(Message::Text(text.into())).await
}

/// The next bridge message; `None` when the socket ended, `Some(Err)` for a frame that is not one.
async fn next_message(
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
) -> Option<Result<BridgeToControl, String>> {
    loop {
        match stream.next().await? {
            Ok(Message::Text(text)) => {
                return Some(
                    serde_json::from_str(text.as_str()).map_err(|err| format!("not a bridge message: {err}")),
                );
            }
            Ok(Message::Binary(_)) => return Some(Err("binary frame on a bridge session".into())),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests;
