//! Room policy in the real web client (headless Chromium against `bridgemesh up`, where no tokens
//! are configured, so the first participant of a room moderates it): the lobby (admit, deny),
//! the meeting password, "mute everyone", removing a participant, ending the meeting for all, and
//! a `#jwt=` token that is sent as a bearer credential but never left in the address bar.

use bridgemesh::up::Running;
use bridgemesh_proto::{ParticipantId, RoomId};
use bridgemesh_tests::chromium::Browser;
use bridgemesh_tests::harness::web::{Participant, SUMMARY_LINE_JS, install_helpers};
use bridgemesh_tests::harness::{room, up};
use serde_json::Value;
use std::time::Duration;

/// Generous: CI runs this on two cores next to other end-to-end tests.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(30);
/// For page state that follows from one control call or one bridge message.
const UI_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a final state must stay put (no automatic rejoin, no retry loop).
const STAYS_FOR: Duration = Duration::from_secs(4);

/// A JS expression that is true when element `id` is shown and its text contains `text`.
fn shows(id: &str, text: &str) -> String {
    let id = serde_json::to_string(id).unwrap();
    let text = serde_json::to_string(text).unwrap();
    format!(
        "(() => {{ const el = document.getElementById({id}); \
         return Boolean(el && !el.hidden && el.closest('[hidden]') === null && el.textContent.includes({text})); }})()"
    )
}

/// Evaluates `expression` on the page, panicking with the participant's name on failure.
async fn eval(participant: &Participant, expression: &str) -> Value {
    participant
        .page
        .eval(expression)
        .await
        .unwrap_or_else(|err| panic!("{}: evaluating `{expression}`: {err:#}", participant.name))
}

/// Calls a moderator hook of `window.bridgemesh` (e.g. `setLobby(true)`) and asserts it succeeded.
async fn moderator_call(moderator: &Participant, call: &str) {
    let result = eval(moderator, &format!("window.bridgemesh.{call}")).await;
    assert_eq!(
        result,
        serde_json::json!({ "ok": true }),
        "{}: {call} failed",
        moderator.name
    );
}

/// Asserts that `condition` (a JS expression) stays true on the page for `duration`, checking
/// every 200 ms.
async fn stays(participant: &Participant, what: &str, condition: &str, duration: Duration) {
    let deadline = tokio::time::Instant::now() + duration;
    while tokio::time::Instant::now() < deadline {
        let value = eval(participant, &format!("Boolean({condition})")).await;
        if value != Value::Bool(true) {
            let line = eval(participant, SUMMARY_LINE_JS).await;
            panic!(
                "{}: {what}: stopped holding: `{condition}`; {line}\n{}",
                participant.name,
                participant.page.console_log().join("\n  ")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Opens `name`'s page and waits until it is in the meeting as the room's moderator.
async fn open_moderator(browser: &Browser, running: &Running, room: &RoomId, name: &str) -> Participant {
    let moderator = Participant::open(browser, running, room, name).await;
    moderator
        .wait_until(
            "the first participant is connected and moderates",
            "s.state === 'connected' && window.bridgemesh.role() === 'moderator' \
             && !document.getElementById('moderate-button').hidden",
            MEDIA_TIMEOUT,
            &[],
        )
        .await;
    moderator
}

/// Waits until `moderator`'s lobby list holds a guest named `name`; returns the guest's id.
async fn wait_for_knock(moderator: &Participant, name: &str, others: &[&Participant]) -> String {
    let name_js = serde_json::to_string(name).unwrap();
    moderator
        .wait_until(
            &format!("{name} shows in the lobby list with a badge"),
            &format!(
                "window.bridgemesh.lobbyList().some((g) => g.name === {name_js}) \
                 && !document.getElementById('knock-badge').hidden \
                 && document.getElementById('knock-badge').textContent === \
                    String(window.bridgemesh.lobbyList().length)"
            ),
            UI_TIMEOUT,
            others,
        )
        .await;
    let id = eval(
        moderator,
        &format!("window.bridgemesh.lobbyList().find((g) => g.name === {name_js}).id"),
    )
    .await;
    id.as_str().expect("lobby ids are strings").to_owned()
}

fn present_in_control(running: &Running, room: &RoomId, participant: &str) -> bool {
    let id = ParticipantId::new(participant.to_owned()).expect("a valid participant id");
    running
        .control
        .snapshot()
        .rooms
        .get(room)
        .and_then(|r| r.participants.get(&id))
        .is_some_and(|p| p.status.present())
}

async fn wait_gone_from_control(running: &Running, room: &RoomId, participant: &str) {
    let deadline = tokio::time::Instant::now() + UI_TIMEOUT;
    while present_in_control(running, room, participant) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "control still counts {participant} as present after {UI_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lobby_guests_wait_until_a_moderator_admits_or_denies_them() {
    let running = up().await;
    let room = room("policy-lobby");
    let browser = Browser::launch().await.expect("chromium starts");
    let ada = open_moderator(&browser, &running, &room, "Ada").await;
    moderator_call(&ada, "setLobby(true)").await;

    let bob = Participant::open(&browser, &running, &room, "Bob").await;
    bob.wait_until(
        "Bob waits in the lobby",
        &format!(
            "s.state === 'lobby' && window.bridgemesh.lobbyWaiting() && s.me === null && {}",
            shows("lobby-title", "Waiting for a moderator to let you in")
        ),
        UI_TIMEOUT,
        &[&ada],
    )
    .await;
    let bob_id = wait_for_knock(&ada, "Bob", &[&bob]).await;
    // Waiting is not being in the meeting: Ada's page has nobody else yet.
    assert_eq!(ada.summary().await["peers"], serde_json::json!([]));

    moderator_call(
        &ada,
        &format!("admit({})", serde_json::to_string(&bob_id).unwrap()),
    )
    .await;
    let seen_bob = ada.wait_for_media_from(&bob, MEDIA_TIMEOUT).await;
    assert_eq!(seen_bob, bob_id, "the admitted participant keeps its lobby id");
    bob.wait_for_media_from(&ada, MEDIA_TIMEOUT).await;
    assert_eq!(eval(&bob, "window.bridgemesh.role()").await, "guest");
    assert_eq!(
        eval(&bob, "document.getElementById('moderate-button').hidden").await,
        true,
        "a guest has no moderator controls"
    );
    ada.wait_until(
        "the lobby list is empty again",
        "window.bridgemesh.lobbyList().length === 0 && document.getElementById('knock-badge').hidden",
        UI_TIMEOUT,
        &[],
    )
    .await;

    let carol = Participant::open(&browser, &running, &room, "Carol").await;
    carol
        .wait_until(
            "Carol waits in the lobby",
            "s.state === 'lobby' && window.bridgemesh.lobbyWaiting()",
            UI_TIMEOUT,
            &[&ada],
        )
        .await;
    let carol_id = wait_for_knock(&ada, "Carol", &[&carol]).await;
    moderator_call(
        &ada,
        &format!("deny({})", serde_json::to_string(&carol_id).unwrap()),
    )
    .await;
    carol
        .wait_until(
            "Carol is told she was declined",
            &format!(
                "s.state === 'left' && window.bridgemesh.endReason() === 'lobby_denied' \
                 && {} && document.getElementById('rejoin-button').hidden",
                shows("left-title", "A moderator declined your request")
            ),
            UI_TIMEOUT,
            &[&ada],
        )
        .await;
    stays(
        &carol,
        "Carol does not knock again by herself",
        "window.bridgemesh.state === 'left' && window.bridgemesh.participantId === null",
        STAYS_FOR,
    )
    .await;
    assert!(
        !present_in_control(&running, &room, &carol_id),
        "a declined guest is not in the room"
    );
    let ada_peers = ada.summary().await["peers"].clone();
    assert_eq!(
        ada_peers.as_array().map(Vec::len),
        Some(1),
        "only Bob joined Ada: {ada_peers}"
    );

    for p in [ada, bob, carol] {
        p.page.close().await.unwrap();
    }
    drop(browser);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_is_asked_for_a_wrong_one_refused_and_the_right_one_lets_in() {
    let running = up().await;
    let room = room("policy-password");
    let browser = Browser::launch().await.expect("chromium starts");
    let ada = open_moderator(&browser, &running, &room, "Ada").await;
    moderator_call(&ada, "setPassword('s3cret horse')").await;
    ada.wait_until(
        "Ada's panel knows the password is set",
        "window.bridgemesh.roomView() && window.bridgemesh.roomView().password_set === true \
         && !document.getElementById('mod-password-remove').disabled",
        UI_TIMEOUT,
        &[],
    )
    .await;

    let bob = Participant::open(&browser, &running, &room, "Bob").await;
    bob.wait_until(
        "Bob is asked for the password",
        "s.state === 'error' && window.bridgemesh.passwordPrompt() \
         && window.bridgemesh.joinError().code === 'password_required' \
         && document.getElementById('password-error').hidden \
         && !document.getElementById('prejoin-view').hidden",
        UI_TIMEOUT,
        &[&ada],
    )
    .await;

    eval(&bob, "document.getElementById('password').value = 'not it'").await;
    bob.click("join-button").await;
    bob.wait_until(
        "Bob is told the password is wrong",
        &format!(
            "s.state === 'error' && window.bridgemesh.joinError().code === 'wrong_password' && {}",
            shows("password-error", "Wrong password")
        ),
        UI_TIMEOUT,
        &[&ada],
    )
    .await;

    eval(&bob, "document.getElementById('password').value = 's3cret horse'").await;
    bob.click("join-button").await;
    ada.wait_for_media_from(&bob, MEDIA_TIMEOUT).await;
    bob.wait_for_media_from(&ada, MEDIA_TIMEOUT).await;

    // Ending the meeting disconnects everyone, for good.
    moderator_call(&ada, "endMeeting()").await;
    for p in [&bob, &ada] {
        p.wait_until(
            "the meeting has ended",
            &format!(
                "s.state === 'left' && window.bridgemesh.endReason() === 'meeting_ended' && {} \
                 && document.getElementById('rejoin-button').hidden",
                shows("left-title", "The meeting has ended")
            ),
            UI_TIMEOUT,
            &[],
        )
        .await;
    }
    stays(
        &bob,
        "Bob does not rejoin an ended meeting",
        "window.bridgemesh.state === 'left' && window.bridgemesh.pc === null",
        STAYS_FOR,
    )
    .await;

    ada.page.close().await.unwrap();
    bob.page.close().await.unwrap();
    drop(browser);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mute_everyone_mutes_the_others_and_a_removed_participant_stays_out() {
    let running = up().await;
    let room = room("policy-kick");
    let browser = Browser::launch().await.expect("chromium starts");
    let ada = open_moderator(&browser, &running, &room, "Ada").await;
    let bob = Participant::open(&browser, &running, &room, "Bob").await;
    let bob_id = ada.wait_for_media_from(&bob, MEDIA_TIMEOUT).await;
    bob.wait_for_media_from(&ada, MEDIA_TIMEOUT).await;
    assert_eq!(eval(&bob, "window.bridgemesh.micMuted()").await, false);
    ada.wait_until(
        "Ada's tile for Bob offers Remove",
        "document.querySelector('#tiles.moderating .tile:not(.local) .kick') !== null \
         && getComputedStyle(document.querySelector('#tiles .tile:not(.local) .kick')).display !== 'none'",
        UI_TIMEOUT,
        &[],
    )
    .await;

    moderator_call(&ada, "muteAll()").await;
    bob.wait_until(
        "Bob's microphone is muted at Ada's request",
        &format!(
            "window.bridgemesh.micMuted() && window.bridgemesh.muteRequests === 1 && {} \
             && document.getElementById('mic-button').getAttribute('aria-pressed') === 'true'",
            shows("toast", "Ada asked everyone to mute")
        ),
        UI_TIMEOUT,
        &[&ada],
    )
    .await;
    ada.wait_until(
        "Ada sees Bob muted",
        "Array.from(window.bridgemesh.participants.values()) \
           .some((p) => p.display_name === 'Bob' && p.microphone_muted === true)",
        UI_TIMEOUT,
        &[&bob],
    )
    .await;
    assert_eq!(
        eval(
            &ada,
            "window.bridgemesh.micMuted() || window.bridgemesh.muteRequests"
        )
        .await,
        0,
        "the moderator who asked is not muted"
    );

    moderator_call(
        &ada,
        &format!("kick({})", serde_json::to_string(&bob_id).unwrap()),
    )
    .await;
    bob.wait_until(
        "Bob is told he was removed",
        &format!(
            "s.state === 'left' && window.bridgemesh.endReason() === 'kicked' && {} \
             && document.getElementById('rejoin-button').hidden",
            shows("left-title", "You were removed from the meeting")
        ),
        UI_TIMEOUT,
        &[&ada],
    )
    .await;
    ada.wait_until(
        "Bob is gone from Ada's page",
        "s.state === 'connected' && s.peers.length === 0 && s.tiles.length === 0",
        UI_TIMEOUT,
        &[&bob],
    )
    .await;
    wait_gone_from_control(&running, &room, &bob_id).await;
    stays(
        &bob,
        "Bob's page does not join again",
        "window.bridgemesh.state === 'left' && window.bridgemesh.pc === null \
         && window.bridgemesh.participantId === null && window.bridgemesh.reconnects === 0",
        STAYS_FOR,
    )
    .await;
    let present: Vec<String> = running
        .control
        .snapshot()
        .rooms
        .get(&room)
        .map(|r| {
            r.participants
                .iter()
                .filter(|(_, p)| p.status.present())
                .map(|(_, p)| p.display_name.clone())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(present, ["Ada"], "only Ada is in the room after the kick");

    ada.page.close().await.unwrap();
    bob.page.close().await.unwrap();
    drop(browser);
    running.stop().await;
}

/// Records every join request's `Authorization` header, and answers joins with a made-up token
/// error while `window.__fakeJoinError` is set (`bridgemesh up` configures no tokens, so control
/// itself never refuses one).
const FETCH_SPY_JS: &str = r#"(() => {
  window.__joins = [];
  window.__fakeJoinError = 'token_expired';
  const realFetch = window.fetch.bind(window);
  window.fetch = (url, init) => {
    if (/\/api\/v1\/rooms\/[^/]+\/join$/.test(String(url))) {
      const headers = (init && init.headers) || {};
      window.__joins.push(headers.Authorization || null);
      if (window.__fakeJoinError) {
        const body = JSON.stringify({ error: { code: window.__fakeJoinError, message: 'token expired' } });
        return Promise.resolve(new Response(body, { status: 401, headers: { 'Content-Type': 'application/json' } }));
      }
    }
    return realFetch(url, init);
  };
  return true;
})()"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_in_the_link_is_sent_as_bearer_hidden_from_the_address_and_its_errors_are_final() {
    let running = up().await;
    let room = room("policy-token");
    let browser = Browser::launch().await.expect("chromium starts");
    let token = "eyJhbGciOiJIUzI1NiJ9.eyJyb29tIjoiKiJ9.c2lnbmF0dXJl";
    let url = format!("{}?name=Tess#jwt={token}", running.room_url(&room));
    let page = browser
        .new_page(&url)
        .await
        .unwrap_or_else(|err| panic!("opening {url}: {err:#}"));
    install_helpers(&page).await.expect("test helpers install");
    let tess = Participant {
        name: "Tess".to_owned(),
        page,
    };
    tess.wait_until(
        "the pre-join page is up",
        "s.state === 'idle' && !document.getElementById('prejoin-view').hidden",
        UI_TIMEOUT,
        &[],
    )
    .await;
    let href = eval(&tess, "location.href").await;
    assert!(
        !href.as_str().unwrap().contains("jwt") && !href.as_str().unwrap().contains(token),
        "the token is taken out of the address bar: {href}"
    );
    eval(&tess, FETCH_SPY_JS).await;

    tess.click("join-button").await;
    tess.wait_until(
        "an expired token is explained on the pre-join page",
        &format!(
            "s.state === 'error' && window.bridgemesh.joinError().code === 'token_expired' && {}",
            shows("join-error", "Your meeting link\u{2019}s token has expired")
        ),
        UI_TIMEOUT,
        &[],
    )
    .await;
    stays(
        &tess,
        "no retry loop after a token error",
        "window.__joins.length === 1 && window.bridgemesh.state === 'error'",
        STAYS_FOR,
    )
    .await;

    eval(&tess, "window.__fakeJoinError = null").await;
    tess.click("join-button").await;
    tess.wait_until(
        "the second try joins",
        "s.state === 'connected' && window.__joins.length === 2",
        MEDIA_TIMEOUT,
        &[],
    )
    .await;
    let sent = eval(&tess, "window.__joins").await;
    let bearer = format!("Bearer {token}");
    assert_eq!(
        sent,
        serde_json::json!([bearer, bearer]),
        "each join carries the token"
    );

    tess.page.close().await.unwrap();
    drop(browser);
    running.stop().await;
}
