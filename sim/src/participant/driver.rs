//! The driver task of a synthetic participant: one signaling session after the other, and the
//! reconnects in between (see the parent module's doc).

use super::*;

/// How one session with a bridge ended.
#[derive(Debug)]
pub(super) enum SessionEnd {
    /// `leave` was asked for (and carried out), or the handle is gone.
    Left,
    /// A final `bye` (kept in the signaling state): nothing more to do.
    Final,
    /// Lost: ask control where to go.
    Lost(SessionLoss),
}

/// How a reconnect ended.
pub(super) enum Reconnected {
    /// Signaling with the new bridge is up and its first offer answered.
    Session(Box<Ws>),
    /// Refused for good, or the budget is spent; the reason is recorded.
    GaveUp(String),
}

/// The driver task: runs the signaling of one session after the other, and reconnects in
/// between. Commands during a reconnect are refused (`send`) or end it (`leave`).
pub(super) struct Driver {
    pub(super) shared: Arc<Shared>,
    pub(super) control: ControlClient,
    pub(super) options: ParticipantOptions,
    /// Start of the first join: what stats times are measured from.
    pub(super) started: Instant,
}

impl Driver {
    pub(super) async fn run(self, mut ws: Ws, mut commands: mpsc::Receiver<Command>) {
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
pub(super) async fn first_media_at(first_media: &mut watch::Receiver<Option<Instant>>) -> Option<Instant> {
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
pub(super) async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
