//! How long a bridge takes to find a new control leader: the bridge's real [`ControlSession`]
//! (its reconnect order, its backoff and jitter, how it follows `not_leader`) run on virtual
//! time against the control nodes as the simulator models them during a leader change.
//!
//! The nodes answer as real ones do: the old leader refuses connections while it is down (a
//! SIGKILLed process) or cut off; before the election the others still name it as leader (they
//! have not noticed yet) and the node about to win knows no leader; after the election every live
//! node names the new leader, which takes the registration. The answer is when the bridge's
//! session opens at the new leader, the moment the real hub starts hearing from it.

use bridgemesh_bridge::control_session::{
    ConnectionId, ControlSession, ControlSessionConfig, SessionInput, SessionOutput, SessionStatus,
    SessionUrl,
};
use bridgemesh_proto::bridge_session::{BridgeRegistration, BridgeStatus, ControlToBridge};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Steps after which a session that still has not found the leader is given up on; it takes a
/// few dozen in practice.
const STEPS_MAX: usize = 10_000;
/// The simulated time after the election past which the search is not followed further.
const SEARCH_MS_MAX: u64 = 120_000;

/// A leader change as the simulator modeled it.
#[derive(Debug, Clone)]
pub struct LeaderChange {
    pub nodes: usize,
    pub old_leader: usize,
    /// The old leader's process is back (as a follower) once the new one is elected; a crashed
    /// leader's is, as the simulator restarts it.
    pub old_leader_back_at_election: bool,
    pub new_leader: usize,
    /// When the bridge's session with the old leader broke, and when the new leader was elected.
    pub lost_at_ms: u64,
    pub elected_at_ms: u64,
    /// Bridge ↔ control round trip.
    pub rtt_ms: u64,
}

fn node_url(node: usize) -> SessionUrl {
    SessionUrl::parse(&format!("wss://control-{node}.sim:7701")).expect("a valid session URL")
}

/// When (in the simulation's ms) the bridge's session opens at the new leader, from a session
/// that was registered with the old one until `change.lost_at_ms`. `seed` seeds its jitter.
pub fn session_opens_at_ms(change: &LeaderChange, registration: BridgeRegistration, seed: u64) -> u64 {
    let urls: Vec<SessionUrl> = (0..change.nodes).map(node_url).collect();
    let node_of: BTreeMap<String, usize> = urls
        .iter()
        .enumerate()
        .map(|(n, url)| (url.as_str().to_owned(), n))
        .collect();
    let config = ControlSessionConfig::new(urls.clone(), registration, "sim".into(), seed);
    // Only differences between instants matter: the session never sees the wall clock.
    let origin = Instant::now();
    let at = |ms: u64| origin + Duration::from_millis(ms);
    let ms_of = |instant: Instant| instant.duration_since(origin).as_millis() as u64;
    let mut session = ControlSession::new(config, at(0)).expect("a valid session config");
    let mut pending: Vec<(u64, SessionInput)> = Vec::new();
    let mut now_ms = 0;
    // Registered with the old leader first, through whatever redirect that takes.
    let mut registered_once = false;
    let mut with_old_leader: Option<ConnectionId> = None;
    for _ in 0..STEPS_MAX {
        while let Some(output) = session.poll_output() {
            let SessionOutput::Connect { connection, url } = output else {
                if let SessionOutput::Status(SessionStatus::Registered { .. }) = output {
                    registered_once = true;
                }
                continue;
            };
            let node = node_of[url.as_str()];
            let reached = now_ms + change.rtt_ms;
            if !registered_once {
                // Before the change: the old leader leads and everyone knows it.
                let answer = if node == change.old_leader {
                    with_old_leader = Some(connection);
                    ControlToBridge::Registered {
                        heartbeat_interval_ms: 250,
                        status: BridgeStatus::Up,
                    }
                } else {
                    ControlToBridge::NotLeader {
                        leader_url: Some(urls[change.old_leader].as_str().to_owned()),
                    }
                };
                pending.push((reached, SessionInput::Connected(connection)));
                pending.push((reached + change.rtt_ms, SessionInput::Message(connection, answer)));
                continue;
            }
            let elected = reached >= change.elected_at_ms;
            let old_down = node == change.old_leader && !(elected && change.old_leader_back_at_election);
            if old_down {
                pending.push((reached, SessionInput::Disconnected(connection)));
            } else if node == change.new_leader && elected {
                return reached.max(change.elected_at_ms);
            } else {
                let leader_url = if elected {
                    Some(urls[change.new_leader].as_str().to_owned())
                } else if node == change.new_leader {
                    None
                } else {
                    Some(urls[change.old_leader].as_str().to_owned())
                };
                pending.push((reached, SessionInput::Connected(connection)));
                pending.push((
                    reached + change.rtt_ms,
                    SessionInput::Message(connection, ControlToBridge::NotLeader { leader_url }),
                ));
            }
        }
        if registered_once && now_ms < change.lost_at_ms && pending.is_empty() {
            // Registered with the old leader (its heartbeats in between change nothing); its
            // death closes the socket.
            now_ms = change.lost_at_ms;
            if let Some(connection) = with_old_leader {
                session.handle_input(at(now_ms), SessionInput::Disconnected(connection));
            }
            continue;
        }
        let next_input = pending.iter().map(|(t, _)| *t).min();
        let next_timeout = session.poll_timeout().map(ms_of);
        let next = match (next_input, next_timeout) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => break,
        };
        if next > change.elected_at_ms + SEARCH_MS_MAX {
            break;
        }
        now_ms = now_ms.max(next);
        if next_input == Some(next) {
            let index = pending
                .iter()
                .position(|(t, _)| *t == next)
                .expect("the earliest input");
            let (_, input) = pending.remove(index);
            session.handle_input(at(now_ms), input);
        } else {
            session.handle_timeout(at(now_ms));
        }
    }
    change.elected_at_ms + SEARCH_MS_MAX
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridgemesh_proto::{BridgeId, RegionId};

    fn registration() -> BridgeRegistration {
        BridgeRegistration {
            id: BridgeId::new("b1").unwrap(),
            region: RegionId::new("eu").unwrap(),
            location: None,
            signaling_url: "ws://b1".into(),
            media_addresses: Vec::new(),
            turn_urls: Vec::new(),
            capacity: 100,
            max_participants_per_room: 100,
            cascade_addr: None,
        }
    }

    fn change(election_ms: u64) -> LeaderChange {
        LeaderChange {
            nodes: 3,
            old_leader: 1,
            old_leader_back_at_election: true,
            new_leader: 2,
            lost_at_ms: 10_000,
            elected_at_ms: 10_000 + election_ms,
            rtt_ms: 2,
        }
    }

    #[test]
    fn the_session_reaches_the_new_leader_after_the_election_through_its_backoff() {
        for election_ms in [700, 1_500] {
            let mut after_election = Vec::new();
            for seed in 0..200 {
                let opens = session_opens_at_ms(&change(election_ms), registration(), seed);
                assert!(opens >= 10_000 + election_ms, "not before there is a leader");
                after_election.push(opens - 10_000 - election_ms);
            }
            after_election.sort_unstable();
            let max = *after_election.last().unwrap();
            eprintln!(
                "election {election_ms} ms: session opens p50 {} ms, max {max} ms after it",
                after_election[after_election.len() / 2]
            );
            // Capped backoff (2 s) and one wasted try at the dead node at most.
            assert!(max <= 4_100, "{after_election:?}");
            assert!(
                after_election.iter().any(|ms| *ms > 0),
                "the backoff costs time after the election"
            );
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_time() {
        let a = session_opens_at_ms(&change(700), registration(), 42);
        assert_eq!(a, session_opens_at_ms(&change(700), registration(), 42));
    }
}
