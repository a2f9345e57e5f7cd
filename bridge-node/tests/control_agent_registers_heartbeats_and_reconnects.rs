//! A real bridge's control agent against a stand-in for control's side of the session: a small
//! axum WebSocket server on a mutual-TLS cluster listener, speaking the wire protocol of
//! `proto::bridge_session`. It checks what crosses the socket: the bridge's certificate, `register` first, heartbeats at control's interval,
//! reconnection after control drops the socket, `not_leader` redirects, `refused`, and a `move`
//! reaching a participant connected to the bridge.

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::routing::get;
use bridgemesh_bridge::control_agent::{self, AgentError, ControlAgent, ControlAgentConfig};
use bridgemesh_bridge::{Bridge, BridgeConfig, SessionStatus};
use bridgemesh_pki::{ClusterCa, ClusterIdentity, ClusterListener, ClusterName, ClusterPeer};
use bridgemesh_proto::bridge_session::{
    BRIDGE_MESSAGE_MAX_BYTES, BRIDGE_SESSION_PATH, BridgeStatus, BridgeToControl, ControlToBridge,
    HostedParticipant,
};
use bridgemesh_proto::signaling::{ByeReason, ClientMessage, ServerMessage};
use bridgemesh_proto::ticket::TicketClaims;
use bridgemesh_proto::{BridgeId, ParticipantId, RoomId};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

/// The cluster CA of this test process: the stand-ins' control certificates and the bridge's.
fn ca() -> &'static ClusterCa {
    static CA: std::sync::OnceLock<ClusterCa> = std::sync::OnceLock::new();
    CA.get_or_init(|| ClusterCa::generate().unwrap())
}
/// Only a guard against a hang: every wait ends as soon as what it waits for happens.
const WAIT_MAX: Duration = Duration::from_secs(20);
const HEARTBEAT_INTERVAL_MS: u64 = 100;

/// How the stand-in answers a `register`.
#[derive(Clone)]
enum Answer {
    Register,
    NotLeader(Option<String>),
    Refuse,
}

// A test's record of what crossed the socket: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Seen {
    Connected {
        connection: u32,
        /// Who the bridge's certificate names.
        peer: ClusterName,
    },
    Message {
        connection: u32,
        message: BridgeToControl,
    },
    Closed {
        connection: u32,
    },
}

enum Command {
    Send(ControlToBridge),
    /// Drop the socket without a close frame, as a crashed control node would.
    Drop,
}

struct Shared {
    answer: Answer,
    seen: mpsc::UnboundedSender<Seen>,
    current: Mutex<Option<mpsc::UnboundedSender<Command>>>,
    connections: AtomicU32,
}

struct FakeControl {
    url: String,
    shared: Arc<Shared>,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl FakeControl {
    async fn start(answer: Answer) -> FakeControl {
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            answer,
            seen: seen_tx,
            current: Mutex::new(None),
            connections: AtomicU32::new(0),
        });
        let router = Router::new()
            .route(BRIDGE_SESSION_PATH, get(upgrade))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let identity = ca().issue_control_cert(1).unwrap();
        let listener = ClusterListener::new(
            listener,
            bridgemesh_pki::tls::server_config(&identity).unwrap(),
            identity.name().clone(),
        )
        .unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<ClusterPeer>(),
            )
            .await
        });
        FakeControl {
            url: format!("https://{addr}"),
            shared,
            seen,
        }
    }

    fn command(&self, command: Command) {
        let current = self.shared.current.lock().unwrap();
        current
            .as_ref()
            .expect("a bridge is connected")
            .send(command)
            .unwrap();
    }

    /// What the stand-in saw, up to and including the first that `stop` accepts.
    async fn until(&mut self, stop: impl Fn(&Seen) -> bool) -> Vec<Seen> {
        let mut seen = Vec::new();
        loop {
            let next = tokio::time::timeout(WAIT_MAX, self.seen.recv())
                .await
                .unwrap_or_else(|_| panic!("not seen in time; saw {seen:?}"))
                .expect("the stand-in runs as long as the test");
            let done = stop(&next);
            seen.push(next);
            if done {
                return seen;
            }
        }
    }

    /// The next message the bridge sent that `pick` accepts, skipping heartbeats and the rest.
    async fn message(&mut self, pick: impl Fn(&BridgeToControl) -> bool) -> (u32, BridgeToControl) {
        let seen = self
            .until(|s| matches!(s, Seen::Message { message, .. } if pick(message)))
            .await;
        match seen.into_iter().last() {
            Some(Seen::Message { connection, message }) => (connection, message),
            _ => unreachable!(),
        }
    }
}

async fn upgrade(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<ClusterPeer>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.max_message_size(BRIDGE_MESSAGE_MAX_BYTES)
        .on_upgrade(move |socket| serve(shared, socket, peer.name))
}

async fn send(socket: &mut WebSocket, message: &ControlToBridge) {
    let text = serde_json::to_string(message).unwrap();
    let _ = socket.send(Message::Text(text.into())).await;
}

async fn serve(shared: Arc<Shared>, mut socket: WebSocket, peer: ClusterName) {
    let connection = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
    let (commands_tx, mut commands) = mpsc::unbounded_channel();
    *shared.current.lock().unwrap() = Some(commands_tx);
    let _ = shared.seen.send(Seen::Connected { connection, peer });
    loop {
        tokio::select! {
            frame = socket.recv() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    // Pings are answered by the WebSocket library as the socket is read.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Binary(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                };
                let message: BridgeToControl = serde_json::from_str(&text).expect("the bridge speaks the protocol");
                let register = matches!(message, BridgeToControl::Register { .. });
                let _ = shared.seen.send(Seen::Message { connection, message });
                if register {
                    match &shared.answer {
                        Answer::Register => {
                            send(&mut socket, &ControlToBridge::Registered {
                                heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
                                status: BridgeStatus::Up,
                            }).await;
                        }
                        Answer::NotLeader(leader_url) => {
                            send(&mut socket, &ControlToBridge::NotLeader { leader_url: leader_url.clone() }).await;
                            let _ = socket.close().await;
                            break;
                        }
                        Answer::Refuse => {
                            send(&mut socket, &ControlToBridge::Refused {
                                code: "conflict".into(),
                                message: "another live bridge holds this id".into(),
                            }).await;
                            let _ = socket.close().await;
                            break;
                        }
                    }
                }
            }
            command = commands.recv() => match command {
                Some(Command::Send(message)) => send(&mut socket, &message).await,
                Some(Command::Drop) | None => break,
            }
        }
    }
    let _ = shared.seen.send(Seen::Closed { connection });
}

fn start_bridge() -> Arc<Bridge> {
    let mut config = BridgeConfig::loopback(BridgeId::new("b1").unwrap(), KEY.to_vec(), 0);
    config.shard_count = 2;
    Bridge::start(config).unwrap()
}

fn agent_config(bridge: &Bridge, control_urls: Vec<String>) -> ControlAgentConfig {
    let registration =
        control_agent::registration(bridge, "ws://127.0.0.1:1/bridge/v1/signal".into(), vec![], None);
    let identity = ca().issue_bridge_cert(bridge.id()).unwrap();
    ControlAgentConfig::new(control_urls, ClusterIdentity::from(&identity), registration)
}

async fn wait_status(agent: &ControlAgent, accept: impl Fn(&SessionStatus) -> bool) -> SessionStatus {
    let mut status = agent.status();
    tokio::time::timeout(WAIT_MAX, status.wait_for(|s| accept(s)))
        .await
        .expect("status in time")
        .expect("the agent publishes its status")
        .clone()
}

fn is_registered(status: &SessionStatus) -> bool {
    matches!(status, SessionStatus::Registered { .. })
}

fn is_heartbeat(message: &BridgeToControl) -> bool {
    matches!(message, BridgeToControl::Heartbeat { .. })
}

/// Serves the bridge's signaling on loopback; its address.
async fn serve_signaling(bridge: Arc<Bridge>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = bridgemesh_bridge::signaling::router(bridge);
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

fn now_unix_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn ticket(room: &RoomId, participant: &ParticipantId, jti: &str) -> String {
    let now = now_unix_s();
    let claims = TicketClaims {
        aud: BridgeId::new("b1").unwrap(),
        jti: jti.to_owned(),
        exp: now + 30,
        iat: now,
        room: room.clone(),
        participant_id: participant.clone(),
        display_name: participant.to_string(),
        moderator: false,
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(KEY),
    )
    .unwrap()
}

type ClientSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Server messages up to and including the first `stop` accepts; `None` for a closed socket.
async fn client_until(
    socket: &mut ClientSocket,
    stop: impl Fn(&Option<ServerMessage>) -> bool,
) -> Vec<Option<ServerMessage>> {
    let mut seen = Vec::new();
    loop {
        let frame = tokio::time::timeout(WAIT_MAX, socket.next())
            .await
            .unwrap_or_else(|_| panic!("not received in time; got {seen:?}"));
        let message = match frame {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
                Some(serde_json::from_str::<ServerMessage>(&text).unwrap())
            }
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_)) | Err(_)) | None => None,
            Some(Ok(_)) => continue,
        };
        let done = stop(&message);
        seen.push(message);
        if done || seen.last() == Some(&None) {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_registers_heartbeats_and_registers_again_with_its_participants_after_control_drops_it() {
    let mut control = FakeControl::start(Answer::Register).await;
    let bridge = start_bridge();
    let started = Instant::now();
    let agent =
        ControlAgent::start(bridge.clone(), agent_config(&bridge, vec![control.url.clone()])).unwrap();

    // The bridge's certificate, then `register` before anything else.
    let seen = control.until(|s| matches!(s, Seen::Message { .. })).await;
    let expected_peer = ClusterName::Bridge(BridgeId::new("b1").unwrap());
    assert!(
        matches!(&seen[..], [Seen::Connected { connection: 1, peer }, Seen::Message { connection: 1, .. }] if *peer == expected_peer),
        "{seen:?}"
    );
    let Some(Seen::Message {
        message:
            BridgeToControl::Register {
                bridge: registration,
                instance,
                participants,
                ..
            },
        ..
    }) = seen.into_iter().last()
    else {
        panic!("the first message was not register");
    };
    assert_eq!(registration.id.as_str(), "b1");
    assert_eq!(registration.media_addresses, [bridge.media_addr().to_string()]);
    assert!(participants.is_empty());
    assert_eq!(instance.len(), 32);
    assert_eq!(
        wait_status(&agent, is_registered).await,
        SessionStatus::Registered {
            status: BridgeStatus::Up
        }
    );

    // Heartbeats at control's interval: the fourth cannot leave before four intervals after the
    // registration, which came after `started`.
    let (_, first) = control.message(is_heartbeat).await;
    for _ in 0..3 {
        let (connection, _) = control.message(is_heartbeat).await;
        assert_eq!(connection, 1);
    }
    assert!(
        started.elapsed() >= Duration::from_millis(4 * HEARTBEAT_INTERVAL_MS),
        "heartbeats came faster than every {HEARTBEAT_INTERVAL_MS} ms"
    );
    let BridgeToControl::Heartbeat { load } = first else {
        unreachable!()
    };
    assert_eq!(load.participants, 0);

    // A participant joins the bridge: control hears of it.
    let signaling = serve_signaling(bridge.clone()).await;
    let room = RoomId::new("standup").unwrap();
    let ada = ParticipantId::new("p-ada").unwrap();
    let (mut client, _) = tokio_tungstenite::connect_async(format!("ws://{signaling}/bridge/v1/signal"))
        .await
        .unwrap();
    let hello = serde_json::to_string(&ClientMessage::Hello {
        ticket: ticket(&room, &ada, "jti-1"),
        media: Default::default(),
    })
    .unwrap();
    client
        .send(tokio_tungstenite::tungstenite::Message::Text(hello.into()))
        .await
        .unwrap();
    client_until(&mut client, |m| matches!(m, Some(ServerMessage::Welcome { .. }))).await;
    let (connection, joined) = control
        .message(|m| matches!(m, BridgeToControl::ParticipantJoined { .. }))
        .await;
    assert_eq!(connection, 1);
    assert_eq!(
        joined,
        BridgeToControl::ParticipantJoined {
            room: room.clone(),
            participant: ada.clone()
        }
    );

    // Control crashes: the bridge connects again and registers with the same instance and the
    // participant it still hosts.
    control.command(Command::Drop);
    let (connection, register) = control
        .message(|m| matches!(m, BridgeToControl::Register { .. }))
        .await;
    assert_eq!(connection, 2);
    let BridgeToControl::Register {
        instance: instance_again,
        participants,
        ..
    } = register
    else {
        unreachable!()
    };
    assert_eq!(instance_again, instance);
    assert_eq!(
        participants,
        [HostedParticipant {
            room: room.clone(),
            participant: ada.clone()
        }]
    );
    wait_status(&agent, is_registered).await;
    let (connection, _) = control.message(is_heartbeat).await;
    assert_eq!(connection, 2, "heartbeats go on over the new socket");

    // Control moves the participant elsewhere: it is told so and dropped, and control hears it left.
    control.command(Command::Send(ControlToBridge::Move {
        room: room.clone(),
        participant: ada.clone(),
    }));
    let to_ada = client_until(&mut client, |m| m.is_none()).await;
    assert!(
        to_ada.contains(&Some(ServerMessage::Bye {
            reason: ByeReason::Moved
        })),
        "{to_ada:?}"
    );
    let (_, left) = control
        .message(|m| matches!(m, BridgeToControl::ParticipantLeft { .. }))
        .await;
    assert_eq!(
        left,
        BridgeToControl::ParticipantLeft {
            room: room.clone(),
            participant: ada.clone(),
            dropped: true,
        }
    );
    // Moved, not kicked: a fresh ticket of the same participant for this bridge is good.
    assert_eq!(
        bridge
            .verifier()
            .verify(&ticket(&room, &ada, "jti-2"), now_unix_s())
            .map(|claims| claims.participant_id),
        Ok(ada.clone())
    );

    // Stopping: drain, then close.
    agent.drain(0).await;
    control
        .message(|m| *m == BridgeToControl::Drain { grace_ms: 0 })
        .await;
    agent.stop().await.unwrap();
    control
        .until(|s| matches!(s, Seen::Closed { connection: 2 }))
        .await;
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_sends_the_bridge_to_the_leader() {
    let mut leader = FakeControl::start(Answer::Register).await;
    let mut follower = FakeControl::start(Answer::NotLeader(Some(leader.url.clone()))).await;
    let bridge = start_bridge();
    let agent =
        ControlAgent::start(bridge.clone(), agent_config(&bridge, vec![follower.url.clone()])).unwrap();
    follower
        .message(|m| matches!(m, BridgeToControl::Register { .. }))
        .await;
    follower.until(|s| matches!(s, Seen::Closed { .. })).await;
    leader
        .message(|m| matches!(m, BridgeToControl::Register { .. }))
        .await;
    wait_status(&agent, is_registered).await;
    leader.message(is_heartbeat).await;
    agent.stop().await.unwrap();
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_bridge_stops_with_controls_reason() {
    let mut control = FakeControl::start(Answer::Refuse).await;
    let bridge = start_bridge();
    let agent =
        ControlAgent::start(bridge.clone(), agent_config(&bridge, vec![control.url.clone()])).unwrap();
    let status = wait_status(&agent, SessionStatus::is_final).await;
    assert_eq!(
        status,
        SessionStatus::Refused {
            code: "conflict".into(),
            message: "another live bridge holds this id".into()
        }
    );
    control.until(|s| matches!(s, Seen::Closed { .. })).await;
    // It does not try again (it would within a backoff of 100 ms; the state machine's unit test
    // shows it never does).
    assert!(
        tokio::time::timeout(Duration::from_millis(500), control.seen.recv())
            .await
            .is_err(),
        "the bridge came back after it was refused"
    );
    match agent.stop().await {
        Err(AgentError::Refused { code, message }) => {
            assert_eq!(code, "conflict");
            assert!(message.contains("another live bridge"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    bridge.shutdown().await;
}
