//! Host accounts in the real web client (headless Chromium against `bridgemesh up` with a guest
//! policy and no token keys): a guest waits for a host; a host logs in, opens the room and the
//! guest gets in; an invite link skips the lobby once and a used-up one does not; with policy
//! `none` a guest is refused with a clear message.

use bridgemesh::up::{Running, UpConfig};
use bridgemesh_control::auth::{AuthConfig, GuestPolicy};
use bridgemesh_proto::RoomId;
use bridgemesh_tests::chromium::Browser;
use bridgemesh_tests::harness::web::{Participant, install_helpers};
use bridgemesh_tests::harness::{init_tracing, room};
use serde_json::{Value, json};
use std::time::Duration;

/// Generous: CI runs this on two cores next to other end-to-end tests.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(30);
/// For page state that follows from one control call (a waiting guest retries every 5 s).
const UI_TIMEOUT: Duration = Duration::from_secs(15);
const PASSWORD: &str = "a-host-password-4711";

async fn up_with(policy: GuestPolicy) -> Running {
    init_tracing();
    let auth = AuthConfig {
        guest_policy: Some(policy),
        ..AuthConfig::default()
    };
    bridgemesh::up::start_with_auth(UpConfig::ephemeral(), auth)
        .await
        .expect("bridgemesh up starts")
}

/// `bridgemesh users add ada` through the admin API, as the CLI does it.
async fn add_host(running: &Running) {
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{}/api/v1/admin/users", running.control_url))
        .bearer_auth(&running.admin_token)
        .json(&json!({"username": "ada", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        201,
        "{}",
        response.text().await.unwrap()
    );
}

/// A page at `url` that does not join by itself.
async fn open_page(browser: &Browser, url: &str, name: &str) -> Participant {
    let page = browser
        .new_window(url)
        .await
        .unwrap_or_else(|err| panic!("opening {url} for {name}: {err:#}"));
    install_helpers(&page).await.unwrap();
    Participant {
        name: name.to_owned(),
        page,
    }
}

async fn eval(participant: &Participant, expression: &str) -> Value {
    participant
        .page
        .eval(expression)
        .await
        .unwrap_or_else(|err| panic!("{}: evaluating `{expression}`: {err:#}", participant.name))
}

/// Logs in through the page's login form.
async fn log_in(participant: &Participant, password: &str) {
    let password = serde_json::to_string(password).unwrap();
    eval(
        participant,
        &format!(
            "document.getElementById('host-login-open').click(); \
             document.getElementById('host-username').value = 'ada'; \
             document.getElementById('host-password').value = {password}; \
             document.getElementById('host-login-form').requestSubmit(); true"
        ),
    )
    .await;
}

fn shows(id: &str, text: &str) -> String {
    let id = serde_json::to_string(id).unwrap();
    let text = serde_json::to_string(text).unwrap();
    format!(
        "(() => {{ const el = document.getElementById({id}); \
         return Boolean(el && !el.hidden && el.closest('[hidden]') === null && el.textContent.includes({text})); }})()"
    )
}

fn room_page(running: &Running, room: &RoomId, query: &str) -> String {
    format!("{}?{query}", running.room_url(room))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_waits_for_a_host_who_logs_in_and_invites_skip_the_lobby_once() {
    let running = up_with(GuestPolicy::AfterModerator).await;
    add_host(&running).await;
    let room = room("hosts-standup");
    // The host in a browser of her own: a login is kept in the browser's storage, which every
    // page of one browser shares.
    let browser = Browser::launch().await.expect("chromium starts");
    let host_browser = Browser::launch().await.expect("chromium starts");

    // Bob comes first: nobody has opened the room, so he waits for a host.
    let bob = Participant::open(&browser, &running, &room, "Bob").await;
    bob.wait_until(
        "Bob waits for a host",
        &format!(
            "s.state === 'waiting' && window.bridgemesh.waitingForHost() && {}",
            shows("lobby-title", "Waiting for the host")
        ),
        UI_TIMEOUT,
        &[],
    )
    .await;

    // Ada logs in: a wrong password first, refused with a message.
    let ada = open_page(&host_browser, &room_page(&running, &room, "name=Ada"), "Ada").await;
    log_in(&ada, "not-her-password").await;
    ada.wait_until(
        "a wrong password is refused",
        &format!(
            "window.bridgemeshHosts.loggedInAs() === null && {}",
            shows("host-login-error", "Wrong user name or password")
        ),
        UI_TIMEOUT,
        &[],
    )
    .await;
    log_in(&ada, PASSWORD).await;
    ada.wait_until(
        "Ada is logged in as a host",
        &format!(
            "window.bridgemeshHosts.loggedInAs() === 'ada' && {}",
            shows("host-name", "ada")
        ),
        UI_TIMEOUT,
        &[],
    )
    .await;
    eval(&ada, "document.getElementById('join-button').click(); true").await;
    ada.wait_until(
        "Ada opens the room as its moderator",
        &format!(
            "s.state === 'connected' && window.bridgemesh.role() === 'moderator' && {}",
            shows("host-badge", "Host: ada")
        ),
        MEDIA_TIMEOUT,
        &[&bob],
    )
    .await;
    // Bob, still waiting, gets in on his next try, and each sees the other.
    ada.wait_for_media_from(&bob, MEDIA_TIMEOUT).await;
    bob.wait_for_media_from(&ada, MEDIA_TIMEOUT).await;
    assert_eq!(eval(&bob, "window.bridgemesh.role()").await, "guest");

    // Ada turns the lobby on and makes a one-use invite link.
    let lobby = eval(&ada, "window.bridgemesh.setLobby(true)").await;
    assert_eq!(lobby, json!({ "ok": true }));
    let invite = eval(&ada, "window.bridgemeshHosts.createInvite(600, 1)").await;
    assert_eq!(invite["ok"], true, "{invite}");
    let link = invite["link"].as_str().unwrap();
    let (_, fragment) = link.split_once('#').expect("the invite rides in the fragment");
    assert!(fragment.starts_with("invite="), "{link}");
    let invite_url = room_page(&running, &room, &format!("autojoin=1&name=Carol#{fragment}"));

    // Carol's link skips the lobby.
    let carol = open_page(&browser, &invite_url, "Carol").await;
    carol
        .wait_until(
            "Carol joins straight away",
            "s.state === 'connected'",
            MEDIA_TIMEOUT,
            &[&ada],
        )
        .await;
    assert_eq!(
        eval(&carol, "location.hash.includes('invite')").await,
        false,
        "the invite is taken out of the address bar"
    );
    // Dave's copy of the same link is used up: he knocks at the lobby like any guest.
    let dave = open_page(&browser, &invite_url.replace("name=Carol", "name=Dave"), "Dave").await;
    dave.wait_until(
        "Dave's used-up invite leaves him in the lobby",
        "s.state === 'lobby' && window.bridgemesh.lobbyWaiting()",
        UI_TIMEOUT,
        &[&ada],
    )
    .await;

    assert_eq!(eval(&carol, "window.bridgemesh.role()").await, "guest");
    for participant in [dave, carol, bob, ada] {
        participant.page.close().await.unwrap();
    }
    drop(browser);
    drop(host_browser);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_policy_none_a_guest_is_told_the_room_is_for_hosts() {
    let running = up_with(GuestPolicy::None).await;
    add_host(&running).await;
    let room = room("hosts-only");
    let browser = Browser::launch().await.expect("chromium starts");
    let host_browser = Browser::launch().await.expect("chromium starts");
    let eve = Participant::open(&browser, &running, &room, "Eve").await;
    eve.wait_until(
        "Eve is refused with a clear message",
        &format!(
            "s.state === 'error' && window.bridgemesh.joinError().code === 'hosts_only' && {}",
            shows("join-error", "This meeting is for hosts only")
        ),
        UI_TIMEOUT,
        &[],
    )
    .await;
    // A host gets in where the guest did not.
    let ada = open_page(&host_browser, &room_page(&running, &room, "name=Ada"), "Ada").await;
    log_in(&ada, PASSWORD).await;
    ada.wait_until(
        "Ada is logged in",
        "window.bridgemeshHosts.loggedInAs() === 'ada'",
        UI_TIMEOUT,
        &[],
    )
    .await;
    eval(&ada, "document.getElementById('join-button').click(); true").await;
    ada.wait_until(
        "Ada is in",
        "s.state === 'connected' && window.bridgemesh.role() === 'moderator'",
        MEDIA_TIMEOUT,
        &[],
    )
    .await;
    assert_eq!(
        eval(&eve, "window.bridgemesh.joinError().code").await,
        "hosts_only",
        "the guest is not let in behind the host"
    );
    for participant in [ada, eve] {
        participant.page.close().await.unwrap();
    }
    drop(browser);
    drop(host_browser);
    running.stop().await;
}
