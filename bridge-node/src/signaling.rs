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
    metric(
        "bridgemesh_bridge_rtp_retransmitted_total",
        "counter",
        "Packets resent from a retransmission ring in answer to a subscriber's NACK.",
        s.rtp_retransmitted,
    );
    metric(
        "bridgemesh_bridge_rtp_nack_missed_total",
        "counter",
        "NACKed packets no longer in the retransmission ring.",
        s.rtp_nack_missed,
    );
    metric(
        "bridgemesh_bridge_sender_reports_translated_total",
        "counter",
        "Publisher sender reports written onto subscriber legs.",
        s.sender_reports_translated,
    );
    metric(
        "bridgemesh_bridge_sender_reports_generated_total",
        "counter",
        "Sender reports the bridge wrote from its own clock onto legs of remote publishers.",
        s.sender_reports_generated,
    );
    metric(
        "bridgemesh_bridge_rtp_forward_failed_total",
        "counter",
        "Publisher packets the fast path could not forward (malformed).",
        s.rtp_forward_failed,
    );
    metric(
        "bridgemesh_bridge_srtp_key_export_failed_total",
        "counter",
        "Peer connections disconnected because no SRTP keys came out of DTLS.",
        s.srtp_key_export_failed,
    );
    metric(
        "bridgemesh_bridge_srtp_sessions_gcm_total",
        "counter",
        "Peer connections whose DTLS negotiated AEAD_AES_128_GCM.",
        s.srtp_sessions_gcm,
    );
    metric(
        "bridgemesh_bridge_srtp_sessions_cm_total",
        "counter",
        "Peer connections whose DTLS negotiated AES_CM_128_HMAC_SHA1_80.",
        s.srtp_sessions_cm,
    );
    render_link_metrics(&mut text, id, &bridge.cascade_links());
    render_process_metrics(&mut text, id);
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

/// The process's CPU time and resident memory, for load tests and dashboards. A series that
/// cannot be read (not Linux, a restricted `/proc`) is left out rather than reported as 0.
/// Under `bridgemesh up` several bridges share one process (with control and TURN), and each
/// reports the whole process.
fn render_process_metrics(text: &mut String, id: &BridgeId) {
    let cpu_s = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| crate::load::parse_proc_stat_cpu_s(&stat).ok());
    if let Some(cpu_s) = cpu_s {
        let name = "bridgemesh_process_cpu_seconds_total";
        let _ = writeln!(
            text,
            "# HELP {name} User and system CPU time of the bridge's process.\n# TYPE {name} counter\n\
             {name}{{bridge=\"{id}\"}} {cpu_s}"
        );
    }
    let resident_bytes = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| parse_statm_resident_pages(&statm))
        .map(|pages| pages.saturating_mul(page_size_bytes()));
    if let Some(resident_bytes) = resident_bytes {
        let name = "bridgemesh_process_resident_memory_bytes";
        let _ = writeln!(
            text,
            "# HELP {name} Resident memory of the bridge's process.\n# TYPE {name} gauge\n\
             {name}{{bridge=\"{id}\"}} {resident_bytes}"
        );
    }
}

/// Resident pages: the second field of `/proc/<pid>/statm`.
fn parse_statm_resident_pages(statm: &str) -> Option<u64> {
    statm.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// The kernel's page size, from the process's auxiliary vector (`AT_PAGESZ`): reading it needs
/// neither libc nor `unsafe`. 4 KiB where `/proc/self/auxv` cannot be read.
fn page_size_bytes() -> u64 {
    std::fs::read("/proc/self/auxv")
        .ok()
        .and_then(|auxv| parse_auxv_page_size(&auxv))
        .unwrap_or(4096)
}

/// `AT_PAGESZ` from the bytes of `/proc/<pid>/auxv`: native-endian (key, value) word pairs,
/// ended by `AT_NULL`.
fn parse_auxv_page_size(auxv: &[u8]) -> Option<u64> {
    const AT_NULL: usize = 0;
    const AT_PAGESZ: usize = 6;
    const WORD: usize = std::mem::size_of::<usize>();
    let word = |bytes: &[u8]| usize::from_ne_bytes(bytes.try_into().expect("chunks of WORD bytes"));
    for pair in auxv.chunks_exact(2 * WORD) {
        match word(&pair[..WORD]) {
            AT_NULL => return None,
            AT_PAGESZ => return u64::try_from(word(&pair[WORD..])).ok().filter(|&size| size > 0),
            _ => {}
        }
    }
    None
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

    #[test]
    fn process_memory_is_read_from_statm_and_the_auxiliary_vector() {
        assert_eq!(
            parse_statm_resident_pages("6000 1500 300 20 0 900 0\n"),
            Some(1500)
        );
        assert_eq!(parse_statm_resident_pages("6000"), None);
        assert_eq!(parse_statm_resident_pages(""), None);

        let auxv = |pairs: &[(usize, usize)]| -> Vec<u8> {
            pairs
                .iter()
                .flat_map(|&(key, value)| key.to_ne_bytes().into_iter().chain(value.to_ne_bytes()))
                .collect()
        };
        assert_eq!(
            parse_auxv_page_size(&auxv(&[(33, 7), (6, 16384), (0, 0)])),
            Some(16384)
        );
        assert_eq!(
            parse_auxv_page_size(&auxv(&[(33, 7), (0, 0), (6, 4096)])),
            None,
            "after AT_NULL"
        );
        assert_eq!(parse_auxv_page_size(&auxv(&[(6, 0), (0, 0)])), None);
        assert_eq!(parse_auxv_page_size(&[1, 2, 3]), None);
        // This machine's own vector has a page size.
        if let Ok(own) = std::fs::read("/proc/self/auxv") {
            assert!(parse_auxv_page_size(&own).is_some_and(|size| size.is_power_of_two()));
        }
    }

    #[test]
    fn process_metrics_have_help_type_and_a_labelled_series() {
        let mut text = String::new();
        render_process_metrics(&mut text, &BridgeId::new("b1").unwrap());
        if std::path::Path::new("/proc/self/stat").exists() {
            // A fresh test process may not have used a whole clock tick of CPU yet.
            for (name, least) in [
                ("bridgemesh_process_cpu_seconds_total", 0.0),
                ("bridgemesh_process_resident_memory_bytes", 1.0),
            ] {
                assert!(text.contains(&format!("# HELP {name} ")), "{text}");
                assert!(text.contains(&format!("# TYPE {name} ")), "{text}");
                let value = text
                    .lines()
                    .find_map(|line| line.strip_prefix(&format!("{name}{{bridge=\"b1\"}} ")))
                    .unwrap_or_else(|| panic!("no {name} series in {text}"));
                assert!(value.parse::<f64>().is_ok_and(|v| v >= least), "{name} = {value}");
            }
        }
    }
}
