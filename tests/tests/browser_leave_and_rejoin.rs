//! In the real web client, a participant who clicks "Leave" disappears from the other page at
//! once (roster, tile and audio), and "Rejoin" brings them back with media flowing both ways.

use bridgemesh_tests::chromium::Browser;
use bridgemesh_tests::harness::web::Participant;
use bridgemesh_tests::harness::{room, up};
use std::time::Duration;

/// Generous: CI runs this on two cores next to other end-to-end tests.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(30);
const LEAVE_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_who_leaves_disappears_from_the_other_page_and_can_rejoin() {
    let running = up().await;
    let room = room("leave-rejoin");
    let browser = Browser::launch().await.expect("chromium starts");
    let ada = Participant::open(&browser, &running, &room, "Ada").await;
    let bob = Participant::open(&browser, &running, &room, "Bob").await;
    let first_bob = ada.wait_for_media_from(&bob, MEDIA_TIMEOUT).await;
    bob.wait_for_media_from(&ada, MEDIA_TIMEOUT).await;

    bob.click("leave-button").await;
    bob.wait_until(
        "Bob's page has left",
        "s.state === 'left' && s.me === null",
        LEAVE_TIMEOUT,
        &[&ada],
    )
    .await;
    ada.wait_until(
        "Bob is gone from Ada's page",
        "s.peers.length === 0 && s.tiles.length === 0 && s.audios === 0 && s.state === 'connected'",
        LEAVE_TIMEOUT,
        &[&bob],
    )
    .await;
    // Control hears of the leave from the bridge's event stream, not from the page.
    let mut in_room = None;
    for _ in 0..50 {
        in_room = running
            .control
            .snapshot()
            .rooms
            .get(&room)
            .map(|r| r.participants.len());
        if in_room == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(in_room, Some(1), "control keeps only Ada in the room");

    bob.click("rejoin-button").await;
    let second_bob = ada.wait_for_media_from(&bob, MEDIA_TIMEOUT).await;
    assert_ne!(first_bob, second_bob, "a rejoin is a new participant");
    bob.wait_for_media_from(&ada, MEDIA_TIMEOUT).await;

    ada.page.close().await.unwrap();
    bob.page.close().await.unwrap();
    drop(browser);
    running.stop().await;
}
