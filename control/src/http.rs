//! The control HTTP API (`/api/v1/...`), `/health`, `/metrics`, and the web client.

use crate::node::{ApiError, ControlNode};
use crate::state::ControlState;
use crate::web;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bridgemesh_proto::RoomId;
use bridgemesh_proto::api::{
    ErrorBody, ErrorCode, Health, HealthStatus, JoinRequest, REQUEST_BODY_MAX_BYTES,
};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(ErrorBody::new(self.code, self.message))).into_response()
    }
}

pub fn router(node: Arc<ControlNode>) -> Router {
    Router::new()
        .route("/api/v1/rooms/{room}/join", post(join))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/", get(index))
        .route("/app.js", get(app_js))
        .route("/style.css", get(style_css))
        .route("/{room}", get(room_page))
        .fallback(not_found)
        .with_state(node)
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

async fn join(
    State(node): State<Arc<ControlNode>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    body: Body,
) -> Response {
    if !node.allow_join_from(peer.ip()) {
        return ApiError::new(
            ErrorCode::RateLimited,
            "too many joins from this address; slow down",
        )
        .into_response();
    }
    let room = match RoomId::new(room) {
        Ok(room) => room,
        Err(err) => return ApiError::new(ErrorCode::InvalidRoomName, err.to_string()).into_response(),
    };
    let request: JoinRequest = match read_json(body).await {
        Ok(request) => request,
        Err(err) => return err.into_response(),
    };
    match node.join(room, request) {
        Ok(response) => axum::Json(response).into_response(),
        Err(err) => err.into_response(),
    }
}

async fn health() -> Response {
    axum::Json(Health {
        status: HealthStatus::Ok,
        role: "control".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
    .into_response()
}

async fn metrics(State(node): State<Arc<ControlNode>>) -> Response {
    let text = node.read(render_metrics);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Prometheus text for the state, rendered under the state lock instead of copying the state out.
fn render_metrics(state: &ControlState) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# HELP bridgemesh_control_rooms Rooms with participants.\n# TYPE bridgemesh_control_rooms gauge"
    );
    let _ = writeln!(text, "bridgemesh_control_rooms {}", state.rooms.len());
    let _ = writeln!(
        text,
        "# HELP bridgemesh_control_participants Participants placed.\n# TYPE bridgemesh_control_participants gauge"
    );
    let _ = writeln!(
        text,
        "bridgemesh_control_participants {}",
        state.participant_count()
    );
    let _ = writeln!(
        text,
        "# HELP bridgemesh_control_bridge_participants Participants assigned per bridge.\n# TYPE bridgemesh_control_bridge_participants gauge"
    );
    for (bridge, load) in &state.bridge_load {
        let _ = writeln!(
            text,
            "bridgemesh_control_bridge_participants{{bridge=\"{bridge}\"}} {load}"
        );
    }
    text
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

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", web::APP_JS)
}

async fn style_css() -> Response {
    asset("text/css; charset=utf-8", web::STYLE_CSS)
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
