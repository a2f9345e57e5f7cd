//! Which sessions the state reports ended, for standalone TURN servers.

use super::*;

fn tick(now_ms: u64) -> Command {
    Command::Tick {
        now_ms,
        room_grace_ms: 3_600_000,
        unconfirmed_join_ttl_ms: None,
    }
}

fn ended(state: &ControlState) -> Vec<(String, u64)> {
    state
        .ended_sessions
        .recent(usize::MAX)
        .into_iter()
        .map(|(id, at)| (id.to_string(), at))
        .collect()
}

#[test]
fn leaving_kicked_and_ended_rooms_end_sessions_drops_and_expiries_do_not() {
    let mut state = with_bridge();
    state.apply(tick(10_000)).unwrap();
    state.apply(moderator_join("r", "m", 10_000)).unwrap();
    state.apply(join("r", "kicked", "b1", 10_000)).unwrap();
    state.apply(join("s", "leaves", "b1", 10_000)).unwrap();
    state.apply(join("u", "drops", "b1", 10_000)).unwrap();
    state.apply(moderator_join("t", "ends", 10_000)).unwrap();
    state.apply(leave("s", "leaves")).unwrap();
    state
        .apply(Command::Kick {
            room: room("r"),
            by: pid("m"),
            participant: pid("kicked"),
            at_ms: 12_000,
        })
        .unwrap();
    state
        .apply(Command::Unconfirm {
            room: room("u"),
            participant: pid("drops"),
            bridge: BridgeId::new("b1").unwrap(),
            at_ms: 12_000,
        })
        .unwrap();
    state
        .apply(Command::EndRoom {
            room: room("t"),
            by: pid("ends"),
        })
        .unwrap();
    // A leave and a room's end carry no time of their own: the last tick's.
    assert_eq!(
        ended(&state),
        [
            ("kicked".to_owned(), 12_000),
            ("ends".to_owned(), 10_000),
            ("leaves".to_owned(), 10_000)
        ]
    );
    // Forgotten once no credential issued before could still be used.
    state.apply(tick(12_000 + ENDED_SESSION_MEMORY_MS)).unwrap();
    assert!(ended(&state).is_empty());
}
