//! The bridge's admin API for recordings, on its signaling listener, behind the admin token:
//! the files live on the bridge, so they are listed and downloaded where they are.
//!
//! - `GET  /bridge/v1/admin/recordings`: the recordings, newest first.
//! - `GET  /bridge/v1/admin/recordings/{file}`: one file (`video/webm`).
//! - `POST /bridge/v1/admin/rooms/{room}/recording/start`, `.../stop`: `{"file": NAME}`.

use crate::driver::Bridge;
use crate::driver::recording::RecordingCallError;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bridgemesh_proto::RoomId;
use bridgemesh_proto::api::{ErrorBody, ErrorCode, ErrorDetail};
use std::sync::Arc;

/// The admin API's bearer token.
#[derive(Clone)]
pub struct AdminToken(Arc<str>);

impl AdminToken {
    /// Shortest token accepted.
    pub const MIN_BYTES: usize = 16;

    pub fn new(token: impl Into<String>) -> Result<Self, String> {
        let token = token.into();
        if token.len() < Self::MIN_BYTES || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "the admin token must be at least {} printable characters without spaces",
                Self::MIN_BYTES
            ));
        }
        Ok(Self(token.into()))
    }

    fn admits(&self, headers: &HeaderMap) -> bool {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        // Constant time over the token's length: the comparison says nothing of where it differs.
        presented.len() == self.0.len()
            && presented
                .bytes()
                .zip(self.0.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

#[derive(Clone)]
struct AdminState {
    bridge: Arc<Bridge>,
    token: AdminToken,
}

/// The recordings admin routes, each checking `token`.
pub fn router(bridge: Arc<Bridge>, token: AdminToken) -> Router {
    Router::new()
        .route("/bridge/v1/admin/recordings", get(list))
        .route("/bridge/v1/admin/recordings/{file}", get(download))
        .route(
            "/bridge/v1/admin/rooms/{room}/recording/{action}",
            post(start_or_stop),
        )
        .with_state(AdminState { bridge, token })
}

fn error(code: ErrorCode, message: impl Into<String>) -> Response {
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = ErrorBody {
        error: ErrorDetail {
            code,
            message: message.into(),
        },
    };
    (status, axum::Json(body)).into_response()
}

fn unauthorized() -> Response {
    error(
        ErrorCode::AdminUnauthorized,
        "the admin token is missing or wrong",
    )
}

fn call_error(err: RecordingCallError) -> Response {
    match err {
        RecordingCallError::Disabled => error(
            ErrorCode::NotFound,
            "recording is not enabled on this bridge (--recordings-dir)",
        ),
        RecordingCallError::Refused(code, message) => error(code, message),
        RecordingCallError::Stopped => error(ErrorCode::NoCapacity, "the bridge is stopping"),
        err => error(ErrorCode::Internal, err.to_string()),
    }
}

async fn list(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if !state.token.admits(&headers) {
        return unauthorized();
    }
    let bridge = state.bridge.clone();
    match tokio::task::spawn_blocking(move || bridge.list_recordings()).await {
        Ok(Ok(recordings)) => axum::Json(serde_json::json!({ "recordings": recordings })).into_response(),
        Ok(Err(err)) => call_error(err),
        Err(err) => error(ErrorCode::Internal, err.to_string()),
    }
}

async fn download(State(state): State<AdminState>, headers: HeaderMap, Path(file): Path<String>) -> Response {
    if !state.token.admits(&headers) {
        return unauthorized();
    }
    let Some(store) = state.bridge.recordings() else {
        return call_error(RecordingCallError::Disabled);
    };
    let Some(path) = store.file(&file) else {
        return error(
            ErrorCode::InvalidField,
            format!("{file:?} is not a recording's file name"),
        );
    };
    let opened = match tokio::fs::File::open(&path).await {
        Ok(opened) => opened,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return error(ErrorCode::NotFound, format!("no recording {file}"));
        }
        Err(err) => return error(ErrorCode::Internal, err.to_string()),
    };
    let len = opened.metadata().await.map(|m| m.len()).ok();
    let mut response = Body::from_stream(tokio_util::io::ReaderStream::new(opened)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/webm"));
    if let Some(len) = len {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

async fn start_or_stop(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path((room, action)): Path<(String, String)>,
) -> Response {
    if !state.token.admits(&headers) {
        return unauthorized();
    }
    let Ok(room) = RoomId::new(&room) else {
        return error(ErrorCode::InvalidRoomName, format!("{room:?} is not a room name"));
    };
    let result = match action.as_str() {
        "start" => state.bridge.start_recording(&room).await,
        "stop" => state.bridge.stop_recording(&room).await,
        _ => return error(ErrorCode::NotFound, "the action is `start` or `stop`"),
    };
    match result {
        Ok(file) => axum::Json(serde_json::json!({ "room": room, "file": file })).into_response(),
        Err(err) => call_error(err),
    }
}
