//! Who is in a room, for operators: `GET /api/v1/admin/rooms/{room}/participants` and
//! `POST /api/v1/admin/rooms/{room}/participants/{id}/kick`.
//!
//! Membership (name, role, status, bridge, since when) is Raft state, read linearizably on any
//! node. Media state (mute, published sources, raised hand, when the bridge saw the participant
//! connect) is what the bridges report to the leader's bridge hub with their heartbeats; a
//! follower asks the leader for the whole list, so every node answers the same.

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
}

/// The body a follower forwards to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParticipantsQuery {
    pub room: RoomId,
}

/// The list as this node (the leader) knows it.
async fn list_here(api: &Api, room: &RoomId) -> Result<AdminParticipants, ApiError> {
    let members = api
        .node
        .cluster()
        .read_linearizable(|state| {
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

async fn list(api: &Api, room: &RoomId) -> Result<AdminParticipants, ApiError> {
    let cluster = api.node.cluster();
    if cluster.is_leader() {
        return list_here(api, room).await;
    }
    let Some((_, addr)) = cluster.leader() else {
        return Err(ApiError::new(
            ErrorCode::NoCapacity,
            "no control leader is known right now; try again",
        ));
    };
    let query = ParticipantsQuery { room: room.clone() };
    post_to_peer::<_, Result<AdminParticipants, (ErrorCode, String)>>(
        cluster.network(),
        &peer_base_url(&addr),
        "admin-room-participants",
        &query,
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
        list(&api, &room).await
    };
    respond(result.await)
}

/// The leader's end of a follower's forwarded list request (cluster listener, members only).
pub(super) async fn forwarded_room_participants(State(api): State<Api>, body: Body) -> Response {
    let answer = match super::read_json::<ParticipantsQuery>(body).await {
        Ok(query) if api.node.cluster().is_leader() => list_here(&api, &query.room).await,
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
