//! The signaling socket of a synthetic participant: the `hello`/`welcome` handshake, reading and
//! sending messages, the roster, and leaving.

use super::*;

/// What one handled message means for the session.
pub(super) enum Handled {
    Continue,
    /// Sending on the socket failed.
    Unusable,
    Bye(ByeReason),
}

pub(super) async fn send_message(ws: &mut Ws, message: &ClientMessage) -> Result<(), ParticipantError> {
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
pub(super) enum Incoming {
    Message(Box<ServerMessage>),
    /// A frame that is not a server message (ignored, already recorded).
    Skip,
    Closed(String),
}

pub(super) async fn next_message(ws: &mut Ws, state: &Mutex<SignalingState>) -> Incoming {
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
pub(super) fn apply_roster(
    state: &Mutex<SignalingState>,
    local: &ParticipantId,
    msg: &ServerMessage,
) -> bool {
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
pub(super) async fn handshake(
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
pub(super) async fn handle_message(
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
pub(super) async fn finish_leave(ws: &mut Ws, state: &Mutex<SignalingState>, local: &ParticipantId) {
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
