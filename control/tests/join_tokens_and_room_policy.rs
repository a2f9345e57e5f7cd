//! Join tokens and room policy over the real HTTP API of a control node.

mod common;

use bridgemesh_control::auth::{
    AuthConfig, GuestPolicy, MintKey, MintRequest, PublicKeyAlgorithm, PublicKeyConfig, Secret, TokenUser,
    mint,
};
use bridgemesh_control::rate_limit::JoinLimits;
use common::TestCluster;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const APP_SECRET: &str = "an app secret of at least thirty-two bytes";
const RS_PRIVATE: &str = include_str!("data/rs256-private.pem");
const RS_OTHER_PRIVATE: &str = include_str!("data/rs256-other-private.pem");
const RS_PUBLIC: &str = include_str!("data/rs256-public.pem");
const RS_KID: &str = "ops/key-1";

fn auth() -> AuthConfig {
    AuthConfig {
        accepted_issuers: vec!["my_app".into()],
        accepted_audiences: vec!["jitsi".into()],
        hs256_secret: Some(Secret::new(APP_SECRET)),
        public_keys: BTreeMap::from([(
            RS_KID.into(),
            PublicKeyConfig {
                algorithm: PublicKeyAlgorithm::Rs256,
                pem: RS_PUBLIC.into(),
            },
        )]),
        guest_policy: Some(GuestPolicy::AfterModerator),
        ..AuthConfig::default()
    }
}

fn now_s() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn request(room: &str, moderator: bool) -> MintRequest {
    MintRequest {
        key: MintKey::Hs256(Secret::new(APP_SECRET)),
        kid: None,
        iss: "my_app".into(),
        aud: "jitsi".into(),
        sub: "meet.example.com".into(),
        room: room.into(),
        user: TokenUser {
            id: Some(format!("user-{moderator}")),
            name: Some("Ada".into()),
            email: None,
            avatar: None,
        },
        moderator,
        nbf_unix_s: None,
        ttl_s: 3600,
    }
}

async fn join(cluster: &TestCluster, room: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = cluster
        .http
        .post(format!("{}/api/v1/rooms/{room}/join", cluster.url(1)))
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn call(
    cluster: &TestCluster,
    method: reqwest::Method,
    path: &str,
    session: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = cluster
        .http
        .request(method, format!("{}{path}", cluster.url(1)))
        .bearer_auth(session);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn code(value: &Value) -> &str {
    value["error"]["code"].as_str().unwrap_or("<none>")
}

fn name() -> Value {
    json!({"display_name": "Ada"})
}

async fn started() -> TestCluster {
    let cluster = TestCluster::start_with_auth(&[1], auth()).await;
    cluster.wait_for_leader().await;
    cluster.register_bridge(1).await;
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_token_gets_401_with_its_own_code() {
    let cluster = started().await;
    let good = mint(&request("standup", false), now_s()).unwrap();
    let mut cases: Vec<(&str, String, &str)> = Vec::new();
    // Wrong signature: the same claims signed with another secret.
    let forged = minted_with(|r| {
        r.key = MintKey::Hs256(Secret::new("another secret of at least thirty-two bytes"));
    });
    cases.push(("wrong signature", forged, "token_bad_signature"));
    // alg: none, unsigned.
    let claims = json!({"iss": "my_app", "aud": "jitsi", "room": "*", "exp": now_s() + 600});
    let none = format!(
        "{}.{}.",
        base64_url(br#"{"alg":"none","typ":"JWT"}"#),
        base64_url(claims.to_string().as_bytes())
    );
    cases.push(("alg none", none, "token_algorithm_not_allowed"));
    // HS/RS confusion: HS256 keyed with the RSA public key, under the RSA key's kid.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(RS_KID.into());
    let confused =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(RS_PUBLIC.as_bytes())).unwrap();
    cases.push(("HS/RS confusion", confused, "token_algorithm_not_allowed"));
    // An RS256 token from a key nobody configured, under our kid.
    let other_key = minted_with(|r| {
        r.key = MintKey::Rs256 {
            private_key_pem: Secret::new(RS_OTHER_PRIVATE),
        };
        r.kid = Some(RS_KID.into());
    });
    cases.push(("RS256 by another key", other_key, "token_bad_signature"));
    let unknown_kid = minted_with(|r| {
        r.key = MintKey::Rs256 {
            private_key_pem: Secret::new(RS_PRIVATE),
        };
        r.kid = Some("nobody".into());
    });
    cases.push(("unknown kid", unknown_kid, "token_unknown_key"));
    let expired = mint(&request("standup", false), now_s() - 7200).unwrap();
    cases.push(("expired", expired, "token_expired"));
    let early = minted_with(|r| {
        r.nbf_unix_s = Some(now_s() + 3600);
    });
    cases.push(("not yet valid", early, "token_not_yet_valid"));
    let wrong_aud = minted_with(|r| {
        r.aud = "other".into();
    });
    cases.push(("wrong aud", wrong_aud, "token_wrong_audience"));
    let wrong_iss = minted_with(|r| {
        r.iss = "other".into();
    });
    cases.push(("wrong iss", wrong_iss, "token_wrong_issuer"));
    let wrong_room = mint(&request("elsewhere", false), now_s()).unwrap();
    cases.push(("wrong room", wrong_room, "token_wrong_room"));
    let no_room = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"iss": "my_app", "aud": "jitsi", "exp": now_s() + 600}),
        &EncodingKey::from_secret(APP_SECRET.as_bytes()),
    )
    .unwrap();
    cases.push(("missing room", no_room, "token_missing_claim"));
    cases.push(("not a token", "garbage".into(), "token_malformed"));

    let mut codes = std::collections::BTreeSet::new();
    for (what, token, expected) in &cases {
        let (status, body) = join(&cluster, "standup", Some(token), name()).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(code(&body), *expected, "{what}: {body}");
        codes.insert(*expected);
    }
    assert!(codes.len() >= 9, "distinct codes: {codes:?}");
    assert!(cluster.state(1).rooms.is_empty(), "no refused join left a trace");

    // Guest policy `after_moderator`: no token, no moderator yet → refused; then allowed.
    let (status, body) = join(&cluster, "standup", None, name()).await;
    assert_eq!((status, code(&body)), (403, "guest_not_allowed"), "{body}");
    let moderator = mint(&request("*", true), now_s()).unwrap();
    let (status, body) = join(&cluster, "standup", Some(&moderator), name()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["role"], "moderator");
    let (status, body) = join(&cluster, "standup", Some(&good), name()).await;
    assert_eq!((status, body["role"].as_str()), (200, Some("member")), "{body}");
    let (status, body) = join(&cluster, "standup", None, name()).await;
    assert_eq!((status, body["role"].as_str()), (200, Some("guest")), "{body}");
}

/// A token for room `standup` with one thing changed.
fn minted_with(change: impl FnOnce(&mut MintRequest)) -> String {
    let mut request = request("standup", false);
    change(&mut request);
    mint(&request, now_s()).unwrap()
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_lobby_and_kick_follow_the_moderator() {
    let cluster = started().await;
    let moderator_token = mint(&request("*", true), now_s()).unwrap();
    let (status, moderator) = join(&cluster, "board", Some(&moderator_token), name()).await;
    assert_eq!(status, 200, "{moderator}");
    let session = moderator["session_token"].as_str().unwrap().to_owned();
    let settings = "/api/v1/rooms/board/settings";

    // Password: set by the moderator, never shown back; wrong or missing → 403.
    let (status, body) = call(
        &cluster,
        reqwest::Method::PATCH,
        settings,
        &session,
        Some(json!({"password": "s3cret"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, view) = call(
        &cluster,
        reqwest::Method::GET,
        "/api/v1/rooms/board",
        &session,
        None,
    )
    .await;
    assert_eq!(view["password_set"], true);
    assert!(!view.to_string().contains("argon2") && !view.to_string().contains("s3cret"));
    let (status, body) = join(&cluster, "board", None, name()).await;
    assert_eq!((status, code(&body)), (403, "password_required"), "{body}");
    let (status, body) = join(
        &cluster,
        "board",
        None,
        json!({"display_name": "Eve", "password": "guess"}),
    )
    .await;
    assert_eq!((status, code(&body)), (403, "wrong_password"), "{body}");
    let (status, guest) = join(
        &cluster,
        "board",
        None,
        json!({"display_name": "Bob", "password": "s3cret"}),
    )
    .await;
    assert_eq!(status, 200, "{guest}");
    let guest_session = guest["session_token"].as_str().unwrap().to_owned();

    // A guest is not a moderator.
    let (status, body) = call(
        &cluster,
        reqwest::Method::PATCH,
        settings,
        &guest_session,
        Some(json!({"lobby_enabled": true})),
    )
    .await;
    assert_eq!((status, code(&body)), (403, "forbidden"), "{body}");

    // Lobby: guests wait; the moderator sees them, admits one and denies another.
    let (status, _) = call(
        &cluster,
        reqwest::Method::PATCH,
        settings,
        &session,
        Some(json!({"lobby_enabled": true, "password": null})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, carol) = join(&cluster, "board", None, json!({"display_name": "Carol"})).await;
    assert_eq!(
        (status, carol["status"].as_str()),
        (202, Some("waiting")),
        "{carol}"
    );
    let (status, dave) = join(&cluster, "board", None, json!({"display_name": "Dave"})).await;
    assert_eq!(status, 202, "{dave}");
    let poll = |who: &Value| {
        format!(
            "/api/v1/rooms/board/lobby/{}",
            who["participant_id"].as_str().unwrap()
        )
    };
    let carol_session = carol["session_token"].as_str().unwrap().to_owned();
    let dave_session = dave["session_token"].as_str().unwrap().to_owned();
    let (status, _) = call(
        &cluster,
        reqwest::Method::GET,
        &poll(&carol),
        &carol_session,
        None,
    )
    .await;
    assert_eq!(status, 202, "still waiting");
    let (_, view) = call(
        &cluster,
        reqwest::Method::GET,
        "/api/v1/rooms/board",
        &session,
        None,
    )
    .await;
    let mut waiting: Vec<&str> = view["lobby"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["display_name"].as_str().unwrap())
        .collect();
    waiting.sort();
    assert_eq!(waiting, vec!["Carol", "Dave"]);
    let (_, guest_view) = call(
        &cluster,
        reqwest::Method::GET,
        "/api/v1/rooms/board",
        &guest_session,
        None,
    )
    .await;
    assert!(
        guest_view["lobby"].as_array().unwrap().is_empty(),
        "only moderators see the lobby"
    );
    let admit = format!("{}/admit", poll(&carol));
    let deny = format!("{}/deny", poll(&dave));
    assert_eq!(
        call(&cluster, reqwest::Method::POST, &admit, &guest_session, None)
            .await
            .0,
        403
    );
    assert_eq!(
        call(&cluster, reqwest::Method::POST, &admit, &session, None)
            .await
            .0,
        200
    );
    assert_eq!(
        call(&cluster, reqwest::Method::POST, &deny, &session, None)
            .await
            .0,
        200
    );
    let (status, admitted) = call(
        &cluster,
        reqwest::Method::GET,
        &poll(&carol),
        &carol_session,
        None,
    )
    .await;
    assert_eq!(status, 200, "{admitted}");
    assert!(admitted["ticket"].as_str().is_some_and(|t| !t.is_empty()));
    let (status, denied) = call(&cluster, reqwest::Method::GET, &poll(&dave), &dave_session, None).await;
    assert_eq!((status, code(&denied)), (403, "lobby_denied"), "{denied}");
    // A guest who gives up waiting leaves the lobby at once.
    let (status, erin) = join(&cluster, "board", None, json!({"display_name": "Erin"})).await;
    assert_eq!(status, 202, "{erin}");
    let erin_session = erin["session_token"].as_str().unwrap().to_owned();
    let (status, body) = call(
        &cluster,
        reqwest::Method::DELETE,
        &poll(&erin),
        &erin_session,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, view) = call(
        &cluster,
        reqwest::Method::GET,
        "/api/v1/rooms/board",
        &session,
        None,
    )
    .await;
    assert!(
        !view["lobby"].to_string().contains("Erin"),
        "a withdrawn guest is not listed: {view}"
    );
    // A session is bound to its participant.
    assert_eq!(
        call(&cluster, reqwest::Method::GET, &poll(&carol), &dave_session, None)
            .await
            .0,
        403
    );

    // Kick: a token user is removed and cannot come back to this meeting.
    let (status, _) = call(
        &cluster,
        reqwest::Method::PATCH,
        settings,
        &session,
        Some(json!({"lobby_enabled": false})),
    )
    .await;
    assert_eq!(status, 200);
    let member_token = mint(&request("board", false), now_s()).unwrap();
    let (status, member) = join(&cluster, "board", Some(&member_token), name()).await;
    assert_eq!(status, 200, "{member}");
    let kick = format!(
        "/api/v1/rooms/board/participants/{}/kick",
        member["participant_id"].as_str().unwrap()
    );
    assert_eq!(
        call(&cluster, reqwest::Method::POST, &kick, &session, None)
            .await
            .0,
        200
    );
    let (status, body) = join(&cluster, "board", Some(&member_token), name()).await;
    assert_eq!((status, code(&body)), (403, "kicked"), "{body}");

    // End: the room is gone with its settings.
    assert_eq!(
        call(
            &cluster,
            reqwest::Method::POST,
            "/api/v1/rooms/board/end",
            &session,
            None
        )
        .await
        .0,
        200
    );
    assert!(
        !cluster
            .state(1)
            .rooms
            .contains_key(&bridgemesh_proto::RoomId::new("board").unwrap())
    );
}

/// A flood into one room from many addresses (a botnet, many IPv6 /64s) meets the room's own
/// budget; other rooms are not affected, and a refused join leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_into_one_room_meet_the_rooms_budget_and_other_rooms_do_not() {
    let per_room = bridgemesh_control::rate_limit::RateLimit {
        burst: 5.0,
        per_second: 0.001,
        sources_max: 16,
    };
    let limits = JoinLimits {
        per_room,
        ..JoinLimits::UNLIMITED
    };
    let cluster =
        TestCluster::start_with_join_limits(&[1], AuthConfig::default(), common::test_template(), limits)
            .await;
    cluster.wait_for_leader().await;
    cluster.register_bridge(1).await;
    for n in 0..5 {
        let (status, body) = join(&cluster, "crowded", None, name()).await;
        assert_eq!(status, 200, "join {n}: {body}");
    }
    let (status, body) = join(&cluster, "crowded", None, name()).await;
    assert_eq!((status, code(&body)), (429, "rate_limited"), "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("room"),
        "{body}"
    );
    let (status, body) = join(&cluster, "quiet", None, name()).await;
    assert_eq!(status, 200, "another room: {body}");
    assert_eq!(
        cluster.state(1).participant_count(),
        6,
        "the refused join left no placement"
    );
}

/// Joins from one place, with and without the trusted proxy's word for who the client is.
async fn joins_through(cluster: &TestCluster, room: &str, forwarded_for: &str, count: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..count {
        let response = cluster
            .http
            .post(format!("{}/api/v1/rooms/{room}/join", cluster.url(1)))
            .header("x-forwarded-for", forwarded_for)
            .json(&name())
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    statuses
}

/// Behind a TLS proxy every join arrives from the proxy's address. With the proxy trusted, each
/// client the proxy names has its own budget: ten clients joining five times each all get in,
/// while one client joining 25 times is held to its burst of 20. Without trusting it, the whole
/// deployment would share one budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_through_a_trusted_proxy_are_budgeted_per_client() {
    let limits = JoinLimits {
        per_address: bridgemesh_control::rate_limit::JOIN_LIMIT,
        ..JoinLimits::UNLIMITED
    };
    let cluster = TestCluster::start_with_everything(
        &[1],
        AuthConfig::default(),
        common::test_template(),
        limits,
        vec!["127.0.0.0/8"],
    )
    .await;
    cluster.wait_for_leader().await;
    cluster.register_bridge(1).await;
    for client in 1..=10 {
        let statuses = joins_through(&cluster, "office", &format!("203.0.113.{client}"), 5).await;
        assert!(
            statuses.iter().all(|s| *s == 200),
            "client {client}: {statuses:?}"
        );
    }
    let one = joins_through(&cluster, "office", "198.51.100.7", 25).await;
    let admitted = one.iter().filter(|s| **s == 200).count();
    assert!(
        (20..=21).contains(&admitted) && one.iter().all(|s| *s == 200 || *s == 429),
        "one client's burst is 20 (plus what refilled meanwhile): {one:?}"
    );

    // The same through an untrusted peer: one budget for everyone behind it.
    let untrusted =
        TestCluster::start_with_join_limits(&[1], AuthConfig::default(), common::test_template(), limits)
            .await;
    untrusted.wait_for_leader().await;
    untrusted.register_bridge(1).await;
    let mut admitted = 0;
    for client in 1..=10 {
        let statuses = joins_through(&untrusted, "office", &format!("203.0.113.{client}"), 5).await;
        admitted += statuses.iter().filter(|s| **s == 200).count();
    }
    assert!(
        admitted <= 22,
        "{admitted} of 50 admitted without a trusted proxy"
    );
}
