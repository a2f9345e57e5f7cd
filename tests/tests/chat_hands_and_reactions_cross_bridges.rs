//! A room spread over two bridges: the chat history kept by the first bridge reaches a
//! participant who joins on the second, and chat, private messages, deletes, raised hands (and a
//! moderator lowering one) and reactions all cross the cascade link.

use bridgemesh::up::UpConfig;
use bridgemesh_proto::api::{JoinResponse, Role};
use bridgemesh_proto::meeting::{ChatMessage, Reaction};
use bridgemesh_proto::signaling::{ClientMessage, ServerMessage};
use bridgemesh_tests::harness::{RawSignal, init_tracing, join_raw, post_join_raw, room};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

async fn next_chat(signal: &mut RawSignal, what: &str) -> ChatMessage {
    signal
        .next_matching(what, WAIT, |m| match m {
            ServerMessage::Chat { message } => Some(message),
            _ => None,
        })
        .await
}

fn chat(text: &str) -> ClientMessage {
    ClientMessage::Chat {
        text: text.into(),
        to: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_chat_hands_and_reactions_cross_the_cascade_link() {
    init_tracing();
    // One participant per room and bridge: a room of two spans both bridges.
    let running = bridgemesh::up::start(UpConfig {
        bridges: 2,
        max_per_room: 1,
        ..UpConfig::ephemeral()
    })
    .await
    .expect("bridgemesh up starts with two bridges");
    let room = room("chat-cascade");
    let ada_join = join_raw(&running, &room, "Ada").await;
    assert_eq!(ada_join.role, Role::Moderator, "Ada opened the room");
    let mut ada = RawSignal::hello(&ada_join).await;
    ada.welcome_and_offer().await;
    for text in ["one", "two", "three"] {
        ada.send(&chat(text)).await;
        assert_eq!(next_chat(&mut ada, "Ada's echo").await.text, text);
    }

    // Bob is placed on the other bridge, which had never seen the room: Ada's bridge sends it
    // the history over the link, and Bob gets it, in order, with Ada's name and times.
    let bob_join = join_raw(&running, &room, "Bob").await;
    assert_ne!(
        ada_join.bridge_id, bob_join.bridge_id,
        "the room spans both bridges"
    );
    let mut bob = RawSignal::hello(&bob_join).await;
    let mut history = Vec::new();
    while history.len() < 3 {
        let message = bob
            .next_matching("Ada's history", WAIT, |m| match m {
                ServerMessage::ChatHistory { messages } => Some(messages),
                ServerMessage::Chat { message } => Some(vec![message]),
                _ => None,
            })
            .await;
        history.extend(message);
    }
    let texts: Vec<_> = history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["one", "two", "three"]);
    assert!(
        history
            .iter()
            .all(|m| m.from_name == "Ada" && m.from == ada_join.participant_id)
    );
    assert!(history.windows(2).all(|w| w[0].sent_at_ms <= w[1].sent_at_ms));

    // Live both ways, and privately.
    bob.send(&chat("four")).await;
    let four = next_chat(&mut ada, "Bob's message").await;
    assert_eq!((four.text.as_str(), four.from_name.as_str()), ("four", "Bob"));
    ada.send(&ClientMessage::Chat {
        text: "psst".into(),
        to: Some(bob_join.participant_id.clone()),
    })
    .await;
    let private = bob
        .next_matching("Ada's private message", WAIT, |m| match m {
            ServerMessage::Chat { message } if message.text == "psst" => Some(message),
            _ => None,
        })
        .await;
    assert_eq!(private.text, "psst");
    assert_eq!(private.to.as_ref(), Some(&bob_join.participant_id));

    // Ada, the moderator, deletes "two": gone on Bob's side too.
    let two = history[1].id.clone();
    ada.send(&ClientMessage::DeleteChat { id: two.clone() }).await;
    bob.next_matching("the delete", WAIT, |m| match m {
        ServerMessage::ChatDeleted { id, .. } if id == two => Some(()),
        _ => None,
    })
    .await;

    // Bob raises his hand; Ada sees it; Ada lowers it through Bob's bridge.
    bob.send(&ClientMessage::RaiseHand).await;
    let bob_id = bob_join.participant_id.clone();
    ada.next_matching("Bob's raised hand", WAIT, |m| match m {
        ServerMessage::ParticipantUpdated { participant }
            if participant.id == bob_id && participant.hand_raised_at_ms.is_some() =>
        {
            Some(())
        }
        _ => None,
    })
    .await;
    ada.send(&ClientMessage::LowerHand {
        participant: Some(bob_id.clone()),
    })
    .await;
    bob.next_matching("his hand lowered by Ada", WAIT, |m| match m {
        ServerMessage::ParticipantUpdated { participant }
            if participant.id == bob_id && participant.hand_raised_at_ms.is_none() =>
        {
            Some(())
        }
        _ => None,
    })
    .await;

    // A reaction crosses too.
    bob.send(&ClientMessage::React {
        reaction: Reaction::Party,
    })
    .await;
    ada.next_matching("Bob's reaction", WAIT, |m| match m {
        ServerMessage::Reaction {
            participant_id,
            reaction: Reaction::Party,
        } if participant_id == bob_id => Some(()),
        _ => None,
    })
    .await;

    // A late joiner on Bob's bridge after Bob left gets the history there (kept by that bridge,
    // or sent again by Ada's when the room reopens on the link), without the deleted message
    // and without the private one.
    bob.send(&ClientMessage::Leave).await;
    bob.until_closed(WAIT).await;
    // Control frees Bob's seat when his bridge reports him gone: ask until it has.
    let deadline = tokio::time::Instant::now() + WAIT;
    let cy_join: JoinResponse = loop {
        let body = serde_json::json!({ "display_name": "Cy" }).to_string();
        let (status, value) = post_join_raw(&running.control_url, room.as_str(), body).await;
        if status == 200 {
            break serde_json::from_value(value).expect("a join response");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Cy never got a seat: {status} {value}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(cy_join.bridge_id, bob_join.bridge_id, "Cy takes Bob's seat");
    let mut cy = RawSignal::hello(&cy_join).await;
    let mut seen: Vec<ChatMessage> = Vec::new();
    while !seen.iter().any(|m| m.text == "four") {
        let got = cy
            .next_matching("the history on the second bridge", WAIT, |m| match m {
                ServerMessage::ChatHistory { messages } => Some(messages),
                ServerMessage::Chat { message } => Some(vec![message]),
                _ => None,
            })
            .await;
        seen.extend(got);
    }
    let texts: Vec<_> = seen.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(
        texts,
        ["one", "three", "four"],
        "no deleted and no private message"
    );
    running.stop().await;
}
