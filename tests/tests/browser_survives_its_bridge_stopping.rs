//! Two pages of the web client on one bridge of `bridgemesh up --bridges 2`; that bridge stops
//! without a drain (its participants get `bye{bridge_shutdown}` and its session with control
//! closes). The pages report the lost bridge to control, which declares it down and places them
//! on the other bridge; they connect there as the same participants and see each other again.

use bridgemesh_proto::BridgeId;
use bridgemesh_proto::bridge_session::BridgeStatus;
use bridgemesh_tests::harness::room;
use bridgemesh_tests::harness::web::TwoPagesOnOneBridge;
use std::time::Duration;

/// Generous: CI runs this on two cores next to other end-to-end tests.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_whose_bridge_stops_report_it_and_continue_on_the_other() {
    let mut call = TwoPagesOnOneBridge::start(&room("bridge-stops"), MEDIA_TIMEOUT).await;
    let index = call
        .running
        .bridges
        .iter()
        .position(|b| b.bridge.id().as_str() == call.bridge)
        .expect("the pages' bridge is one of up's");
    call.running
        .bridges
        .remove(index)
        .stop_now()
        .await
        .expect("the bridge stops");
    call.wait_until_reunited_elsewhere(MEDIA_TIMEOUT).await;
    let stopped = BridgeId::new(call.bridge.clone()).unwrap();
    assert_eq!(
        call.running.control.read(|state| state.bridges[&stopped].status),
        BridgeStatus::Down,
        "the pages' reports made control declare the stopped bridge down"
    );
    call.stop().await;
}
