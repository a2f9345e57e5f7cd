//! A single control node: the state machine behind a lock, ticket issuing, and the join operation.
//! The HTTP layer (`http.rs`) is a thin driver over [`ControlNode`].

use crate::placement::choose_bridge;
use crate::rate_limit::{RateLimit, RateLimiter};
use crate::state::{ApplyError, BridgeRecord, Command, ControlState, Outcome};
use bridgemesh_proto::api::{DISPLAY_NAME_MAX_CHARS, ErrorCode, IceServer, JoinRequest, JoinResponse};
use bridgemesh_proto::ticket::{TICKET_TTL_S, TicketClaims};
use bridgemesh_proto::{BridgeId, ParticipantId, RoomId};
use bridgemesh_turn::TurnDirectory;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::Rng;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;
use std::time::{SystemTime, UNIX_EPOCH};

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

pub struct ControlNode {
    state: Mutex<ControlState>,
    ticket_key: EncodingKey,
    join_limiter: Mutex<RateLimiter>,
    /// TURN servers handed out in join responses, with their shared secret; none until set.
    turn: Mutex<Option<TurnDirectory>>,
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn new_participant_id() -> ParticipantId {
    let suffix: u64 = rand::rng().random();
    ParticipantId::new(format!("p-{suffix:016x}")).expect("generated ids are valid")
}

impl ControlNode {
    pub fn new(cluster_secret: &[u8]) -> Self {
        Self::with_join_limit(cluster_secret, RateLimit::default())
    }

    pub fn with_join_limit(cluster_secret: &[u8], join_limit: RateLimit) -> Self {
        Self {
            state: Mutex::new(ControlState::default()),
            ticket_key: EncodingKey::from_secret(cluster_secret),
            join_limiter: Mutex::new(RateLimiter::new(join_limit)),
            turn: Mutex::new(None),
        }
    }

    /// The TURN servers (and their REST secret) every join response names from now on.
    pub fn set_turn(&self, directory: Option<TurnDirectory>) {
        *self.turn.lock().expect("turn lock") = directory;
    }

    /// Fresh REST credentials for `participant` on the TURN servers: its bridge's first.
    fn ice_servers(&self, bridge: &BridgeId, participant: &ParticipantId, now_unix_s: u64) -> Vec<IceServer> {
        let turn = self.turn.lock().expect("turn lock");
        let Some(directory) = turn.as_ref() else {
            return Vec::new();
        };
        directory
            .ice_servers(bridge.as_str(), participant.as_str(), now_unix_s)
            .into_iter()
            .map(|server| IceServer {
                urls: server.urls,
                username: Some(server.username),
                credential: Some(server.credential),
            })
            .collect()
    }

    /// Joins are unauthenticated, so each source address gets a budget (see `rate_limit.rs`).
    pub fn allow_join_from(&self, source: IpAddr) -> bool {
        self.join_limiter
            .lock()
            .expect("limiter lock")
            .allow(source, Instant::now())
    }

    /// Runs `view` on the current state under its lock; for reads that need no copy.
    pub fn read<R>(&self, view: impl FnOnce(&ControlState) -> R) -> R {
        view(&self.state.lock().expect("state lock"))
    }

    /// A copy of the current state, for tests and tools that keep it.
    pub fn snapshot(&self) -> ControlState {
        self.read(ControlState::clone)
    }

    pub fn apply(&self, command: Command) -> Result<Outcome, ApplyError> {
        self.state.lock().expect("state lock").apply(command)
    }

    pub fn register_bridge(&self, record: BridgeRecord) {
        let _ = self.apply(Command::RegisterBridge(record));
    }

    /// Places a participant, records it, and issues its ticket for the chosen bridge.
    pub fn join(&self, room: RoomId, request: JoinRequest) -> Result<JoinResponse, ApiError> {
        let display_name = request.display_name.trim().to_owned();
        if display_name.is_empty() {
            return Err(ApiError::new(
                ErrorCode::InvalidField,
                "display_name must not be empty",
            ));
        }
        if display_name.chars().count() > DISPLAY_NAME_MAX_CHARS {
            return Err(ApiError::new(
                ErrorCode::InvalidField,
                format!("display_name is longer than {DISPLAY_NAME_MAX_CHARS} characters"),
            ));
        }
        if display_name.chars().any(char::is_control) {
            return Err(ApiError::new(
                ErrorCode::InvalidField,
                "display_name contains control characters",
            ));
        }
        if request.password.is_some() {
            // Room passwords arrive with room policy; until then a password can only be a mistake.
            return Err(ApiError::new(
                ErrorCode::InvalidField,
                "this room has no password",
            ));
        }
        let participant_id = new_participant_id();
        let now_ms = now_unix_ms();
        let bridge = {
            let mut state = self.state.lock().expect("state lock");
            let bridge_id = choose_bridge(&state, &room).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::NoCapacity,
                    "no bridge has room for another participant",
                )
            })?;
            let command = Command::Join {
                room: room.clone(),
                participant: participant_id.clone(),
                display_name: display_name.clone(),
                bridge: bridge_id.clone(),
                at_ms: now_ms,
            };
            state.apply(command).map_err(|err| match err {
                ApplyError::RoomFull(_) => ApiError::new(ErrorCode::RoomFull, err.to_string()),
                _ => ApiError::new(ErrorCode::NoCapacity, err.to_string()),
            })?;
            state.bridges[&bridge_id].clone()
        };
        let iat = now_ms / 1000;
        let claims = TicketClaims {
            aud: bridge.id.clone(),
            jti: format!("{:032x}", rand::rng().random::<u128>()),
            exp: iat + TICKET_TTL_S,
            iat,
            room: room.clone(),
            participant_id: participant_id.clone(),
            display_name,
            moderator: false,
        };
        let ticket = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.ticket_key)
            .map_err(|err| ApiError::new(ErrorCode::Internal, format!("cannot sign ticket: {err}")))?;
        let ice_servers = self.ice_servers(&bridge.id, &participant_id, iat);
        Ok(JoinResponse {
            room,
            participant_id,
            bridge_id: bridge.id,
            signaling_url: bridge.signaling_url,
            ticket,
            ticket_expires_in_s: TICKET_TTL_S,
            ice_servers,
        })
    }

    /// Drops placements whose participant never reached its bridge.
    pub fn expire_unconfirmed(&self) {
        let _ = self.apply(Command::ExpireUnconfirmed {
            now_ms: now_unix_ms(),
        });
    }
}
