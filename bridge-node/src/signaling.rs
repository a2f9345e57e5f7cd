//! The bridge's HTTP side: the signaling WebSocket, `/health` and `/metrics`.
//!
//! A session: the client opens the socket and sends `hello` with its ticket within
//! [`HELLO_TIMEOUT`]; the ticket is checked (signature, this bridge, expiry, first use) and the
//! participant is handed to the shard that owns its room. A participant a moderator removed is
//! refused here too, even with a ticket it never used. From then on the socket carries client
//! messages to the shard and the shard's messages back, until either side closes.

use crate::cascade::LinkStats;
use crate::driver::{Bridge, CLIENT_QUEUE_CAPACITY, ClientCommand};
use crate::shard::ConnectRequest;
use crate::ticket::{TicketError, now_unix_s};
use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bridgemesh_proto::BridgeId;
use bridgemesh_proto::api::{ErrorCode, Health, HealthStatus};
use bridgemesh_proto::signaling::{ByeReason, CLIENT_MESSAGE_MAX_BYTES, ClientMessage, ServerMessage};
use futures_util::{SinkExt, StreamExt};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

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
    let stats = bridge.stats();
    let mut text = String::new();
    let id = bridge.id();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            text,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{bridge=\"{id}\"}} {value}"
        );
    };
    let s = stats.shards;
    metric(
        "bridgemesh_bridge_participants",
        "gauge",
        "Participants connected.",
        s.participants,
    );
    metric(
        "bridgemesh_bridge_rooms",
        "gauge",
        "Rooms with at least one participant here.",
        s.rooms,
    );
    metric(
        "bridgemesh_bridge_datagrams_received_total",
        "counter",
        "Datagrams routed to a participant.",
        s.datagrams_in,
    );
    metric(
        "bridgemesh_bridge_datagram_received_bytes_total",
        "counter",
        "Bytes of the datagrams routed to a participant (UDP payloads).",
        s.datagram_bytes_in,
    );
    metric(
        "bridgemesh_bridge_datagrams_sent_total",
        "counter",
        "Datagrams the shards handed to the socket (media, RTCP, ICE, DTLS).",
        s.datagrams_out,
    );
    metric(
        "bridgemesh_bridge_datagrams_unroutable_total",
        "counter",
        "Datagrams from unknown addresses without a known ICE ufrag.",
        stats.datagrams_unroutable,
    );
    metric(
        "bridgemesh_bridge_datagrams_dropped_total",
        "counter",
        "Datagrams dropped because a shard inbox was full.",
        stats.datagrams_dropped_inbox_full,
    );
    metric(
        "bridgemesh_bridge_datagrams_send_failed_total",
        "counter",
        "Datagrams the socket refused to send.",
        stats.datagrams_send_failed,
    );
    metric(
        "bridgemesh_bridge_media_routes",
        "gauge",
        "Remote addresses routed to a participant.",
        stats.media_routes,
    );
    metric(
        "bridgemesh_bridge_rtp_received_total",
        "counter",
        "RTP packets received from publishers.",
        s.rtp_in,
    );
    metric(
        "bridgemesh_bridge_rtp_received_bytes_total",
        "counter",
        "Bytes of RTP received from publishers (header and payload, decrypted).",
        s.rtp_in_bytes,
    );
    metric(
        "bridgemesh_bridge_rtp_forwarded_total",
        "counter",
        "RTP packets forwarded to subscribers.",
        s.rtp_forwarded,
    );
    metric(
        "bridgemesh_bridge_keyframe_requests_total",
        "counter",
        "Keyframe requests sent to publishers.",
        s.keyframe_requests_sent,
    );
    metric(
        "bridgemesh_bridge_cascade_rtp_received_total",
        "counter",
        "RTP packets of remote publishers received over cascade links.",
        s.cascade_rtp_in,
    );
    metric(
        "bridgemesh_bridge_cascade_rtp_unknown_stream_total",
        "counter",
        "Cascade media datagrams of a stream the link did not announce, dropped.",
        s.cascade_rtp_unknown_stream,
    );
    metric(
        "bridgemesh_bridge_cascade_rtp_sent_total",
        "counter",
        "RTP packets of local publishers handed to cascade links (once per link).",
        s.cascade_rtp_out,
    );
    render_link_metrics(&mut text, id, &bridge.cascade_links());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// A metric family of cascade links: name, type, help, and its value for one link.
type LinkFamily = (&'static str, &'static str, &'static str, fn(&LinkStats) -> f64);

/// One series per cascade link, labelled with the peer bridge.
fn render_link_metrics(text: &mut String, id: &BridgeId, links: &[LinkStats]) {
    let families: [LinkFamily; 14] = [
        (
            "bridgemesh_cascade_link_up",
            "gauge",
            "A cascade link to the peer is established.",
            |_| 1.0,
        ),
        (
            "bridgemesh_cascade_link_rtt_seconds",
            "gauge",
            "Round-trip time QUIC measures on the link.",
            |l| l.rtt.as_secs_f64(),
        ),
        (
            "bridgemesh_cascade_link_udp_sent_bytes_total",
            "counter",
            "Bytes the link's connection sent (all of QUIC).",
            |l| l.udp_bytes_out as f64,
        ),
        (
            "bridgemesh_cascade_link_udp_received_bytes_total",
            "counter",
            "Bytes the link's connection received (all of QUIC).",
            |l| l.udp_bytes_in as f64,
        ),
        (
            "bridgemesh_cascade_link_lost_packets_total",
            "counter",
            "QUIC packets declared lost on the link.",
            |l| l.lost_packets as f64,
        ),
        (
            "bridgemesh_cascade_link_media_sent_datagrams_total",
            "counter",
            "Media datagrams sent on the link.",
            |l| l.media_datagrams_out as f64,
        ),
        (
            "bridgemesh_cascade_link_media_sent_bytes_total",
            "counter",
            "Bytes of media datagrams sent on the link.",
            |l| l.media_bytes_out as f64,
        ),
        (
            "bridgemesh_cascade_link_media_send_dropped_total",
            "counter",
            "Media datagrams not sent (too large for the path, or the link closing).",
            |l| l.media_dropped_out as f64,
        ),
        (
            "bridgemesh_cascade_link_media_received_datagrams_total",
            "counter",
            "Media datagrams received on the link.",
            |l| l.media_datagrams_in as f64,
        ),
        (
            "bridgemesh_cascade_link_media_received_bytes_total",
            "counter",
            "Bytes of media datagrams received on the link.",
            |l| l.media_bytes_in as f64,
        ),
        (
            "bridgemesh_cascade_link_media_receive_dropped_total",
            "counter",
            "Media datagrams received and dropped (malformed, unknown stream, shard full).",
            |l| l.media_dropped_in as f64,
        ),
        (
            "bridgemesh_cascade_link_messages_total",
            "counter",
            "Control messages sent and received on the link.",
            |l| (l.messages_out + l.messages_in) as f64,
        ),
        (
            "bridgemesh_cascade_link_rooms",
            "gauge",
            "Rooms shared on the link.",
            |l| l.shared_rooms as f64,
        ),
        (
            "bridgemesh_cascade_link_streams",
            "gauge",
            "Streams the peer announced on the link.",
            |l| l.streams_in as f64,
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for link in links {
            let _ = writeln!(
                text,
                "{name}{{bridge=\"{id}\",peer=\"{}\"}} {}",
                link.peer,
                value(link)
            );
        }
    }
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
    let ticket = match hello {
        Ok(ClientMessage::Hello { ticket }) => ticket,
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
    let (client_tx, mut client_rx) = mpsc::channel(CLIENT_QUEUE_CAPACITY);
    let request = ConnectRequest {
        key,
        room: room.clone(),
        participant_id: claims.participant_id.clone(),
        display_name: claims.display_name.clone(),
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
                    Ok(message) => bridge.client_message(&room, key, message).await,
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
                    // Deliver what the shard queued before the close (e.g. `bye`).
                    while let Ok(ClientCommand::Send(message)) = client_rx.try_recv() {
                        let _ = send(&mut socket, &message).await;
                    }
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
