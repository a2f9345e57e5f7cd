//! Single sign-on for hosts against a real OpenID Connect provider run locally (panva's
//! oidc-provider, `tests/oidc-provider/`), with `bridgemesh up` under `after_moderator`:
//! - in headless Chromium, alice (in the allowed group) logs in through the provider's own login
//!   form, comes back a host and opens the room as its moderator; bob (outside the group) logs
//!   in at the provider too and is refused with a clear page;
//! - over plain HTTP, callbacks with a wrong `state`, without the login's cookie, or with a code
//!   the provider never issued are refused;
//! - behind a front that publishes another provider's key under the signing key's `kid`, the
//!   provider's ID token (now signed by a key other than the published one) is refused; when the
//!   front hands out stale keys once (a rotation), the login fetches them again and succeeds.

use bridgemesh::up::{Running, UpConfig};
use bridgemesh_control::auth::{AuthConfig, GuestPolicy, Secret};
use bridgemesh_control::oidc::OidcConfig;
use bridgemesh_tests::chromium::{Browser, Page};
use bridgemesh_tests::harness::web::{Participant, install_helpers};
use bridgemesh_tests::harness::{init_tracing, room};
use bridgemesh_tests::oidc_provider::{
    CLIENT_ID, CLIENT_SECRET, HOSTS_GROUP, OidcProvider, ProviderFront, jwks_of,
};
use serde_json::Value;
use std::time::Duration;

/// Generous: CI runs this on two cores next to other end-to-end tests.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(30);
/// For a page after a few redirects through the provider.
const UI_TIMEOUT: Duration = Duration::from_secs(20);

fn oidc_auth(issuer: &str) -> AuthConfig {
    AuthConfig {
        guest_policy: Some(GuestPolicy::AfterModerator),
        oidc: Some(OidcConfig {
            issuer: issuer.to_owned(),
            client_id: CLIENT_ID.into(),
            client_secret: Some(Secret::new(CLIENT_SECRET)),
            scopes: vec!["email".into(), "profile".into(), "groups".into()],
            allowed_groups: vec![HOSTS_GROUP.into()],
            ..OidcConfig::default()
        }),
        ..AuthConfig::default()
    }
}

/// A provider and `bridgemesh up` that logs hosts in through it.
async fn start(issuer: Option<&str>) -> (OidcProvider, Running) {
    init_tracing();
    let mut provider = OidcProvider::spawn(issuer)
        .await
        .expect("the OIDC provider starts");
    let running = bridgemesh::up::start_with_auth(UpConfig::ephemeral(), oidc_auth(&provider.issuer))
        .await
        .expect("bridgemesh up starts");
    provider
        .serve(&format!("{}/api/v1/oidc/callback", running.control_url))
        .await
        .expect("the OIDC provider serves");
    (provider, running)
}

async fn eval(page: &Page, expression: &str) -> Value {
    page.eval(expression)
        .await
        .unwrap_or_else(|err| panic!("evaluating `{expression}`: {err:#}"))
}

async fn wait(page: &Page, what: &str, expression: &str) {
    page.wait_for(
        expression,
        UI_TIMEOUT,
        "location.href + ' ' + document.body.innerText.slice(0, 400)",
    )
    .await
    .unwrap_or_else(|err| panic!("{what}: {err:#}"));
}

/// Clicks "Log in with SSO" on a room page and logs in as `user` on the provider's form, which
/// is at `provider_port`.
async fn log_in_with_sso(page: &Page, provider_port: u16, user: &str) {
    eval(page, "document.getElementById('host-login-open').click(); true").await;
    wait(
        page,
        "the page offers single sign-on",
        "(() => { const b = document.getElementById('host-sso'); return Boolean(b && !b.hidden && b.closest('[hidden]') === null); })()",
    )
    .await;
    eval(page, "document.getElementById('host-sso').click(); true").await;
    wait(
        page,
        "the provider's login form",
        &format!(
            "location.port === '{provider_port}' && document.querySelector('input[name=login]') !== null"
        ),
    )
    .await;
    eval(
        page,
        &format!(
            "document.querySelector('input[name=login]').value = '{user}'; \
             document.querySelector('input[name=password]').value = 'any password'; \
             document.querySelector('form').submit(); true"
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_logs_in_through_the_provider_and_a_user_outside_the_group_does_not() {
    let (provider, running) = start(None).await;
    let room = room("sso-standup");
    let room_url = format!("{}?name=Alice", running.room_url(&room));

    // Alice, in the allowed group, logs in and comes back to her room's page as a host.
    let alice_browser = Browser::launch().await.expect("chromium starts");
    let page = alice_browser
        .new_page(&room_url)
        .await
        .expect("the room page opens");
    log_in_with_sso(&page, provider.port, "alice").await;
    wait(
        &page,
        "Alice is back on her room's page, logged in as a host",
        &format!(
            "location.pathname === '/{room}' && !location.hash.includes('host_login') && \
             window.bridgemeshHosts && window.bridgemeshHosts.loggedInAs() === 'alice'"
        ),
    )
    .await;
    assert_eq!(eval(&page, "location.search").await, "?name=Alice");
    install_helpers(&page).await.expect("helpers");
    let alice = Participant {
        name: "Alice".into(),
        page,
    };
    eval(
        &alice.page,
        "document.getElementById('join-button').click(); true",
    )
    .await;
    alice
        .wait_until(
            "Alice opens the room as its moderator (guests would wait for a host)",
            "s.state === 'connected' && window.bridgemesh.role() === 'moderator' && \
             document.getElementById('host-badge').textContent.includes('Host: alice')",
            MEDIA_TIMEOUT,
            &[],
        )
        .await;
    // As a host she mints invite links (her session names no local account).
    let invite = eval(&alice.page, "window.bridgemeshHosts.createInvite(600, 1)").await;
    assert_eq!(invite["ok"], true, "{invite}");

    // Bob logs in at the provider too, but is in no allowed group: a page says so.
    let bob_browser = Browser::launch().await.expect("chromium starts");
    let bob = bob_browser
        .new_page(&format!("{}?name=Bob", running.room_url(&room)))
        .await
        .expect("the room page opens");
    log_in_with_sso(&bob, provider.port, "bob").await;
    wait(
        &bob,
        "Bob is refused with a clear message",
        "location.pathname === '/api/v1/oidc/callback' && \
         document.getElementById('sso-error') !== null && \
         document.getElementById('sso-error').textContent.includes('bob@example.net is not allowed to host meetings here')",
    )
    .await;
    // Back on the room's page he is no host.
    bob.eval(&format!("location.href = '{}'; true", running.room_url(&room)))
        .await
        .unwrap();
    wait(
        &bob,
        "Bob's room page has no host login",
        "document.readyState === 'complete' && window.bridgemeshHosts && window.bridgemeshHosts.loggedInAs() === null",
    )
    .await;

    alice.page.close().await.unwrap();
    bob.close().await.unwrap();
    drop(alice_browser);
    drop(bob_browser);
    running.stop().await;
    provider.stop().await;
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Starts a login over HTTP: the flow's cookie (`name=value`) and the `state` sent to the provider.
async fn start_login(running: &Running, provider: &OidcProvider) -> (String, String) {
    let response = http()
        .get(format!(
            "{}/api/v1/oidc/start?return_to=/standup",
            running.control_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{}/auth?", provider.issuer)),
        "{location}"
    );
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/api/v1/oidc", "Max-Age=600"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let url = reqwest::Url::parse(&location).unwrap();
    let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["client_id"], CLIENT_ID);
    (cookie, query["state"].clone())
}

async fn callback(running: &Running, query: &str, cookie: Option<&str>) -> (u16, String) {
    let mut request = http().get(format!("{}/api/v1/oidc/callback?{query}", running.control_url));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_with_a_wrong_state_no_cookie_or_a_made_up_code_are_refused() {
    let (provider, running) = start(None).await;
    let (cookie, state) = start_login(&running, &provider).await;

    let (status, page) = callback(&running, "code=abc&state=not-the-state", Some(&cookie)).await;
    assert_eq!(status, 400, "{page}");
    assert!(
        page.contains("the login&#39;s state does not match this browser&#39;s"),
        "{page}"
    );

    let (status, page) = callback(&running, &format!("code=abc&state={state}"), None).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("this login was not started here"), "{page}");

    // The right state and cookie, but a code the provider never issued: it says so.
    let (status, page) = callback(&running, &format!("code=abc&state={state}"), Some(&cookie)).await;
    assert_eq!(status, 502, "{page}");
    assert!(
        page.contains("the provider refused the code: invalid_grant"),
        "{page}"
    );

    // The provider's own refusal (a user who cancels) is shown.
    let (status, page) = callback(
        &running,
        &format!("error=access_denied&error_description=End-User+aborted+interaction&state={state}"),
        Some(&cookie),
    )
    .await;
    assert_eq!(status, 400, "{page}");
    assert!(
        page.contains("access_denied End-User aborted interaction"),
        "{page}"
    );

    running.stop().await;
    provider.stop().await;
}

/// A provider behind a front (its issuer is the front's address), `bridgemesh up` logging hosts
/// in through it, and another provider's published keys under the first one's `kid`.
async fn start_behind_front() -> (ProviderFront, OidcProvider, Running, Value, Value) {
    init_tracing();
    let front = ProviderFront::start().await.expect("the front listens");
    let mut provider = OidcProvider::spawn(Some(&front.url()))
        .await
        .expect("the OIDC provider starts");
    front.forward_to(&provider);
    let running = bridgemesh::up::start_with_auth(UpConfig::ephemeral(), oidc_auth(&front.url()))
        .await
        .expect("bridgemesh up starts");
    provider
        .serve(&format!("{}/api/v1/oidc/callback", running.control_url))
        .await
        .expect("the OIDC provider serves");
    let mut other = OidcProvider::spawn(None).await.expect("another provider starts");
    other.serve("http://127.0.0.1:9/unused").await.unwrap();
    let real = jwks_of(&provider.url()).await.unwrap();
    let others = jwks_of(&other.url()).await.unwrap();
    other.stop().await;
    assert_ne!(real["keys"][0]["n"], others["keys"][0]["n"]);
    (front, provider, running, real, others)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_token_signed_by_another_key_than_the_published_one_is_refused() {
    let (front, provider, running, real, mut foreign) = start_behind_front().await;
    // The front publishes the other provider's key under the real key's kid: the ID token the
    // provider signs no longer verifies under what its issuer publishes.
    foreign["keys"][0]["kid"] = real["keys"][0]["kid"].clone();
    for _ in 0..4 {
        front.answer_jwks_with(foreign.clone());
    }
    let room = room("sso-foreign-key");
    let browser = Browser::launch().await.expect("chromium starts");
    let page = browser
        .new_page(&format!("{}?name=Alice", running.room_url(&room)))
        .await
        .expect("the room page opens");
    log_in_with_sso(&page, front.port, "alice").await;
    wait(
        &page,
        "Alice's ID token, signed by a key other than the published one, is refused",
        "location.pathname === '/api/v1/oidc/callback' && document.getElementById('sso-error') !== null && \
         document.getElementById('sso-error').textContent.includes(\"signature does not verify\")",
    )
    .await;
    page.close().await.unwrap();
    drop(browser);
    running.stop().await;
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_after_a_key_rotation_fetches_the_keys_again() {
    let (front, provider, running, _real, stale) = start_behind_front().await;
    // The first key set control fetches lacks the signing key's kid, as after a rotation.
    front.answer_jwks_with(stale);
    let room = room("sso-rotation");
    let browser = Browser::launch().await.expect("chromium starts");
    let page = browser
        .new_page(&format!("{}?name=Alice", running.room_url(&room)))
        .await
        .expect("the room page opens");
    log_in_with_sso(&page, front.port, "alice").await;
    wait(
        &page,
        "Alice is logged in once the keys were fetched again",
        &format!(
            "location.pathname === '/{room}' && window.bridgemeshHosts && window.bridgemeshHosts.loggedInAs() === 'alice'"
        ),
    )
    .await;
    assert_eq!(front.substitutes_left(), 0, "the stale key set was handed out");
    page.close().await.unwrap();
    drop(browser);
    running.stop().await;
    provider.stop().await;
}
