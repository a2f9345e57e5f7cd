//! A control node's operations: join, the lobby, moderator actions, bridge events. Each turns a
//! request into a [`Command`], commits it through the cluster (from whichever node received it),
//! and turns the outcome into an answer. The HTTP layer (`http.rs`) is a thin driver over this.
//!
//! Layout: this file holds the types, construction and the bridge registry; `node/join.rs` joining
//! and the lobby; `node/moderation.rs` moderator actions, settings and bridge events;
//! `node/hosts.rs` host logins, accounts and invite links.

mod hosts;
mod join;
mod moderation;
mod sso;

pub use hosts::LoginError;

use crate::auth::{Admission, AuthError, GuestPolicy, TokenVerifier};
use crate::bridge_hub::{BridgeHub, HubConfig, LossReport, LossVerdict};
use crate::locator::Locator;
use crate::password;
use crate::placement::{ClientPlace, choose_bridge};
use crate::raft::cluster::{ClusterNode, ProposeError};
use crate::rate_limit::{JoinLimits, RateLimiter};
use crate::session::{SessionClaims, SessionKeys};
use crate::state::{
    ApplyError, Command, ControlState, JoinRequestRecord, Outcome, ParticipantRecord, ParticipantStatus,
    PasswordChange, Role, lobby_of,
};
use bridgemesh_proto::api::{
    DISPLAY_NAME_MAX_CHARS, ErrorCode, IceServer, JoinResponse, LobbyState, LobbyWait, PASSWORD_MAX_CHARS,
    ParticipantView, RoomSettingsUpdate, RoomView,
};
use bridgemesh_proto::bridge_session::{BridgeRegistration, turn_rest_secret};
use bridgemesh_proto::ticket::{TICKET_TTL_S, TicketClaims};
use bridgemesh_proto::{BridgeId, ParticipantId, RoomId};
use bridgemesh_turn::{TurnDirectory, TurnEndpoint};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::Rng;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// An API failure with the code clients branch on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<ProposeError> for ApiError {
    fn from(err: ProposeError) -> Self {
        match err {
            ProposeError::NoLeader(_) | ProposeError::Stopped => {
                Self::new(ErrorCode::NoLeader, err.to_string())
            }
            ProposeError::Membership(_) => Self::new(ErrorCode::Conflict, err.to_string()),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        Self::new(err.code(), err.to_string())
    }
}

impl From<ApplyError> for ApiError {
    fn from(err: ApplyError) -> Self {
        let code = match &err {
            ApplyError::RoomFull(_) => ErrorCode::RoomFull,
            ApplyError::WrongPassword => ErrorCode::WrongPassword,
            ApplyError::WaitingForModerator => ErrorCode::GuestNotAllowed,
            ApplyError::Kicked => ErrorCode::Kicked,
            ApplyError::UnknownParticipant(..) | ApplyError::UnknownRoom(_) => ErrorCode::NotFound,
            ApplyError::NotInLobby(_) | ApplyError::DuplicateParticipant(_) => ErrorCode::Conflict,
            ApplyError::NotModerator(_) => ErrorCode::Forbidden,
            ApplyError::UnknownBridge(_)
            | ApplyError::BridgeDown(_)
            | ApplyError::BridgeFull(_)
            | ApplyError::BridgeRoomFull(..) => ErrorCode::NoCapacity,
            ApplyError::NotOnBridge(..) | ApplyError::BridgeInUse(_) | ApplyError::BridgeIsDown(_) => {
                ErrorCode::Conflict
            }
            ApplyError::Invalid(_) => ErrorCode::InvalidField,
            ApplyError::UserExists(_) | ApplyError::TooManyInvites => ErrorCode::Conflict,
            ApplyError::UnknownUser(_) => ErrorCode::NotFound,
            ApplyError::LoginEnded => ErrorCode::LoginRequired,
            ApplyError::InviteExpired => ErrorCode::InviteExpired,
            ApplyError::InviteUsedUp => ErrorCode::InviteUsedUp,
            ApplyError::InviteWrongRoom => ErrorCode::InviteInvalid,
        };
        Self::new(code, err.to_string())
    }
}

/// Who is joining, as established by the token check (or its absence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub role: Role,
    pub user_id: Option<String>,
    /// The invite record the caller came with (its token checked).
    pub invite: Option<String>,
}

impl Caller {
    pub fn guest() -> Self {
        Self {
            role: Role::Guest,
            user_id: None,
            invite: None,
        }
    }
}

/// Room rules that are the operator's choice (who may enter at all is the token configuration's,
/// see `auth.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPolicy {
    /// With no tokens configured, whoever opens a room moderates it (as in Jitsi without auth);
    /// otherwise only a token makes a moderator.
    pub first_participant_moderates: bool,
    /// An empty room keeps its settings this long before it ends.
    pub room_grace_ms: u64,
    /// A placement its bridge never confirmed is forgotten this long after it was made.
    pub unconfirmed_join_ttl_ms: u64,
}

impl Default for RoomPolicy {
    fn default() -> Self {
        Self {
            first_participant_moderates: true,
            room_grace_ms: 60_000,
            unconfirmed_join_ttl_ms: crate::state::UNCONFIRMED_JOIN_TTL_MS,
        }
    }
}

/// argon2 hashes or checks running at once on one node.
const PASSWORD_CHECKS_AT_ONCE: usize = 2;

/// How long a reconnect waits for a state that moved its participant to reach this node.
const RECONNECT_MOVE_WAIT: Duration = Duration::from_secs(2);

/// The answer to a join.
#[derive(Debug, Clone, PartialEq)]
pub enum JoinAnswer {
    Joined(JoinResponse),
    Lobby(LobbyWait),
}

pub struct ControlNode {
    cluster: Arc<ClusterNode>,
    policy: RoomPolicy,
    tokens: TokenVerifier,
    /// The key every bridge's own key derives from ([`bridge_key`]).
    bridge_master_key: Vec<u8>,
    sessions: SessionKeys,
    /// Host sessions and invite tokens (`hosts/tokens.rs`).
    host_keys: crate::hosts::HostKeys,
    /// Failed host logins per address and account (`hosts/limiter.rs`).
    login_limiter: Mutex<crate::hosts::LoginLimiter>,
    join_limiter: Mutex<RateLimiter>,
    room_join_limiter: Mutex<RateLimiter<RoomId>>,
    join_ipv6_prefix_len: u8,
    /// argon2 costs tens of milliseconds and ~19 MiB per check: at most this many run at once,
    /// the rest are told to retry, so password guessing cannot starve the node's blocking pool
    /// (where Raft's storage also runs).
    password_checks: tokio::sync::Semaphore,
    /// Standalone TURN servers handed out in join responses after the bridge's own, with their
    /// shared secret; none until set.
    turn: Mutex<Option<TurnDirectory>>,
    /// Single sign-on for hosts (`oidc.rs`); none unless `[auth.oidc]` is configured.
    oidc: Option<crate::oidc::Oidc>,
    hub: Arc<BridgeHub>,
    locator: Locator,
}

/// Placement's inputs that are the operator's: geolocation, the bridges' heartbeat and failure
/// detection, the placement policy.
#[derive(Debug, Clone, Default)]
pub struct RegionsConfig {
    pub locator: Locator,
    pub hub: HubConfig,
}

/// Bridge `bridge`'s own key, derived from the cluster secret and the bridge's id: its tickets
/// are signed with it, and its embedded TURN server's REST secret derives from it. Each bridge
/// gets its own key, never the secret: a bridge can check its own tickets but cannot sign one
/// another bridge accepts, mint TURN credentials for another bridge's TURN server, or sign
/// session tokens. (`bridgemesh bridge-key --bridge-id` prints it.)
pub fn bridge_key(cluster_secret: &[u8], bridge: &BridgeId) -> Vec<u8> {
    keyed_by_bridge(&bridge_master_key(cluster_secret), bridge)
}

/// The step of [`bridge_key`] that needs the cluster secret; the node keeps only this.
fn bridge_master_key(cluster_secret: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(cluster_secret).expect("HMAC takes any key length");
    mac.update(b"bridgemesh bridge key v2");
    mac.finalize().into_bytes().to_vec()
}

fn keyed_by_bridge(master: &[u8], bridge: &BridgeId) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(master).expect("HMAC takes any key length");
    mac.update(bridge.as_str().as_bytes());
    mac.finalize().into_bytes().to_vec()
}

pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn new_participant_id() -> ParticipantId {
    let suffix: u64 = rand::rng().random();
    ParticipantId::new(format!("p-{suffix:016x}")).expect("generated ids are valid")
}

fn validate_display_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim().to_owned();
    let invalid = |message: String| Err(ApiError::new(ErrorCode::InvalidField, message));
    if name.is_empty() {
        return invalid("display_name must not be empty".into());
    }
    if name.chars().count() > DISPLAY_NAME_MAX_CHARS {
        return invalid(format!(
            "display_name is longer than {DISPLAY_NAME_MAX_CHARS} characters"
        ));
    }
    if name.chars().any(char::is_control) {
        return invalid("display_name contains control characters".into());
    }
    Ok(name)
}

impl ControlNode {
    pub fn new(
        cluster: Arc<ClusterNode>,
        cluster_secret: &[u8],
        tokens: TokenVerifier,
        policy: RoomPolicy,
        join_limits: JoinLimits,
        regions: RegionsConfig,
    ) -> Self {
        Self {
            hub: BridgeHub::new(cluster.clone(), regions.hub),
            locator: regions.locator,
            cluster,
            policy,
            tokens,
            bridge_master_key: bridge_master_key(cluster_secret),
            sessions: SessionKeys::derive(cluster_secret),
            host_keys: crate::hosts::HostKeys::derive(cluster_secret),
            login_limiter: Mutex::new(crate::hosts::LoginLimiter::new(Default::default())),
            join_limiter: Mutex::new(RateLimiter::new(join_limits.per_address)),
            room_join_limiter: Mutex::new(RateLimiter::new(join_limits.per_room)),
            join_ipv6_prefix_len: join_limits.ipv6_prefix_len,
            password_checks: tokio::sync::Semaphore::new(PASSWORD_CHECKS_AT_ONCE),
            turn: Mutex::new(None),
            oidc: None,
        }
    }

    /// Whether `presented` is the [`TURN_PEERS_PATH`] credential of the configured standalone TURN
    /// servers. (A bridge's embedded TURN server asks on the cluster listener instead, under the
    /// bridge's certificate: its secret is its own bridge's.)
    ///
    /// [`TURN_PEERS_PATH`]: bridgemesh_proto::bridge_session::TURN_PEERS_PATH
    pub fn is_turn_server(&self, presented: &str) -> bool {
        use bridgemesh_proto::bridge_session::turn_peers_credential;
        use subtle::ConstantTimeEq as _;
        let standalone = self
            .turn
            .lock()
            .expect("turn lock")
            .as_ref()
            .map(|d| turn_peers_credential(&d.secret));
        standalone.is_some_and(|expected| bool::from(presented.as_bytes().ct_eq(expected.as_bytes())))
    }

    /// The media addresses of every bridge that is not down, from this node's state (a
    /// follower's may lag by a moment; TURN servers ask again soon).
    pub fn bridge_media_addresses(&self) -> Vec<std::net::SocketAddr> {
        use bridgemesh_proto::bridge_session::{BridgeStatus, TURN_PEERS_MAX};
        let mut addresses: Vec<std::net::SocketAddr> = self.cluster.read(|state| {
            state
                .bridges
                .values()
                .filter(|record| record.status != BridgeStatus::Down)
                .flat_map(|record| record.media_addresses.iter().filter_map(|a| a.parse().ok()))
                .collect()
        });
        addresses.sort_unstable();
        addresses.dedup();
        addresses.truncate(TURN_PEERS_MAX);
        addresses
    }

    /// The sessions ended lately, newest first, from this node's state, for standalone TURN
    /// servers.
    pub fn ended_sessions(&self) -> Vec<bridgemesh_proto::bridge_session::EndedSession> {
        use bridgemesh_proto::bridge_session::{EndedSession, TURN_ENDED_SESSIONS_MAX};
        self.cluster.read(|state| {
            state
                .ended_sessions
                .recent(TURN_ENDED_SESSIONS_MAX)
                .into_iter()
                .map(|(participant, at_ms)| EndedSession {
                    participant: participant.clone(),
                    ended_at_unix_s: at_ms / 1000,
                })
                .collect()
        })
    }

    /// The TURN servers (and their REST secret) every join response names from now on.
    pub fn set_turn(&self, directory: Option<TurnDirectory>) {
        *self.turn.lock().expect("turn lock") = directory;
    }

    /// Fresh REST credentials for `participant` on the TURN servers: its bridge's embedded one
    /// first, then the configured standalone ones.
    fn ice_servers(
        &self,
        bridge: &BridgeId,
        bridge_turn_urls: &[String],
        participant: &ParticipantId,
        now_unix_s: u64,
    ) -> Vec<IceServer> {
        let own = TurnDirectory {
            secret: turn_rest_secret(&keyed_by_bridge(&self.bridge_master_key, bridge)),
            credential_ttl_s: bridgemesh_turn::TurnConfig::default().credential_ttl_s,
            endpoints: vec![TurnEndpoint {
                bridge: Some(bridge.to_string()),
                urls: bridge_turn_urls.to_vec(),
            }],
        };
        let turn = self.turn.lock().expect("turn lock");
        own.ice_servers(bridge.as_str(), participant.as_str(), now_unix_s)
            .into_iter()
            .chain(
                turn.iter()
                    .flat_map(|d| d.ice_servers(bridge.as_str(), participant.as_str(), now_unix_s)),
            )
            .take(bridgemesh_turn::directory::ICE_SERVERS_PER_JOIN_MAX)
            .map(|server| IceServer {
                urls: server.urls,
                username: Some(server.username),
                credential: Some(server.credential),
            })
            .collect()
    }

    pub fn cluster(&self) -> &Arc<ClusterNode> {
        &self.cluster
    }

    /// Where a client is, from its connection and headers.
    pub fn locate(&self, peer: IpAddr, headers: &axum::http::HeaderMap) -> ClientPlace {
        self.locator.place(peer, headers)
    }

    /// The bridges' sessions and the failure detector.
    pub fn hub(&self) -> &Arc<BridgeHub> {
        &self.hub
    }

    /// The proxies whose forwarding headers name the client (see `client_ip.rs`).
    pub fn trusted_proxies(&self) -> &crate::client_ip::TrustedProxies {
        &self.locator.trusted_proxies
    }

    /// Joins are unauthenticated, so each source address gets a budget (see `rate_limit.rs`).
    pub fn allow_join_from(&self, source: IpAddr) -> bool {
        self.join_limiter
            .lock()
            .expect("limiter lock")
            .allow(&source, Instant::now())
    }

    /// IPv6 prefix length one join budget covers.
    pub fn join_ipv6_prefix_len(&self) -> u8 {
        self.join_ipv6_prefix_len
    }

    /// Each room, whoever joins it, gets a budget too (see `ROOM_JOIN_LIMIT`).
    pub fn allow_join_to(&self, room: &RoomId) -> bool {
        self.room_join_limiter
            .lock()
            .expect("limiter lock")
            .allow(room, Instant::now())
    }

    /// Runs `view` on this node's copy of the state.
    pub fn read<R>(&self, view: impl FnOnce(&ControlState) -> R) -> R {
        self.cluster.read(view)
    }

    /// A copy of the current state, for tests and tools that keep it.
    pub fn snapshot(&self) -> ControlState {
        self.read(ControlState::clone)
    }

    /// Commits `command` when only success matters.
    pub async fn commit(&self, command: Command) -> Result<(), ApiError> {
        self.propose(command).await.map(|_| ())
    }

    /// Commits `command` and returns what applying it gave.
    pub async fn propose(&self, command: Command) -> Result<Outcome, ApiError> {
        Ok(self.cluster.propose(command).await??)
    }

    /// An operator registers a bridge by hand (it has no session and is not failure-detected).
    pub async fn register_bridge(&self, registration: BridgeRegistration) -> Result<(), ApiError> {
        self.commit(Command::RegisterBridge {
            registration,
            instance: None,
            at_ms: now_unix_ms(),
        })
        .await
    }

    /// Starts draining a bridge: nobody new; its participants move after `grace_ms`.
    pub async fn drain_bridge(&self, bridge: BridgeId, grace_ms: u64) -> Result<(), ApiError> {
        self.commit(Command::Drain {
            bridge,
            grace_ms,
            by_operator: true,
            at_ms: now_unix_ms(),
        })
        .await
    }

    pub async fn undrain_bridge(&self, bridge: BridgeId) -> Result<(), ApiError> {
        self.commit(Command::Undrain {
            bridge,
            at_ms: now_unix_ms(),
        })
        .await
    }

    pub async fn forget_bridge(&self, bridge: BridgeId) -> Result<(), ApiError> {
        self.commit(Command::ForgetBridge { bridge }).await
    }
}
