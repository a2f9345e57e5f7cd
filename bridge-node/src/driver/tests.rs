use super::*;
use crate::ticket::TicketError;
use bridgemesh_proto::signaling::ByeReason;
use bridgemesh_proto::ticket::TicketClaims;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
/// Only a guard against a hang; every wait below ends as soon as its message arrives.
const WAIT_MAX: Duration = Duration::from_secs(20);

fn id(name: &str) -> ParticipantId {
    ParticipantId::new(name).unwrap()
}

async fn join(bridge: &Bridge, room: &RoomId, participant: &str) -> crate::client_outbox::OutboxReceiver {
    let (tx, rx) = crate::client_outbox::channel(CLIENT_QUEUE_CAPACITY);
    let request = ConnectRequest {
        key: bridge.new_key(),
        room: room.clone(),
        participant_id: id(participant),
        display_name: participant.to_owned(),
        media: Default::default(),
        moderator: false,
    };
    assert!(bridge.connect(request, tx).await);
    rx
}

/// Commands for one client up to and including the first that `stop` accepts.
async fn until(
    rx: &mut crate::client_outbox::OutboxReceiver,
    stop: impl Fn(&ClientCommand) -> bool,
) -> Vec<ClientCommand> {
    let mut seen = Vec::new();
    loop {
        let command = tokio::time::timeout(WAIT_MAX, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no such command; got {seen:?}"))
            .unwrap_or_else(|| panic!("client channel closed; got {seen:?}"));
        let done = stop(&command);
        seen.push(command);
        if done {
            return seen;
        }
    }
}

fn is(message: ServerMessage) -> impl Fn(&ClientCommand) -> bool {
    move |c| matches!(c, ClientCommand::Send(m) if *m == message)
}

fn ticket(participant: &str, room: &RoomId) -> String {
    let now = crate::ticket::now_unix_s();
    let claims = TicketClaims {
        aud: BridgeId::new("b1").unwrap(),
        jti: format!("jti-{participant}"),
        exp: now + 30,
        iat: now,
        room: room.clone(),
        participant_id: id(participant),
        display_name: participant.into(),
        moderator: false,
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderation_reaches_the_participants_of_the_room_through_its_shard() {
    let mut config = BridgeConfig::loopback(BridgeId::new("b1").unwrap(), SECRET.to_vec(), 0);
    config.shard_count = 4;
    let bridge = Bridge::start(config).unwrap();
    // Two rooms on different shards, so a wrongly routed action would miss.
    let r1 = RoomId::new("room-1").unwrap();
    let r2 = (2..100)
        .map(|n| RoomId::new(format!("room-{n}")).unwrap())
        .find(|r| shard_of(r, 4) != shard_of(&r1, 4))
        .unwrap();
    let mut ada = join(&bridge, &r1, "ada").await;
    let mut bob = join(&bridge, &r1, "bob").await;
    let mut cy = join(&bridge, &r2, "cy").await;
    until(&mut ada, |c| {
        matches!(c, ClientCommand::Send(ServerMessage::ParticipantJoined { participant }) if participant.id == id("bob"))
    })
    .await;

    bridge.request_mute_all(&r1, &id("ada"));
    until(&mut bob, is(ServerMessage::MuteRequested { by: id("ada") })).await;

    bridge.kick(&r1, &id("bob"));
    let to_bob = until(&mut bob, |c| matches!(c, ClientCommand::Close)).await;
    assert!(
        to_bob.iter().any(is(ServerMessage::Bye {
            reason: ByeReason::Kicked
        })),
        "{to_bob:?}"
    );
    // The shard handles its inbox in order: a mute request to ada would come before this.
    let to_ada = until(
        &mut ada,
        is(ServerMessage::ParticipantLeft {
            participant_id: id("bob"),
        }),
    )
    .await;
    assert!(
        !to_ada
            .iter()
            .any(|c| matches!(c, ClientCommand::Send(ServerMessage::MuteRequested { .. }))),
        "the requester was asked to mute: {to_ada:?}"
    );
    assert_eq!(
        bridge
            .verifier()
            .verify(&ticket("bob", &r1), crate::ticket::now_unix_s()),
        Err(TicketError::ParticipantRemoved)
    );

    bridge.end_room(&r1);
    let to_ada = until(&mut ada, |c| matches!(c, ClientCommand::Close)).await;
    assert!(
        to_ada.iter().any(is(ServerMessage::Bye {
            reason: ByeReason::MeetingEnded
        })),
        "{to_ada:?}"
    );
    // The other room is untouched and still reachable.
    bridge.request_mute_all(&r2, &id("someone"));
    let to_cy = until(&mut cy, is(ServerMessage::MuteRequested { by: id("someone") })).await;
    assert!(
        !to_cy.iter().any(|c| matches!(
            c,
            ClientCommand::Close | ClientCommand::Send(ServerMessage::Bye { .. })
        )),
        "{to_cy:?}"
    );
    bridge.shutdown().await;
}
