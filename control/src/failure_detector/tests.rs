use super::*;
use crate::state::Command;
use bridgemesh_proto::RegionId;
use bridgemesh_proto::bridge_session::BridgeRegistration;

fn id(name: &str) -> BridgeId {
    BridgeId::new(name).unwrap()
}

fn pid(name: &str) -> ParticipantId {
    ParticipantId::new(name).unwrap()
}

/// A state with bridge `b1` registered by its own session, hosting `seated` participants.
fn state_with(seated: u32) -> ControlState {
    let mut state = ControlState::default();
    state
        .apply(Command::RegisterBridge {
            registration: BridgeRegistration {
                id: id("b1"),
                region: RegionId::new("eu").unwrap(),
                location: None,
                signaling_url: "ws://b1".into(),
                media_addresses: vec![],
                turn_urls: vec![],
                capacity: 100,
                max_participants_per_room: 100,
                cascade_addr: None,
            },
            instance: Some("i1".into()),
            at_ms: 0,
        })
        .unwrap();
    state.bridge_load.insert(id("b1"), seated);
    state
}

fn set(state: &mut ControlState, verdicts: &[(BridgeId, BridgeStatus)]) {
    for (bridge, status) in verdicts {
        state.bridges.get_mut(bridge).unwrap().status = *status;
    }
}

#[test]
fn a_closed_session_is_unreachable_at_once_and_down_after_two_reports() {
    let mut detector = FailureDetector::new(FailureDetectorConfig::default());
    let mut state = state_with(5);
    detector.session_opened(&id("b1"), 100);
    assert!(detector.poll(200, &state).is_empty(), "healthy");
    detector.session_closed(&id("b1"), 300);
    let verdicts = detector.poll(301, &state);
    assert_eq!(verdicts, vec![(id("b1"), BridgeStatus::Unreachable)]);
    set(&mut state, &verdicts);
    detector.report_loss(&id("b1"), &pid("p1"), 305);
    assert!(detector.poll(306, &state).is_empty(), "one report is not enough");
    detector.report_loss(&id("b1"), &pid("p1"), 307);
    assert!(
        detector.poll(308, &state).is_empty(),
        "the same reporter twice counts once"
    );
    detector.report_loss(&id("b1"), &pid("p2"), 309);
    assert_eq!(detector.poll(310, &state), vec![(id("b1"), BridgeStatus::Down)]);
}

#[test]
fn a_blip_without_reports_moves_nobody_and_recovers() {
    let config = FailureDetectorConfig::default();
    let mut detector = FailureDetector::new(config.clone());
    let mut state = state_with(5);
    detector.session_opened(&id("b1"), 0);
    detector.heard(&id("b1"), 500);
    assert!(
        detector
            .poll(500 + config.suspect_after_ms - 1, &state)
            .is_empty()
    );
    let verdicts = detector.poll(500 + config.suspect_after_ms, &state);
    assert_eq!(verdicts, vec![(id("b1"), BridgeStatus::Unreachable)]);
    set(&mut state, &verdicts);
    assert!(
        detector.poll(500 + config.down_after_ms - 1, &state).is_empty(),
        "silence alone is not death before down_after_ms"
    );
    detector.heard(&id("b1"), 600 + config.suspect_after_ms);
    assert_eq!(
        detector.poll(601 + config.suspect_after_ms, &state),
        vec![(id("b1"), BridgeStatus::Up)]
    );
}

#[test]
fn long_silence_is_death_without_reports() {
    let config = FailureDetectorConfig::default();
    let mut detector = FailureDetector::new(config.clone());
    let mut state = state_with(5);
    detector.session_opened(&id("b1"), 0);
    let verdicts = detector.poll(config.suspect_after_ms, &state);
    set(&mut state, &verdicts);
    assert_eq!(
        detector.poll(config.down_after_ms, &state),
        vec![(id("b1"), BridgeStatus::Down)]
    );
}

#[test]
fn an_empty_bridge_is_down_as_soon_as_it_is_unreachable() {
    let mut detector = FailureDetector::new(FailureDetectorConfig::default());
    let mut state = state_with(0);
    detector.session_opened(&id("b1"), 0);
    detector.session_closed(&id("b1"), 10);
    let verdicts = detector.poll(11, &state);
    set(&mut state, &verdicts);
    assert_eq!(detector.poll(12, &state), vec![(id("b1"), BridgeStatus::Down)]);
}

#[test]
fn one_report_suffices_for_a_bridge_hosting_one_participant() {
    let mut detector = FailureDetector::new(FailureDetectorConfig::default());
    let mut state = state_with(1);
    detector.session_opened(&id("b1"), 0);
    detector.report_loss(&id("b1"), &pid("p1"), 5);
    detector.session_closed(&id("b1"), 6);
    let verdicts = detector.poll(7, &state);
    set(&mut state, &verdicts);
    assert_eq!(detector.poll(8, &state), vec![(id("b1"), BridgeStatus::Down)]);
}

#[test]
fn reports_about_a_bridge_that_keeps_heartbeating_change_nothing() {
    let mut detector = FailureDetector::new(FailureDetectorConfig::default());
    let state = state_with(3);
    detector.session_opened(&id("b1"), 0);
    for (i, p) in ["p1", "p2", "p3"].into_iter().enumerate() {
        detector.report_loss(&id("b1"), &pid(p), 10 + i as u64);
    }
    detector.heard(&id("b1"), 250);
    assert!(detector.poll(300, &state).is_empty());
    assert_eq!(detector.heard_since(&id("b1"), 20), Liveliness::HeardSince);
    assert_eq!(detector.heard_since(&id("b1"), 260), Liveliness::Silent);
}

#[test]
fn a_new_leader_gives_every_bridge_time_to_reconnect_and_does_not_revive_what_it_has_not_heard() {
    let config = FailureDetectorConfig::default();
    let mut detector = FailureDetector::new(config.clone());
    let mut state = state_with(4);
    state.bridges.get_mut(&id("b1")).unwrap().status = BridgeStatus::Unreachable;
    detector.became_leader(10_000);
    assert!(
        detector.poll(10_001, &state).is_empty(),
        "not heard, but not silent long enough to matter either"
    );
    assert!(
        detector
            .poll(10_000 + config.down_after_ms - 1, &state)
            .is_empty()
    );
    assert_eq!(
        detector.poll(10_000 + config.down_after_ms, &state),
        vec![(id("b1"), BridgeStatus::Down)]
    );
}

#[test]
fn hand_registered_bridges_are_not_watched() {
    let mut detector = FailureDetector::new(FailureDetectorConfig::default());
    let mut state = state_with(2);
    state.bridges.get_mut(&id("b1")).unwrap().instance = None;
    assert!(detector.poll(1_000_000, &state).is_empty());
}

#[test]
fn a_new_leader_keeps_an_unheard_bridge_up_until_its_grace_ends() {
    let config = FailureDetectorConfig::default();
    assert!(config.leader_grace_ms > config.suspect_after_ms);
    let mut detector = FailureDetector::new(config.clone());
    let mut state = state_with(4);
    detector.became_leader(10_000);
    // Where the old code marked it unreachable: the bridge is still finding the new leader.
    assert!(
        detector.poll(10_000 + config.suspect_after_ms, &state).is_empty(),
        "an unheard bridge is not suspected before the leader's grace ends"
    );
    assert!(
        detector
            .poll(10_000 + config.leader_grace_ms - 1, &state)
            .is_empty()
    );
    let verdicts = detector.poll(10_000 + config.leader_grace_ms, &state);
    assert_eq!(verdicts, vec![(id("b1"), BridgeStatus::Unreachable)]);
    set(&mut state, &verdicts);
    // Its session reaches the leader: the ordinary rules apply from then on.
    detector.session_opened(&id("b1"), 16_000);
    let verdicts = detector.poll(16_001, &state);
    assert_eq!(verdicts, vec![(id("b1"), BridgeStatus::Up)]);
    set(&mut state, &verdicts);
    assert_eq!(
        detector.poll(16_000 + config.suspect_after_ms, &state),
        vec![(id("b1"), BridgeStatus::Unreachable)],
        "once heard, silence counts from suspect_after_ms again"
    );
}

#[test]
fn a_bridge_that_reconnects_within_the_grace_is_never_suspected() {
    let config = FailureDetectorConfig::default();
    let mut detector = FailureDetector::new(config.clone());
    let state = state_with(4);
    detector.became_leader(0);
    for now in (0..2_600).step_by(50) {
        assert!(detector.poll(now, &state).is_empty(), "at {now} ms");
    }
    detector.session_opened(&id("b1"), 2_600);
    detector.heard(&id("b1"), 2_850);
    assert!(detector.poll(3_000, &state).is_empty());
}

#[test]
fn losses_reported_during_the_grace_condemn_a_bridge_that_died_with_the_old_leader() {
    let mut detector = FailureDetector::new(FailureDetectorConfig::default());
    let mut state = state_with(4);
    detector.became_leader(0);
    detector.report_loss(&id("b1"), &pid("p1"), 100);
    assert!(
        detector.poll(101, &state).is_empty(),
        "one report of four is not enough"
    );
    detector.report_loss(&id("b1"), &pid("p2"), 120);
    let verdicts = detector.poll(121, &state);
    assert_eq!(verdicts, vec![(id("b1"), BridgeStatus::Unreachable)]);
    set(&mut state, &verdicts);
    assert_eq!(detector.poll(122, &state), vec![(id("b1"), BridgeStatus::Down)]);
}

#[test]
fn the_leader_grace_is_validated() {
    let mut config = FailureDetectorConfig::default();
    config.leader_grace_ms = config.suspect_after_ms - 1;
    assert!(config.validate().is_err());
    config.leader_grace_ms = config.down_after_ms + 1;
    assert!(config.validate().is_err());
    config.leader_grace_ms = config.suspect_after_ms;
    assert_eq!(config.validate(), Ok(()));
}
