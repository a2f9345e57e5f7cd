//! The admin API (the cluster's nodes, rooms, bridges: list, register, drain, forget) behind the
//! admin token, and the TURN servers' list of bridges they may relay to.

use super::*;

pub(super) fn require_admin(api: &Api, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(admin) = &api.config.admin else {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "the admin API is turned off on this node",
        ));
    };
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    Ok(admin.check_admin(authorization)?)
}

pub(super) async fn admin_cluster(State(api): State<Api>, headers: HeaderMap) -> Response {
    respond(require_admin(&api, &headers).map(|()| api.node.cluster().health()))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddControlNode {
    pub id: NodeId,
    /// `host:port` where the other control nodes reach it.
    pub addr: String,
}

pub(super) async fn admin_add_node(State(api): State<Api>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        require_admin(&api, &headers)?;
        let request: AddControlNode = read_json(body).await?;
        api.node
            .cluster()
            .change_membership(MembershipChange::AddVoter {
                id: request.id,
                addr: request.addr,
            })
            .await?;
        Ok(api.node.cluster().health())
    };
    respond(result.await)
}

pub(super) async fn admin_remove_node(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<NodeId>,
) -> Response {
    let result = async {
        require_admin(&api, &headers)?;
        api.node
            .cluster()
            .change_membership(MembershipChange::Remove { id })
            .await?;
        Ok(api.node.cluster().health())
    };
    respond(result.await)
}

/// One room in the admin view: who is where. Never includes the password hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminRoom {
    pub room: RoomId,
    pub created_at_ms: u64,
    pub password_set: bool,
    pub lobby_enabled: bool,
    pub participants: usize,
    pub in_lobby: usize,
    pub participants_per_bridge: std::collections::BTreeMap<String, usize>,
}

pub(super) fn admin_rooms_of(state: &ControlState) -> Vec<AdminRoom> {
    state
        .rooms
        .iter()
        .map(|(id, room)| {
            let per_bridge: std::collections::BTreeMap<String, usize> = room
                .seats_per_bridge()
                .into_iter()
                .map(|(bridge, seats)| (bridge.to_string(), seats))
                .collect();
            AdminRoom {
                room: id.clone(),
                created_at_ms: room.created_at_ms,
                password_set: room.settings.password_hash.is_some(),
                lobby_enabled: room.settings.lobby_enabled,
                participants: per_bridge.values().sum(),
                in_lobby: crate::state::lobby_of(room).count(),
                participants_per_bridge: per_bridge,
            }
        })
        .collect()
}

pub(super) async fn admin_rooms(State(api): State<Api>, headers: HeaderMap) -> Response {
    let result = async {
        require_admin(&api, &headers)?;
        api.node.read_newest(admin_rooms_of).await
    };
    respond(result.await)
}

/// A bridge in the admin view, with its current load.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminBridge {
    #[serde(flatten)]
    pub record: BridgeRecord,
    /// Participants placed on it (control's count).
    pub participants: u32,
    /// Reported stress plus the burst correction, as placement sees it.
    pub effective_stress: f64,
    /// Rooms with participants on it.
    pub rooms: usize,
}

/// The bridges' media addresses for a standalone TURN server (`bridgemesh turn --control`),
/// authenticated by the credential derived from its REST secret.
pub(super) async fn turn_peers(State(api): State<Api>, headers: HeaderMap) -> Response {
    respond(for_turn_server(&api, &headers, |node| {
        bridgemesh_proto::bridge_session::TurnPeers {
            media_addresses: node.bridge_media_addresses(),
        }
    }))
}

/// The sessions ended lately, for a standalone TURN server, under the same credential.
pub(super) async fn turn_ended_sessions(State(api): State<Api>, headers: HeaderMap) -> Response {
    respond(for_turn_server(&api, &headers, |node| {
        bridgemesh_proto::bridge_session::TurnEndedSessions {
            sessions: node.ended_sessions(),
        }
    }))
}

/// `answer` for a request bearing a standalone TURN server's credential; 401 otherwise.
fn for_turn_server<T>(
    api: &Api,
    headers: &HeaderMap,
    answer: impl FnOnce(&ControlNode) -> T,
) -> Result<T, ApiError> {
    match bearer(headers) {
        Some(presented) if api.node.is_turn_server(presented) => Ok(answer(&api.node)),
        _ => Err(ApiError::new(
            ErrorCode::Unauthorized,
            "a TURN server's credential is needed (derived from its REST secret)",
        )),
    }
}

/// The same for the TURN server a bridge embeds, asked on the cluster listener under the
/// bridge's certificate: a bridge's TURN secret is its own, so its certificate is what says it
/// belongs to the cluster.
pub(super) async fn bridge_turn_peers(
    State(api): State<Api>,
    peer: Option<axum::Extension<ConnectInfo<ClusterPeer>>>,
) -> Response {
    let result = match peer {
        Some(axum::Extension(ConnectInfo(ClusterPeer {
            name: ClusterName::Bridge(_),
            ..
        }))) => Ok(bridgemesh_proto::bridge_session::TurnPeers {
            media_addresses: api.node.bridge_media_addresses(),
        }),
        _ => Err(ApiError::new(
            ErrorCode::Forbidden,
            "the bridges' addresses are for bridges' TURN servers (a bridge certificate from the cluster CA)",
        )),
    };
    respond(result)
}

pub(super) async fn admin_bridges(State(api): State<Api>, headers: HeaderMap) -> Response {
    let result = async {
        require_admin(&api, &headers)?;
        let bridges = api
            .node
            .read_newest(|state| {
                // Rooms per bridge in one pass over the rooms.
                let mut rooms: std::collections::BTreeMap<&BridgeId, usize> = Default::default();
                for room in state.rooms.values() {
                    for bridge in room.seats_per_bridge().into_keys() {
                        *rooms.entry(bridge).or_insert(0) += 1;
                    }
                }
                state
                    .bridges
                    .values()
                    .map(|record| AdminBridge {
                        record: record.clone(),
                        participants: state.bridge_load.get(&record.id).copied().unwrap_or(0),
                        effective_stress: crate::placement::effective_stress(record, &state.placement),
                        rooms: rooms.get(&record.id).copied().unwrap_or(0),
                    })
                    .collect::<Vec<_>>()
            })
            .await?;
        Ok(bridges)
    };
    respond(result.await)
}

pub(super) async fn admin_register_bridge(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        require_admin(&api, &headers)?;
        let registration: BridgeRegistration = read_json(body).await?;
        api.node.register_bridge(registration).await.map(|()| Done::ok())
    };
    respond(result.await)
}

pub(super) fn bridge_id(id: String) -> Result<BridgeId, ApiError> {
    BridgeId::new(id).map_err(|err| ApiError::new(ErrorCode::NotFound, err.to_string()))
}

/// `POST /api/v1/admin/bridges/{id}/drain` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    /// How long participants may stay before they are moved; 0 moves them now.
    #[serde(default)]
    pub grace_s: u64,
}

/// Longest drain grace period accepted.
const DRAIN_GRACE_MAX_S: u64 = 24 * 3600;

pub(super) async fn admin_drain_bridge(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let result = async {
        require_admin(&api, &headers)?;
        let bridge = bridge_id(id)?;
        let request: DrainRequest = read_json(body).await?;
        if request.grace_s > DRAIN_GRACE_MAX_S {
            return Err(ApiError::new(
                ErrorCode::InvalidField,
                format!("grace_s is at most {DRAIN_GRACE_MAX_S}"),
            ));
        }
        api.node.drain_bridge(bridge, request.grace_s * 1000).await?;
        Ok(Done::ok())
    };
    respond(result.await)
}

pub(super) async fn admin_undrain_bridge(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        require_admin(&api, &headers)?;
        api.node.undrain_bridge(bridge_id(id)?).await?;
        Ok(Done::ok())
    };
    respond(result.await)
}

pub(super) async fn admin_forget_bridge(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        require_admin(&api, &headers)?;
        api.node.forget_bridge(bridge_id(id)?).await?;
        Ok(Done::ok())
    };
    respond(result.await)
}
