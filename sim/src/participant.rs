//! A synthetic participant: control join, the signaling WebSocket driver, a [`MediaSession`]
//! that answers the bridge's offers, and reconnection when its bridge is lost.
//!
//! # Reconnecting
//! When the signaling socket closes without a final `bye`, the bridge says `bye{moved}` (or
//! another reason that is not final, see [`crate::reconnect::after_bye`]), or the peer
//! connection fails, the driver asks control where to go
//! (`POST …/participants/{id}/reconnect`, naming the lost bridge except after `moved`), opens
//! signaling to the answer's bridge with its fresh ticket and a new peer connection
//! ([`MediaSession::renew`]), and carries on as the same participant: same id, same published
//! streams continuing, the same stats accumulating. [`ParticipantStats::reconnects`] records
//! each reconnect and how long its steps took.

use crate::control_api::{ControlClient, JoinAnswer};
use crate::error::ParticipantError;
use crate::media::MediaSession;
use crate::reconnect::{ByeAction, ReconnectEpisode, Refusal, RetrySchedule, after_bye, classify_error};
use crate::stats::{ParticipantStats, ReconnectLog, ReconnectRecord, SessionLoss};
use bridgemesh_proto::api::{ErrorCode, JoinResponse};
use bridgemesh_proto::signaling::{
    ByeReason, CLIENT_MESSAGE_MAX_BYTES, ClientMessage, ParticipantInfo, ServerMessage,
};
use bridgemesh_proto::{BridgeId, PROTOCOL_VERSION, ParticipantId, RoomId};
use futures_util::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use webrtc::peer_connection::RTCPeerConnectionState;

mod driver;
mod signaling;

use driver::Driver;
use signaling::*;

/// Most remote participants kept in the roster.
pub const MAX_ROSTER: usize = 4096;
/// Largest server → client signaling message accepted.
pub const SERVER_MESSAGE_MAX_BYTES: usize = 8 * 1024 * 1024;
/// How often [`SyntheticParticipant::wait_until`] re-checks.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long `leave` waits for the bridge's `bye` and the close handshake.
const LEAVE_GRACE: Duration = Duration::from_secs(2);
/// Bound on one reconnect call. Control may hold the answer a few seconds while it waits for
/// other reports that the bridge is gone; this leaves room for that.
const RECONNECT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the peer connection may stay `disconnected` before the session counts as lost. ICE
/// reports `disconnected` after 5 s without a packet and `failed` only after 25 s; a bridge that
/// went silent is given up on sooner, as the web client does.
const DISCONNECTED_GRACE: Duration = Duration::from_secs(3);
/// How long to wait for a polite close after a `bye` before dropping the socket.
const CLOSE_GRACE: Duration = Duration::from_millis(200);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How a synthetic participant joins, what it publishes, and how it reconnects.
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
    /// Bound on `join` as a whole: HTTP join, waiting in the lobby, WebSocket, welcome, first
    /// answer. During a reconnect, bound on the signaling handshake with the new bridge.
    pub join_timeout: Duration,
    /// Reconnect through control when the bridge is lost or says `bye{moved}`; when false the
    /// participant just stops, as before reconnects existed.
    pub auto_reconnect: bool,
    /// Wait before the first retry of a reconnect call (the first call goes out at once);
    /// doubles with each retry up to `reconnect_backoff_max`.
    pub reconnect_backoff_min: Duration,
    pub reconnect_backoff_max: Duration,
    /// How long one outage may last before the participant gives up (and records why in
    /// [`crate::ReconnectRecord::error`]).
    pub reconnect_budget: Duration,
    /// Local address to send from: HTTP to control (which geolocates clients by their address,
    /// so tests give participants distinct `127.x.y.z`) and the peer connection's UDP socket.
    /// `None`: the system's choice for HTTP, `127.0.0.1` for media. The signaling WebSocket
    /// always uses the system's choice.
    pub bind_ip: Option<IpAddr>,
    /// Offer only AES_CM_128_HMAC_SHA1_80 in DTLS, as WebRTC stacks without AEAD do; by default
    /// `rtc`'s list, which the bridge answers with AEAD_AES_128_GCM.
    pub srtp_cm_only: bool,
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
            auto_reconnect: true,
            reconnect_backoff_min: Duration::from_millis(100),
            reconnect_backoff_max: Duration::from_secs(2),
            reconnect_budget: Duration::from_secs(30),
            bind_ip: None,
            srtp_cm_only: false,
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

    fn retry_schedule(&self) -> RetrySchedule {
        RetrySchedule {
            backoff_min: self.reconnect_backoff_min,
            backoff_max: self.reconnect_backoff_max,
            budget: self.reconnect_budget,
        }
    }
}

/// What the signaling driver learned about the current session; read by `stats` and `roster`.
#[derive(Debug, Default)]
struct SignalingState {
    roster: BTreeMap<ParticipantId, ParticipantInfo>,
    open: bool,
    bye: Option<ByeReason>,
    last_server_error: Option<(ErrorCode, String)>,
    last_local_error: Option<String>,
    /// When the current session's `welcome` arrived.
    welcomed_at: Option<Instant>,
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

    /// Forgets what the previous session's bridge said, before a handshake with the next, so
    /// that its `bye` or `error` is not taken for the new bridge's. The roster stays until the
    /// new `welcome` replaces it.
    fn begin_session(&mut self) {
        self.bye = None;
        self.last_server_error = None;
        self.welcomed_at = None;
    }
}

enum Command {
    Send(ClientMessage, oneshot::Sender<Result<(), ParticipantError>>),
    Leave(oneshot::Sender<Result<(), ParticipantError>>),
}

/// State shared by the handle and the driver task.
struct Shared {
    participant_id: ParticipantId,
    room: RoomId,
    /// Control's latest answer (join, lobby admission or reconnect).
    join: Mutex<JoinResponse>,
    /// The current peer connection; a reconnect replaces it.
    session: Mutex<Arc<MediaSession>>,
    signaling: Mutex<SignalingState>,
    reconnects: Mutex<ReconnectLog>,
    reconnecting: AtomicBool,
    /// The last `mute` sent, replayed to the next bridge after a reconnect.
    mute: Mutex<Option<(bool, bool)>>,
}

impl Shared {
    fn session(&self) -> Arc<MediaSession> {
        Arc::clone(&lock(&self.session))
    }

    fn update_record(&self, id: u64, f: impl FnOnce(&mut ReconnectRecord)) {
        lock(&self.reconnects).update(id, f);
    }
}

/// A real WebRTC client in a bridgemesh room. See the crate docs for the run loop.
pub struct SyntheticParticipant {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    task: Option<JoinHandle<()>>,
}

impl SyntheticParticipant {
    /// Joins `room` through control at `control_url` (`http://host:port`), waiting in the lobby
    /// if the room has one, connects the signaling WebSocket, and returns once the welcome
    /// arrived and the first offer is answered. Media flows afterwards, once ICE/DTLS complete.
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

        let control = ControlClient::new(control_url, options.bind_ip)?;
        let answer = tokio::time::timeout_at(deadline, control.join(room, &options))
            .await
            .map_err(|_| timeout("HTTP join"))??;
        let join = match answer {
            JoinAnswer::Joined(join) => *join,
            JoinAnswer::Lobby(wait) => control.wait_in_lobby(room, &wait, deadline).await?,
        };
        if &join.room != room {
            return Err(ParticipantError::Protocol(format!(
                "joined {} instead of {room}",
                join.room
            )));
        }
        let session =
            Arc::new(MediaSession::new(&join.participant_id, &options, &join.ice_servers, started).await?);
        let signaling = Mutex::new(SignalingState::default());

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

        let shared = Arc::new(Shared {
            participant_id: join.participant_id.clone(),
            room: room.clone(),
            join: Mutex::new(join),
            session: Mutex::new(session),
            signaling,
            reconnects: Mutex::new(ReconnectLog::default()),
            reconnecting: AtomicBool::new(false),
            mute: Mutex::new(None),
        });
        let (commands, command_rx) = mpsc::channel(16);
        let driver = Driver {
            shared: Arc::clone(&shared),
            control,
            options,
            started,
        };
        let task = tokio::spawn(driver.run(ws, command_rx));
        Ok(Self {
            shared,
            commands,
            task: Some(task),
        })
    }

    /// The participant id; it stays the same across reconnects.
    pub fn participant_id(&self) -> &ParticipantId {
        &self.shared.participant_id
    }

    /// The bridge of the current session (after a reconnect, the new one).
    pub fn bridge_id(&self) -> BridgeId {
        lock(&self.shared.join).bridge_id.clone()
    }

    /// Control's latest answer: to the join, or to the latest reconnect.
    pub fn join_response(&self) -> JoinResponse {
        lock(&self.shared.join).clone()
    }

    /// Snapshot of media, signaling and reconnect counters; media counters accumulate over
    /// every session of this participant.
    pub fn stats(&self) -> ParticipantStats {
        let mut stats = self.shared.session().stats();
        {
            let state = lock(&self.shared.signaling);
            stats.signaling_open = state.open;
            stats.bye = state.bye;
            stats.last_server_error = state.last_server_error.clone();
            stats.last_local_error = state.last_local_error.clone();
        }
        stats.bridge_id = Some(self.bridge_id());
        stats.reconnecting = self.shared.reconnecting.load(Ordering::Acquire);
        let log = lock(&self.shared.reconnects);
        stats.reconnect_count = log.total();
        stats.reconnects = log.to_vec();
        stats
    }

    /// Remote participants as signaling reported them (welcome, joined/updated/left applied).
    /// Kept through a reconnect until the new bridge's welcome replaces it.
    pub fn roster(&self) -> BTreeMap<ParticipantId, ParticipantInfo> {
        lock(&self.shared.signaling).roster.clone()
    }

    /// Sends an RTCP PLI on the receiver of `from`'s camera track.
    pub async fn request_keyframe(&self, from: &ParticipantId) -> Result<(), ParticipantError> {
        self.shared.session().request_keyframe(from).await
    }

    /// Sends `mute` with this state. Media keeps flowing, as from a browser that mutes in its UI.
    /// The state is sent again to the next bridge after a reconnect.
    pub async fn set_muted(&self, microphone: bool, camera: bool) -> Result<(), ParticipantError> {
        self.send(ClientMessage::Mute { microphone, camera }).await
    }

    /// Sends any client message on the signaling socket (for protocol tests). Fails while
    /// reconnecting: there is no bridge to send to.
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
    /// sending `leave` fails; that failure is then returned. While reconnecting, stops trying.
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
        self.shared.session().close().await;
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
        lock(&self.shared.signaling).open = false;
        self.shared.session().close().await;
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
