//! `SyntheticParticipant` end to end against a scripted fake: a minimal HTTP control answering
//! the join, and a signaling WebSocket that plays the bridge (welcome, offers from the fake
//! bridge peer connection of `common`, roster events, `bye`).

mod common;

use bridgemesh_proto::api::{ErrorBody, ErrorCode, JoinRequest, JoinResponse};
use bridgemesh_proto::signaling::{ByeReason, ClientMessage, MediaSource, ParticipantInfo, ServerMessage};
use bridgemesh_proto::{BridgeId, PROTOCOL_VERSION, ParticipantId, RoomId};
use bridgemesh_sim::{ParticipantError, ParticipantOptions, SyntheticParticipant};
use common::FakeBridge;
use futures_util::{SinkExt, StreamExt};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

fn pid(s: &str) -> ParticipantId {
    ParticipantId::new(s).unwrap()
}

fn info(id: &str, muted: bool) -> ParticipantInfo {
    ParticipantInfo {
        id: pid(id),
        display_name: id.to_uppercase(),
        microphone_muted: muted,
        camera_muted: false,
        sources: vec![MediaSource::Microphone, MediaSource::Camera],
        hand_raised_at_ms: None,
    }
}

/// How the client's socket ended, as the fake bridge saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    CloseFrame,
    Abrupt,
}

#[derive(Default)]
struct Record {
    messages: Vec<ClientMessage>,
    ending: Option<Ending>,
}

struct Fake {
    control_url: String,
    record: Arc<Mutex<Record>>,
}

impl Fake {
    async fn start() -> Fake {
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let control_url = format!("http://{}", http.local_addr().unwrap());
        let signaling_url = format!("ws://{}/signaling", ws.local_addr().unwrap());
        let record = Arc::new(Mutex::new(Record::default()));
        tokio::spawn(async move {
            while let Ok((stream, _)) = http.accept().await {
                tokio::spawn(serve_http(stream, signaling_url.clone()));
            }
        });
        let rec = Arc::clone(&record);
        tokio::spawn(async move {
            while let Ok((stream, _)) = ws.accept().await {
                tokio::spawn(serve_signaling(stream, Arc::clone(&rec)));
            }
        });
        Fake { control_url, record }
    }

    fn messages(&self) -> Vec<ClientMessage> {
        self.record.lock().unwrap().messages.clone()
    }

    fn ending(&self) -> Option<Ending> {
        self.record.lock().unwrap().ending
    }
}

/// One HTTP/1.1 exchange: the join endpoint only.
async fn serve_http(mut stream: TcpStream, signaling_url: String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut chunk).await.unwrap();
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while buf.len() < header_end + length {
        let n = stream.read(&mut chunk).await.unwrap();
        buf.extend_from_slice(&chunk[..n]);
    }
    let request_line = head.lines().next().unwrap().to_owned();
    let request: JoinRequest = serde_json::from_slice(&buf[header_end..header_end + length]).unwrap();
    assert!(
        request_line.starts_with("post /api/v1/rooms/standup/join "),
        "{request_line}"
    );
    let (status, body) = match request.display_name.as_str() {
        "wrong-password" => (
            "403 Forbidden",
            serde_json::to_string(&ErrorBody::new(ErrorCode::WrongPassword, "nope")).unwrap(),
        ),
        "proxy-error" => ("502 Bad Gateway", "<html>bad gateway</html>".to_owned()),
        name => {
            let ticket = if name == "bad-ticket" { "forged" } else { "good" };
            let response = JoinResponse {
                room: RoomId::new("standup").unwrap(),
                participant_id: pid("alice"),
                bridge_id: BridgeId::new("bridge-1").unwrap(),
                signaling_url,
                ticket: ticket.to_owned(),
                ticket_expires_in_s: 30,
                ice_servers: vec![],
                role: bridgemesh_proto::api::Role::Guest,
                session_token: "session".to_owned(),
            };
            ("200 OK", serde_json::to_string(&response).unwrap())
        }
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await.unwrap();
    let _ = stream.shutdown().await;
}

/// Sends `msg`; a client that already went away is not an error of the fake.
async fn send(ws: &mut WebSocketStream<TcpStream>, msg: &ServerMessage) {
    let _ = ws.send(Message::text(serde_json::to_string(msg).unwrap())).await;
}

/// Next client message, or how the socket ended.
async fn recv(ws: &mut WebSocketStream<TcpStream>) -> Result<ClientMessage, Ending> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(text.as_str()).unwrap()),
            Some(Ok(Message::Close(_))) => return Err(Ending::CloseFrame),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Err(Ending::Abrupt),
        }
    }
}

/// The scripted bridge side of one signaling session.
async fn serve_signaling(stream: TcpStream, record: Arc<Mutex<Record>>) {
    let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
    let alice = pid("alice");
    let hello = recv(&mut ws).await.unwrap();
    record.lock().unwrap().messages.push(hello.clone());
    if hello
        != (ClientMessage::Hello {
            ticket: "good".into(),
            media: Default::default(),
        })
    {
        send(
            &mut ws,
            &ServerMessage::Error {
                code: ErrorCode::TicketRejected,
                message: "forged".into(),
            },
        )
        .await;
        send(
            &mut ws,
            &ServerMessage::Bye {
                reason: ByeReason::ProtocolError,
            },
        )
        .await;
        let _ = ws.close(None).await;
        return;
    }
    send(
        &mut ws,
        &ServerMessage::Welcome {
            protocol_version: PROTOCOL_VERSION,
            room: RoomId::new("standup").unwrap(),
            participant_id: alice.clone(),
            // The participant itself is listed too; the client must leave it out of its roster.
            participants: vec![info("bob", false), info("alice", false)],
        },
    )
    .await;
    let mut bridge = FakeBridge::new().await;
    let offer = bridge.pc.local_description().await.unwrap().sdp;
    send(
        &mut ws,
        &ServerMessage::Offer {
            sdp: offer,
            tracks: bridge.tracks(&alice, &alice),
        },
    )
    .await;
    let mut offers_pending = 1;
    let mut roster_sent = false;
    loop {
        let msg = match recv(&mut ws).await {
            Ok(msg) => msg,
            Err(ending) => {
                record.lock().unwrap().ending = Some(ending);
                break;
            }
        };
        record.lock().unwrap().messages.push(msg.clone());
        match msg {
            ClientMessage::Answer { sdp } => {
                assert!(offers_pending > 0, "answer without offer");
                offers_pending -= 1;
                bridge.answer(sdp).await;
                if !roster_sent {
                    roster_sent = true;
                    send(
                        &mut ws,
                        &ServerMessage::ParticipantJoined {
                            participant: info("carol", false),
                        },
                    )
                    .await;
                    send(
                        &mut ws,
                        &ServerMessage::ParticipantUpdated {
                            participant: info("carol", true),
                        },
                    )
                    .await;
                    send(
                        &mut ws,
                        &ServerMessage::ParticipantLeft {
                            participant_id: pid("bob"),
                        },
                    )
                    .await;
                    let offer = bridge.offer().await;
                    send(
                        &mut ws,
                        &ServerMessage::Offer {
                            sdp: offer,
                            tracks: bridge.tracks(&alice, &alice),
                        },
                    )
                    .await;
                    offers_pending += 1;
                }
            }
            ClientMessage::Leave => {
                send(
                    &mut ws,
                    &ServerMessage::Bye {
                        reason: ByeReason::Left,
                    },
                )
                .await;
            }
            _ => {}
        }
    }
    let _ = bridge.pc.close().await;
}

fn room() -> RoomId {
    RoomId::new("standup").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_answers_offers_tracks_the_roster_and_leaves() {
    let fake = Fake::start().await;
    let alice = pid("alice");
    let p = SyntheticParticipant::join(&fake.control_url, &room(), common::options())
        .await
        .unwrap();
    assert_eq!(p.participant_id(), &alice);
    assert_eq!(p.bridge_id().as_str(), "bridge-1");

    p.wait_until(
        "roster updated, second offer answered, media verified",
        Duration::from_secs(15),
        |s, roster| {
            roster.keys().map(ParticipantId::as_str).collect::<Vec<_>>() == ["carol"]
                && roster[&pid("carol")].microphone_muted
                && s.offers_answered == 2
                && s.signaling_open
                && s.intact_from(&alice, MediaSource::Microphone) >= 25
                && s.intact_from(&alice, MediaSource::Camera) >= 30
        },
    )
    .await
    .unwrap();
    assert_eq!(p.stats().total_corrupt(), 0);

    p.set_muted(true, false).await.unwrap();
    let err = p
        .wait_until(
            "something that never happens",
            Duration::from_millis(120),
            |s, _| s.plis_received > 1000,
        )
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ParticipantError::Timeout(_)));
    assert!(
        text.contains("something that never happens") && text.contains("recv alice/camera"),
        "{text}"
    );

    p.leave().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let messages = fake.messages();
    assert_eq!(
        messages.first(),
        Some(&ClientMessage::Hello {
            ticket: "good".into(),
            media: Default::default(),
        })
    );
    assert_eq!(
        messages
            .iter()
            .filter(|m| matches!(m, ClientMessage::Answer { .. }))
            .count(),
        2
    );
    assert!(messages.contains(&ClientMessage::Mute {
        microphone: true,
        camera: false
    }));
    assert_eq!(messages.last(), Some(&ClientMessage::Leave));
    assert_eq!(fake.ending(), Some(Ending::CloseFrame));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanish_drops_the_socket_without_a_close_frame() {
    let fake = Fake::start().await;
    let p = SyntheticParticipant::join(&fake.control_url, &room(), common::options())
        .await
        .unwrap();
    p.vanish().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.ending(), Some(Ending::Abrupt));
    assert!(!fake.messages().iter().any(|m| matches!(m, ClientMessage::Leave)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_errors_are_typed() {
    let fake = Fake::start().await;
    let join = |name: &str| {
        let url = fake.control_url.clone();
        let options = ParticipantOptions {
            join_timeout: Duration::from_secs(5),
            ..ParticipantOptions::new(name)
        };
        async move { SyntheticParticipant::join(&url, &room(), options).await }
    };
    match join("wrong-password").await {
        Err(ParticipantError::Http {
            status: 403,
            code: Some(ErrorCode::WrongPassword),
            message,
        }) => {
            assert_eq!(message, "nope")
        }
        other => panic!("{:?}", other.map(|p| p.participant_id().clone())),
    }
    match join("proxy-error").await {
        Err(ParticipantError::Http {
            status: 502,
            code: None,
            message,
        }) => assert!(message.contains("bad gateway")),
        other => panic!("{:?}", other.map(|p| p.participant_id().clone())),
    }
    match join("bad-ticket").await {
        Err(ParticipantError::Server {
            code: ErrorCode::TicketRejected,
            ..
        }) => {}
        other => panic!("{:?}", other.map(|p| p.participant_id().clone())),
    }
    // Nothing listens on port 9 of loopback.
    let options = ParticipantOptions::new("x");
    match SyntheticParticipant::join("http://127.0.0.1:9", &room(), options).await {
        Err(ParticipantError::Connect(_)) => {}
        other => panic!("{:?}", other.map(|p| p.participant_id().clone())),
    }
}
