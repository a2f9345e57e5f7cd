//! The bridge's signaling socket refuses bad credentials and bad first messages by closing, and
//! survives bad messages inside a session: garbage is answered and ignored, an unappliable answer
//! ends only the session that sent it.

use bridgemesh::up::Running;
use bridgemesh_proto::RoomId;
use bridgemesh_proto::api::{ErrorCode, JoinResponse};
use bridgemesh_proto::signaling::{ByeReason, ClientMessage, MediaSource, ServerMessage};
use bridgemesh_sim::SyntheticParticipant;
use bridgemesh_tests::harness::{
    RawSignal, control_awaits_reconnect, control_has, eventually, join, join_raw, room, up, wait_for_camera,
};
use std::time::{Duration, Instant};

const STEP: Duration = Duration::from_secs(5);

/// Reads until the socket closes and returns the `error` codes and `bye` reasons seen.
async fn refused(signal: &mut RawSignal) -> (Vec<ErrorCode>, Vec<ByeReason>) {
    let messages = signal.until_closed(STEP).await;
    let mut errors = Vec::new();
    let mut byes = Vec::new();
    for message in messages {
        match message {
            ServerMessage::Error { code, message } => {
                assert!(!message.is_empty(), "error {code:?} without a message");
                errors.push(code);
            }
            ServerMessage::Bye { reason } => byes.push(reason),
            other => panic!("a refused socket was sent {other:?}"),
        }
    }
    (errors, byes)
}

/// Connects, sends `hello` with `ticket`, and asserts the bridge answers `ticket_rejected` and closes.
async fn assert_ticket_rejected(join: &JoinResponse, ticket: String, what: &str) {
    let mut signal = RawSignal::connect(&join.signaling_url).await;
    signal
        .send(&ClientMessage::Hello {
            ticket,
            media: Default::default(),
        })
        .await;
    let (errors, byes) = refused(&mut signal).await;
    assert_eq!(errors, [ErrorCode::TicketRejected], "{what}");
    assert!(byes.is_empty(), "{what}: no session, so no bye");
}

/// A client driven by hand in `room`: joined, hello said, welcome and first offer read, and
/// listed in every watcher's roster.
async fn raw_client_seen_by(
    running: &Running,
    room: &RoomId,
    watchers: &[&SyntheticParticipant],
) -> (JoinResponse, RawSignal) {
    let raw = join_raw(running, room, "Raw").await;
    let mut signal = RawSignal::hello(&raw).await;
    signal.welcome_and_offer().await;
    for watcher in watchers {
        watcher
            .wait_until("the raw client joins", STEP, |_, roster| {
                roster.contains_key(&raw.participant_id)
            })
            .await
            .unwrap();
    }
    (raw, signal)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_with_a_forged_signature_is_rejected_and_the_socket_closed() {
    let running = up().await;
    let room = room("forged");
    let join = join_raw(&running, &room, "Mallory").await;
    let other = join_raw(&running, &room, "Other").await;
    let parts: Vec<&str> = join.ticket.split('.').collect();
    assert_eq!(parts.len(), 3);

    // One character of the signature changed.
    let mut signature: Vec<char> = parts[2].chars().collect();
    signature[10] = if signature[10] == 'A' { 'B' } else { 'A' };
    let signature: String = signature.into_iter().collect();
    let flipped = format!("{}.{}.{signature}", parts[0], parts[1]);
    assert_ticket_rejected(&join, flipped, "flipped signature character").await;

    // Another ticket's claims under this ticket's signature.
    let other_parts: Vec<&str> = other.ticket.split('.').collect();
    let spliced = format!("{}.{}.{}", parts[0], other_parts[1], parts[2]);
    assert_ticket_rejected(&join, spliced, "spliced claims").await;

    // The same claims, unsigned.
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
    assert_ticket_rejected(&join, unsigned, "alg none").await;
    let stripped = format!("{}.{}.", parts[0], parts[1]);
    assert_ticket_rejected(&join, stripped, "no signature").await;
    assert_ticket_rejected(&join, String::new(), "empty ticket").await;
    assert_ticket_rejected(&join, "x".repeat(100_000), "a huge garbage ticket").await;

    // None of that burned the real ticket or admitted anyone.
    assert_eq!(running.bridge.stats().shards.participants, 0);
    let mut signal = RawSignal::hello(&join).await;
    signal.welcome_and_offer().await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_used_twice_is_rejected_the_second_time() {
    let running = up().await;
    let room = room("replay");
    let join = join_raw(&running, &room, "Ada").await;
    let mut first = RawSignal::hello(&join).await;
    first.welcome_and_offer().await;
    eventually("the bridge confirms the first session", STEP, || {
        running.control.snapshot().rooms[&room].participants[&join.participant_id].status
            == bridgemesh_control::state::ParticipantStatus::Connected
    })
    .await;

    assert_ticket_rejected(&join, join.ticket.clone(), "replay while the session is up").await;
    // The replay did not replace or end the first session.
    let quiet = tokio::time::timeout(Duration::from_millis(500), first.next(STEP)).await;
    assert!(
        quiet.is_err(),
        "the first session was disturbed by the replay: {quiet:?}"
    );
    assert!(control_has(&running, &room, &join.participant_id));

    // Nor is it good again once the session ended.
    first.send(&ClientMessage::Leave).await;
    let messages = first.until_closed(STEP).await;
    assert!(
        messages.contains(&ServerMessage::Bye {
            reason: ByeReason::Left
        }),
        "{messages:?}"
    );
    assert_ticket_rejected(&join, join.ticket.clone(), "replay after leave").await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_message_other_than_hello_is_refused_and_the_socket_closed() {
    let running = up().await;
    let room = room("no-hello");
    let join = join_raw(&running, &room, "Ada").await;
    let not_hello = [
        ClientMessage::Leave,
        ClientMessage::Mute {
            microphone: true,
            camera: true,
        },
        ClientMessage::Answer { sdp: "v=0".into() },
        ClientMessage::Publish {
            source: MediaSource::Screen,
        },
    ];
    for message in &not_hello {
        let mut signal = RawSignal::connect(&join.signaling_url).await;
        signal.send(message).await;
        let (errors, byes) = refused(&mut signal).await;
        assert_eq!(errors, [ErrorCode::Unauthorized], "first message {message:?}");
        assert!(byes.is_empty());
    }

    let hello_with_extra = format!(r#"{{"type":"hello","ticket":"{}","admin":true}}"#, join.ticket);
    let unreadable: [(&str, String); 8] = [
        ("an array of a type", r#"["leave"]"#.into()),
        ("an array of a hello", format!(r#"["hello","{}"]"#, join.ticket)),
        ("not JSON", "hello".into()),
        ("truncated JSON", r#"{"type":"hello","ticket":"#.into()),
        ("unknown type", r#"{"type":"shutdown"}"#.into()),
        ("hello without a ticket", r#"{"type":"hello"}"#.into()),
        ("hello with an unknown field", hello_with_extra),
        ("empty text", String::new()),
    ];
    for (what, text) in unreadable {
        let mut signal = RawSignal::connect(&join.signaling_url).await;
        signal.send_text(text).await;
        let (errors, _) = refused(&mut signal).await;
        assert_eq!(errors, [ErrorCode::MalformedBody], "{what}");
    }
    let mut signal = RawSignal::connect(&join.signaling_url).await;
    signal.send_binary(b"{\"type\":\"hello\"}".to_vec()).await;
    let (errors, _) = refused(&mut signal).await;
    assert_eq!(errors, [ErrorCode::MalformedBody], "binary first frame");

    // Nothing got in, and the ticket was never consumed by the refused attempts.
    assert_eq!(running.bridge.stats().shards.participants, 0);
    let mut signal = RawSignal::hello(&join).await;
    signal.welcome_and_offer().await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_never_says_hello_is_closed_after_the_hello_timeout() {
    let running = up().await;
    let join = join_raw(&running, &room("silent"), "Ada").await;
    let started = Instant::now();
    let mut signal = RawSignal::connect(&join.signaling_url).await;
    let messages = signal.until_closed(Duration::from_secs(12)).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(9),
        "closed after {waited:?}, before the hello timeout"
    );
    assert!(
        matches!(
            messages.as_slice(),
            [ServerMessage::Error {
                code: ErrorCode::Unauthorized,
                ..
            }]
        ),
        "{messages:?}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_hello_is_answered_with_an_error_and_the_session_stays_up() {
    let running = up().await;
    let room = room("garbage-inside");
    let watcher = join(&running, &room, "Watcher").await;
    let (raw, mut signal) = raw_client_seen_by(&running, &room, &[&watcher]).await;
    let raw_id = raw.participant_id.clone();

    let garbage = [
        "{not json".to_owned(),
        r#"{"type":"mute","microphone":"yes","camera":false}"#.to_owned(),
        r#"{"type":"self_destruct"}"#.to_owned(),
        r#"["mute",true,false]"#.to_owned(),
        format!(r#"{{"type":"answer","sdp":"{}"}}"#, "\\u".repeat(1000)),
    ];
    for text in &garbage {
        signal.send_text(text.clone()).await;
        let answer = signal.next(STEP).await;
        assert!(
            matches!(
                answer,
                Some(ServerMessage::Error {
                    code: ErrorCode::MalformedBody,
                    ..
                })
            ),
            "{text}: {answer:?}"
        );
    }
    signal
        .send(&ClientMessage::Mute {
            microphone: true,
            camera: false,
        })
        .await;
    watcher
        .wait_until("the mute is relayed", STEP, |_, roster| {
            roster
                .get(&raw_id)
                .is_some_and(|p| p.microphone_muted && !p.camera_muted)
        })
        .await
        .unwrap();
    assert!(control_has(&running, &room, &raw_id));
    watcher.leave().await.unwrap();
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_keeps_sending_garbage_is_disconnected() {
    let running = up().await;
    let room = room("garbage-flood");
    let watcher = join(&running, &room, "Watcher").await;
    let (raw, mut signal) = raw_client_seen_by(&running, &room, &[&watcher]).await;
    let raw_id = raw.participant_id.clone();

    // Eight unreadable messages are tolerated...
    for i in 0..8 {
        signal.send_text(format!("garbage {i}")).await;
        let answer = signal.next(STEP).await;
        assert!(
            matches!(
                answer,
                Some(ServerMessage::Error {
                    code: ErrorCode::MalformedBody,
                    ..
                })
            ),
            "garbage {i}: {answer:?}"
        );
    }
    signal
        .send(&ClientMessage::Mute {
            microphone: false,
            camera: true,
        })
        .await;
    watcher
        .wait_until("the mute is relayed", STEP, |_, roster| {
            roster.get(&raw_id).is_some_and(|p| p.camera_muted)
        })
        .await
        .unwrap();
    // ...the ninth ends the session.
    signal.send_binary(vec![0xff; 64]).await;
    let messages = signal.until_closed(STEP).await;
    assert!(
        messages.iter().all(|m| matches!(
            m,
            ServerMessage::Error {
                code: ErrorCode::MalformedBody,
                ..
            }
        )),
        "{messages:?}"
    );
    watcher
        .wait_until("the flooder leaves the roster", STEP, |_, roster| {
            !roster.contains_key(&raw_id)
        })
        .await
        .unwrap();
    eventually(
        "control holds the flooder as dropped, waiting for it to reconnect",
        STEP,
        || control_awaits_reconnect(&running, &room, &raw_id),
    )
    .await;
    watcher.leave().await.unwrap();
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_hello_ends_the_session() {
    let running = up().await;
    let room = room("second-hello");
    let raw = join_raw(&running, &room, "Raw").await;
    let mut signal = RawSignal::hello(&raw).await;
    signal.welcome_and_offer().await;
    signal
        .send(&ClientMessage::Hello {
            ticket: raw.ticket.clone(),
            media: Default::default(),
        })
        .await;
    let (errors, byes) = refused(&mut signal).await;
    assert_eq!(errors, [ErrorCode::Conflict]);
    assert_eq!(byes, [ByeReason::ProtocolError]);
    eventually(
        "control holds the participant as dropped, waiting for it to reconnect",
        STEP,
        || control_awaits_reconnect(&running, &room, &raw.participant_id),
    )
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unappliable_answer_ends_only_the_session_that_sent_it() {
    let running = up().await;
    let room = room("bad-answer");
    let a = join(&running, &room, "Ada").await;
    let b = join(&running, &room, "Bob").await;
    wait_for_camera(&a, &b, 30).await;
    wait_for_camera(&b, &a, 30).await;

    for (what, sdp) in [
        ("garbage", "garbage".to_owned()),
        ("an empty answer", String::new()),
        ("a bare version line", "v=0\r\n".to_owned()),
    ] {
        let (raw, mut signal) = raw_client_seen_by(&running, &room, &[&a, &b]).await;
        let raw_id = raw.participant_id.clone();
        signal.send(&ClientMessage::Answer { sdp }).await;
        let (errors, byes) = refused(&mut signal).await;
        assert_eq!(errors.len(), 1, "{what}: one error, got {errors:?}");
        assert_eq!(byes, [ByeReason::ProtocolError], "{what}");
        for p in [&a, &b] {
            p.wait_until("the raw client leaves the roster", STEP, |_, roster| {
                !roster.contains_key(&raw_id)
            })
            .await
            .unwrap();
        }
        eventually(
            "control holds the raw client as dropped, waiting for it to reconnect",
            STEP,
            || control_awaits_reconnect(&running, &room, &raw_id),
        )
        .await;
    }

    // The two others kept exchanging media throughout and still do.
    let before = a.stats().intact_from(b.participant_id(), MediaSource::Camera);
    wait_for_camera(&a, &b, before + 30).await;
    let before = b.stats().intact_from(a.participant_id(), MediaSource::Camera);
    wait_for_camera(&b, &a, before + 30).await;
    for p in [&a, &b] {
        let stats = p.stats();
        assert_eq!(stats.total_corrupt(), 0, "{}", stats.summary());
        assert!(stats.signaling_open && stats.bye.is_none(), "{}", stats.summary());
        assert_eq!(p.roster().len(), 1);
    }
    a.leave().await.unwrap();
    b.leave().await.unwrap();
    running.stop().await;
}
