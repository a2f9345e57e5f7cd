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

/// How one session with a bridge ended.
#[derive(Debug)]
enum SessionEnd {
    /// `leave` was asked for (and carried out), or the handle is gone.
    Left,
    /// A final `bye` (kept in the signaling state): nothing more to do.
    Final,
    /// Lost: ask control where to go.
    Lost(SessionLoss),
}

/// How a reconnect ended.
enum Reconnected {
    /// Signaling with the new bridge is up and its first offer answered.
    Session(Box<Ws>),
    /// Refused for good, or the budget is spent; the reason is recorded.
    GaveUp(String),
}

/// What one handled message means for the session.
enum Handled {
    Continue,
    /// Sending on the socket failed.
    Unusable,
    Bye(ByeReason),
}

/// The driver task: runs the signaling of one session after the other, and reconnects in
/// between. Commands during a reconnect are refused (`send`) or end it (`leave`).
struct Driver {
    shared: Arc<Shared>,
    control: ControlClient,
    options: ParticipantOptions,
    /// Start of the first join: what stats times are measured from.
    started: Instant,
}

impl Driver {
    async fn run(self, mut ws: Ws, mut commands: mpsc::Receiver<Command>) {
        let local = self.shared.participant_id.clone();
        // The outage under way: from a loss until a new peer connection is up.
        let mut episode: Option<ReconnectEpisode> = None;
        // The reconnect record that waits for the new session's first media packet.
        let mut awaiting_media: Option<(u64, Instant)> = None;
        loop {
            let session = self.shared.session();
            let end = self
                .run_session(
                    &mut ws,
                    &session,
                    &mut commands,
                    &mut episode,
                    &mut awaiting_media,
                )
                .await;
            let lost_at = Instant::now();
            lock(&self.shared.signaling).open = false;
            tracing::debug!(participant = %local, ?end, "session ended");
            if let SessionEnd::Final = end {
                // The bridge closes after a bye; closing from here too frees the socket at once.
                let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(None)).await;
            }
            let SessionEnd::Lost(cause) = end else {
                break;
            };
            if !self.options.auto_reconnect {
                let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(None)).await;
                break;
            }
            let (report_lost_bridge, immediate) = match cause {
                SessionLoss::Bye(reason) => match after_bye(reason) {
                    ByeAction::Reconnect {
                        report_lost_bridge,
                        immediate,
                    } => (report_lost_bridge, immediate),
                    ByeAction::Final => break,
                },
                SessionLoss::SocketClosed | SessionLoss::PeerConnectionFailed => (true, false),
            };
            let lost_bridge = lock(&self.shared.join).bridge_id.clone();
            let record = lock(&self.shared.reconnects).push(ReconnectRecord::new(
                cause,
                lost_bridge.clone(),
                lost_at - self.started,
            ));
            self.shared.reconnecting.store(true, Ordering::Release);
            // Stop sending and free the old connection before the new one starts. The old socket
            // is closed too: after a failed peer connection it may still be open, and a bridge
            // that is alive would otherwise keep the session until its send queue overflows.
            session.close().await;
            let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(None)).await;
            let outage = episode.get_or_insert_with(|| ReconnectEpisode::new(lost_at));

            let attempt = self.reconnect(
                outage,
                record,
                report_lost_bridge.then_some(lost_bridge),
                immediate,
                lost_at,
            );
            tokio::pin!(attempt);
            let outcome = loop {
                tokio::select! {
                    outcome = &mut attempt => break Some(outcome),
                    command = commands.recv() => match command {
                        Some(Command::Send(_, ack)) => {
                            let _ = ack.send(Err(ParticipantError::Signaling(
                                "reconnecting: no bridge session".into(),
                            )));
                        }
                        Some(Command::Leave(ack)) => {
                            // No bridge to tell; control forgets a placement that is never used.
                            let _ = ack.send(Ok(()));
                            break None;
                        }
                        None => break None,
                    },
                }
            };
            self.shared.reconnecting.store(false, Ordering::Release);
            match outcome {
                Some(Reconnected::Session(next)) => {
                    ws = *next;
                    awaiting_media = Some((record, lost_at));
                }
                Some(Reconnected::GaveUp(error)) => {
                    tracing::warn!(participant = %local, "giving up reconnecting: {error}");
                    lock(&self.shared.signaling).last_local_error = Some(format!("reconnect: {error}"));
                    self.shared.update_record(record, |r| r.error = Some(error));
                    break;
                }
                None => break,
            }
        }
        lock(&self.shared.signaling).open = false;
    }

    /// The signaling of one session: answers offers in order, keeps the roster, carries out
    /// commands, and watches the peer connection. Returns when the session is over.
    async fn run_session(
        &self,
        ws: &mut Ws,
        session: &MediaSession,
        commands: &mut mpsc::Receiver<Command>,
        episode: &mut Option<ReconnectEpisode>,
        awaiting_media: &mut Option<(u64, Instant)>,
    ) -> SessionEnd {
        let local = &self.shared.participant_id;
        let state = &self.shared.signaling;
        let mut connection = session.watch_connection();
        let mut first_media = session.watch_first_media();
        let mut watching_connection = true;
        let mut disconnected_deadline: Option<tokio::time::Instant> = None;
        loop {
            let connection_state = *connection.borrow_and_update();
            // Without auto_reconnect a failed peer connection leaves signaling as it is, as
            // before reconnects existed: a test may want to watch exactly that.
            let reconnects = self.options.auto_reconnect;
            match connection_state {
                RTCPeerConnectionState::Connected => {
                    // The outage is over: a later loss starts a fresh schedule and budget.
                    *episode = None;
                    disconnected_deadline = None;
                }
                RTCPeerConnectionState::Failed if reconnects => {
                    return SessionEnd::Lost(SessionLoss::PeerConnectionFailed);
                }
                RTCPeerConnectionState::Disconnected if reconnects => {
                    disconnected_deadline
                        .get_or_insert_with(|| tokio::time::Instant::now() + DISCONNECTED_GRACE);
                }
                _ => disconnected_deadline = None,
            }
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Send(message, ack)) => {
                        let sent = send_message(ws, &message).await;
                        if sent.is_ok()
                            && let ClientMessage::Mute { microphone, camera } = message
                        {
                            *lock(&self.shared.mute) = Some((microphone, camera));
                        }
                        let _ = ack.send(sent);
                    }
                    Some(Command::Leave(ack)) => {
                        let sent = send_message(ws, &ClientMessage::Leave).await;
                        let ok = sent.is_ok();
                        let _ = ack.send(sent);
                        if ok {
                            finish_leave(ws, state, local).await;
                        }
                        return SessionEnd::Left;
                    }
                    None => return SessionEnd::Left,
                },
                incoming = next_message(ws, state) => match incoming {
                    Incoming::Message(msg) => match handle_message(ws, session, state, local, *msg).await {
                        Handled::Continue => {}
                        Handled::Unusable => return SessionEnd::Lost(SessionLoss::SocketClosed),
                        Handled::Bye(reason) => {
                            return match after_bye(reason) {
                                ByeAction::Final => SessionEnd::Final,
                                ByeAction::Reconnect { .. } => SessionEnd::Lost(SessionLoss::Bye(reason)),
                            };
                        }
                    },
                    Incoming::Skip => {}
                    Incoming::Closed(why) => {
                        tracing::debug!(participant = %local, "signaling ended: {why}");
                        lock(state).last_local_error = Some(format!("signaling ended: {why}"));
                        return SessionEnd::Lost(SessionLoss::SocketClosed);
                    }
                },
                changed = connection.changed(), if watching_connection => {
                    // The sender lives as long as the session; if it is gone, stop watching.
                    watching_connection = changed.is_ok();
                }
                arrived = first_media_at(&mut first_media), if awaiting_media.is_some() => {
                    if let (Some(at), Some((record, lost_at))) = (arrived, awaiting_media.take()) {
                        let since = ms(at.saturating_duration_since(lost_at));
                        self.shared.update_record(record, |r| r.first_media_ms = Some(since));
                    }
                }
                () = sleep_until_some(disconnected_deadline) => {
                    return SessionEnd::Lost(SessionLoss::PeerConnectionFailed);
                }
            }
        }
    }

    /// Asks control where to go until a new session is up, control refuses for good, or the
    /// outage's budget is spent. Every step is bounded by the budget.
    async fn reconnect(
        &self,
        episode: &mut ReconnectEpisode,
        record: u64,
        mut lost_bridge: Option<BridgeId>,
        mut immediate: bool,
        lost_at: Instant,
    ) -> Reconnected {
        let schedule = self.options.retry_schedule();
        let deadline = tokio::time::Instant::from_std(episode.deadline(&schedule));
        let mut last_error = String::from("no attempt made");
        loop {
            let Some(at) = episode.next_attempt(&schedule, Instant::now(), immediate) else {
                return Reconnected::GaveUp(format!(
                    "not reconnected within {:?} ({} calls to control); last: {last_error}",
                    schedule.budget,
                    episode.attempts()
                ));
            };
            immediate = false;
            tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
            self.shared.update_record(record, |r| r.attempts += 1);

            let join = match self.ask_control(lost_bridge.clone(), deadline).await {
                Ok(join) => join,
                Err(e) => match classify_error(&e) {
                    Refusal::Retry => {
                        tracing::debug!(participant = %self.shared.participant_id, "reconnect call: {e}");
                        last_error = e.to_string();
                        continue;
                    }
                    Refusal::NotFound => {
                        return Reconnected::GaveUp(format!(
                            "control no longer holds this participant ({e}); a synthetic \
                             participant does not join again under another id"
                        ));
                    }
                    Refusal::Final => return Reconnected::GaveUp(format!("refused: {e}")),
                },
            };
            if join.participant_id != self.shared.participant_id || join.room != self.shared.room {
                return Reconnected::GaveUp(format!(
                    "control answered for {} in {}, not this participant",
                    join.participant_id, join.room
                ));
            }
            let answered = ms(lost_at.elapsed());
            let bridge = join.bridge_id.clone();
            self.shared.update_record(record, |r| {
                r.answer_ms = Some(answered);
                r.bridge = Some(bridge);
            });

            match self.open_session(*join, deadline).await {
                Ok(ws) => {
                    let welcomed = lock(&self.shared.signaling).welcomed_at;
                    if let Some(welcomed) = welcomed {
                        let since = ms(welcomed.saturating_duration_since(lost_at));
                        self.shared.update_record(record, |r| r.welcome_ms = Some(since));
                    }
                    return Reconnected::Session(Box::new(ws));
                }
                Err((e, bridge)) => {
                    let bye = lock(&self.shared.signaling).bye;
                    match bye.map(|reason| (reason, after_bye(reason))) {
                        Some((reason, ByeAction::Final)) => {
                            return Reconnected::GaveUp(format!("bye {reason:?} from {bridge}: {e}"));
                        }
                        // The new bridge sent us on at once (moved, shutting down): as after
                        // the same bye in a running session.
                        Some((
                            _,
                            ByeAction::Reconnect {
                                report_lost_bridge,
                                immediate: now,
                            },
                        )) => {
                            lost_bridge = report_lost_bridge.then(|| bridge.clone());
                            immediate = now;
                        }
                        // A bridge that cannot be reached is reported on the next call; one that
                        // answered (say, with an error about the ticket) is not.
                        None if matches!(
                            e,
                            ParticipantError::Signaling(_) | ParticipantError::Timeout(_)
                        ) =>
                        {
                            lost_bridge = Some(bridge.clone());
                        }
                        None => {}
                    }
                    last_error = format!("session with {bridge}: {e}");
                    tracing::debug!(participant = %self.shared.participant_id, "{last_error}");
                }
            }
        }
    }

    /// One reconnect call, and the lobby if control answers `202`.
    async fn ask_control(
        &self,
        lost_bridge: Option<BridgeId>,
        deadline: tokio::time::Instant,
    ) -> Result<Box<JoinResponse>, ParticipantError> {
        let token = lock(&self.shared.join).session_token.clone();
        let call = self.control.reconnect(
            &self.shared.room,
            &self.shared.participant_id,
            &token,
            lost_bridge,
        );
        let bound = deadline.min(tokio::time::Instant::now() + RECONNECT_REQUEST_TIMEOUT);
        let answer = tokio::time::timeout_at(bound, call)
            .await
            .map_err(|_| ParticipantError::Timeout("reconnect call".into()))??;
        match answer {
            JoinAnswer::Joined(join) => Ok(join),
            JoinAnswer::Lobby(wait) => {
                if wait.participant_id != self.shared.participant_id {
                    return Err(ParticipantError::Protocol(format!(
                        "lobby answer for {}",
                        wait.participant_id
                    )));
                }
                // Later calls authenticate with the token of the wait.
                lock(&self.shared.join).session_token = wait.session_token.clone();
                let join = self
                    .control
                    .wait_in_lobby(&self.shared.room, &wait, deadline)
                    .await?;
                Ok(Box::new(join))
            }
        }
    }

    /// Builds a new peer connection and runs the signaling handshake with the answer's bridge.
    /// On success the answer and the session become the participant's current ones; on failure
    /// the error comes back with the bridge it concerns.
    async fn open_session(
        &self,
        join: JoinResponse,
        deadline: tokio::time::Instant,
    ) -> Result<Ws, (ParticipantError, BridgeId)> {
        let bridge = join.bridge_id.clone();
        let previous = self.shared.session();
        let session = match previous.renew(&join.ice_servers).await {
            Ok(session) => Arc::new(session),
            Err(e) => return Err((e, bridge)),
        };
        lock(&self.shared.signaling).begin_session();
        let bound = deadline.min(tokio::time::Instant::now() + self.options.join_timeout);
        let handshake =
            tokio::time::timeout_at(bound, handshake(&join, &session, &self.shared.signaling)).await;
        let mut ws = match handshake {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => {
                session.close().await;
                return Err((e, bridge));
            }
            Err(_) => {
                session.close().await;
                return Err((ParticipantError::Timeout("signaling handshake".into()), bridge));
            }
        };
        // The new bridge starts from "not muted"; say what the old one had been told.
        let mute = *lock(&self.shared.mute);
        if let Some((microphone, camera)) = mute
            && let Err(e) = send_message(&mut ws, &ClientMessage::Mute { microphone, camera }).await
        {
            session.close().await;
            return Err((e, bridge));
        }
        // The session token of a reconnect answer supersedes the one kept so far.
        *lock(&self.shared.join) = join;
        *lock(&self.shared.session) = session;
        lock(&self.shared.signaling).open = true;
        Ok(ws)
    }
}

/// When the first media packet arrived, once it has; `None` if the session is gone first.
async fn first_media_at(first_media: &mut watch::Receiver<Option<Instant>>) -> Option<Instant> {
    loop {
        // Copied out at once: the borrow must not be held across an await.
        let arrived = *first_media.borrow_and_update();
        if arrived.is_some() {
            return arrived;
        }
        if first_media.changed().await.is_err() {
            return None;
        }
    }
}

/// Sleeps until `deadline`, or forever without one (a disabled `select!` branch, written so
/// that it needs no precondition).
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
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
            media: Default::default(),
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
                state.welcomed_at = Some(Instant::now());
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

/// Handles one message after the handshake.
async fn handle_message(
    ws: &mut Ws,
    session: &MediaSession,
    state: &Mutex<SignalingState>,
    local: &ParticipantId,
    msg: ServerMessage,
) -> Handled {
    if apply_roster(state, local, &msg) {
        return Handled::Continue;
    }
    match msg {
        ServerMessage::Offer { sdp, tracks } => match session.apply_offer(sdp, &tracks).await {
            Ok(answer) => {
                if let Err(e) = send_message(ws, &ClientMessage::Answer { sdp: answer }).await {
                    lock(state).last_local_error = Some(e.to_string());
                    return Handled::Unusable;
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
            return Handled::Bye(reason);
        }
        ServerMessage::Welcome { .. } => {
            lock(state).last_local_error = Some("second welcome".into());
        }
        other => {
            lock(state).last_local_error = Some(format!("unexpected message: {other:?}"));
        }
    }
    Handled::Continue
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
