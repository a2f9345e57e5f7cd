//! Two pages of the web client on one bridge of `bridgemesh up --bridges 2`; an operator drains
//! that bridge: both pages are told `bye{moved}`, ask control where to go (as the same
//! participants), connect to the other bridge, and see and hear each other again.

use bridgemesh::up::UpConfig;
use bridgemesh_tests::chromium::Browser;
use bridgemesh_tests::harness::web::Participant;
use bridgemesh_tests::harness::{init_tracing, room};
use std::time::Duration;

/// Generous: CI runs this on two cores next to other end-to-end tests.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_on_a_drained_bridge_move_to_the_other_and_keep_their_call() {
    init_tracing();
    let running = bridgemesh::up::start(UpConfig {
        bridges: 2,
        ..UpConfig::ephemeral()
    })
    .await
    .expect("bridgemesh up starts with two bridges");
    let room = room("drained-call");
    let browser = Browser::launch().await.expect("chromium starts");
    let ada = Participant::open(&browser, &running, &room, "Ada").await;
    let bob = Participant::open(&browser, &running, &room, "Bob").await;
    let bob_id = ada.wait_for_media_from(&bob, MEDIA_TIMEOUT).await;
    let ada_id = bob.wait_for_media_from(&ada, MEDIA_TIMEOUT).await;
    let first_bridge = ada.summary().await["bridgeId"]
        .as_str()
        .expect("a bridge")
        .to_owned();
    assert_eq!(
        bob.summary().await["bridgeId"],
        first_bridge.as_str(),
        "a room stays together"
    );

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let drained = http
        .post(format!(
            "{}/api/v1/admin/bridges/{first_bridge}/drain",
            running.control_url
        ))
        .bearer_auth(&running.admin_token)
        .json(&serde_json::json!({ "grace_s": 0 }))
        .send()
        .await
        .unwrap();
    assert!(drained.status().is_success(), "{}", drained.text().await.unwrap());

    for page in [&ada, &bob] {
        page.wait_until(
            "moved to the other bridge",
            &format!(
                "s.bridgeId && s.bridgeId !== {:?} && s.reconnects >= 1",
                first_bridge
            ),
            MEDIA_TIMEOUT,
            &[&ada, &bob],
        )
        .await;
    }
    assert_eq!(
        ada.wait_for_media_from(&bob, MEDIA_TIMEOUT).await,
        bob_id,
        "same participant after the move"
    );
    assert_eq!(
        bob.wait_for_media_from(&ada, MEDIA_TIMEOUT).await,
        ada_id,
        "same participant after the move"
    );
    assert_eq!(
        ada.summary().await["me"],
        ada_id.as_str(),
        "Ada kept her participant id"
    );

    ada.page.close().await.unwrap();
    bob.page.close().await.unwrap();
    drop(browser);
    running.stop().await;
}
