//! Who is in a room, for operators: `GET /api/v1/admin/rooms/{room}/participants`,
//! `POST /api/v1/admin/rooms/{room}/participants/{id}/kick` and `.../{id}/mute`.
//!
//! Membership (name, role, status, bridge, since when) is Raft state, read linearizably on any
//! node. Media state (mute, published sources, raised hand, when the bridge saw the participant
//! connect) is what the bridges report to the leader's bridge hub with their heartbeats; a
//! follower asks the leader for the whole list, so every node answers the same. A kick is a
//! replicated command like a moderator's; a mute is a request the leader passes to the
//! participant's bridge (the bridge cannot switch a microphone off, only ask the client).

use super::{Api, require_admin, respond, room_id};
use crate::node::ApiError;
use crate::raft::network::{peer_base_url, post_to_peer};
use crate::state::ParticipantStatus;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bridgemesh_proto::api::{ErrorCode, Role};
use bridgemesh_proto::signaling::MediaSource;
use bridgemesh_proto::{BridgeId, ParticipantId, RoomId};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a follower waits for the leader's list.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// A room's participants as the admin API lists them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminParticipants {
    pub room: RoomId,
    pub participants: Vec<AdminParticipant>,
}

/// One participant: membership from Raft, `media` from its bridge (absent until the bridge has
/// reported it, e.g. while the participant is placed but not yet connected).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminParticipant {
    pub participant_id: ParticipantId,
    pub display_name: String,
    pub role: Role,
    pub status: ParticipantStatus,
    pub bridge_id: Option<BridgeId>,
    /// When the current status began (control's clock, Unix ms): for `connected`, when its
    /// bridge reported it connected.
    pub since_ms: u64,
    pub media: Option<AdminParticipantMedia>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminParticipantMedia {
    /// When its signaling session on the bridge began (the bridge's clock, Unix ms).
    pub joined_at_ms: u64,
    pub microphone_muted: bool,
    pub camera_muted: bool,
    /// Sources the bridge is forwarding (`microphone`, `camera`, `screen`).
    pub sources: Vec<MediaSource>,
    pub hand_raised_at_ms: Option<u64>,
    /// The room requires end-to-end encryption (`docs/e2ee.md`), as the participant's bridge holds it.
    #[serde(default)]
    pub e2ee: bool,
}

/// What a follower forwards to the leader: the calls that need the leader's bridge sessions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum LeaderRequest {
    List {
        room: RoomId,
    },
    Mute {
        room: RoomId,
        participant: ParticipantId,
    },
}

/// The list as this node (the leader) knows it.
async fn list_here(api: &Api, room: &RoomId) -> Result<AdminParticipants, ApiError> {
    let members = api
        .node
        .read_newest(|state| {
            state.rooms.get(room).map(|record| {
                record
                    .participants
                    .iter()
                    .filter(|(_, p)| p.status.present())
                    .map(|(id, p)| (id.clone(), p.clone()))
                    .collect::<Vec<_>>()
            })
        })
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no room {room}")))?;
    let hub = api.node.hub();
    let participants = members
        .into_iter()
        .map(|(id, record)| {
            // Only what the bridge control placed it on says counts.
            let media = hub
                .participant_media(room, &id)
                .filter(|(bridge, _)| record.bridge.as_ref() == Some(bridge))
                .map(|(_, media)| AdminParticipantMedia {
                    joined_at_ms: media.connected_at_ms,
                    microphone_muted: media.microphone_muted,
                    camera_muted: media.camera_muted,
                    sources: media.sources,
                    hand_raised_at_ms: media.hand_raised_at_ms,
                    e2ee: media.e2ee,
                });
            AdminParticipant {
                participant_id: id,
                display_name: record.display_name,
                role: record.role,
                status: record.status,
                bridge_id: record.bridge,
                since_ms: record.since_ms,
                media,
            }
        })
        .collect();
    Ok(AdminParticipants {
        room: room.clone(),
        participants,
    })
}

/// Asks `participant`'s bridge to tell it to mute (this node leads).
fn mute_here(api: &Api, room: &RoomId, participant: &ParticipantId) -> Result<serde_json::Value, ApiError> {
    let record = api
        .node
        .cluster()
        .read(|state| {
            state
                .rooms
                .get(room)
                .and_then(|r| r.participants.get(participant))
                .cloned()
        })
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                format!("no participant {participant} in room {room}"),
            )
        })?;
    let bridge = record
        .bridge
        .filter(|_| record.status.on_bridge())
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Conflict,
                format!("{participant} is not on a bridge (status {:?})", record.status),
            )
        })?;
    if !api.node.hub().request_mute(&bridge, room, participant) {
        return Err(ApiError::new(
            ErrorCode::NoCapacity,
            format!("bridge {bridge} has no session with control right now; try again"),
        ));
    }
    Ok(serde_json::json!({ "ok": true }))
}

async fn answer_here(api: &Api, request: LeaderRequest) -> Result<serde_json::Value, ApiError> {
    match request {
        LeaderRequest::List { room } => {
            let list = list_here(api, &room).await?;
            serde_json::to_value(list).map_err(|err| ApiError::new(ErrorCode::Internal, err.to_string()))
        }
        LeaderRequest::Mute { room, participant } => mute_here(api, &room, &participant),
    }
}

/// Answers `request` here if this node leads, else asks the leader.
async fn on_leader(api: &Api, request: LeaderRequest) -> Result<serde_json::Value, ApiError> {
    let cluster = api.node.cluster();
    if cluster.is_leader() {
        return answer_here(api, request).await;
    }
    let Some((_, addr)) = cluster.leader() else {
        return Err(ApiError::new(
            ErrorCode::NoCapacity,
            "no control leader is known right now; try again",
        ));
    };
    post_to_peer::<_, Result<serde_json::Value, (ErrorCode, String)>>(
        cluster.network(),
        &peer_base_url(&addr),
        "admin-room-participants",
        &request,
        FORWARD_TIMEOUT,
    )
    .await
    .map_err(|err| ApiError::new(ErrorCode::Internal, format!("asking the leader: {err}")))?
    .map_err(|(code, message)| ApiError::new(code, message))
}

pub(super) async fn admin_room_participants(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(room): Path<String>,
) -> Response {
    let result = async {
        require_admin(&api, &headers)?;
        let room = room_id(room)?;
        on_leader(&api, LeaderRequest::List { room }).await
    };
    respond(result.await)
}

/// The leader's end of a follower's forwarded list request (cluster listener, members only).
pub(super) async fn forwarded_room_participants(State(api): State<Api>, body: Body) -> Response {
    let answer = match super::read_json::<LeaderRequest>(body).await {
        Ok(request) if api.node.cluster().is_leader() => answer_here(&api, request).await,
        Ok(_) => Err(ApiError::new(ErrorCode::NoCapacity, "this node no longer leads")),
        Err(err) => Err(err),
    };
    axum::Json(answer.map_err(|err| (err.code, err.message))).into_response()
}

pub(super) async fn admin_kick_participant(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((room, participant)): Path<(String, String)>,
) -> Response {
    let result = async {
        require_admin(&api, &headers)?;
        let room = room_id(room)?;
        let participant = ParticipantId::new(participant)
            .map_err(|err| ApiError::new(ErrorCode::InvalidField, err.to_string()))?;
        api.node.admin_kick(&room, &participant).await?;
        Ok(super::Done::ok())
    };
    respond(result.await)
}

pub(super) async fn admin_mute_participant(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((room, participant)): Path<(String, String)>,
) -> Response {
    let result = async {
        require_admin(&api, &headers)?;
        let room = room_id(room)?;
        let participant = ParticipantId::new(participant)
            .map_err(|err| ApiError::new(ErrorCode::InvalidField, err.to_string()))?;
        on_leader(&api, LeaderRequest::Mute { room, participant }).await
    };
    respond(result.await)
}
