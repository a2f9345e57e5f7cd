//! Host accounts over the real HTTP API of real control nodes: logins, the guest policy with
//! hosts, the brute-force bound, accounts surviving a restart of every node, passwords kept out
//! of the store, the logs and the admin API, and invite links.

mod common;

use bridgemesh_control::auth::{AuthConfig, GuestPolicy};
use bridgemesh_control::hosts::HostKeys;
use bridgemesh_proto::RoomId;
use common::{ADMIN_TOKEN, TestCluster};
use reqwest::Method;
use serde_json::{Value, json};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const PASSWORD: &str = "Correct-Horse-9137-battery";
const WAIT_MAX: Duration = Duration::from_secs(20);

/// Everything any node of this test binary logs, at debug level.
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber per test binary");
        logs
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn policy(policy: GuestPolicy) -> AuthConfig {
    AuthConfig {
        guest_policy: Some(policy),
        ..AuthConfig::default()
    }
}

async fn send(
    cluster: &TestCluster,
    via: u64,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    let mut request = cluster
        .http
        .request(method, format!("{}{path}", cluster.url(via)));
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        retry_after,
    )
}

async fn admin(
    cluster: &TestCluster,
    via: u64,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, String) {
    let response = cluster.admin(via, method, path, body).await;
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn login(
    cluster: &TestCluster,
    via: u64,
    username: &str,
    password: &str,
) -> (u16, Value, Option<String>) {
    send(
        cluster,
        via,
        Method::POST,
        "/api/v1/login",
        None,
        Some(json!({"username": username, "password": password})),
    )
    .await
}

async fn join(
    cluster: &TestCluster,
    via: u64,
    room: &str,
    bearer: Option<&str>,
    invite: Option<&str>,
) -> (u16, Value) {
    let mut body = json!({"display_name": "Someone"});
    if let Some(invite) = invite {
        body["invite"] = json!(invite);
    }
    let (status, body, _) = send(
        cluster,
        via,
        Method::POST,
        &format!("/api/v1/rooms/{room}/join"),
        bearer,
        Some(body),
    )
    .await;
    (status, body)
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// Every file under `dir`, read whole.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_opens_rooms_for_guests_and_the_account_survives_every_node_restarting() {
    let logs = captured_logs().clone();
    let mut cluster = TestCluster::start_with_auth(&[1, 2, 3], policy(GuestPolicy::AfterModerator)).await;
    cluster.wait_for_leader().await;
    cluster.register_bridge(1).await;

    // Added through one node, logged in through another.
    let (status, text) = admin(
        &cluster,
        2,
        Method::POST,
        "/api/v1/admin/users",
        Some(json!({"username": "ada", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    assert!(!text.contains(PASSWORD) && !text.contains("argon2"), "{text}");
    let (status, text) = admin(
        &cluster,
        2,
        Method::POST,
        "/api/v1/admin/users",
        Some(json!({"username": "bob", "password": "short"})),
    )
    .await;
    assert_eq!(status, 400, "a short password is refused: {text}");
    let (status, text) = admin(&cluster, 3, Method::GET, "/api/v1/admin/users", None).await;
    assert_eq!(status, 200);
    let users: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(users[0]["username"], "ada", "{text}");
    assert!(!text.contains(PASSWORD) && !text.contains("argon2"), "{text}");

    // A guest waits for a host; the host logs in and opens the room; then the guest gets in.
    let (status, body) = join(&cluster, 1, "standup", None, None).await;
    assert_eq!((status, code(&body)), (403, "guest_not_allowed"), "{body}");
    let (status, session, _) = login(&cluster, 3, "ada", PASSWORD).await;
    assert_eq!(status, 200, "{session}");
    let host_token = session["token"].as_str().unwrap().to_owned();
    let (status, body) = join(&cluster, 1, "standup", Some(&host_token), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["role"], "moderator");
    let (status, body) = join(&cluster, 2, "standup", None, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["role"], "guest");
    // An invite minted through one node is used at once through another, and counted once.
    let (status, invite, _) = send(
        &cluster,
        3,
        Method::POST,
        "/api/v1/rooms/standup/invites",
        Some(&host_token),
        Some(json!({"valid_for_s": 600, "max_uses": 1})),
    )
    .await;
    assert_eq!(status, 200, "{invite}");
    let (status, body) = join(&cluster, 1, "standup", None, invite["token"].as_str()).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = join(&cluster, 2, "standup", None, invite["token"].as_str()).await;
    assert_eq!((status, code(&body)), (403, "invite_used_up"), "{body}");
    let (status, me, _) = send(&cluster, 2, Method::GET, "/api/v1/login", Some(&host_token), None).await;
    assert_eq!((status, me["username"].as_str()), (200, Some("ada")), "{me}");

    // Wrong passwords: refused; after three, the account is locked from here (the right password
    // too) for a delay the answer names.
    for _ in 0..4 {
        let (status, body, _) = login(&cluster, 1, "ada", "not-the-password").await;
        assert_eq!((status, code(&body)), (401, "login_failed"), "{body}");
    }
    let (status, body, retry_after) = login(&cluster, 1, "ada", PASSWORD).await;
    assert_eq!((status, code(&body)), (429, "login_locked"), "{body}");
    let retry_after: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=300).contains(&retry_after), "{retry_after}");
    let (status, body, _) = login(&cluster, 1, "nobody", PASSWORD).await;
    assert_eq!(
        (status, code(&body)),
        (401, "login_failed"),
        "an unknown name looks the same"
    );
    let metrics = cluster
        .http
        .get(format!("{}/metrics", cluster.url(1)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "bridgemesh_control_host_logins_total{outcome=\"login_failed\"} 5",
        "bridgemesh_control_host_logins_total{outcome=\"login_locked\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }

    // Every node stops; the account is in the store, and the password is in no file of it.
    let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
    for id in &ids {
        cluster.stop(*id).await;
    }
    let files = files_under(cluster.dir.path());
    assert!(!files.is_empty());
    for (path, bytes) in &files {
        assert!(
            !contains(bytes, PASSWORD.as_bytes()),
            "{} holds the password",
            path.display()
        );
    }
    assert!(
        files.iter().any(|(_, bytes)| contains(bytes, b"$argon2id$")),
        "the hash is in the store (so the search above looked in the right place)"
    );
    for id in &ids {
        cluster.start_node(*id).await;
    }
    cluster.wait_for_leader().await;
    let (status, body, _) = login(&cluster, 2, "ada", PASSWORD).await;
    assert_eq!(status, 200, "the account survived the restart: {body}");

    // A new password ends older sessions.
    let (status, text) = admin(
        &cluster,
        1,
        Method::PUT,
        "/api/v1/admin/users/ada/password",
        Some(json!({"password": "Another-Password-2468"})),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let (status, body) = join(&cluster, 3, "standup", Some(&host_token), None).await;
    assert_eq!((status, code(&body)), (401, "login_required"), "{body}");
    let (status, _) = admin(&cluster, 1, Method::DELETE, "/api/v1/admin/users/ada", None).await;
    assert_eq!(status, 200);
    let (status, body, _) = login(&cluster, 1, "ada", "Another-Password-2468").await;
    assert_eq!((status, code(&body)), (401, "login_failed"), "removed: {body}");

    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        logs.len() > 1_000,
        "the nodes' logs were captured ({} bytes)",
        logs.len()
    );
    assert!(!logs.contains(PASSWORD), "a password reached the logs");
    assert!(
        !logs.contains("Another-Password-2468"),
        "a password reached the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_policy_none_only_hosts_and_invitees_get_in_and_invites_run_out() {
    captured_logs();
    let cluster = TestCluster::start_with_auth(&[1], policy(GuestPolicy::None)).await;
    cluster.wait_for_leader().await;
    cluster.register_bridge(1).await;
    let (status, text) = admin(
        &cluster,
        1,
        Method::POST,
        "/api/v1/admin/users",
        Some(json!({"username": "ada", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let (_, session, _) = login(&cluster, 1, "ada", PASSWORD).await;
    let host = session["token"].as_str().unwrap().to_owned();

    let (status, body) = join(&cluster, 1, "board", None, None).await;
    assert_eq!((status, code(&body)), (403, "hosts_only"), "{body}");
    let (status, opened) = join(&cluster, 1, "board", Some(&host), None).await;
    assert_eq!(status, 200, "{opened}");
    let (status, body) = join(&cluster, 1, "board", None, None).await;
    assert_eq!(
        (status, code(&body)),
        (403, "hosts_only"),
        "a host being there changes nothing: {body}"
    );

    // The host turns the lobby on; an invite skips it, once.
    let (status, _, _) = send(
        &cluster,
        1,
        Method::PATCH,
        "/api/v1/rooms/board/settings",
        opened["session_token"].as_str(),
        Some(json!({"lobby_enabled": true})),
    )
    .await;
    assert_eq!(status, 200);
    let mint = |body: Value| {
        let host = host.clone();
        let cluster = &cluster;
        async move {
            send(
                cluster,
                1,
                Method::POST,
                "/api/v1/rooms/board/invites",
                Some(&host),
                Some(body),
            )
            .await
        }
    };
    let (status, once, _) = mint(json!({"valid_for_s": 600, "max_uses": 1})).await;
    assert_eq!(status, 200, "{once}");
    let once = once["token"].as_str().unwrap().to_owned();
    let (status, body) = join(&cluster, 1, "board", None, Some(&once)).await;
    assert_eq!(status, 200, "a valid invite skips the lobby: {body}");
    let (status, body) = join(&cluster, 1, "board", None, Some(&once)).await;
    assert_eq!((status, code(&body)), (403, "invite_used_up"), "{body}");

    // An invite that expires.
    let (status, short, _) = mint(json!({"valid_for_s": 1})).await;
    assert_eq!(status, 200, "{short}");
    let expires_at = short["expires_at_unix_s"].as_u64().unwrap();
    tokio::time::timeout(WAIT_MAX, async {
        while jsonwebtoken::get_current_timestamp() <= expires_at {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap();
    let (status, body) = join(&cluster, 1, "board", None, short["token"].as_str()).await;
    assert_eq!((status, code(&body)), (403, "invite_expired"), "{body}");

    // Damaged, forged, or for another room.
    let (status, body) = join(&cluster, 1, "board", None, Some("not-an-invite")).await;
    assert_eq!((status, code(&body)), (401, "invite_invalid"), "{body}");
    let forged = HostKeys::derive(b"another cluster's secret, 32 bytes").issue_invite(
        "anything",
        &RoomId::new("board").unwrap(),
        jsonwebtoken::get_current_timestamp() + 600,
    );
    let (status, body) = join(&cluster, 1, "board", None, Some(&forged)).await;
    assert_eq!((status, code(&body)), (401, "invite_invalid"), "{body}");
    let (status, body) = join(&cluster, 1, "other-room", None, Some(&once)).await;
    assert_eq!((status, code(&body)), (401, "invite_invalid"), "{body}");

    // Only a logged-in host mints invites.
    let (status, body, _) = send(
        &cluster,
        1,
        Method::POST,
        "/api/v1/rooms/board/invites",
        None,
        Some(json!({"valid_for_s": 60})),
    )
    .await;
    assert_eq!((status, code(&body)), (401, "login_required"), "{body}");
    let _ = ADMIN_TOKEN;
}
