//! The control API refuses bad input with the right status and the JSON error envelope, and a
//! good join still works next to it.

use bridgemesh_proto::api::{DISPLAY_NAME_MAX_CHARS, ErrorCode, JoinResponse, REQUEST_BODY_MAX_BYTES};
use bridgemesh_tests::harness::{assert_error_envelope, post_join_raw, request_raw, room, up};
use reqwest::Method;
use serde_json::json;

fn name_body(display_name: &str) -> String {
    json!({ "display_name": display_name }).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_are_not_a_join_request_are_malformed_body() {
    let running = up().await;
    let url = &running.control_url;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not JSON", b"display_name=Ada".to_vec()),
        ("truncated JSON", br#"{"display_name":"Ada""#.to_vec()),
        ("empty body", Vec::new()),
        ("invalid UTF-8", b"{\"display_name\":\"\xff\xfe\"}".to_vec()),
        // serde reads a struct from an array of its fields; the API only takes objects.
        ("array of the fields", br#"["Ada"]"#.to_vec()),
        ("array with a password", br#"["Ada","pw"]"#.to_vec()),
        ("string", br#""Ada""#.to_vec()),
        ("missing display_name", br#"{"name":"Ada"}"#.to_vec()),
        ("display_name not a string", br#"{"display_name":42}"#.to_vec()),
        (
            "unknown field",
            br#"{"display_name":"Ada","admin":true}"#.to_vec(),
        ),
        ("null", b"null".to_vec()),
        ("trailing garbage", br#"{"display_name":"Ada"} {}"#.to_vec()),
    ];
    for (what, body) in cases {
        let (status, value) = post_join_raw(url, "bad-bodies", body).await;
        assert_eq!(status, 400, "{what}: {value}");
        assert_error_envelope(&value, ErrorCode::MalformedBody);
    }
    assert!(
        running.control.snapshot().rooms.is_empty(),
        "no refused join left a trace"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacceptable_display_names_are_invalid_field() {
    let running = up().await;
    let url = &running.control_url;
    let control_chars: String = (1u8..=20).map(char::from).collect();
    assert_eq!(control_chars.chars().count(), 20);
    let cases: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("only spaces", "   ".into()),
        ("20 control characters", control_chars),
        ("a NUL inside", "Ada\u{0}Bob".into()),
        ("an escape sequence inside", "Ada\u{1b}[31mred".into()),
        ("65 characters", "x".repeat(DISPLAY_NAME_MAX_CHARS + 1)),
        ("65 two-byte characters", "é".repeat(DISPLAY_NAME_MAX_CHARS + 1)),
    ];
    for (what, name) in &cases {
        let (status, value) = post_join_raw(url, "bad-names", name_body(name)).await;
        assert_eq!(status, 400, "{what}: {value}");
        assert_error_envelope(&value, ErrorCode::InvalidField);
    }
    assert!(running.control.snapshot().rooms.is_empty());

    // The limit counts characters, not bytes, and is inclusive.
    for name in [
        "x".repeat(DISPLAY_NAME_MAX_CHARS),
        "é".repeat(DISPLAY_NAME_MAX_CHARS),
    ] {
        let (status, value) = post_join_raw(url, "bad-names", name_body(&name)).await;
        assert_eq!(
            status, 200,
            "a {DISPLAY_NAME_MAX_CHARS}-character name is fine: {value}"
        );
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_16_kib_is_body_too_large() {
    let running = up().await;
    let url = &running.control_url;
    // Well-formed JSON, so only the size can be the reason.
    let padding = "x".repeat(REQUEST_BODY_MAX_BYTES);
    let body = json!({ "display_name": "Ada", "password": padding }).to_string();
    assert!(body.len() > REQUEST_BODY_MAX_BYTES);
    let (status, value) = post_join_raw(url, "big", body).await;
    assert_eq!(status, 413, "{value}");
    assert_error_envelope(&value, ErrorCode::BodyTooLarge);

    // One byte over the limit, of whitespace after a valid request.
    let mut body = name_body("Ada").into_bytes();
    body.resize(REQUEST_BODY_MAX_BYTES + 1, b' ');
    let (status, value) = post_join_raw(url, "big", body).await;
    assert_eq!(status, 413, "{value}");
    assert_error_envelope(&value, ErrorCode::BodyTooLarge);
    assert!(running.control.snapshot().rooms.is_empty());

    // Exactly at the limit is still read.
    let mut body = name_body("Ada").into_bytes();
    body.resize(REQUEST_BODY_MAX_BYTES, b' ');
    let (status, value) = post_join_raw(url, "big", body).await;
    assert_eq!(status, 200, "{value}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_room_names_in_the_path_are_invalid_room_name() {
    let running = up().await;
    let url = &running.control_url;
    let too_long = "r".repeat(65);
    let cases = [
        "Upper",
        "a%2Fb",
        ".hidden",
        "sp%20ace",
        "caf%C3%A9",
        "a%00b",
        too_long.as_str(),
    ];
    for room_path in cases {
        let (status, value) = post_join_raw(url, room_path, name_body("Ada")).await;
        assert_eq!(status, 400, "room {room_path:?}: {value}");
        assert_error_envelope(&value, ErrorCode::InvalidRoomName);
    }
    assert!(running.control.snapshot().rooms.is_empty());
    // 64 characters is the longest allowed.
    let (status, value) = post_join_raw(url, &"r".repeat(64), name_body("Ada")).await;
    assert_eq!(status, 200, "{value}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_endpoints_are_not_found_and_get_on_join_is_refused() {
    let running = up().await;
    let url = &running.control_url;
    for (method, path) in [
        (Method::GET, "/api/v1/nope"),
        (Method::POST, "/api/v1/rooms/daily/leave"),
        (Method::POST, "/api/v2/rooms/daily/join"),
        (Method::GET, "/api/v1/rooms/daily/join/extra"),
        (Method::DELETE, "/api/v1"),
    ] {
        let (status, value) = request_raw(url, method.clone(), path).await;
        assert_eq!(status, 404, "{method} {path}: {value}");
        assert_error_envelope(&value, ErrorCode::NotFound);
    }
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let (status, value) = request_raw(url, method.clone(), "/api/v1/rooms/daily/join").await;
        assert!(
            (400..500).contains(&status),
            "{method} on the join endpoint must be refused, got {status}: {value}"
        );
    }
    assert!(running.control.snapshot().rooms.is_empty());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_join_returns_a_ticket_and_is_recorded() {
    let running = up().await;
    let room = room("valid-join");
    // Surrounding whitespace is trimmed, not refused.
    let (status, value) = post_join_raw(&running.control_url, room.as_str(), name_body("  Ada  ")).await;
    assert_eq!(status, 200, "{value}");
    let join: JoinResponse = serde_json::from_value(value).expect("a join response");
    assert_eq!(join.room, room);
    assert_eq!(join.bridge_id, *running.bridge.id());
    assert_eq!(join.ticket.split('.').count(), 3, "a JWT: {}", join.ticket);
    assert!(join.ticket_expires_in_s > 0);
    assert!(
        join.signaling_url.starts_with("ws://127.0.0.1:"),
        "{}",
        join.signaling_url
    );

    let state = running.control.snapshot();
    let record = state
        .rooms
        .get(&room)
        .and_then(|r| r.participants.get(&join.participant_id))
        .unwrap_or_else(|| panic!("control does not hold {}: {state:?}", join.participant_id));
    assert_eq!(record.display_name, "Ada");
    assert_eq!(record.bridge.as_ref(), Some(&join.bridge_id));
    assert_eq!(
        record.status,
        bridgemesh_control::state::ParticipantStatus::Placed,
        "not on the bridge yet"
    );
    assert_eq!(state.participant_count(), 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_joins_from_one_address_is_rate_limited_and_others_are_not() {
    let running = up().await;
    let client_from = |last: u8| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, last]))
            .build()
            .unwrap()
    };
    let join_url = format!("{}/api/v1/rooms/flood/join", running.control_url);
    let flooder = client_from(7);
    let mut statuses = Vec::new();
    for n in 0..40 {
        let response = flooder
            .post(&join_url)
            .body(name_body(&format!("bot{n}")))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        if status == 429 {
            let body: serde_json::Value = response.json().await.unwrap();
            assert_error_envelope(&body, ErrorCode::RateLimited);
        }
        statuses.push(status);
    }
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        statuses.contains(&429),
        "40 joins at once were all accepted: {statuses:?}"
    );
    assert!(accepted >= 10, "a person's burst must pass: {statuses:?}");
    assert!(accepted < 40);
    let placed = running.control.snapshot().participant_count();
    assert_eq!(placed, accepted, "refused joins left no placement");
    // Someone else, at another address, is not affected by the flood.
    let other = client_from(8)
        .post(&join_url)
        .body(name_body("Ada"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 200);
    running.stop().await;
}
