//! A control node's operations: join, the lobby, moderator actions, bridge events. Each turns a
//! request into a [`Command`], commits it through the cluster (from whichever node received it),
//! and turns the outcome into an answer. The HTTP layer (`http.rs`) is a thin driver over this.

use crate::auth::{Admission, AuthError, GuestPolicy, TokenVerifier};
use crate::bridge_hub::{BridgeHub, HubConfig, LossReport, LossVerdict};
use crate::locator::Locator;
use crate::password;
use crate::placement::{ClientPlace, choose_bridge};
use crate::raft::cluster::{ClusterNode, ProposeError};
use crate::rate_limit::{RateLimit, RateLimiter};
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
        };
        Self::new(code, err.to_string())
    }
}

/// Who is joining, as established by the token check (or its absence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub role: Role,
    pub user_id: Option<String>,
}

impl Caller {
    pub fn guest() -> Self {
        Self {
            role: Role::Guest,
            user_id: None,
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
}

impl Default for RoomPolicy {
    fn default() -> Self {
        Self {
            first_participant_moderates: true,
            room_grace_ms: 60_000,
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
    join_limiter: Mutex<RateLimiter>,
    /// argon2 costs tens of milliseconds and ~19 MiB per check: at most this many run at once,
    /// the rest are told to retry, so password guessing cannot starve the node's blocking pool
    /// (where Raft's storage also runs).
    password_checks: tokio::sync::Semaphore,
    /// Standalone TURN servers handed out in join responses after the bridge's own, with their
    /// shared secret; none until set.
    turn: Mutex<Option<TurnDirectory>>,
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
        join_limit: RateLimit,
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
            join_limiter: Mutex::new(RateLimiter::new(join_limit)),
            password_checks: tokio::sync::Semaphore::new(PASSWORD_CHECKS_AT_ONCE),
            turn: Mutex::new(None),
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
            .allow(source, Instant::now())
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

    /// Who a join comes from: the token's identity, or a guest where the policy lets guests in.
    pub fn caller(&self, room: &RoomId, authorization: Option<&str>) -> Result<Caller, ApiError> {
        let token = crate::auth::bearer(authorization)?;
        // A quick refusal from this node's view; the state machine re-checks at commit.
        let opened = self.read(|state| state.rooms.get(room).is_some_and(|r| r.opened_by_moderator));
        let admission = self.tokens.admit(token, room, opened, now_unix_ms() / 1000)?;
        Ok(match admission {
            Admission::Guest => Caller::guest(),
            Admission::Token(identity) => Caller {
                role: if identity.moderator {
                    Role::Moderator
                } else {
                    Role::Member
                },
                // A kick bans the token's user from the meeting. Tokens without a user id (`sub` is
                // the tenant, shared by everyone) are banned by the token itself.
                user_id: Some(identity.user_id.unwrap_or_else(|| {
                    let digest = Sha256::digest(token.unwrap_or_default().as_bytes());
                    format!("token-{}", hex::encode(&digest[..16]))
                })),
            },
        })
    }

    /// Places a participant (or seats them in the lobby) and issues what they need next.
    pub async fn join(
        &self,
        room: RoomId,
        display_name: &str,
        password: Option<String>,
        caller: Caller,
        client: ClientPlace,
    ) -> Result<JoinAnswer, ApiError> {
        let display_name = validate_display_name(display_name)?;
        let tokens_enabled = self.tokens.tokens_enabled();
        let guest_needs_moderator =
            tokens_enabled && self.tokens.guest_policy() == GuestPolicy::AfterModerator;
        let moderator_if_first =
            self.policy.first_participant_moderates && !tokens_enabled && caller.role == Role::Guest;
        let password_generation = self.check_password(&room, password, caller.role).await?;
        let participant = new_participant_id();
        // A placement can go stale between reading the state and committing (another join took
        // the last seat); the state machine refuses it and we place again.
        for _ in 0..3 {
            let bridge = self
                .read(|state| choose_bridge(state, &room, &client, None))
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::NoCapacity,
                        "no bridge has room for another participant",
                    )
                })?;
            let command = Command::Join(JoinRequestRecord {
                room: room.clone(),
                participant: participant.clone(),
                display_name: display_name.clone(),
                user_id: caller.user_id.clone(),
                role: caller.role,
                moderator_if_first,
                guest_needs_moderator,
                password_generation,
                bridge,
                at_ms: now_unix_ms(),
                client: client.clone(),
            });
            match self.cluster.propose(command).await? {
                Ok(Outcome::Placed { bridge, role }) => {
                    return self
                        .joined(&room, &participant, &display_name, &bridge, role)
                        .map(JoinAnswer::Joined);
                }
                Ok(Outcome::InLobby { .. }) => {
                    return Ok(JoinAnswer::Lobby(self.lobby_wait(&room, &participant)));
                }
                Err(err) if err.is_placement_race() => continue,
                // The first try committed but its answer was lost (leader change); the id is ours.
                Err(ApplyError::DuplicateParticipant(_)) => {
                    return self.answer_for_existing(&room, &participant);
                }
                Err(err) => return Err(err.into()),
                Ok(other) => {
                    return Err(ApiError::new(
                        ErrorCode::Internal,
                        format!("unexpected outcome {other:?}"),
                    ));
                }
            }
        }
        Err(ApiError::new(
            ErrorCode::NoCapacity,
            "no bridge has room for another participant",
        ))
    }

    /// The password generation the caller's password matched, or why they cannot enter.
    async fn check_password(
        &self,
        room: &RoomId,
        password: Option<String>,
        role: Role,
    ) -> Result<Option<u64>, ApiError> {
        let stored = self.read(|state| {
            state.rooms.get(room).and_then(|r| {
                r.settings
                    .password_hash
                    .clone()
                    .map(|h| (h, r.settings.password_generation))
            })
        });
        let Some((stored_hash, generation)) = stored else {
            return Ok(None);
        };
        if role == Role::Moderator {
            return Ok(None);
        }
        let Some(password) = password else {
            return Err(ApiError::new(
                ErrorCode::PasswordRequired,
                "this room has a password",
            ));
        };
        if password.chars().count() > PASSWORD_MAX_CHARS {
            return Err(ApiError::new(ErrorCode::WrongPassword, "wrong password"));
        }
        let _permit = self.password_permit()?;
        let matches = tokio::task::spawn_blocking(move || password::verify(&password, &stored_hash))
            .await
            .map_err(|err| ApiError::new(ErrorCode::Internal, err.to_string()))?;
        if matches {
            Ok(Some(generation))
        } else {
            Err(ApiError::new(ErrorCode::WrongPassword, "wrong password"))
        }
    }

    fn password_permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
        self.password_checks.try_acquire().map_err(|_| {
            ApiError::new(
                ErrorCode::RateLimited,
                "too many password checks at once; retry in a moment",
            )
        })
    }

    fn answer_for_existing(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
    ) -> Result<JoinAnswer, ApiError> {
        let record = self.participant(room, participant)?;
        match (record.status, &record.bridge) {
            (ParticipantStatus::Lobby, _) => Ok(JoinAnswer::Lobby(self.lobby_wait(room, participant))),
            (status, Some(bridge)) if status.on_bridge() => self
                .joined(room, participant, &record.display_name, bridge, record.role)
                .map(JoinAnswer::Joined),
            (ParticipantStatus::Kicked, _) => Err(ApiError::new(
                ErrorCode::Kicked,
                "you were removed from this meeting",
            )),
            (ParticipantStatus::Denied, _) => {
                Err(ApiError::new(ErrorCode::LobbyDenied, "a moderator declined"))
            }
            _ => Err(ApiError::new(
                ErrorCode::Conflict,
                "the participant is no longer in the room",
            )),
        }
    }

    fn participant(&self, room: &RoomId, participant: &ParticipantId) -> Result<ParticipantRecord, ApiError> {
        self.read(|state| {
            state
                .rooms
                .get(room)
                .and_then(|r| r.participants.get(participant))
                .cloned()
        })
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such participant in this room"))
    }

    fn lobby_wait(&self, room: &RoomId, participant: &ParticipantId) -> LobbyWait {
        LobbyWait {
            room: room.clone(),
            participant_id: participant.clone(),
            session_token: self.sessions.issue(room, participant, now_unix_ms() / 1000),
            status: LobbyState::Waiting,
        }
    }

    /// The ticket and session for a participant placed on `bridge`.
    fn joined(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
        display_name: &str,
        bridge: &BridgeId,
        role: Role,
    ) -> Result<JoinResponse, ApiError> {
        let record = self
            .read(|state| state.bridges.get(bridge).cloned())
            .ok_or_else(|| ApiError::new(ErrorCode::NoCapacity, format!("bridge {bridge} is gone")))?;
        let iat = now_unix_ms() / 1000;
        let claims = TicketClaims {
            aud: record.id.clone(),
            jti: format!("{:032x}", rand::rng().random::<u128>()),
            exp: iat + TICKET_TTL_S,
            iat,
            room: room.clone(),
            participant_id: participant.clone(),
            display_name: display_name.to_owned(),
            moderator: role == Role::Moderator,
        };
        let key = EncodingKey::from_secret(&keyed_by_bridge(&self.bridge_master_key, &record.id));
        let ticket = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
            .map_err(|err| ApiError::new(ErrorCode::Internal, format!("cannot sign ticket: {err}")))?;
        let ice_servers = self.ice_servers(&record.id, &record.turn_urls, participant, iat);
        Ok(JoinResponse {
            room: room.clone(),
            participant_id: participant.clone(),
            bridge_id: record.id,
            signaling_url: record.signaling_url,
            ticket,
            ticket_expires_in_s: TICKET_TTL_S,
            ice_servers,
            role,
            session_token: self.sessions.issue(room, participant, iat),
        })
    }

    /// The session's claims, or 401.
    pub fn session(&self, token: Option<&str>, room: &RoomId) -> Result<SessionClaims, ApiError> {
        token
            .and_then(|token| self.sessions.check(token, room))
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthorized,
                    "a valid session token for this room is needed",
                )
            })
    }

    /// A lobby waiter's poll: still waiting, admitted (with a ticket), or refused.
    pub fn lobby_status(&self, room: &RoomId, session: &SessionClaims) -> Result<JoinAnswer, ApiError> {
        let record = self.participant(room, &session.participant_id)?;
        match record.status {
            ParticipantStatus::Lobby => Ok(JoinAnswer::Lobby(LobbyWait {
                room: room.clone(),
                participant_id: session.participant_id.clone(),
                session_token: String::new(),
                status: LobbyState::Waiting,
            })),
            ParticipantStatus::Denied => Err(ApiError::new(ErrorCode::LobbyDenied, "a moderator declined")),
            ParticipantStatus::Kicked => Err(ApiError::new(
                ErrorCode::Kicked,
                "you were removed from this meeting",
            )),
            ParticipantStatus::Placed | ParticipantStatus::Connected => {
                let bridge = record.bridge.as_ref().expect("a placed participant has a bridge");
                self.joined(
                    room,
                    &session.participant_id,
                    &record.display_name,
                    bridge,
                    record.role,
                )
                .map(JoinAnswer::Joined)
            }
        }
    }

    /// A guest gives up waiting in the lobby (or a placement it will not use): its place is freed
    /// at once instead of at expiry.
    pub async fn withdraw(&self, room: &RoomId, session: &SessionClaims) -> Result<(), ApiError> {
        let record = self.participant(room, &session.participant_id)?;
        if record.status == ParticipantStatus::Connected {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "connected participants leave through their bridge",
            ));
        }
        self.participant_left(room.clone(), session.participant_id.clone())
            .await
    }

    /// Checks that the session's participant moderates the room right now.
    fn require_moderator(&self, room: &RoomId, session: &SessionClaims) -> Result<(), ApiError> {
        let record = self.participant(room, &session.participant_id)?;
        if record.role == Role::Moderator && record.status.on_bridge() {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                "only a moderator in the meeting can do this",
            ))
        }
    }

    pub fn room_view(&self, room: &RoomId, session: &SessionClaims) -> Result<RoomView, ApiError> {
        let you = self.participant(room, &session.participant_id)?;
        if !you.status.on_bridge() {
            // Waiting, refused or removed participants do not get to see who is in the meeting.
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "only participants in the meeting see it",
            ));
        }
        let moderator = you.role == Role::Moderator;
        self.read(|state| {
            let record = state
                .rooms
                .get(room)
                .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such room"))?;
            let view = |(id, p): (&ParticipantId, &ParticipantRecord)| ParticipantView {
                participant_id: id.clone(),
                display_name: p.display_name.clone(),
                role: p.role,
                bridge_id: p.bridge.clone(),
                since_ms: p.since_ms,
            };
            Ok(RoomView {
                room: room.clone(),
                you: session.participant_id.clone(),
                your_role: you.role,
                password_set: record.settings.password_hash.is_some(),
                lobby_enabled: record.settings.lobby_enabled,
                participants: record
                    .participants
                    .iter()
                    .filter(|(_, p)| p.status.on_bridge())
                    .map(view)
                    .collect(),
                lobby: if moderator {
                    lobby_of(record).map(view).collect()
                } else {
                    Vec::new()
                },
            })
        })
    }

    pub async fn admit(
        &self,
        room: &RoomId,
        session: &SessionClaims,
        target: &ParticipantId,
    ) -> Result<(), ApiError> {
        self.require_moderator(room, session)?;
        let client = self.participant(room, target)?.client;
        for _ in 0..3 {
            let bridge = self
                .read(|state| choose_bridge(state, room, &client, None))
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::NoCapacity,
                        "no bridge has room for another participant",
                    )
                })?;
            let command = Command::Admit {
                room: room.clone(),
                by: session.participant_id.clone(),
                participant: target.clone(),
                bridge,
                at_ms: now_unix_ms(),
            };
            match self.cluster.propose(command).await? {
                Ok(_) => return Ok(()),
                Err(err) if err.is_placement_race() => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(ApiError::new(
            ErrorCode::NoCapacity,
            "no bridge has room for another participant",
        ))
    }

    pub async fn deny(
        &self,
        room: &RoomId,
        session: &SessionClaims,
        target: &ParticipantId,
    ) -> Result<(), ApiError> {
        self.require_moderator(room, session)?;
        self.commit(Command::Deny {
            room: room.clone(),
            by: session.participant_id.clone(),
            participant: target.clone(),
            at_ms: now_unix_ms(),
        })
        .await
    }

    pub async fn kick(
        &self,
        room: &RoomId,
        session: &SessionClaims,
        target: &ParticipantId,
    ) -> Result<(), ApiError> {
        self.require_moderator(room, session)?;
        let outcome = self
            .propose(Command::Kick {
                room: room.clone(),
                by: session.participant_id.clone(),
                participant: target.clone(),
                at_ms: now_unix_ms(),
            })
            .await?;
        // The bridge hub tells the participant's bridge (`Outcome::Kicked`): a participant placed
        // but not yet connected holds a ticket too, which its bridge must refuse.
        let _ = outcome;
        Ok(())
    }

    /// Asks every participant but the moderator to mute; committed so that the room's bridges
    /// hear of it from whichever node took the request (the bridges relay it).
    pub async fn mute_all(&self, room: &RoomId, session: &SessionClaims) -> Result<(), ApiError> {
        self.require_moderator(room, session)?;
        self.commit(Command::MuteAll {
            room: room.clone(),
            by: session.participant_id.clone(),
        })
        .await
    }

    pub async fn end_meeting(&self, room: &RoomId, session: &SessionClaims) -> Result<(), ApiError> {
        self.require_moderator(room, session)?;
        // The bridge hub tells the room's bridges (`Outcome::RoomEnded`).
        self.commit(Command::EndRoom {
            room: room.clone(),
            by: session.participant_id.clone(),
        })
        .await
    }

    pub async fn update_settings(
        &self,
        room: &RoomId,
        session: &SessionClaims,
        update: RoomSettingsUpdate,
    ) -> Result<(), ApiError> {
        self.require_moderator(room, session)?;
        let password = match update.password {
            None => None,
            Some(None) => Some(PasswordChange::Remove),
            Some(Some(password)) => {
                if password.is_empty() || password.chars().count() > PASSWORD_MAX_CHARS {
                    return Err(ApiError::new(
                        ErrorCode::InvalidField,
                        format!("a password has 1 to {PASSWORD_MAX_CHARS} characters"),
                    ));
                }
                let _permit = self.password_permit()?;
                let hash = tokio::task::spawn_blocking(move || password::hash(&password))
                    .await
                    .map_err(|err| ApiError::new(ErrorCode::Internal, err.to_string()))?;
                Some(PasswordChange::SetHash(hash))
            }
        };
        self.commit(Command::UpdateSettings {
            room: room.clone(),
            by: session.participant_id.clone(),
            password,
            lobby_enabled: update.lobby_enabled,
        })
        .await
    }

    /// The participant gives up its place (bridges report leaves through their session).
    pub async fn participant_left(&self, room: RoomId, participant: ParticipantId) -> Result<(), ApiError> {
        self.commit(Command::Leave {
            room,
            participant,
            bridge: None,
        })
        .await
    }

    /// A participant asks where to go after losing its bridge (`lost_bridge`) or being told it
    /// moved. Its loss report counts toward declaring that bridge down; the answer is a fresh
    /// ticket for its bridge as the state has it once that is decided (or after a bounded wait).
    pub async fn reconnect(
        &self,
        room: &RoomId,
        session: &SessionClaims,
        lost_bridge: Option<BridgeId>,
    ) -> Result<JoinAnswer, ApiError> {
        let participant = &session.participant_id;
        let record = self.participant(room, participant)?;
        if let Some(lost) = lost_bridge
            && record.status.on_bridge()
            && record.bridge.as_ref() == Some(&lost)
        {
            let verdict = self
                .hub
                .report_loss(LossReport {
                    room: room.clone(),
                    participant: participant.clone(),
                    bridge: lost.clone(),
                })
                .await;
            if verdict == LossVerdict::Moved {
                // The leader saw the move; wait for it to be applied here too.
                let deadline = Instant::now() + RECONNECT_MOVE_WAIT;
                while Instant::now() < deadline
                    && self.participant(room, participant)?.bridge.as_ref() == Some(&lost)
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        self.answer_for_existing(room, participant)
    }

    /// Lets time pass in the state (expiries, rooms ending). Only the leader ticks, so a cluster
    /// commits one tick per period, not one per node.
    pub async fn tick(&self) {
        if self.cluster.health().role != crate::raft::cluster::RaftRole::Leader {
            return;
        }
        let command = Command::Tick {
            now_ms: now_unix_ms(),
            room_grace_ms: self.policy.room_grace_ms,
        };
        if let Err(err) = self.propose(command).await {
            tracing::debug!(%err, "tick not committed");
        }
    }
}
