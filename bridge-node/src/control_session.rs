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

/// A control node's bridge-session endpoint on its cluster listener (mutual TLS),
/// `wss://host:port[/prefix]/api/v1/bridges/session`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionUrl(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionUrlError {
    #[error("a control URL is at most {SESSION_URL_MAX_BYTES} bytes")]
    TooLong,
    #[error("a control URL is https://host:port (or wss://), not {0}://")]
    Scheme(String),
    #[error(
        "control's cluster listener speaks only mutual TLS: give its address as https://host:port (the cluster port, 7701 by default)"
    )]
    PlainText,
    #[error("a control URL needs a host")]
    NoHost,
    #[error("a control URL may not hold credentials, a query, a fragment or spaces")]
    Malformed,
}

impl SessionUrl {
    /// A control node's cluster address (`https://host:port`, `wss://host:port`, `host:port`, optionally
    /// under a path prefix) or its full session URL, as the session URL.
    pub fn parse(text: &str) -> Result<Self, SessionUrlError> {
        let text = text.trim();
        if text.len() > SESSION_URL_MAX_BYTES {
            return Err(SessionUrlError::TooLong);
        }
        let rest = match text.split_once("://") {
            Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
                "https" | "wss" => rest,
                "http" | "ws" => return Err(SessionUrlError::PlainText),
                other => return Err(SessionUrlError::Scheme(other.to_owned())),
            },
            None => text,
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(SessionUrlError::NoHost);
        }
        let host_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']');
        let path_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '~' | '/' | '%');
        if !authority.chars().all(host_char) || !path.chars().all(path_char) {
            return Err(SessionUrlError::Malformed);
        }
        let prefix = path.trim_end_matches('/');
        let url = if prefix.ends_with(BRIDGE_SESSION_PATH) {
            format!("wss://{authority}{prefix}")
        } else {
            format!("wss://{authority}{prefix}{BRIDGE_SESSION_PATH}")
        };
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `host:port` to open the TCP connection to (port 443 when the URL has none).
    pub fn host_port(&self) -> String {
        let rest = self.0.strip_prefix("wss://").unwrap_or(&self.0);
        let authority = rest.split('/').next().unwrap_or(rest);
        let has_port = match authority.rfind(']') {
            Some(bracket) => authority[bracket..].contains(':'),
            None => authority.contains(':'),
        };
        if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:443")
        }
    }
}

impl fmt::Display for SessionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionUrl({})", self.0)
    }
}

#[derive(Debug, Clone)]
pub struct ControlSessionConfig {
    /// Control nodes, any of them, in the order to try.
    pub control_urls: Vec<SessionUrl>,
    pub registration: BridgeRegistration,
    /// Random per process start (see [`BridgeToControl::Register`]).
    pub instance: String,
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    pub register_timeout_ms: u64,
    /// Seeds the backoff jitter, so a run can be replayed.
    pub jitter_seed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionConfigError {
    #[error("no control URL: give at least one control node")]
    NoControlUrls,
    #[error("at most {CONTROL_URLS_MAX} control URLs")]
    TooManyControlUrls,
    #[error("the instance id must be 1 to {INSTANCE_MAX_BYTES} bytes")]
    Instance,
    #[error("backoff_min_ms must be positive and at most backoff_max_ms")]
    Backoff,
    #[error("register_timeout_ms must be positive")]
    RegisterTimeout,
}

impl ControlSessionConfig {
    /// Default backoff and registration timeout.
    pub fn new(
        control_urls: Vec<SessionUrl>,
        registration: BridgeRegistration,
        instance: String,
        jitter_seed: u64,
    ) -> Self {
        Self {
            control_urls,
            registration,
            instance,
            backoff_min_ms: BACKOFF_MIN_MS_DEFAULT,
            backoff_max_ms: BACKOFF_MAX_MS_DEFAULT,
            register_timeout_ms: REGISTER_TIMEOUT_MS_DEFAULT,
            jitter_seed,
        }
    }

    pub fn validate(&self) -> Result<(), SessionConfigError> {
        if self.control_urls.is_empty() {
            return Err(SessionConfigError::NoControlUrls);
        }
        if self.control_urls.len() > CONTROL_URLS_MAX {
            return Err(SessionConfigError::TooManyControlUrls);
        }
        if self.instance.is_empty() || self.instance.len() > INSTANCE_MAX_BYTES {
            return Err(SessionConfigError::Instance);
        }
        if self.backoff_min_ms == 0 || self.backoff_min_ms > self.backoff_max_ms {
            return Err(SessionConfigError::Backoff);
        }
        if self.register_timeout_ms == 0 {
            return Err(SessionConfigError::RegisterTimeout);
        }
        Ok(())
    }
}

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
            } => (HostedParticipant { room, participant }, false, dropped),
        };
        if !joined {
            self.hosted.remove(&participant);
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
mod tests {
    use super::*;
    use bridgemesh_proto::{BridgeId, ParticipantId, RegionId, RoomId};

    const MS: Duration = Duration::from_millis(1);

    fn url(name: &str) -> SessionUrl {
        SessionUrl::parse(&format!("https://{name}:7700")).unwrap()
    }

    fn registration() -> BridgeRegistration {
        BridgeRegistration {
            id: BridgeId::new("eu-1").unwrap(),
            region: RegionId::new("eu").unwrap(),
            location: None,
            signaling_url: "wss://eu-1.example.org:8081/bridge/v1/signal".into(),
            media_addresses: vec!["192.0.2.1:10000".into()],
            turn_urls: vec![],
            capacity: 1000,
            max_participants_per_room: 100,
            cascade_addr: None,
        }
    }

    fn config(nodes: &[&str]) -> ControlSessionConfig {
        ControlSessionConfig::new(
            nodes.iter().map(|n| url(n)).collect(),
            registration(),
            "instance-1".into(),
            7,
        )
    }

    fn hosted(room: &str, participant: &str) -> HostedParticipant {
        HostedParticipant {
            room: RoomId::new(room).unwrap(),
            participant: ParticipantId::new(participant).unwrap(),
        }
    }

    fn joined(room: &str, participant: &str) -> BridgeEvent {
        let HostedParticipant { room, participant } = hosted(room, participant);
        BridgeEvent::ParticipantJoined { room, participant }
    }

    fn left(room: &str, participant: &str) -> BridgeEvent {
        let HostedParticipant { room, participant } = hosted(room, participant);
        BridgeEvent::ParticipantLeft {
            room,
            participant,
            dropped: false,
        }
    }

    fn drain(session: &mut ControlSession) -> Vec<SessionOutput> {
        std::iter::from_fn(|| session.poll_output()).collect()
    }

    /// The one connection the outputs ask for, and where.
    fn connect_request(outputs: &[SessionOutput]) -> (ConnectionId, SessionUrl) {
        let requests: Vec<_> = outputs
            .iter()
            .filter_map(|o| match o {
                SessionOutput::Connect { connection, url } => Some((*connection, url.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(requests.len(), 1, "{outputs:?}");
        requests[0].clone()
    }

    fn sent(outputs: &[SessionOutput], on: ConnectionId) -> Vec<BridgeToControl> {
        outputs
            .iter()
            .filter_map(|o| match o {
                SessionOutput::Send { connection, message } if *connection == on => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    fn disconnected(outputs: &[SessionOutput], connection: ConnectionId) -> bool {
        outputs.contains(&SessionOutput::Disconnect { connection })
    }

    fn registered(interval_ms: u64) -> ControlToBridge {
        ControlToBridge::Registered {
            heartbeat_interval_ms: interval_ms,
            status: BridgeStatus::Up,
        }
    }

    /// Runs the session to its next timeout (there must be one) and returns that instant.
    fn advance(session: &mut ControlSession) -> Instant {
        let at = session.poll_timeout().expect("a pending timeout");
        session.handle_timeout(at);
        at
    }

    /// A session registered through node `a` at `t0` with a 1 s heartbeat; its connection.
    fn registered_session(nodes: &[&str]) -> (ControlSession, Instant, ConnectionId) {
        let t0 = Instant::now();
        let mut session = ControlSession::new(config(nodes), t0).unwrap();
        let (connection, _) = connect_request(&drain(&mut session));
        session.handle_input(t0, SessionInput::Connected(connection));
        session.handle_input(t0, SessionInput::Message(connection, registered(1000)));
        drain(&mut session);
        assert_eq!(
            session.status(),
            &SessionStatus::Registered {
                status: BridgeStatus::Up
            }
        );
        (session, t0, connection)
    }

    #[test]
    fn says_register_first_with_the_hosted_participants_then_heartbeats_at_controls_interval() {
        let t0 = Instant::now();
        let mut session = ControlSession::new(config(&["a", "b"]), t0).unwrap();
        let outputs = drain(&mut session);
        let (connection, to) = connect_request(&outputs);
        assert_eq!(to, url("a"));
        assert_eq!(to.as_str(), "wss://a:7700/api/v1/bridges/session");
        // A join before the socket opens is in the first register.
        session.handle_input(t0, SessionInput::Event(joined("r", "ada")));
        let load = LoadReport {
            participants: 1,
            cpu: 0.5,
            packets_per_s: 10.0,
            stress: 0.625,
        };
        session.handle_input(t0, SessionInput::Load(load));
        assert!(
            sent(&drain(&mut session), connection).is_empty(),
            "nothing before the socket opens"
        );
        session.handle_input(t0, SessionInput::Connected(connection));
        assert_eq!(
            sent(&drain(&mut session), connection),
            [BridgeToControl::Register {
                bridge: registration(),
                instance: "instance-1".into(),
                participants: vec![hosted("r", "ada")],
                load,
            }]
        );
        assert_eq!(session.status(), &SessionStatus::Connecting);
        // No heartbeat before control said how often.
        assert_eq!(
            session.poll_timeout(),
            Some(t0 + Duration::from_millis(REGISTER_TIMEOUT_MS_DEFAULT))
        );

        let t1 = t0 + 30 * MS;
        session.handle_input(t1, SessionInput::Message(connection, registered(500)));
        assert_eq!(
            drain(&mut session),
            [SessionOutput::Status(SessionStatus::Registered {
                status: BridgeStatus::Up
            })]
        );
        assert_eq!(session.poll_timeout(), Some(t1 + 500 * MS));
        session.handle_timeout(t1 + 499 * MS);
        assert!(drain(&mut session).is_empty(), "a heartbeat came early");
        for beat in 1..=6u32 {
            let at = advance(&mut session);
            assert_eq!(at, t1 + 500 * MS * beat);
            assert_eq!(
                drain(&mut session),
                [
                    SessionOutput::Send {
                        connection,
                        message: BridgeToControl::Heartbeat { load }
                    },
                    SessionOutput::Ping { connection }
                ]
            );
            session.handle_input(at + MS, SessionInput::Pong(connection));
        }
        // A late wake-up sends one heartbeat, not the missed ones, and the cadence resumes.
        let late = t1 + 500 * MS * 6 + 1_200 * MS;
        session.handle_input(late - MS, SessionInput::Pong(connection));
        session.handle_timeout(late);
        assert_eq!(sent(&drain(&mut session), connection).len(), 1);
        assert_eq!(session.poll_timeout(), Some(late + 500 * MS));
    }

    #[test]
    fn reconnects_to_the_leader_first_then_the_others_with_capped_jittered_backoff() {
        let t0 = Instant::now();
        let mut session = ControlSession::new(config(&["a", "b", "c"]), t0).unwrap();
        let (first, _) = connect_request(&drain(&mut session));
        session.handle_input(t0, SessionInput::Connected(first));
        // a is a follower and names b: b at once, no backoff.
        session.handle_input(
            t0,
            SessionInput::Message(
                first,
                ControlToBridge::NotLeader {
                    leader_url: Some("https://b:7700".into()),
                },
            ),
        );
        let outputs = drain(&mut session);
        assert!(disconnected(&outputs, first));
        let (second, to) = connect_request(&outputs);
        assert_eq!(to, url("b"));
        session.handle_input(t0, SessionInput::Connected(second));
        session.handle_input(t0, SessionInput::Message(second, registered(1000)));
        drain(&mut session);

        // b drops the socket: b again (the leader last known), then a, c, b, a, c, ...
        let mut now = t0 + 10 * MS;
        session.handle_input(now, SessionInput::Disconnected(second));
        assert_eq!(
            drain(&mut session),
            [SessionOutput::Status(SessionStatus::Connecting)]
        );
        let expected_order = ["b", "a", "c", "b", "a", "c", "b", "a"];
        let ceilings_ms = [100, 200, 400, 800, 1600, 2000, 2000, 2000];
        let mut delays = Vec::new();
        for (node, ceiling_ms) in expected_order.into_iter().zip(ceilings_ms) {
            let at = advance(&mut session);
            let delay = at - now;
            assert!(
                delay >= ceiling_ms / 2 * MS && delay <= ceiling_ms * MS,
                "waited {delay:?} before trying {node}; expected {ceiling_ms} ms halved to full"
            );
            delays.push(delay);
            let (connection, to) = connect_request(&drain(&mut session));
            assert_eq!(to, url(node));
            // The connection fails a little later.
            now = at + 3 * MS;
            session.handle_input(now, SessionInput::Disconnected(connection));
            drain(&mut session);
        }
        // Jittered: the capped delays are not all the same.
        assert!(delays[5..].windows(2).any(|w| w[0] != w[1]), "{delays:?}");

        // A registration resets the backoff: the next loss waits the minimum again.
        let at = advance(&mut session);
        let (connection, to) = connect_request(&drain(&mut session));
        assert_eq!(to, url("c"));
        session.handle_input(at, SessionInput::Connected(connection));
        session.handle_input(at, SessionInput::Message(connection, registered(1000)));
        session.handle_input(at, SessionInput::Disconnected(connection));
        drain(&mut session);
        let retry_at = session.poll_timeout().unwrap();
        assert!(retry_at - at <= 100 * MS, "{:?}", retry_at - at);
        session.handle_timeout(retry_at);
        assert_eq!(
            connect_request(&drain(&mut session)).1,
            url("c"),
            "the new leader first"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let delays = || {
            let t0 = Instant::now();
            let mut session = ControlSession::new(config(&["a"]), t0).unwrap();
            let mut now = t0;
            let mut delays = Vec::new();
            for _ in 0..8 {
                let (connection, _) = connect_request(&drain(&mut session));
                session.handle_input(now, SessionInput::Disconnected(connection));
                let at = session.poll_timeout().unwrap();
                delays.push(at - now);
                session.handle_timeout(at);
                now = at;
            }
            delays
        };
        assert_eq!(delays(), delays());
    }

    #[test]
    fn not_leader_without_a_leader_waits_and_tries_the_next_node() {
        let (mut session, t0, connection) = registered_session(&["a", "b"]);
        session.handle_input(
            t0,
            SessionInput::Message(connection, ControlToBridge::NotLeader { leader_url: None }),
        );
        let outputs = drain(&mut session);
        assert!(disconnected(&outputs, connection));
        assert!(
            outputs
                .iter()
                .all(|o| !matches!(o, SessionOutput::Connect { .. }))
        );
        assert_eq!(session.status(), &SessionStatus::Connecting);
        advance(&mut session);
        // a no longer leads, so it is not tried first.
        assert_eq!(connect_request(&drain(&mut session)).1, url("b"));
    }

    #[test]
    fn a_leader_url_the_bridge_cannot_use_counts_as_none() {
        let (mut session, t0, connection) = registered_session(&["a", "b"]);
        session.handle_input(
            t0,
            SessionInput::Message(
                connection,
                ControlToBridge::NotLeader {
                    leader_url: Some("gopher://elsewhere".into()),
                },
            ),
        );
        drain(&mut session);
        advance(&mut session);
        assert_eq!(connect_request(&drain(&mut session)).1, url("b"));
    }

    #[test]
    fn redirects_going_round_in_circles_back_off() {
        let t0 = Instant::now();
        let mut session = ControlSession::new(config(&["a", "b"]), t0).unwrap();
        let mut outputs = drain(&mut session);
        let mut immediate = 0;
        for hop in 0..6 {
            let (connection, to) = connect_request(&outputs);
            let other = if to == url("a") { "b" } else { "a" };
            session.handle_input(t0, SessionInput::Connected(connection));
            session.handle_input(
                t0,
                SessionInput::Message(
                    connection,
                    ControlToBridge::NotLeader {
                        leader_url: Some(format!("wss://{other}:7700/api/v1/bridges/session")),
                    },
                ),
            );
            outputs = drain(&mut session);
            if outputs.iter().any(|o| matches!(o, SessionOutput::Connect { .. })) {
                immediate += 1;
            } else {
                assert!(hop >= 3, "hop {hop} was delayed");
                assert!(session.poll_timeout().unwrap() > t0);
                advance(&mut session);
                outputs = drain(&mut session);
            }
        }
        assert_eq!(immediate, 3);
    }

    #[test]
    fn joins_and_leaves_reach_control_once_registered_and_the_next_register_carries_the_rest() {
        let (mut session, t0, connection) = registered_session(&["a"]);
        session.handle_input(t0, SessionInput::Event(joined("r", "ada")));
        session.handle_input(t0, SessionInput::Event(joined("r", "bob")));
        session.handle_input(t0, SessionInput::Event(left("r", "ada")));
        assert_eq!(
            sent(&drain(&mut session), connection),
            [
                BridgeToControl::ParticipantJoined {
                    room: RoomId::new("r").unwrap(),
                    participant: ParticipantId::new("ada").unwrap()
                },
                BridgeToControl::ParticipantJoined {
                    room: RoomId::new("r").unwrap(),
                    participant: ParticipantId::new("bob").unwrap()
                },
                BridgeToControl::ParticipantLeft {
                    room: RoomId::new("r").unwrap(),
                    participant: ParticipantId::new("ada").unwrap(),
                    dropped: false,
                },
            ]
        );

        // Disconnected: changes are not queued, only the hosted set changes.
        session.handle_input(t0, SessionInput::Disconnected(connection));
        for n in 0..50 {
            session.handle_input(t0, SessionInput::Event(joined("s", &format!("p-{n}"))));
            session.handle_input(t0, SessionInput::Event(left("s", &format!("p-{n}"))));
        }
        session.handle_input(t0, SessionInput::Event(joined("s", "cy")));
        session.handle_input(t0, SessionInput::Event(left("r", "bob")));
        let outputs = drain(&mut session);
        assert!(
            outputs.iter().all(|o| !matches!(o, SessionOutput::Send { .. })),
            "{outputs:?}"
        );

        let at = advance(&mut session);
        let (second, _) = connect_request(&drain(&mut session));
        session.handle_input(at, SessionInput::Connected(second));
        let outputs = drain(&mut session);
        let messages: [BridgeToControl; 1] = sent(&outputs, second).try_into().unwrap();
        let [BridgeToControl::Register { participants, .. }] = messages else {
            panic!("{outputs:?}");
        };
        assert_eq!(participants, [hosted("s", "cy")]);

        // Changes while the registration is in flight follow `registered`, once per participant.
        session.handle_input(at, SessionInput::Event(joined("t", "dee")));
        session.handle_input(at, SessionInput::Event(left("s", "cy")));
        session.handle_input(at, SessionInput::Event(joined("s", "cy")));
        session.handle_input(at, SessionInput::Event(left("s", "cy")));
        assert!(sent(&drain(&mut session), second).is_empty());
        session.handle_input(at, SessionInput::Message(second, registered(1000)));
        assert_eq!(
            sent(&drain(&mut session), second),
            [
                BridgeToControl::ParticipantLeft {
                    room: RoomId::new("s").unwrap(),
                    participant: ParticipantId::new("cy").unwrap(),
                    dropped: true,
                },
                BridgeToControl::ParticipantJoined {
                    room: RoomId::new("t").unwrap(),
                    participant: ParticipantId::new("dee").unwrap()
                },
            ]
        );
        assert_eq!(
            session.hosted().cloned().collect::<Vec<_>>(),
            [hosted("t", "dee")]
        );
    }

    #[test]
    fn the_hosted_set_is_bounded() {
        let (mut session, t0, _) = registered_session(&["a"]);
        for n in 0..REGISTER_PARTICIPANTS_MAX + 10 {
            session.handle_input(t0, SessionInput::Event(joined("r", &format!("p-{n}"))));
        }
        drain(&mut session);
        assert_eq!(session.hosted().len(), REGISTER_PARTICIPANTS_MAX);
        // Room again once someone leaves.
        session.handle_input(t0, SessionInput::Event(left("r", "p-0")));
        session.handle_input(t0, SessionInput::Event(joined("r", "late")));
        assert!(session.hosted().any(|p| *p == hosted("r", "late")));
    }

    #[test]
    fn controls_instructions_become_actions_on_the_bridge() {
        let (mut session, t0, connection) = registered_session(&["a"]);
        let room = RoomId::new("r").unwrap();
        let bob = ParticipantId::new("bob").unwrap();
        for (message, action) in [
            (
                ControlToBridge::Move {
                    room: room.clone(),
                    participant: bob.clone(),
                },
                ModerationAction::Move {
                    room: room.clone(),
                    participant: bob.clone(),
                },
            ),
            (
                ControlToBridge::Kick {
                    room: room.clone(),
                    participant: bob.clone(),
                },
                ModerationAction::Kick {
                    room: room.clone(),
                    participant: bob.clone(),
                },
            ),
            (
                ControlToBridge::MuteAll {
                    room: room.clone(),
                    by: bob.clone(),
                },
                ModerationAction::RequestMuteAll {
                    room: room.clone(),
                    by: bob.clone(),
                },
            ),
            (
                ControlToBridge::EndRoom { room: room.clone() },
                ModerationAction::EndRoom { room: room.clone() },
            ),
        ] {
            session.handle_input(t0, SessionInput::Message(connection, message));
            assert_eq!(drain(&mut session), [SessionOutput::Moderate(action)]);
        }
        // From a connection the session has left behind: nothing.
        session.handle_input(
            t0,
            SessionInput::Message(ConnectionId(999), ControlToBridge::EndRoom { room }),
        );
        assert!(drain(&mut session).is_empty());
    }

    #[test]
    fn rooms_listed_after_registration_are_reported_complete_once() {
        let (mut session, t0, connection) = registered_session(&["a"]);
        let shared = RoomId::new("shared").unwrap();
        let peers = vec![bridgemesh_proto::bridge_session::CascadePeer {
            bridge: BridgeId::new("b2").unwrap(),
            addr: "127.0.0.1:7710".parse().unwrap(),
        }];
        for message in [
            ControlToBridge::RoomBridges {
                room: shared.clone(),
                peers: peers.clone(),
            },
            ControlToBridge::RoomBridges {
                room: RoomId::new("alone").unwrap(),
                peers: Vec::new(),
            },
            ControlToBridge::RoomBridgesComplete,
        ] {
            session.handle_input(t0, SessionInput::Message(connection, message));
        }
        let outputs = drain(&mut session);
        assert_eq!(
            outputs.last(),
            Some(&SessionOutput::RoomBridgesComplete {
                rooms: BTreeSet::from([shared.clone()])
            }),
            "{outputs:?}"
        );
        assert!(outputs.contains(&SessionOutput::RoomBridges { room: shared, peers }));
        // A stray marker outside a registration says nothing.
        session.handle_input(
            t0,
            SessionInput::Message(connection, ControlToBridge::RoomBridgesComplete),
        );
        assert!(drain(&mut session).is_empty());
    }

    #[test]
    fn status_changes_are_reported() {
        let (mut session, t0, connection) = registered_session(&["a"]);
        session.handle_input(
            t0,
            SessionInput::Message(
                connection,
                ControlToBridge::Status {
                    status: BridgeStatus::Draining,
                },
            ),
        );
        let draining = SessionStatus::Registered {
            status: BridgeStatus::Draining,
        };
        assert_eq!(drain(&mut session), [SessionOutput::Status(draining.clone())]);
        assert_eq!(session.status(), &draining);
        // The same status again is no change.
        session.handle_input(
            t0,
            SessionInput::Message(
                connection,
                ControlToBridge::Status {
                    status: BridgeStatus::Draining,
                },
            ),
        );
        assert!(drain(&mut session).is_empty());
    }

    #[test]
    fn refused_stops_the_session_for_good() {
        let t0 = Instant::now();
        let mut session = ControlSession::new(config(&["a", "b"]), t0).unwrap();
        let (connection, _) = connect_request(&drain(&mut session));
        session.handle_input(t0, SessionInput::Connected(connection));
        session.handle_input(
            t0,
            SessionInput::Message(
                connection,
                ControlToBridge::Refused {
                    code: "conflict".into(),
                    message: "bridge eu-1 is registered by another live instance".into(),
                },
            ),
        );
        let refused = SessionStatus::Refused {
            code: "conflict".into(),
            message: "bridge eu-1 is registered by another live instance".into(),
        };
        let outputs = drain(&mut session);
        assert!(disconnected(&outputs, connection));
        assert!(outputs.contains(&SessionOutput::Status(refused.clone())));
        assert!(refused.is_final());
        assert_eq!(session.poll_timeout(), None);
        for input in [
            SessionInput::Disconnected(connection),
            SessionInput::Event(joined("r", "ada")),
            SessionInput::Drain { grace_ms: 0 },
            SessionInput::Close,
        ] {
            session.handle_input(t0, input);
        }
        session.handle_timeout(t0 + Duration::from_secs(3600));
        assert!(drain(&mut session).is_empty());
        assert_eq!(session.status(), &refused);
    }

    #[test]
    fn a_registration_that_does_not_come_is_given_up_and_retried() {
        let t0 = Instant::now();
        let mut session = ControlSession::new(config(&["a", "b"]), t0).unwrap();
        let (connection, _) = connect_request(&drain(&mut session));
        session.handle_input(t0, SessionInput::Connected(connection));
        drain(&mut session);
        let at = advance(&mut session);
        assert_eq!(at, t0 + Duration::from_millis(REGISTER_TIMEOUT_MS_DEFAULT));
        assert!(disconnected(&drain(&mut session), connection));
        advance(&mut session);
        let (next, to) = connect_request(&drain(&mut session));
        assert_eq!(to, url("b"));
        // The old connection's late reports change nothing.
        session.handle_input(at, SessionInput::Disconnected(connection));
        session.handle_input(at, SessionInput::Message(connection, registered(1000)));
        assert!(drain(&mut session).is_empty());
        session.handle_input(at, SessionInput::Connected(next));
        assert!(matches!(
            sent(&drain(&mut session), next).as_slice(),
            [BridgeToControl::Register { .. }]
        ));
    }

    #[test]
    fn a_control_node_gone_silent_is_left_but_pongs_keep_it() {
        let (mut session, t0, connection) = registered_session(&["a", "b"]);
        // Pongs every heartbeat: ten seconds without a reconnect.
        let mut now = t0;
        while now < t0 + Duration::from_secs(10) {
            now = advance(&mut session);
            assert!(!disconnected(&drain(&mut session), connection));
            session.handle_input(now + 20 * MS, SessionInput::Pong(connection));
        }
        // Then nothing: after three intervals the session gives up on it.
        let last_heard = now + 20 * MS;
        loop {
            now = advance(&mut session);
            if disconnected(&drain(&mut session), connection) {
                break;
            }
            assert!(now < last_heard + Duration::from_secs(4), "never gave up");
        }
        assert_eq!(now, last_heard + Duration::from_secs(3));
        assert_eq!(session.status(), &SessionStatus::Connecting);
        advance(&mut session);
        assert_eq!(
            connect_request(&drain(&mut session)).1,
            url("a"),
            "the leader first"
        );
    }

    #[test]
    fn drain_is_sent_now_and_after_every_reconnect() {
        let (mut session, t0, connection) = registered_session(&["a"]);
        session.handle_input(t0, SessionInput::Drain { grace_ms: 0 });
        assert_eq!(
            sent(&drain(&mut session), connection),
            [BridgeToControl::Drain { grace_ms: 0 }]
        );
        session.handle_input(t0, SessionInput::Disconnected(connection));
        let at = advance(&mut session);
        let (second, _) = connect_request(&drain(&mut session));
        session.handle_input(at, SessionInput::Connected(second));
        session.handle_input(at, SessionInput::Message(second, registered(1000)));
        let messages = sent(&drain(&mut session), second);
        assert!(
            matches!(messages[0], BridgeToControl::Register { .. }),
            "{messages:?}"
        );
        assert_eq!(messages[1..], [BridgeToControl::Drain { grace_ms: 0 }]);
    }

    #[test]
    fn close_ends_the_connection_and_the_session() {
        let (mut session, t0, connection) = registered_session(&["a"]);
        session.handle_input(t0, SessionInput::Close);
        assert_eq!(
            drain(&mut session),
            [
                SessionOutput::Disconnect { connection },
                SessionOutput::Status(SessionStatus::Closed)
            ]
        );
        assert_eq!(session.poll_timeout(), None);
        session.handle_input(t0, SessionInput::Event(joined("r", "ada")));
        assert!(drain(&mut session).is_empty());
    }

    #[test]
    fn control_urls_become_session_urls() {
        for (given, expected) in [
            (
                "https://10.0.0.1:7700",
                "wss://10.0.0.1:7700/api/v1/bridges/session",
            ),
            (
                "https://10.0.0.1:7700/",
                "wss://10.0.0.1:7700/api/v1/bridges/session",
            ),
            (
                "wss://c1:7700/api/v1/bridges/session",
                "wss://c1:7700/api/v1/bridges/session",
            ),
            (
                "c1.example.org:7700",
                "wss://c1.example.org:7700/api/v1/bridges/session",
            ),
            (
                "HTTPS://[2001:db8::1]:7700",
                "wss://[2001:db8::1]:7700/api/v1/bridges/session",
            ),
            (
                "https://proxy/control/",
                "wss://proxy/control/api/v1/bridges/session",
            ),
        ] {
            assert_eq!(SessionUrl::parse(given).unwrap().as_str(), expected, "{given}");
        }
        for plain in ["http://c1:7701", "ws://c1:7701"] {
            assert_eq!(
                SessionUrl::parse(plain),
                Err(SessionUrlError::PlainText),
                "{plain}"
            );
        }
        assert!(matches!(
            SessionUrl::parse("ftp://c1"),
            Err(SessionUrlError::Scheme(_))
        ));
        assert_eq!(SessionUrl::parse("https://"), Err(SessionUrlError::NoHost));
        assert_eq!(SessionUrl::parse("https:///x"), Err(SessionUrlError::NoHost));
        for bad in [
            "https://user:pw@c1",
            "https://c1/?x=1",
            "https://c1/#x",
            "https://c 1",
        ] {
            assert_eq!(SessionUrl::parse(bad), Err(SessionUrlError::Malformed), "{bad}");
        }
        let long = format!("https://{}", "c".repeat(SESSION_URL_MAX_BYTES));
        assert_eq!(SessionUrl::parse(&long), Err(SessionUrlError::TooLong));
    }

    #[test]
    fn configurations_are_validated() {
        assert!(config(&["a"]).validate().is_ok());
        assert_eq!(config(&[]).validate(), Err(SessionConfigError::NoControlUrls));
        let mut bad = config(&["a"]);
        bad.backoff_min_ms = 3_000;
        assert_eq!(bad.validate(), Err(SessionConfigError::Backoff));
        let mut bad = config(&["a"]);
        bad.instance.clear();
        assert_eq!(bad.validate(), Err(SessionConfigError::Instance));
        assert!(ControlSession::new(config(&[]), Instant::now()).is_err());
    }
}
