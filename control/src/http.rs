//! The control HTTP API (`/api/v1/...`), the admin API, `/health`, `/metrics` and the web client
//! ([`router`], the public listener); Raft's peer routes and the bridges' sessions
//! ([`cluster_router`], the cluster listener: mutual TLS, cluster members only).

use crate::auth::AdminAuth;
use crate::bridge_hub::LossReport;
use crate::metrics::{self, ControlMetrics, JoinKind};
use crate::node::{ApiError, ControlNode, JoinAnswer};
use crate::raft::cluster::{ClusterHealth, MembershipChange, RaftRole};
use crate::raft::{NodeId, server as raft_server};
use crate::state::{BridgeRecord, ControlState};
use crate::web;
use axum::Router;
use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use bridgemesh_pki::{ClusterName, ClusterPeer};
use bridgemesh_proto::api::{
    ErrorBody, ErrorCode, HealthStatus, JoinRequest, REQUEST_BODY_MAX_BYTES, ReconnectRequest,
    RoomSettingsUpdate,
};
use bridgemesh_proto::bridge_session::{BRIDGE_MESSAGE_MAX_BYTES, BRIDGE_SESSION_PATH, BridgeRegistration};
use bridgemesh_proto::{BridgeId, ParticipantId, RoomId};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(ErrorBody::new(self.code, self.message))).into_response()
    }
}

/// What the HTTP layer needs besides the node: credentials it checks at the door.
#[derive(Clone, Default)]
pub struct ApiConfig {
    /// The admin API's own credential; `None` turns the admin API off.
    pub admin: Option<Arc<AdminAuth>>,
    /// A bearer token `/metrics` demands; `None` serves it to anyone who reaches the listener.
    pub metrics_token: Option<Arc<MetricsToken>>,
}

/// The token `/metrics` can demand (`Authorization: Bearer <token>`), compared in constant time.
pub struct MetricsToken(String);

impl MetricsToken {
    /// Shortest token accepted: it is a password a scraper sends on every request.
    pub const MIN_BYTES: usize = 16;

    pub fn new(token: impl Into<String>) -> Result<Self, String> {
        let token = token.into();
        if token.len() < Self::MIN_BYTES {
            return Err(format!(
                "the metrics token has {} bytes; use at least {} (e.g. `openssl rand -hex 16`)",
                token.len(),
                Self::MIN_BYTES
            ));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the metrics token must be printable ASCII without spaces".into());
        }
        Ok(Self(token))
    }

    /// Whether `headers` carry the token.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        use subtle::ConstantTimeEq as _;
        let presented = bearer(headers).unwrap_or("");
        presented.len() == self.0.len() && bool::from(presented.as_bytes().ct_eq(self.0.as_bytes()))
    }
}

/// Makes every `/metrics` route of `router` (a path with a `metrics` segment: `/metrics`,
/// `/metrics/turn`, `/bridges/<id>/metrics`) answer 401 without `token`. For routers that
/// gather other nodes' routes (a bridge's, `up --domain`'s public front), so no metrics route
/// is left open by being added elsewhere.
pub fn require_metrics_token(router: Router, token: Arc<MetricsToken>) -> Router {
    router.layer(middleware::from_fn(
        move |request: axum::extract::Request, next: middleware::Next| {
            let token = token.clone();
            async move {
                let metrics = request
                    .uri()
                    .path()
                    .split('/')
                    .any(|segment| segment == "metrics");
                if metrics && !token.admits(request.headers()) {
                    return ApiError::new(
                        ErrorCode::Unauthorized,
                        "/metrics needs the metrics token: Authorization: Bearer <token>",
                    )
                    .into_response();
                }
                next.run(request).await
            }
        },
    ))
}

#[derive(Clone)]
struct Api {
    node: Arc<ControlNode>,
    config: ApiConfig,
    metrics: Arc<ControlMetrics>,
}

impl Api {
    fn new(node: Arc<ControlNode>, config: ApiConfig) -> Self {
        Self {
            metrics: Arc::new(ControlMetrics::new(node.clone())),
            node,
            config,
        }
    }
}

/// The public API, the web client, `/health` and `/metrics` (behind the metrics token when the
/// configuration has one).
pub fn router(node: Arc<ControlNode>, config: ApiConfig) -> Router {
    let metrics_token = config.metrics_token.clone();
    let router = public_routes(node, config);
    match metrics_token {
        Some(token) => require_metrics_token(router, token),
        None => router,
    }
}

fn public_routes(node: Arc<ControlNode>, config: ApiConfig) -> Router {
    let api = Api::new(node.clone(), config);
    let mut assets = Router::new();
    for &(path, content_type, body) in web::ASSETS {
        assets = assets.route(path, get(move || async move { asset(content_type, body) }));
    }
    Router::new()
        .route("/api/v1/rooms/{room}/join", post(join))
        .route("/api/v1/rooms/{room}", get(room_view))
        .route("/api/v1/rooms/{room}/settings", patch(update_settings))
        .route(
            "/api/v1/rooms/{room}/lobby/{participant}",
            get(lobby_status).delete(withdraw),
        )
        .route(
            "/api/v1/rooms/{room}/lobby/{participant}/{decision}",
            post(lobby_decision),
        )
        .route("/api/v1/rooms/{room}/participants/{participant}/kick", post(kick))
        .route(
            "/api/v1/rooms/{room}/participants/{participant}/reconnect",
            post(reconnect),
        )
        .route(bridgemesh_proto::bridge_session::TURN_PEERS_PATH, get(turn_peers))
        .route(
            bridgemesh_proto::bridge_session::TURN_ENDED_SESSIONS_PATH,
            get(turn_ended_sessions),
        )
        .route("/api/v1/rooms/{room}/mute-all", post(mute_all))
        .route("/api/v1/rooms/{room}/end", post(end_meeting))
        .route("/api/v1/admin/cluster", get(admin_cluster))
        .route("/api/v1/admin/cluster/nodes", post(admin_add_node))
        .route("/api/v1/admin/cluster/nodes/{id}", delete(admin_remove_node))
        .route("/api/v1/admin/rooms", get(admin_rooms))
        .route(
            "/api/v1/admin/rooms/{room}/participants",
            get(admin_participants::admin_room_participants),
        )
        .route(
            "/api/v1/admin/rooms/{room}/participants/{id}/kick",
            post(admin_participants::admin_kick_participant),
        )
        .route(
            "/api/v1/admin/rooms/{room}/participants/{id}/mute",
            post(admin_participants::admin_mute_participant),
        )
        .route(
            "/api/v1/admin/bridges",
            get(admin_bridges).post(admin_register_bridge),
        )
        .route("/api/v1/admin/bridges/{id}", delete(admin_forget_bridge))
        .route("/api/v1/admin/bridges/{id}/drain", post(admin_drain_bridge))
        .route("/api/v1/admin/bridges/{id}/undrain", post(admin_undrain_bridge))
        .merge(hosts::routes())
        .merge(oidc::routes())
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/", get(index))
        .route("/{room}", get(room_page))
        .fallback(not_found)
        .with_state(api)
        .merge(assets)
}

/// The cluster listener's routes: Raft RPCs and forwarded requests from control nodes, and the
/// bridges' sessions. Serve it on a [`bridgemesh_pki::ClusterListener`], which admits only
/// connections with a certificate from the cluster CA and says whose it is.
pub fn cluster_router(node: Arc<ControlNode>) -> Router {
    let api = Api::new(node.clone(), ApiConfig::default());
    Router::new()
        .route(BRIDGE_SESSION_PATH, get(bridge_session))
        .route(
            bridgemesh_proto::bridge_session::TURN_PEERS_PATH,
            get(bridge_turn_peers),
        )
        .fallback(not_found)
        .with_state(api.clone())
        .merge(raft_server::router(node.cluster().clone()))
        .merge(
            Router::new()
                .route("/raft/v1/bridge-loss", post(bridge_loss))
                .route(
                    "/raft/v1/admin-room-participants",
                    post(admin_participants::forwarded_room_participants),
                )
                .route_layer(middleware::from_fn(raft_server::require_member))
                .with_state(api),
        )
}

/// Reads a JSON body ourselves so that every failure (too large, not JSON, wrong shape) gets the
/// JSON error envelope rather than axum's plain-text rejections.
async fn read_json<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, REQUEST_BODY_MAX_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::BodyTooLarge,
                format!("request body is larger than {REQUEST_BODY_MAX_BYTES} bytes"),
            )
        })?;
    // Every request body is a JSON object; serde would also accept a struct as an array of its
    // fields in order (`["Ada"]`), which is not the documented shape.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new(
            ErrorCode::MalformedBody,
            "the body must be a JSON object",
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|err| ApiError::new(ErrorCode::MalformedBody, format!("invalid JSON body: {err}")))
}

fn room_id(room: String) -> Result<RoomId, ApiError> {
    RoomId::new(room).map_err(|err| ApiError::new(ErrorCode::InvalidRoomName, err.to_string()))
}

fn participant_id(participant: String) -> Result<ParticipantId, ApiError> {
    ParticipantId::new(participant).map_err(|err| ApiError::new(ErrorCode::NotFound, err.to_string()))
}

/// The `Authorization: Bearer` credential, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn respond<T: Serialize>(result: Result<T, ApiError>) -> Response {
    match result {
        Ok(value) => axum::Json(value).into_response(),
        Err(err) => err.into_response(),
    }
}

fn join_answer(answer: Result<JoinAnswer, ApiError>) -> Response {
    match answer {
        Ok(JoinAnswer::Joined(response)) => axum::Json(response).into_response(),
        Ok(JoinAnswer::Lobby(wait)) => (StatusCode::ACCEPTED, axum::Json(wait)).into_response(),
        Err(err) => err.into_response(),
    }
}

/// Joins and reconnects are unauthenticated (or nearly): each client address (resolved through
/// the trusted proxies; an IPv6 /64 as one) has a budget.
fn join_budget(api: &Api, peer: SocketAddr, headers: &HeaderMap) -> Result<(), ApiError> {
    let key = crate::join_key::join_budget_key(
        peer.ip(),
        headers,
        api.node.trusted_proxies(),
        api.node.join_ipv6_prefix_len(),
    );
    if api.node.allow_join_from(key) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::RateLimited,
            "too many joins from this address; slow down",
        ))
    }
}

async fn join(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(err) = join_budget(&api, peer, &headers) {
        return err.into_response();
    }
    let started = Instant::now();
    let answer = async {
        let room = room_id(room)?;
        if !api.node.allow_join_to(&room) {
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                "too many joins into this room right now; try again in a moment",
            ));
        }
        let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let request: JoinRequest = read_json(body).await?;
        let caller = api
            .node
            .caller(&room, authorization, request.invite.as_deref())
            .await?;
        let client = api.node.locate(peer.ip(), &headers);
        api.node
            .join(room, &request.display_name, request.password, caller, client)
            .await
    }
    .await;
    api.metrics.observe(JoinKind::Join, &answer, started.elapsed());
    join_answer(answer)
}

/// The room and the caller's session, when the path's participant is the session's own.
fn own_session(
    api: &Api,
    room: String,
    participant: String,
    headers: &HeaderMap,
) -> Result<(RoomId, crate::session::SessionClaims), ApiError> {
    let room = room_id(room)?;
    let session = api.node.session(bearer(headers), &room)?;
    if session.participant_id != participant_id(participant)? {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "this session is for another participant",
        ));
    }
    Ok((room, session))
}

async fn reconnect(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((room, participant)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(err) = join_budget(&api, peer, &headers) {
        return err.into_response();
    }
    let started = Instant::now();
    let answer = async {
        let (room, session) = own_session(&api, room, participant, &headers)?;
        let request: ReconnectRequest = read_json(body).await?;
        api.node.reconnect(&room, &session, request.lost_bridge).await
    }
    .await;
    api.metrics
        .observe(JoinKind::Reconnect, &answer, started.elapsed());
    join_answer(answer)
}

/// A bridge's session (`docs/regions.md`): only over a connection whose certificate names a bridge, and only for the
/// bridge it names (the hub refuses a registration under another id).
async fn bridge_session(
    State(api): State<Api>,
    peer: Option<axum::Extension<ConnectInfo<ClusterPeer>>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(axum::Extension(ConnectInfo(ClusterPeer {
        name: ClusterName::Bridge(bridge),
        ..
    }))) = peer
    else {
        return ApiError::new(
            ErrorCode::Forbidden,
            "a bridge session needs a bridge certificate from the cluster CA (`bridgemesh ca issue`)",
        )
        .into_response();
    };
    let hub = api.node.hub().clone();
    upgrade
        .max_message_size(BRIDGE_MESSAGE_MAX_BYTES)
        .max_frame_size(BRIDGE_MESSAGE_MAX_BYTES)
        .on_upgrade(move |socket| hub.serve(socket, bridge))
}

/// A loss report another control node forwarded to this one (the leader).
async fn bridge_loss(State(api): State<Api>, body: Body) -> Response {
    match read_json::<LossReport>(body).await {
        Ok(report) => axum::Json(api.node.hub().report_loss_here(report).await).into_response(),
        Err(err) => err.into_response(),
    }
}

async fn lobby_status(
    State(api): State<Api>,
    Path((room, participant)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let answer = own_session(&api, room, participant, &headers)
        .and_then(|(room, session)| api.node.lobby_status(&room, &session));
    join_answer(answer)
}

async fn withdraw(
    State(api): State<Api>,
    Path((room, participant)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let (room, session) = own_session(&api, room, participant, &headers)?;
        api.node.withdraw(&room, &session).await.map(|()| Done::ok())
    };
    respond(result.await)
}

async fn room_view(State(api): State<Api>, Path(room): Path<String>, headers: HeaderMap) -> Response {
    respond((|| {
        let room = room_id(room)?;
        let session = api.node.session(bearer(&headers), &room)?;
        api.node.room_view(&room, &session)
    })())
}

async fn update_settings(
    State(api): State<Api>,
    Path(room): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let room = room_id(room)?;
        let session = api.node.session(bearer(&headers), &room)?;
        let update: RoomSettingsUpdate = read_json(body).await?;
        api.node.update_settings(&room, &session, update).await?;
        Ok(Done::ok())
    };
    respond(result.await)
}

/// The body of a successful action.
#[derive(Serialize)]
struct Done {
    ok: bool,
}

impl Done {
    fn ok() -> Self {
        Self { ok: true }
    }
}

/// What a moderator action on one participant needs: the room, the acting session, the target.
fn moderator_target(
    api: &Api,
    room: String,
    participant: String,
    headers: &HeaderMap,
) -> Result<(RoomId, crate::session::SessionClaims, ParticipantId), ApiError> {
    let room = room_id(room)?;
    let session = api.node.session(bearer(headers), &room)?;
    Ok((room, session, participant_id(participant)?))
}

/// A moderator's answer to a guest waiting in the lobby: `admit` or `deny`.
async fn lobby_decision(
    State(api): State<Api>,
    Path((room, participant, decision)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let (room, session, target) = moderator_target(&api, room, participant, &headers)?;
        match decision.as_str() {
            "admit" => api.node.admit(&room, &session, &target).await,
            "deny" => api.node.deny(&room, &session, &target).await,
            _ => Err(ApiError::new(ErrorCode::NotFound, "no such endpoint")),
        }
        .map(|()| Done::ok())
    };
    respond(result.await)
}

async fn kick(
    State(api): State<Api>,
    Path((room, participant)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let (room, session, target) = moderator_target(&api, room, participant, &headers)?;
        api.node.kick(&room, &session, &target).await.map(|()| Done::ok())
    };
    respond(result.await)
}

async fn mute_all(State(api): State<Api>, Path(room): Path<String>, headers: HeaderMap) -> Response {
    let result = async {
        let room = room_id(room)?;
        let session = api.node.session(bearer(&headers), &room)?;
        api.node.mute_all(&room, &session).await.map(|()| Done::ok())
    };
    respond(result.await)
}

async fn end_meeting(State(api): State<Api>, Path(room): Path<String>, headers: HeaderMap) -> Response {
    let result = async {
        let room = room_id(room)?;
        let session = api.node.session(bearer(&headers), &room)?;
        api.node.end_meeting(&room, &session).await.map(|()| Done::ok())
    };
    respond(result.await)
}

/// `GET /health`: the node's role in the cluster; `degraded` while it lags or knows no leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlHealth {
    pub status: HealthStatus,
    pub role: String,
    pub version: String,
    pub cluster: ClusterHealth,
}

async fn health(State(api): State<Api>) -> Response {
    let cluster = api.node.cluster().health();
    let status = if cluster.lagging || cluster.role == RaftRole::Stopped {
        HealthStatus::Degraded
    } else {
        HealthStatus::Ok
    };
    let code = if status == HealthStatus::Ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = ControlHealth {
        status,
        role: "control".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        cluster,
    };
    (code, axum::Json(body)).into_response()
}

/// Behind [`require_metrics_token`] when the node has a metrics token (see [`router`]).
async fn metrics(
    State(api): State<Api>,
    guard: Option<axum::Extension<Arc<crate::http_guard::HttpGuardStats>>>,
) -> Response {
    let mut text = api.metrics.render();
    if let Some(axum::Extension(guard)) = guard {
        text.push_str(&guard.render_prometheus("bridgemesh_control", ""));
    }
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", web::INDEX_HTML)
}

async fn room_page(Path(room): Path<String>) -> Response {
    match RoomId::new(room) {
        Ok(_) => asset("text/html; charset=utf-8", web::INDEX_HTML),
        Err(err) => ApiError::new(ErrorCode::NotFound, format!("no such page: {err}")).into_response(),
    }
}

async fn not_found() -> Response {
    ApiError::new(ErrorCode::NotFound, "no such endpoint").into_response()
}

mod admin;
mod admin_participants;

use admin::*;
pub use admin::{AddControlNode, AdminBridge, AdminRoom, DrainRequest};
pub use admin_participants::{AdminParticipant, AdminParticipantMedia, AdminParticipants};

mod hosts;
mod oidc;
#[cfg(test)]
mod tests;
