//! The bridge's session with control, as a sans-IO state machine: registration, heartbeats,
//! reconnection, and control's instructions turned into actions on the bridge.
//!
//! Inputs ([`SessionInput`]) are socket events reported by the driver, messages from control,
//! the bridge's own joins and leaves, load samples, and timeouts, each with `now`; outputs
//! ([`SessionOutput`]) are "connect there", messages to send, actions on the bridge and status
//! changes. No sockets, no clocks, no randomness it was not seeded with: the driver in
//! `control_agent.rs` runs it over a WebSocket, and the simulator can run it under virtual time.
//!
//! The session in short:
//! - it connects to a control node and says `register` first, listing every participant the
//!   bridge hosts at that moment; registration is idempotent, so it says the same after every
//!   reconnect and control reconciles;
//! - once `registered`, it heartbeats (with the latest load) at the interval control gave, and
//!   forwards joins and leaves as they happen. Joins and leaves while no registration is in force
//!   are not queued: the hosted set changes, and the next `register` carries it;
//! - `not_leader` names the leader: it connects there at once (a few times in a row, then with
//!   backoff, so two nodes naming each other during an election cannot make it spin);
//! - a lost connection, a registration that does not come, or a control node gone silent (no
//!   message and no pong for several heartbeats) means: try the leader last known, then the other
//!   nodes in order, with capped exponential backoff and jitter;
//! - `refused` stops the session for good: another live bridge holds the id, or the registration
//!   is invalid. Starting again would not change the answer.

use crate::shard::{BridgeEvent, ModerationAction};
use bridgemesh_proto::bridge_session::{
    BRIDGE_SESSION_PATH, BridgeRegistration, BridgeStatus, BridgeToControl, ControlToBridge,
    HostedParticipant, LoadReport, REGISTER_PARTICIPANTS_MAX,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

mod config;
mod media_reports;

pub use config::*;

pub const BACKOFF_MIN_MS_DEFAULT: u64 = 100;
pub const BACKOFF_MAX_MS_DEFAULT: u64 = 2_000;
/// From asking for a connection to `registered`: TCP and WebSocket handshakes plus a Raft commit.
pub const REGISTER_TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// `not_leader` redirects followed at once in a row; past this each costs a backoff.
const REDIRECTS_WITHOUT_BACKOFF: u32 = 3;
/// The interval control gives is clamped to this range: 0 would make the session spin, a huge one
/// would make it never notice a dead control node.
const HEARTBEAT_INTERVAL_MS_MIN: u64 = 50;
const HEARTBEAT_INTERVAL_MS_MAX: u64 = 60_000;
/// Control is declared silent after this many heartbeat intervals without a message or a pong,
/// and never sooner than [`SILENCE_TIMEOUT_MS_MIN`] (a pong crosses regions and may queue behind
/// a Raft commit on the control side).
const SILENCE_HEARTBEATS: u32 = 3;
const SILENCE_TIMEOUT_MS_MIN: u64 = 2_000;
pub const SESSION_URL_MAX_BYTES: usize = 2_048;
pub const CONTROL_URLS_MAX: usize = 64;
/// Instance ids are random per process start; this bounds what a misconfiguration could send.
const INSTANCE_MAX_BYTES: usize = 128;
/// Joins and leaves remembered while a registration is in flight. Each participant counts once
/// however often it changes, so this is only reached by a bridge past its register limit; the
/// session then registers again instead of remembering more.
const PENDING_CHANGES_MAX: usize = REGISTER_PARTICIPANTS_MAX;

/// One connection the session asked the driver for. Reports about an older connection (a late
/// `Disconnected` after the session moved on) carry its id and are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// The session as the rest of the bridge sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStatus {
    /// Not registered: connecting, registering, or waiting to try again.
    Connecting,
    /// Control holds the registration; `status` is the bridge's status there.
    Registered { status: BridgeStatus },
    /// Control refused the registration; the session has stopped.
    Refused { code: String, message: String },
    /// Closed on the bridge's side.
    Closed,
}

impl SessionStatus {
    /// Nothing follows this status.
    pub fn is_final(&self) -> bool {
        matches!(self, SessionStatus::Refused { .. } | SessionStatus::Closed)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum SessionInput {
    /// The WebSocket of `connection` is open.
    Connected(ConnectionId),
    /// The connection failed or closed (either side).
    Disconnected(ConnectionId),
    Message(ConnectionId, ControlToBridge),
    /// A pong to a [`SessionOutput::Ping`] arrived on the connection.
    Pong(ConnectionId),
    /// A participant joined or left this bridge.
    Event(BridgeEvent),
    /// The latest load measurement; the next heartbeat or registration carries it.
    Load(LoadReport),
    /// The bridge is stopping: ask control to drain it, now and after every reconnect.
    Drain {
        grace_ms: u64,
    },
    /// End the session.
    Close,
}

// Carries a `register` once per connection; boxing it would save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum SessionOutput {
    /// Open a WebSocket to `url` with the bridge's credential and report it as `connection`.
    Connect {
        connection: ConnectionId,
        url: SessionUrl,
    },
    /// Send `message` on `connection`.
    Send {
        connection: ConnectionId,
        message: BridgeToControl,
    },
    /// Send a transport-level ping on `connection`; report its pong as [`SessionInput::Pong`].
    Ping { connection: ConnectionId },
    /// Close `connection`. Nothing it reports afterwards matters.
    Disconnect { connection: ConnectionId },
    /// Carry out control's instruction on the bridge.
    Moderate(ModerationAction),
    /// The other bridges hosting `room` now: link to them for it.
    RoomBridges {
        room: bridgemesh_proto::RoomId,
        peers: Vec<bridgemesh_proto::bridge_session::CascadePeer>,
    },
    /// Every room shared with another bridge is among these, listed since the registration:
    /// forget the links of any other.
    RoomBridgesComplete {
        rooms: BTreeSet<bridgemesh_proto::RoomId>,
    },
    /// The status changed to this.
    Status(SessionStatus),
}

enum Phase {
    /// Waiting until `at` to connect to `url`.
    Waiting {
        at: Instant,
        url: SessionUrl,
    },
    /// Asked the driver for a connection.
    Connecting {
        connection: ConnectionId,
        url: SessionUrl,
        deadline: Instant,
    },
    /// `register` sent, `registered` awaited. `changes` are joins (`true`) and leaves since the
    /// list in `register` was taken, for control to hear once it has registered the bridge.
    Registering {
        connection: ConnectionId,
        url: SessionUrl,
        deadline: Instant,
        changes: BTreeMap<HostedParticipant, bool>,
    },
    Registered {
        connection: ConnectionId,
        url: SessionUrl,
        heartbeat_interval: Duration,
        next_heartbeat: Instant,
        last_heard: Instant,
    },
    Stopped,
}

impl Phase {
    fn url(&self) -> Option<&SessionUrl> {
        match self {
            Phase::Waiting { url, .. }
            | Phase::Connecting { url, .. }
            | Phase::Registering { url, .. }
            | Phase::Registered { url, .. } => Some(url),
            Phase::Stopped => None,
        }
    }

    fn connection(&self) -> Option<ConnectionId> {
        match self {
            Phase::Connecting { connection, .. }
            | Phase::Registering { connection, .. }
            | Phase::Registered { connection, .. } => Some(*connection),
            Phase::Waiting { .. } | Phase::Stopped => None,
        }
    }
}

/// See the module documentation.
pub struct ControlSession {
    config: ControlSessionConfig,
    phase: Phase,
    status: SessionStatus,
    outputs: VecDeque<SessionOutput>,
    hosted: BTreeSet<HostedParticipant>,
    hosted_overflow_reported: bool,
    load: LoadReport,
    drain_grace_ms: Option<u64>,
    /// The node that last registered us or that a `not_leader` named.
    leader: Option<SessionUrl>,
    /// Nodes still to try in this round of reconnection.
    round: VecDeque<SessionUrl>,
    /// Failed attempts since the last registration.
    failures: u32,
    /// `not_leader` redirects since the last registration.
    redirects: u32,
    next_connection: u64,
    jitter: crate::splitmix::SplitMix64,
    /// Rooms control listed as shared since the last `registered`, until its
    /// `room_bridges_complete`; `None` outside that window.
    rooms_listed: Option<BTreeSet<bridgemesh_proto::RoomId>>,
    /// Hosted participants' media state not yet sent (with the heartbeats).
    media: media_reports::MediaReports,
}

impl ControlSession {
    /// A session that starts connecting to the first control node at once.
    pub fn new(config: ControlSessionConfig, now: Instant) -> Result<Self, SessionConfigError> {
        config.validate()?;
        let jitter = crate::splitmix::SplitMix64::new(config.jitter_seed);
        let mut session = Self {
            config,
            phase: Phase::Stopped,
            status: SessionStatus::Connecting,
            outputs: VecDeque::new(),
            hosted: BTreeSet::new(),
            hosted_overflow_reported: false,
            load: LoadReport::default(),
            drain_grace_ms: None,
            leader: None,
            round: VecDeque::new(),
            failures: 0,
            redirects: 0,
            next_connection: 1,
            jitter,
            rooms_listed: None,
            media: Default::default(),
        };
        let url = session.next_candidate();
        session.connect(now, url);
        Ok(session)
    }

    pub fn status(&self) -> &SessionStatus {
        &self.status
    }

    /// Participants the bridge hosts, as the next `register` will list them.
    pub fn hosted(&self) -> impl ExactSizeIterator<Item = &HostedParticipant> {
        self.hosted.iter()
    }

    pub fn poll_output(&mut self) -> Option<SessionOutput> {
        self.outputs.pop_front()
    }

    /// When [`ControlSession::handle_timeout`] has work to do; `None` once stopped.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Waiting { at, .. } => Some(*at),
            Phase::Connecting { deadline, .. } | Phase::Registering { deadline, .. } => Some(*deadline),
            Phase::Registered {
                heartbeat_interval,
                next_heartbeat,
                last_heard,
                ..
            } => Some((*next_heartbeat).min(*last_heard + silence_timeout(*heartbeat_interval))),
            Phase::Stopped => None,
        }
    }

    pub fn handle_input(&mut self, now: Instant, input: SessionInput) {
        match input {
            SessionInput::Connected(connection) => {
                if let Phase::Connecting {
                    connection: current, ..
                } = &self.phase
                    && *current == connection
                {
                    self.register(connection);
                }
            }
            SessionInput::Disconnected(connection) => {
                if self.phase.connection() == Some(connection) {
                    if matches!(self.phase, Phase::Registered { .. }) {
                        tracing::info!("lost the control session; reconnecting");
                    } else {
                        tracing::debug!("control connection failed or closed before registration");
                    }
                    self.retry(now);
                }
            }
            SessionInput::Message(connection, message) => {
                if self.phase.connection() == Some(connection) {
                    self.on_message(now, connection, message);
                }
            }
            SessionInput::Pong(connection) => {
                if let Phase::Registered {
                    connection: current,
                    last_heard,
                    ..
                } = &mut self.phase
                    && *current == connection
                {
                    *last_heard = now;
                }
            }
            SessionInput::Event(event) => self.on_event(now, event),
            SessionInput::Load(load) => self.load = load,
            SessionInput::Drain { grace_ms } => {
                if matches!(self.phase, Phase::Stopped) {
                    return;
                }
                self.drain_grace_ms = Some(grace_ms);
                if let Phase::Registered { connection, .. } = self.phase {
                    self.send(connection, BridgeToControl::Drain { grace_ms });
                }
            }
            SessionInput::Close => {
                if let Some(connection) = self.phase.connection() {
                    self.outputs.push_back(SessionOutput::Disconnect { connection });
                }
                if !matches!(self.phase, Phase::Stopped) {
                    self.phase = Phase::Stopped;
                    self.set_status(SessionStatus::Closed);
                }
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.phase {
            Phase::Waiting { at, url } if *at <= now => {
                let url = url.clone();
                self.connect(now, url);
            }
            Phase::Connecting {
                connection, deadline, ..
            }
            | Phase::Registering {
                connection, deadline, ..
            } if *deadline <= now => {
                tracing::debug!("no registration from control in time");
                let connection = *connection;
                self.outputs.push_back(SessionOutput::Disconnect { connection });
                self.retry(now);
            }
            Phase::Registered {
                connection,
                heartbeat_interval,
                next_heartbeat,
                last_heard,
                ..
            } => {
                let connection = *connection;
                if *last_heard + silence_timeout(*heartbeat_interval) <= now {
                    tracing::info!("control went silent; reconnecting");
                    self.outputs.push_back(SessionOutput::Disconnect { connection });
                    self.retry(now);
                } else if *next_heartbeat <= now {
                    // Keep the cadence through small driver delays, but after a stall send one
                    // heartbeat, not a burst of the missed ones.
                    *next_heartbeat += *heartbeat_interval;
                    if *next_heartbeat <= now {
                        *next_heartbeat = now + *heartbeat_interval;
                    }
                    let load = self.load;
                    self.send(connection, BridgeToControl::Heartbeat { load });
                    if let Some(updates) = self.media.take_batch() {
                        self.send(connection, BridgeToControl::ParticipantsMedia { updates });
                    }
                    self.outputs.push_back(SessionOutput::Ping { connection });
                }
            }
            _ => {}
        }
    }

    fn connect(&mut self, now: Instant, url: SessionUrl) {
        let connection = ConnectionId(self.next_connection);
        self.next_connection += 1;
        self.outputs.push_back(SessionOutput::Connect {
            connection,
            url: url.clone(),
        });
        self.phase = Phase::Connecting {
            connection,
            url,
            deadline: now + Duration::from_millis(self.config.register_timeout_ms),
        };
    }

    fn register(&mut self, connection: ConnectionId) {
        let Phase::Connecting { url, deadline, .. } = std::mem::replace(&mut self.phase, Phase::Stopped)
        else {
            unreachable!("register is only called while connecting");
        };
        self.send(
            connection,
            BridgeToControl::Register {
                bridge: self.config.registration.clone(),
                instance: self.config.instance.clone(),
                participants: self.hosted.iter().cloned().collect(),
                load: self.load,
            },
        );
        self.phase = Phase::Registering {
            connection,
            url,
            deadline,
            changes: BTreeMap::new(),
        };
    }

    fn on_message(&mut self, now: Instant, connection: ConnectionId, message: ControlToBridge) {
        if let Phase::Registered { last_heard, .. } = &mut self.phase {
            *last_heard = now;
        }
        match message {
            ControlToBridge::Registered {
                heartbeat_interval_ms,
                status,
            } => self.on_registered(now, connection, heartbeat_interval_ms, status),
            ControlToBridge::NotLeader { leader_url } => {
                self.outputs.push_back(SessionOutput::Disconnect { connection });
                let leader = leader_url.and_then(|text| match SessionUrl::parse(&text) {
                    Ok(url) => Some(url),
                    Err(err) => {
                        tracing::warn!(%err, "control named a leader this bridge cannot reach; trying the others");
                        None
                    }
                });
                match leader {
                    Some(url) => self.redirect(now, url),
                    None => {
                        // This node does not lead and does not know who does (an election is
                        // on): forget it as the leader and try it again only after the others.
                        if let Some(url) = self.phase.url().cloned() {
                            if self.leader.as_ref() == Some(&url) {
                                self.leader = None;
                            }
                            self.round.retain(|u| *u != url);
                            if self.round.is_empty() {
                                self.round
                                    .extend(self.config.control_urls.iter().filter(|u| **u != url).cloned());
                            }
                            self.round.push_back(url);
                        }
                        self.retry(now);
                    }
                }
            }
            ControlToBridge::Refused { code, message } => {
                tracing::error!(%code, %message, "control refused this bridge's registration");
                self.outputs.push_back(SessionOutput::Disconnect { connection });
                self.phase = Phase::Stopped;
                self.set_status(SessionStatus::Refused { code, message });
            }
            ControlToBridge::Status { status } => {
                if matches!(self.phase, Phase::Registered { .. }) {
                    self.set_status(SessionStatus::Registered { status });
                } else {
                    tracing::debug!(?status, "a status before registration; registered will carry it");
                }
            }
            ControlToBridge::Kick { room, participant } => {
                self.moderate(ModerationAction::Kick { room, participant });
            }
            ControlToBridge::Move { room, participant } => {
                self.moderate(ModerationAction::Move { room, participant });
            }
            ControlToBridge::MuteAll { room, by } => {
                self.moderate(ModerationAction::RequestMuteAll { room, by });
            }
            ControlToBridge::EndRoom { room } => self.moderate(ModerationAction::EndRoom { room }),
            ControlToBridge::RequestMute { room, participant } => {
                self.moderate(ModerationAction::RequestMute { room, participant });
            }
            ControlToBridge::RoomBridges { room, peers } => {
                if let Some(listed) = &mut self.rooms_listed
                    && !peers.is_empty()
                {
                    listed.insert(room.clone());
                }
                self.outputs.push_back(SessionOutput::RoomBridges { room, peers });
            }
            ControlToBridge::RoomBridgesComplete => {
                if let Some(rooms) = self.rooms_listed.take() {
                    self.outputs
                        .push_back(SessionOutput::RoomBridgesComplete { rooms });
                }
            }
            other => tracing::debug!(
                ?other,
                "a message from control this bridge does not know; ignored"
            ),
        }
    }

    fn on_registered(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        heartbeat_interval_ms: u64,
        status: BridgeStatus,
    ) {
        let heartbeat_interval = Duration::from_millis(
            heartbeat_interval_ms.clamp(HEARTBEAT_INTERVAL_MS_MIN, HEARTBEAT_INTERVAL_MS_MAX),
        );
        self.rooms_listed = Some(BTreeSet::new());
        match std::mem::replace(&mut self.phase, Phase::Stopped) {
            Phase::Registering { url, changes, .. } => {
                tracing::info!(bridge = %self.config.registration.id, ?status, "registered with control");
                self.leader = Some(url.clone());
                self.phase = Phase::Registered {
                    connection,
                    url,
                    heartbeat_interval,
                    next_heartbeat: now + heartbeat_interval,
                    last_heard: now,
                };
                self.round.clear();
                self.failures = 0;
                self.redirects = 0;
                for (HostedParticipant { room, participant }, joined) in changes {
                    // A leave folded into the diff lost how it happened; as a drop, control keeps
                    // the participant's place for a while in case it is reconnecting.
                    let message = if joined {
                        BridgeToControl::ParticipantJoined { room, participant }
                    } else {
                        BridgeToControl::ParticipantLeft {
                            room,
                            participant,
                            dropped: true,
                        }
                    };
                    self.send(connection, message);
                }
                if let Some(grace_ms) = self.drain_grace_ms {
                    self.send(connection, BridgeToControl::Drain { grace_ms });
                }
                self.media.all_dirty();
            }
            Phase::Registered {
                url,
                next_heartbeat,
                last_heard,
                ..
            } => {
                // Registered again on the same socket: control may change the interval.
                self.phase = Phase::Registered {
                    connection,
                    url,
                    heartbeat_interval,
                    next_heartbeat: next_heartbeat.min(now + heartbeat_interval),
                    last_heard,
                };
            }
            other => {
                self.phase = other;
                return;
            }
        }
        self.set_status(SessionStatus::Registered { status });
    }

    fn on_event(&mut self, now: Instant, event: BridgeEvent) {
        let (participant, joined, dropped) = match event {
            BridgeEvent::ParticipantJoined { room, participant } => {
                (HostedParticipant { room, participant }, true, false)
            }
            BridgeEvent::ParticipantLeft {
                room,
                participant,
                dropped,
                ..
            } => (HostedParticipant { room, participant }, false, dropped),
            BridgeEvent::ParticipantMedia(media) => {
                self.media.note(media, &self.hosted);
                return;
            }
        };
        if !joined {
            self.hosted.remove(&participant);
            self.media.forget(&participant);
        } else if self.hosted.len() < REGISTER_PARTICIPANTS_MAX {
            self.hosted.insert(participant.clone());
        } else if !self.hosted_overflow_reported {
            self.hosted_overflow_reported = true;
            tracing::warn!(
                max = REGISTER_PARTICIPANTS_MAX,
                "more participants than a registration can list; control will miss some after a reconnect"
            );
        }
        match &mut self.phase {
            Phase::Registered { connection, .. } => {
                let connection = *connection;
                let HostedParticipant { room, participant } = participant;
                let message = if joined {
                    BridgeToControl::ParticipantJoined { room, participant }
                } else {
                    BridgeToControl::ParticipantLeft {
                        room,
                        participant,
                        dropped,
                    }
                };
                self.send(connection, message);
            }
            Phase::Registering {
                connection, changes, ..
            } => {
                if changes.len() < PENDING_CHANGES_MAX || changes.contains_key(&participant) {
                    changes.insert(participant, joined);
                } else {
                    // Register again with the full list rather than remember more.
                    let connection = *connection;
                    self.outputs.push_back(SessionOutput::Disconnect { connection });
                    self.retry(now);
                }
            }
            // The next registration lists the hosted participants as they are then.
            Phase::Waiting { .. } | Phase::Connecting { .. } | Phase::Stopped => {}
        }
    }

    fn moderate(&mut self, action: ModerationAction) {
        self.outputs.push_back(SessionOutput::Moderate(action));
    }

    fn send(&mut self, connection: ConnectionId, message: BridgeToControl) {
        self.outputs
            .push_back(SessionOutput::Send { connection, message });
    }

    fn set_status(&mut self, status: SessionStatus) {
        if self.status != status {
            self.status = status.clone();
            self.outputs.push_back(SessionOutput::Status(status));
        }
    }

    /// The current connection failed or ended: wait, then try the next node.
    fn retry(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        let delay = self.backoff();
        let url = self.next_candidate();
        self.phase = Phase::Waiting { at: now + delay, url };
        self.set_status(SessionStatus::Connecting);
    }

    /// `not_leader` named `url`: go there, at once unless redirects are going round in circles.
    fn redirect(&mut self, now: Instant, url: SessionUrl) {
        self.leader = Some(url.clone());
        self.round.retain(|u| *u != url);
        self.redirects = self.redirects.saturating_add(1);
        self.set_status(SessionStatus::Connecting);
        if self.redirects <= REDIRECTS_WITHOUT_BACKOFF {
            self.connect(now, url);
        } else {
            self.failures = self.failures.saturating_add(1);
            let delay = self.backoff();
            self.phase = Phase::Waiting { at: now + delay, url };
        }
    }

    /// The leader last known first, then the configured nodes in order, round after round.
    fn next_candidate(&mut self) -> SessionUrl {
        if self.round.is_empty() {
            if let Some(leader) = &self.leader {
                self.round.push_back(leader.clone());
            }
            for url in &self.config.control_urls {
                if self.leader.as_ref() != Some(url) {
                    self.round.push_back(url.clone());
                }
            }
        }
        self.round
            .pop_front()
            .expect("validate() requires at least one control URL")
    }

    /// Between half and all of min × 2^(failures − 1), capped at max: exponential so a dead
    /// cluster is not hammered, jittered so bridges that lost control together do not come back
    /// in lockstep.
    fn backoff(&mut self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(32);
        let ceiling_ms = self
            .config
            .backoff_min_ms
            .saturating_mul(1u64 << doublings)
            .min(self.config.backoff_max_ms);
        let half = ceiling_ms / 2;
        Duration::from_millis(ceiling_ms - half + self.jitter.below(half + 1))
    }
}

fn silence_timeout(heartbeat_interval: Duration) -> Duration {
    (heartbeat_interval * SILENCE_HEARTBEATS).max(Duration::from_millis(SILENCE_TIMEOUT_MS_MIN))
}

/// SplitMix64: small, seedable and good enough to spread retries.
#[cfg(test)]
mod tests;
