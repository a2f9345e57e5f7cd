//! The bridge's HTTP side: the signaling WebSocket, `/health` and `/metrics` (rendered by [`crate::metrics`]).
//!
//! A session: the client opens the socket and sends `hello` with its ticket within
//! [`HELLO_TIMEOUT`]; the ticket is checked (signature, this bridge, expiry, first use) and the
//! participant is handed to the shard that owns its room. A participant a moderator removed is
//! refused here too, even with a ticket it never used. From then on the socket carries client
//! messages to the shard and the shard's messages back, until either side closes.

use crate::client_outbox;
use crate::driver::{Bridge, CLIENT_QUEUE_CAPACITY, ClientCommand};
use crate::shard::ConnectRequest;
use crate::signaling_limits::{ClientLimiter, MessageKind, Verdict};
use crate::ticket::{TicketError, now_unix_s};
use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bridgemesh_proto::api::{ErrorCode, Health, HealthStatus};
use bridgemesh_proto::signaling::{ByeReason, CLIENT_MESSAGE_MAX_BYTES, ClientMessage, ServerMessage};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Unparseable messages tolerated on one socket before it is closed.
const MALFORMED_MESSAGES_MAX: u32 = 8;

pub fn router(bridge: Arc<Bridge>) -> Router {
    Router::new()
        .route("/bridge/v1/signal", get(upgrade))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(bridge)
}

async fn upgrade(State(bridge): State<Arc<Bridge>>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(CLIENT_MESSAGE_MAX_BYTES)
        .max_frame_size(CLIENT_MESSAGE_MAX_BYTES)
        .on_upgrade(move |socket| session(bridge, socket))
}

async fn health(State(bridge): State<Arc<Bridge>>) -> Response {
    let status = if bridge.is_stopping() {
        HealthStatus::Degraded
    } else {
        HealthStatus::Ok
    };
    let code = if bridge.is_stopping() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = Health {
        status,
        role: "bridge".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    (code, axum::Json(body)).into_response()
}

async fn metrics(State(bridge): State<Arc<Bridge>>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        crate::metrics::render(&bridge),
    )
        .into_response()
}

/// A client message is a JSON object tagged by `type`. serde alone would also take an array whose
/// first element is the tag (`["leave"]`, `["hello","<ticket>"]`), which is not the protocol.
fn parse_client_message(text: &str) -> Result<ClientMessage, String> {
    if !text.trim_start().starts_with('{') {
        return Err("a signaling message is a JSON object".into());
    }
    serde_json::from_str(text).map_err(|err| err.to_string())
}

/// The `error` code a refused ticket gets; the message is the error's text.
fn ticket_error_code(err: &TicketError) -> ErrorCode {
    match err {
        TicketError::Overloaded => ErrorCode::RateLimited,
        _ => ErrorCode::TicketRejected,
    }
}

async fn send(socket: &mut WebSocket, message: &ServerMessage) -> bool {
    let Ok(text) = serde_json::to_string(message) else {
        return false;
    };
    socket.send(Message::Text(text.into())).await.is_ok()
}

async fn refuse(mut socket: WebSocket, code: ErrorCode, message: &str) {
    let _ = send(
        &mut socket,
        &ServerMessage::Error {
            code,
            message: message.to_owned(),
        },
    )
    .await;
    let _ = socket.close().await;
}

/// A kicked participant's ticket: refused, and told why with the same `bye` a connected one gets,
/// so its client ends the session instead of rejoining as after a lost connection.
async fn refuse_removed(mut socket: WebSocket) {
    let err = TicketError::ParticipantRemoved;
    let _ = send(
        &mut socket,
        &ServerMessage::Error {
            code: ticket_error_code(&err),
            message: err.to_string(),
        },
    )
    .await;
    let _ = send(
        &mut socket,
        &ServerMessage::Bye {
            reason: ByeReason::Kicked,
        },
    )
    .await;
    let _ = socket.close().await;
}

/// How long a socket closed on a flooding client keeps reading (and discarding) what is still in
/// flight, so the client reads the error and `bye` instead of a reset.
const LINGER_MAX: Duration = Duration::from_secs(2);

/// Closes `socket` and discards incoming messages until the client's close, its end of stream, or
/// [`LINGER_MAX`]. Closing with unread data would reset the connection and lose what was sent.
async fn linger_close(socket: &mut WebSocket) {
    let _ = socket.close().await;
    let deadline = tokio::time::Instant::now() + LINGER_MAX;
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, socket.next()).await {
        if matches!(message, Message::Close(_)) {
            break;
        }
    }
}

async fn session(bridge: Arc<Bridge>, mut socket: WebSocket) {
    if bridge.is_stopping() {
        return refuse(
            socket,
            ErrorCode::NoCapacity,
            "this bridge is shutting down; join again",
        )
        .await;
    }
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, socket.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => parse_client_message(&text),
        Ok(Some(Ok(_))) => {
            return refuse(socket, ErrorCode::MalformedBody, "expected a hello text message").await;
        }
        Ok(_) => return,
        Err(_) => return refuse(socket, ErrorCode::Unauthorized, "no hello within 10 s").await,
    };
    let (ticket, media) = match hello {
        Ok(ClientMessage::Hello { ticket, media }) => (ticket, media),
        Ok(_) => return refuse(socket, ErrorCode::Unauthorized, "the first message must be hello").await,
        Err(err) => return refuse(socket, ErrorCode::MalformedBody, &format!("bad hello: {err}")).await,
    };
    let claims = match bridge.verifier().verify(&ticket, now_unix_s()) {
        Ok(claims) => claims,
        Err(TicketError::ParticipantRemoved) => return refuse_removed(socket).await,
        Err(err) => return refuse(socket, ticket_error_code(&err), &err.to_string()).await,
    };
    let key = bridge.new_key();
    let room = claims.room.clone();
    let (client_tx, mut client_rx) = client_outbox::channel(CLIENT_QUEUE_CAPACITY);
    let request = ConnectRequest {
        key,
        room: room.clone(),
        participant_id: claims.participant_id.clone(),
        display_name: claims.display_name.clone(),
        media,
        moderator: claims.moderator,
    };
    if !bridge.connect(request, client_tx).await {
        return refuse(
            socket,
            ErrorCode::NoCapacity,
            "this bridge is shutting down; join again",
        )
        .await;
    }
    tracing::debug!(participant = %claims.participant_id, room = %room, "signaling session open");
    let mut malformed = 0;
    let mut limiter = ClientLimiter::new(&bridge.config().signaling_limits, Instant::now());
    loop {
        tokio::select! {
            incoming = socket.next() => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(_))) => {
                        malformed += 1;
                        let _ = send(&mut socket, &ServerMessage::Error { code: ErrorCode::MalformedBody, message: "signaling is JSON text".into() }).await;
                        if malformed > MALFORMED_MESSAGES_MAX { break; }
                        continue;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                };
                match parse_client_message(&text) {
                    Ok(message) => {
                        // Checked here, before the shard: a flood costs the room nothing.
                        let kind = MessageKind::of(&message);
                        match limiter.check(Instant::now(), kind) {
                            Verdict::Accept => bridge.client_message(&room, key, message).await,
                            Verdict::Refuse => {
                                bridge.count_signaling_refused();
                                let error = ServerMessage::Error { code: ErrorCode::RateLimited, message: limiter.refusal_message(kind) };
                                if !send(&mut socket, &error).await { break; }
                            }
                            Verdict::Disconnect => {
                                tracing::debug!(participant = %claims.participant_id, refused = limiter.refused_total(), "signaling flood; disconnecting the client");
                                bridge.count_signaling_refused();
                                bridge.count_signaling_flood_disconnect();
                                let error = ServerMessage::Error {
                                    code: ErrorCode::RateLimited,
                                    message: format!("disconnected after {} refused messages", limiter.refused_total()),
                                };
                                let _ = send(&mut socket, &error).await;
                                let _ = send(&mut socket, &ServerMessage::Bye { reason: ByeReason::ProtocolError }).await;
                                linger_close(&mut socket).await;
                                break;
                            }
                        }
                    }
                    Err(err) => {
                        malformed += 1;
                        let error = ServerMessage::Error { code: ErrorCode::MalformedBody, message: format!("unreadable message: {err}") };
                        if !send(&mut socket, &error).await || malformed > MALFORMED_MESSAGES_MAX {
                            break;
                        }
                    }
                }
            }
            outgoing = client_rx.recv() => match outgoing {
                Some(ClientCommand::Send(message)) => {
                    if !send(&mut socket, &message).await { break; }
                }
                Some(ClientCommand::Close) | None => {
                    // The outbox hands out what the shard queued (e.g. `bye`) before `Close`.
                    let _ = socket.close().await;
                    break;
                }
            }
        }
    }
    bridge.disconnect(&room, key).await;
    tracing::debug!(participant = %claims.participant_id, "signaling session closed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_participant_is_told_its_ticket_is_rejected_because_it_was_removed() {
        let err = TicketError::ParticipantRemoved;
        assert_eq!(ticket_error_code(&err), ErrorCode::TicketRejected);
        assert!(err.to_string().contains("removed"), "{err}");
    }
}
