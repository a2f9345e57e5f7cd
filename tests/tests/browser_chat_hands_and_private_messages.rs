//! Chat, raised hands and a moderator's delete between three pages of the real web client,
//! driven through its own controls: a late joiner sees the history, a private message reaches
//! only its target, and raised hands show on every page in the order they were raised.

use bridgemesh_tests::chromium::Browser;
use bridgemesh_tests::harness::web::Participant;
use bridgemesh_tests::harness::{room, up};
use std::time::Duration;

/// Generous: CI runs this on two cores next to other end-to-end tests.
const TIMEOUT: Duration = Duration::from_secs(30);

const MEETING_JS: &str = "JSON.stringify(window.bridgemesh && window.bridgemesh.meeting)";

async fn wait(page: &Participant, what: &str, condition: &str) {
    let expression =
        format!("(() => {{ const m = window.bridgemesh.meeting; return Boolean({condition}); }})()");
    if let Err(err) = page.page.wait_for(&expression, TIMEOUT, MEETING_JS).await {
        panic!(
            "{}: {what}: {err:#}\n{}",
            page.name,
            page.page.console_log().join("\n")
        );
    }
}

async fn connected(page: &Participant, peers: usize) {
    let condition =
        format!("window.bridgemesh.state === 'connected' && window.bridgemesh.participants.size === {peers}");
    wait(page, "connected with its peers", &condition).await;
}

async fn my_id(page: &Participant) -> String {
    let id = page.page.eval("window.bridgemesh.participantId").await.unwrap();
    id.as_str().expect("a participant id").to_owned()
}

/// Types `text` into the chat and sends it, to `to` (a participant id) or to everyone.
async fn say(page: &Participant, text: &str, to: Option<&str>) {
    let script = format!(
        r#"(() => {{
  if (document.getElementById('chat-panel').hidden) document.getElementById('chat-button').click();
  const select = document.getElementById('chat-to');
  select.value = {to};
  if (select.value !== {to}) throw new Error('no such recipient in the chat menu: ' + {to});
  document.getElementById('chat-input').value = {text};
  document.getElementById('chat-send').click();
  return true;
}})()"#,
        to = serde_json::to_string(to.unwrap_or("")).unwrap(),
        text = serde_json::to_string(text).unwrap(),
    );
    page.page
        .eval(&script)
        .await
        .unwrap_or_else(|err| panic!("{} sends {text:?}: {err:#}", page.name));
}

fn texts_are(texts: &[&str]) -> String {
    format!(
        "JSON.stringify(m.messages.map((x) => x.text)) === {:?}",
        serde_json::to_string(texts).unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_pages_chat_with_history_private_messages_and_raised_hands_in_order() {
    let running = up().await;
    let room = room("chat-three-pages");
    let browser = Browser::launch().await.expect("chromium starts");
    // Ada opens the room: she moderates it.
    let ada = Participant::open(&browser, &running, &room, "Ada").await;
    connected(&ada, 0).await;
    let bob = Participant::open(&browser, &running, &room, "Bob").await;
    connected(&ada, 1).await;
    connected(&bob, 1).await;

    say(&ada, "hello from Ada", None).await;
    // Bob's chat is closed: the message waits as unread, with the badge on the chat button.
    wait(
        &bob,
        "Ada's message, unread",
        &format!("{} && m.unread === 1", texts_are(&["hello from Ada"])),
    )
    .await;
    let badge = bob
        .page
        .eval("(() => { const b = document.getElementById('chat-badge'); return b.hidden ? null : b.textContent; })()")
        .await
        .unwrap();
    assert_eq!(badge, "1", "Bob's unread badge");
    say(&bob, "hi Ada", None).await;
    wait(&bob, "the chat opened, nothing unread", "m.unread === 0").await;
    for page in [&ada, &bob] {
        wait(
            page,
            "both messages in order",
            &texts_are(&["hello from Ada", "hi Ada"]),
        )
        .await;
    }
    let first = ada
        .page
        .eval("window.bridgemesh.meeting.messages[0]")
        .await
        .unwrap();
    assert_eq!(first["from_name"], "Ada", "{first}");
    assert!(
        first["sent_at_ms"].as_u64().unwrap() > 1_600_000_000_000,
        "a server time: {first}"
    );

    // Cy joins late and sees the history, shown in the chat list.
    let cy = Participant::open(&browser, &running, &room, "Cy").await;
    connected(&cy, 2).await;
    wait(&cy, "the history", &texts_are(&["hello from Ada", "hi Ada"])).await;
    assert_eq!(
        cy.page
            .eval("document.querySelectorAll('#chat-list .chat-message').length")
            .await
            .unwrap(),
        2
    );
    let cy_id = my_id(&cy).await;
    let bob_id = my_id(&bob).await;

    // A private message from Ada reaches Cy (and Ada's own view), not Bob.
    connected(&ada, 2).await;
    say(&ada, "just for Cy", Some(&cy_id)).await;
    wait(
        &cy,
        "the private message",
        &format!("m.messages.some((x) => x.text === 'just for Cy' && x.to === {cy_id:?})"),
    )
    .await;
    wait(
        &ada,
        "her own private message",
        "m.messages.some((x) => x.text === 'just for Cy')",
    )
    .await;
    // The bridge keeps each client's messages in order: once Bob has the next room message, a
    // misrouted private one would already be there.
    say(&ada, "back to everyone", None).await;
    wait(
        &bob,
        "the next room message",
        &texts_are(&["hello from Ada", "hi Ada", "back to everyone"]),
    )
    .await;
    wait(&cy, "the next room message", "m.messages.length === 4").await;

    // Hands: Cy first, then Bob; every page shows them in that order.
    cy.page
        .eval("document.getElementById('hand-button').click()")
        .await
        .unwrap();
    for page in [&ada, &bob, &cy] {
        wait(
            page,
            "Cy's hand",
            &format!("m.hands.length === 1 && m.hands[0].id === {cy_id:?}"),
        )
        .await;
    }
    bob.page
        .eval("document.getElementById('hand-button').click()")
        .await
        .unwrap();
    let in_order = format!(
        "JSON.stringify(m.hands.map((h) => h.id)) === {:?}",
        serde_json::to_string(&[&cy_id, &bob_id]).unwrap()
    );
    for page in [&ada, &bob, &cy] {
        wait(page, "Cy's then Bob's hand", &in_order).await;
        let shown = page
            .page
            .eval("Array.from(document.querySelectorAll('#hands-list .hand')).map((li) => li.dataset.id)")
            .await
            .unwrap();
        assert_eq!(
            shown,
            serde_json::json!([cy_id, bob_id]),
            "{}'s hand list",
            page.name
        );
    }
    assert_eq!(
        cy.page
            .eval("document.getElementById('hand-button').getAttribute('aria-pressed')")
            .await
            .unwrap(),
        "true"
    );

    // Ada, the moderator, lowers Cy's hand and deletes Bob's message, for everyone.
    let lowered = format!(
        "(() => {{ document.querySelector('#hands-list .hand-lower[data-id=\"{cy_id}\"]').click(); return true; }})()"
    );
    ada.page.eval(&lowered).await.unwrap();
    for page in [&ada, &bob, &cy] {
        wait(
            page,
            "only Bob's hand",
            &format!("m.hands.length === 1 && m.hands[0].id === {bob_id:?}"),
        )
        .await;
    }
    ada.page
        .eval("(() => { const m = window.bridgemesh.meeting.messages.find((x) => x.text === 'hi Ada'); document.querySelector(`.chat-delete[data-id=\"${m.id}\"]`).click(); return true; })()")
        .await
        .unwrap();
    for page in [&ada, &bob, &cy] {
        wait(
            page,
            "Bob's message deleted",
            "!m.messages.some((x) => x.text === 'hi Ada')",
        )
        .await;
    }
    // Bob is no moderator: his page offers no delete.
    assert_eq!(
        bob.page
            .eval("document.querySelectorAll('.chat-delete').length")
            .await
            .unwrap(),
        0
    );

    for page in [ada, bob, cy] {
        page.page.close().await.unwrap();
    }
    drop(browser);
    running.stop().await;
}
