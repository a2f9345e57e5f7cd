//! A moderator's decisions, committed by control, are carried out by the bridge: a kicked
//! participant is disconnected and its ticket refused, a mute request reaches everyone else, an
//! ended meeting disconnects everyone, and a ticket issued before the end does not reopen it.

use bridgemesh_control::state::ParticipantStatus;
use bridgemesh_proto::api::{ErrorCode, JoinResponse, Role};
use bridgemesh_proto::signaling::{ByeReason, ServerMessage};
use bridgemesh_tests::harness::{RawSignal, eventually, join_raw, room, up};
use std::time::Duration;

const STEP: Duration = Duration::from_secs(5);

async fn moderator_call(control_url: &str, moderator: &JoinResponse, path: &str) {
    let url = format!("{control_url}/api/v1/rooms/{}{path}", moderator.room);
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&moderator.session_token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert!(
        status.is_success(),
        "POST {url}: {status} {}",
        response.text().await.unwrap()
    );
}

/// Connects with the join's ticket and reads the welcome.
async fn connected(join: &JoinResponse) -> RawSignal {
    let mut signal = RawSignal::hello(join).await;
    let first = signal.next(STEP).await;
    assert!(matches!(first, Some(ServerMessage::Welcome { .. })), "{first:?}");
    signal
}

fn byes(messages: &[ServerMessage]) -> Vec<ByeReason> {
    messages
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Bye { reason } => Some(*reason),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_mute_and_end_are_carried_out_by_the_bridge() {
    let running = up().await;
    let meeting = room("moderated");
    let moderator = join_raw(&running, &meeting, "Mo").await;
    assert_eq!(
        moderator.role,
        Role::Moderator,
        "the first participant of a room runs it"
    );
    let mut moderator_signal = connected(&moderator).await;

    // Kicked before connecting: the unused ticket no longer works.
    let early = join_raw(&running, &meeting, "Early").await;
    assert_eq!(early.role, Role::Guest);
    moderator_call(
        &running.control_url,
        &moderator,
        &format!("/participants/{}/kick", early.participant_id),
    )
    .await;
    let mut refused = RawSignal::hello(&early).await;
    let messages = refused.until_closed(STEP).await;
    assert!(
        messages
            .iter()
            .any(|m| matches!(m, ServerMessage::Error { code, .. } if *code == ErrorCode::TicketRejected)),
        "{messages:?}"
    );
    assert!(
        !messages
            .iter()
            .any(|m| matches!(m, ServerMessage::Welcome { .. }))
    );

    // Kicked while connected: told so, disconnected, and control marks it kicked.
    let late = join_raw(&running, &meeting, "Late").await;
    let mut late_signal = connected(&late).await;
    moderator_call(
        &running.control_url,
        &moderator,
        &format!("/participants/{}/kick", late.participant_id),
    )
    .await;
    assert_eq!(
        byes(&late_signal.until_closed(STEP).await),
        vec![ByeReason::Kicked]
    );
    let state = running.control.snapshot();
    assert_eq!(
        state.rooms[&meeting].participants[&late.participant_id].status,
        ParticipantStatus::Kicked
    );

    // Mute everyone: the others get the request, naming who asked.
    let other = join_raw(&running, &meeting, "Other").await;
    let mut other_signal = connected(&other).await;
    moderator_call(&running.control_url, &moderator, "/mute-all").await;
    let by = other_signal
        .next_matching("mute_requested", STEP, |m| match m {
            ServerMessage::MuteRequested { by } => Some(by),
            _ => None,
        })
        .await;
    assert_eq!(by, moderator.participant_id);

    // A ticket issued before the end, used after it, must not reopen the meeting.
    let straggler = join_raw(&running, &meeting, "Straggler").await;
    moderator_call(&running.control_url, &moderator, "/end").await;
    assert_eq!(
        byes(&other_signal.until_closed(STEP).await),
        vec![ByeReason::MeetingEnded]
    );
    let moderator_messages = moderator_signal.until_closed(STEP).await;
    assert!(
        !moderator_messages
            .iter()
            .any(|m| matches!(m, ServerMessage::MuteRequested { .. })),
        "the moderator is not asked to mute: {moderator_messages:?}"
    );
    assert_eq!(byes(&moderator_messages), vec![ByeReason::MeetingEnded]);
    assert!(!running.control.snapshot().rooms.contains_key(&meeting));
    let mut straggler_signal = RawSignal::hello(&straggler).await;
    let messages = straggler_signal.until_closed(STEP).await;
    assert_eq!(
        byes(&messages),
        vec![ByeReason::MeetingEnded],
        "told the meeting ended, not let in: {messages:?}"
    );
    eventually("the bridge holds nobody", STEP, || {
        running.bridge.stats().shards.participants == 0
    })
    .await;
    running.stop().await;
}
