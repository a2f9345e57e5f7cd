//! A synthetic participant: control join, the signaling WebSocket driver, and a
//! [`MediaSession`] that answers the bridge's offers.

use crate::error::ParticipantError;
use crate::media::MediaSession;
use crate::stats::ParticipantStats;
use bridgemesh_proto::api::{ErrorBody, ErrorCode, JoinRequest, JoinResponse};
use bridgemesh_proto::signaling::{
    ByeReason, CLIENT_MESSAGE_MAX_BYTES, ClientMessage, ParticipantInfo, ServerMessage,
};
use bridgemesh_proto::{BridgeId, PROTOCOL_VERSION, ParticipantId, RoomId};
use futures_util::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Most remote participants kept in the roster.
pub const MAX_ROSTER: usize = 4096;
/// Largest server → client signaling message accepted.
pub const SERVER_MESSAGE_MAX_BYTES: usize = 8 * 1024 * 1024;
/// How often [`SyntheticParticipant::wait_until`] re-checks.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long `leave` waits for the bridge's `bye` and the close handshake.
const LEAVE_GRACE: Duration = Duration::from_secs(2);
/// Largest error body quoted in an [`ParticipantError::Http`].
const ERROR_BODY_QUOTE: usize = 512;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How a synthetic participant joins and what it publishes.
#[derive(Debug, Clone)]
pub struct ParticipantOptions {
    pub display_name: String,
    /// Room password, if the room has one.
    pub password: Option<String>,
    pub publish_audio: bool,
    pub publish_video: bool,
    pub video_bitrate_bps: u32,
    pub video_fps: u32,
    pub keyframe_interval: Duration,
    /// Bound on `join` as a whole: HTTP join, WebSocket, welcome, first answer.
    pub join_timeout: Duration,
}

impl Default for ParticipantOptions {
    fn default() -> Self {
        Self {
            display_name: "synthetic".to_owned(),
            password: None,
            publish_audio: true,
            publish_video: true,
            video_bitrate_bps: 500_000,
            video_fps: 30,
            keyframe_interval: Duration::from_secs(2),
            join_timeout: Duration::from_secs(10),
        }
    }
}

impl ParticipantOptions {
    pub fn new(display_name: impl Into<String>) -> Self {
        Self {
            display_name: display_name.into(),
            ..Self::default()
        }
    }
}

/// What the signaling driver learned; read by `stats` and `roster`.
#[derive(Debug, Default)]
struct SignalingState {
    roster: BTreeMap<ParticipantId, ParticipantInfo>,
    open: bool,
    bye: Option<ByeReason>,
    last_server_error: Option<(ErrorCode, String)>,
    last_local_error: Option<String>,
}

impl SignalingState {
    fn upsert(&mut self, local: &ParticipantId, info: ParticipantInfo) {
        if &info.id == local {
            return;
        }
        if self.roster.len() >= MAX_ROSTER && !self.roster.contains_key(&info.id) {
            tracing::warn!("roster full ({MAX_ROSTER}); ignoring {}", info.id);
            return;
        }
        self.roster.insert(info.id.clone(), info);
    }
}

enum Command {
    Send(ClientMessage, oneshot::Sender<Result<(), ParticipantError>>),
    Leave(oneshot::Sender<Result<(), ParticipantError>>),
}

/// A real WebRTC client in a bridgemesh room. See the crate docs for the run loop.
pub struct SyntheticParticipant {
    join: JoinResponse,
    session: Arc<MediaSession>,
    signaling: Arc<Mutex<SignalingState>>,
    commands: mpsc::Sender<Command>,
    task: Option<JoinHandle<()>>,
}

impl SyntheticParticipant {
    /// Joins `room` through control at `control_url` (`http://host:port`), connects the
    /// signaling WebSocket, and returns once the welcome arrived and the first offer is
    /// answered. Media flows afterwards, once ICE/DTLS complete.
    pub async fn join(
        control_url: &str,
        room: &RoomId,
        options: ParticipantOptions,
    ) -> Result<Self, ParticipantError> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started + options.join_timeout);
        let timeout = |stage: &str| {
            ParticipantError::Timeout(format!(
                "join of {room} not done after {:?} ({stage})",
                options.join_timeout
            ))
        };

        let join = tokio::time::timeout_at(deadline, request_join(control_url, room, &options))
            .await
            .map_err(|_| timeout("HTTP join"))??;
        if &join.room != room {
            return Err(ParticipantError::Protocol(format!(
                "joined {} instead of {room}",
                join.room
            )));
        }
        let session =
            Arc::new(MediaSession::new(&join.participant_id, &options, &join.ice_servers, started).await?);
        let signaling = Arc::new(Mutex::new(SignalingState::default()));

        let handshake = tokio::time::timeout_at(deadline, handshake(&join, &session, &signaling)).await;
        let ws = match handshake {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => {
                session.close().await;
                return Err(e);
            }
            Err(_) => {
                session.close().await;
                return Err(timeout("signaling handshake"));
            }
        };
        lock(&signaling).open = true;

        let (commands, command_rx) = mpsc::channel(16);
        let task = tokio::spawn(run_signaling(
            ws,
            Arc::clone(&session),
            Arc::clone(&signaling),
            command_rx,
            join.participant_id.clone(),
        ));
        Ok(Self {
            join,
            session,
            signaling,
            commands,
            task: Some(task),
        })
    }

    pub fn participant_id(&self) -> &ParticipantId {
        &self.join.participant_id
    }

    pub fn bridge_id(&self) -> &BridgeId {
        &self.join.bridge_id
    }

    /// The control's answer to the join.
    pub fn join_response(&self) -> &JoinResponse {
        &self.join
    }

    /// Snapshot of media and signaling counters.
    pub fn stats(&self) -> ParticipantStats {
        let mut stats = self.session.stats();
        let state = lock(&self.signaling);
        stats.signaling_open = state.open;
        stats.bye = state.bye;
        stats.last_server_error = state.last_server_error.clone();
        stats.last_local_error = state.last_local_error.clone();
        stats
    }

    /// Remote participants as signaling reported them (welcome, joined/updated/left applied).
    pub fn roster(&self) -> BTreeMap<ParticipantId, ParticipantInfo> {
        lock(&self.signaling).roster.clone()
    }

    /// Sends an RTCP PLI on the receiver of `from`'s camera track.
    pub async fn request_keyframe(&self, from: &ParticipantId) -> Result<(), ParticipantError> {
        self.session.request_keyframe(from).await
    }

    /// Sends `mute` with this state. Media keeps flowing, as from a browser that mutes in its UI.
    pub async fn set_muted(&self, microphone: bool, camera: bool) -> Result<(), ParticipantError> {
        self.send(ClientMessage::Mute { microphone, camera }).await
    }

    /// Sends any client message on the signaling socket (for protocol tests).
    pub async fn send(&self, message: ClientMessage) -> Result<(), ParticipantError> {
        let (ack, result) = oneshot::channel();
        self.commands
            .send(Command::Send(message, ack))
            .await
            .map_err(|_| ParticipantError::Signaling("signaling is closed".into()))?;
        result
            .await
            .map_err(|_| ParticipantError::Signaling("signaling ended".into()))?
    }

    /// Leaves cleanly: sends `leave`, waits briefly for the bridge's `bye`, closes the
    /// WebSocket with a close frame and the peer connection. Everything is torn down even when
    /// sending `leave` fails; that failure is then returned.
    pub async fn leave(mut self) -> Result<(), ParticipantError> {
        let (ack, result) = oneshot::channel();
        let sent = match self.commands.send(Command::Leave(ack)).await {
            Ok(()) => result
                .await
                .unwrap_or_else(|_| Err(ParticipantError::Signaling("signaling ended".into()))),
            Err(_) => Err(ParticipantError::Signaling("signaling is closed".into())),
        };
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(LEAVE_GRACE * 2, &mut task).await.is_err()
        {
            task.abort();
            let _ = task.await;
        }
        self.session.close().await;
        sent
    }

    /// Disappears without `leave`, as a crashed client would: the WebSocket is dropped without
    /// a close frame (the bridge sees the TCP connection end) and the peer connection is closed.
    /// Note: closing a `webrtc` 0.21 peer connection sends a DTLS close_notify; there is no way
    /// to stop its driver silently.
    pub async fn vanish(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        lock(&self.signaling).open = false;
        self.session.close().await;
    }

    /// Polls `cond` every 50 ms until it holds or `timeout` passes; the error names `what` and
    /// carries a stats summary.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&ParticipantStats, &BTreeMap<ParticipantId, ParticipantInfo>) -> bool,
    ) -> Result<(), ParticipantError> {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.stats();
            let roster = self.roster();
            if cond(&stats, &roster) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let ids: Vec<&str> = roster.keys().map(ParticipantId::as_str).collect();
                return Err(ParticipantError::Timeout(format!(
                    "{what}: not reached within {timeout:?} for participant {}\nroster: {ids:?}\n{}",
                    self.participant_id(),
                    stats.summary()
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for SyntheticParticipant {
    fn drop(&mut self) {
        // Dropped without leave/vanish (a failed test): stop the driver; the session closes its
        // peer connection when the last reference goes.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn request_join(
    control_url: &str,
    room: &RoomId,
    options: &ParticipantOptions,
) -> Result<JoinResponse, ParticipantError> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| ParticipantError::Connect(e.to_string()))?;
    let url = format!("{}/api/v1/rooms/{room}/join", control_url.trim_end_matches('/'));
    let body = JoinRequest {
        display_name: options.display_name.clone(),
        password: options.password.clone(),
    };
    let response = client
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| ParticipantError::Connect(format!("POST {url}: {e}")))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| ParticipantError::Connect(format!("reading the answer to POST {url}: {e}")))?;
    if status.is_success() {
        return serde_json::from_slice(&bytes)
            .map_err(|e| ParticipantError::Protocol(format!("join response from {url}: {e}")));
    }
    Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) => ParticipantError::Http {
            status: status.as_u16(),
            code: Some(body.error.code),
            message: body.error.message,
        },
        Err(_) => ParticipantError::Http {
            status: status.as_u16(),
            code: None,
            message: String::from_utf8_lossy(&bytes[..bytes.len().min(ERROR_BODY_QUOTE)]).into_owned(),
        },
    })
}

async fn send_message(ws: &mut Ws, message: &ClientMessage) -> Result<(), ParticipantError> {
    let text = serde_json::to_string(message).map_err(|e| ParticipantError::Protocol(e.to_string()))?;
    if text.len() > CLIENT_MESSAGE_MAX_BYTES {
        return Err(ParticipantError::Protocol(format!(
            "client message of {} bytes exceeds the bridge's limit of {CLIENT_MESSAGE_MAX_BYTES}",
            text.len()
        )));
    }
    ws.send(Message::text(text))
        .await
        .map_err(|e| ParticipantError::Signaling(format!("send: {e}")))
}

/// What the next frame on the socket was.
enum Incoming {
    Message(Box<ServerMessage>),
    /// A frame that is not a server message (ignored, already recorded).
    Skip,
    Closed(String),
}

async fn next_message(ws: &mut Ws, state: &Mutex<SignalingState>) -> Incoming {
    match ws.next().await {
        Some(Ok(Message::Text(text))) => match serde_json::from_str::<ServerMessage>(text.as_str()) {
            Ok(msg) => Incoming::Message(Box::new(msg)),
            Err(e) => {
                let snippet: String = text.as_str().chars().take(200).collect();
                tracing::warn!("unparsable signaling message: {e}: {snippet}");
                lock(state).last_local_error = Some(format!("unparsable server message: {e}: {snippet}"));
                Incoming::Skip
            }
        },
        Some(Ok(Message::Binary(_))) => {
            lock(state).last_local_error = Some("binary frame on the signaling socket".into());
            Incoming::Skip
        }
        Some(Ok(Message::Close(frame))) => Incoming::Closed(format!("closed by the bridge: {frame:?}")),
        Some(Ok(_)) => Incoming::Skip,
        Some(Err(e)) => Incoming::Closed(format!("socket error: {e}")),
        None => Incoming::Closed("socket ended".into()),
    }
}

/// Applies a roster-changing message; returns false if `msg` is not one.
fn apply_roster(state: &Mutex<SignalingState>, local: &ParticipantId, msg: &ServerMessage) -> bool {
    let mut state = lock(state);
    match msg {
        ServerMessage::ParticipantJoined { participant }
        | ServerMessage::ParticipantUpdated { participant } => {
            state.upsert(local, participant.clone());
        }
        ServerMessage::ParticipantLeft { participant_id } => {
            state.roster.remove(participant_id);
        }
        _ => return false,
    }
    true
}

/// Connects, says hello, waits for the welcome and answers the first offer.
async fn handshake(
    join: &JoinResponse,
    session: &MediaSession,
    state: &Mutex<SignalingState>,
) -> Result<Ws, ParticipantError> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(SERVER_MESSAGE_MAX_BYTES))
        .max_frame_size(Some(SERVER_MESSAGE_MAX_BYTES));
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(join.signaling_url.as_str(), Some(config), true)
            .await
            .map_err(|e| ParticipantError::Signaling(format!("connecting to {}: {e}", join.signaling_url)))?;
    send_message(
        &mut ws,
        &ClientMessage::Hello {
            ticket: join.ticket.clone(),
        },
    )
    .await?;
    let local = &join.participant_id;
    let mut welcomed = false;
    loop {
        let msg = match next_message(&mut ws, state).await {
            Incoming::Message(msg) => msg,
            Incoming::Skip => continue,
            Incoming::Closed(why) => {
                let state = lock(state);
                return Err(match (&state.last_server_error, state.bye) {
                    (Some((code, message)), _) => ParticipantError::Server {
                        code: *code,
                        message: message.clone(),
                    },
                    (None, Some(bye)) => {
                        ParticipantError::Signaling(format!("bye ({bye:?}) during join; {why}"))
                    }
                    (None, None) => ParticipantError::Signaling(format!("during join: {why}")),
                });
            }
        };
        if apply_roster(state, local, &msg) {
            continue;
        }
        match *msg {
            ServerMessage::Welcome {
                protocol_version,
                room,
                participant_id,
                participants,
            } => {
                if protocol_version != PROTOCOL_VERSION {
                    return Err(ParticipantError::Protocol(format!(
                        "bridge speaks protocol {protocol_version}, this client {PROTOCOL_VERSION}"
                    )));
                }
                if &participant_id != local || room != join.room {
                    return Err(ParticipantError::Protocol(format!(
                        "welcome for {participant_id} in {room}, expected {local} in {}",
                        join.room
                    )));
                }
                let mut state = lock(state);
                state.roster.clear();
                for info in participants {
                    state.upsert(local, info);
                }
                welcomed = true;
            }
            ServerMessage::Offer { sdp, tracks } => {
                if !welcomed {
                    return Err(ParticipantError::Protocol("offer before welcome".into()));
                }
                let answer = session.apply_offer(sdp, &tracks).await?;
                send_message(&mut ws, &ClientMessage::Answer { sdp: answer }).await?;
                return Ok(ws);
            }
            ServerMessage::Error { code, message } => {
                lock(state).last_server_error = Some((code, message.clone()));
                return Err(ParticipantError::Server { code, message });
            }
            ServerMessage::Bye { reason } => {
                lock(state).bye = Some(reason);
            }
            other => {
                return Err(ParticipantError::Protocol(format!(
                    "unexpected during join: {other:?}"
                )));
            }
        }
    }
}

/// The signaling driver after the handshake: answers offers in order, keeps the roster, and
/// carries out commands. Ends when the socket closes or on `leave`.
async fn run_signaling(
    mut ws: Ws,
    session: Arc<MediaSession>,
    state: Arc<Mutex<SignalingState>>,
    mut commands: mpsc::Receiver<Command>,
    local: ParticipantId,
) {
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Send(message, ack)) => {
                    let _ = ack.send(send_message(&mut ws, &message).await);
                }
                Some(Command::Leave(ack)) => {
                    let sent = send_message(&mut ws, &ClientMessage::Leave).await;
                    let ok = sent.is_ok();
                    let _ = ack.send(sent);
                    if ok {
                        finish_leave(&mut ws, &state, &local).await;
                    }
                    break;
                }
                None => break,
            },
            incoming = next_message(&mut ws, &state) => match incoming {
                Incoming::Message(msg) => {
                    if !handle_message(&mut ws, &session, &state, &local, *msg).await {
                        break;
                    }
                }
                Incoming::Skip => {}
                Incoming::Closed(why) => {
                    tracing::debug!(participant = %local, "signaling ended: {why}");
                    break;
                }
            },
        }
    }
    lock(&state).open = false;
}

/// Handles one message after the handshake; false if the socket is unusable.
async fn handle_message(
    ws: &mut Ws,
    session: &MediaSession,
    state: &Mutex<SignalingState>,
    local: &ParticipantId,
    msg: ServerMessage,
) -> bool {
    if apply_roster(state, local, &msg) {
        return true;
    }
    match msg {
        ServerMessage::Offer { sdp, tracks } => match session.apply_offer(sdp, &tracks).await {
            Ok(answer) => {
                if let Err(e) = send_message(ws, &ClientMessage::Answer { sdp: answer }).await {
                    lock(state).last_local_error = Some(e.to_string());
                    return false;
                }
            }
            Err(e) => {
                tracing::warn!(participant = %local, "offer not applied: {e}");
                lock(state).last_local_error = Some(format!("offer not applied: {e}"));
            }
        },
        ServerMessage::Error { code, message } => {
            tracing::debug!(participant = %local, ?code, "bridge error: {message}");
            lock(state).last_server_error = Some((code, message));
        }
        ServerMessage::Bye { reason } => {
            lock(state).bye = Some(reason);
        }
        ServerMessage::Welcome { .. } => {
            lock(state).last_local_error = Some("second welcome".into());
        }
        other => {
            lock(state).last_local_error = Some(format!("unexpected message: {other:?}"));
        }
    }
    true
}

/// After `leave` was sent: wait briefly for `bye` or the bridge's close, then close politely.
async fn finish_leave(ws: &mut Ws, state: &Mutex<SignalingState>, local: &ParticipantId) {
    let waited = tokio::time::timeout(LEAVE_GRACE, async {
        loop {
            match next_message(ws, state).await {
                Incoming::Message(msg) => {
                    if let ServerMessage::Bye { reason } = *msg {
                        lock(state).bye = Some(reason);
                        return true;
                    }
                    apply_roster(state, local, &msg);
                }
                Incoming::Skip => {}
                Incoming::Closed(_) => return false,
            }
        }
    })
    .await;
    if matches!(waited, Ok(true) | Err(_)) {
        let _ = tokio::time::timeout(LEAVE_GRACE, ws.close(None)).await;
    }
}
