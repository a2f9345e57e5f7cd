//! Two pages of the web client on one bridge of `bridgemesh up --bridges 2`; an operator drains
//! that bridge: both pages are told `bye{moved}`, ask control where to go (as the same
//! participants), connect to the other bridge, and see and hear each other again.

use bridgemesh_tests::harness::room;
use bridgemesh_tests::harness::web::TwoPagesOnOneBridge;
use std::time::Duration;

/// Generous: CI runs this on two cores next to other end-to-end tests.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_on_a_drained_bridge_move_to_the_other_and_keep_their_call() {
    let call = TwoPagesOnOneBridge::start(&room("drained-call"), MEDIA_TIMEOUT).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let drained = http
        .post(format!(
            "{}/api/v1/admin/bridges/{}/drain",
            call.running.control_url, call.bridge
        ))
        .bearer_auth(&call.running.admin_token)
        .json(&serde_json::json!({ "grace_s": 0 }))
        .send()
        .await
        .unwrap();
    assert!(drained.status().is_success(), "{}", drained.text().await.unwrap());
    call.wait_until_reunited_elsewhere(MEDIA_TIMEOUT).await;
    call.stop().await;
}
