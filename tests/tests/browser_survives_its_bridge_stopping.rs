//! Two pages of the web client on one bridge of `bridgemesh up --bridges 2`; that bridge stops
//! without a drain (its participants get `bye{bridge_shutdown}` and its session with control
//! closes). The pages report the lost bridge to control, which declares it down and places them
//! on the other bridge; they connect there as the same participants and see each other again.

use bridgemesh::up::UpConfig;
use bridgemesh_tests::chromium::Browser;
use bridgemesh_tests::harness::web::Participant;
use bridgemesh_tests::harness::{init_tracing, room};
use std::time::Duration;

/// Generous: CI runs this on two cores next to other end-to-end tests.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_whose_bridge_stops_report_it_and_continue_on_the_other() {
    init_tracing();
    let mut running = bridgemesh::up::start(UpConfig {
        bridges: 2,
        ..UpConfig::ephemeral()
    })
    .await
    .expect("bridgemesh up starts with two bridges");
    let room = room("bridge-stops");
    let browser = Browser::launch().await.expect("chromium starts");
    let ada = Participant::open(&browser, &running, &room, "Ada").await;
    let bob = Participant::open(&browser, &running, &room, "Bob").await;
    let bob_id = ada.wait_for_media_from(&bob, MEDIA_TIMEOUT).await;
    let ada_id = bob.wait_for_media_from(&ada, MEDIA_TIMEOUT).await;
    let first_bridge = ada.summary().await["bridgeId"]
        .as_str()
        .expect("a bridge")
        .to_owned();

    let index = running
        .bridges
        .iter()
        .position(|b| b.bridge.id().as_str() == first_bridge)
        .expect("the page's bridge is one of up's");
    running
        .bridges
        .remove(index)
        .stop_now()
        .await
        .expect("the bridge stops");

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
    assert_eq!(ada.wait_for_media_from(&bob, MEDIA_TIMEOUT).await, bob_id);
    assert_eq!(bob.wait_for_media_from(&ada, MEDIA_TIMEOUT).await, ada_id);
    let status = running
        .control
        .read(|state| state.bridges[&bridgemesh_proto::BridgeId::new(first_bridge.clone()).unwrap()].status);
    assert_eq!(
        status,
        bridgemesh_proto::bridge_session::BridgeStatus::Down,
        "the pages' reports made control declare the stopped bridge down"
    );

    ada.page.close().await.unwrap();
    bob.page.close().await.unwrap();
    drop(browser);
    running.stop().await;
}
