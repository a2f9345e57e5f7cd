//! A bridge process is SIGKILLed mid-call: control declares it down (its session closed and its
//! participants' clients reported losing it), places its participants on the other bridges, and
//! their clients reconnect by themselves and receive media again; participants on the other
//! bridges see no interruption. The killed bridge, started again with the same id, rejoins.

#[path = "deployment/mod.rs"]
mod deployment;

use bridgemesh_proto::signaling::MediaSource;
use bridgemesh_proto::{BridgeId, ParticipantId, RoomId};
use bridgemesh_sim::participant::{ParticipantOptions, SyntheticParticipant};
use deployment::{BridgeSpec, Deployment};
use std::time::Duration;

const MEDIA_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest pause between two packets a participant on a surviving bridge may see while
/// another bridge dies. Loopback delivers every 20 ms; this leaves room for this class of
/// machine's scheduling pauses while still catching a real interruption (a reconnect takes
/// several hundred milliseconds).
const NO_INTERRUPTION_GAP_MS: u64 = 1_500;

async fn join(deployment: &Deployment, room: &RoomId, name: &str) -> SyntheticParticipant {
    SyntheticParticipant::join(&deployment.control_url(), room, ParticipantOptions::new(name))
        .await
        .unwrap_or_else(|err| panic!("{name} could not join: {err}"))
}

/// Waits until `receiver` has more than `more_than` intact camera packets from `from`.
async fn camera_from(receiver: &SyntheticParticipant, from: &ParticipantId, more_than: u64) {
    receiver
        .wait_until(
            &format!("camera from {from} past {more_than}"),
            MEDIA_TIMEOUT,
            |stats, _| stats.intact_from(from, MediaSource::Camera) > more_than,
        )
        .await
        .unwrap();
}

async fn everyone_sees_everyone(group: &[SyntheticParticipant]) {
    for receiver in group {
        for sender in group {
            if receiver.participant_id() != sender.participant_id() {
                let seen = receiver
                    .stats()
                    .intact_from(sender.participant_id(), MediaSource::Camera);
                camera_from(receiver, sender.participant_id(), seen + 10).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn participants_of_a_killed_bridge_get_media_again_and_others_see_no_gap() {
    let mut deployment = Deployment::start("").await;
    for id in ["b1", "b2", "b3"] {
        deployment.add_bridge(BridgeSpec::new(id, "eu")).await;
    }
    let b1 = BridgeId::new("b1").unwrap();

    let alpha = RoomId::new("alpha").unwrap();
    let mut victims = Vec::new();
    for name in ["a1", "a2", "a3"] {
        victims.push(join(&deployment, &alpha, name).await);
    }
    assert!(
        victims.iter().all(|p| p.bridge_id() == b1),
        "a new room goes to the first idle bridge and stays together"
    );
    let beta = RoomId::new("beta").unwrap();
    let mut bystanders = Vec::new();
    for name in ["c1", "c2"] {
        bystanders.push(join(&deployment, &beta, name).await);
    }
    let bystander_bridge = bystanders[0].bridge_id();
    assert_ne!(
        bystander_bridge, b1,
        "joins placed on b1 since its last report count against it"
    );
    everyone_sees_everyone(&victims).await;
    everyone_sees_everyone(&bystanders).await;
    let gaps_before: Vec<u64> = bystanders.iter().map(max_gap_ms).collect();

    deployment.bridge("b1").kill();

    deployment.wait_for_status("b1", "down").await;
    everyone_sees_everyone(&victims).await;
    for victim in &victims {
        let stats = victim.stats();
        assert_ne!(victim.bridge_id(), b1, "moved off the dead bridge");
        let record = stats
            .reconnects
            .last()
            .expect("the participant reconnected by itself");
        assert_eq!(record.lost_bridge, b1);
        assert!(record.first_media_ms.is_some(), "{record:?}");
        assert_eq!(victim.roster().len(), 2, "the roster survives the move");
    }
    let new_bridges: std::collections::BTreeSet<BridgeId> = victims.iter().map(|p| p.bridge_id()).collect();
    assert_eq!(new_bridges.len(), 1, "the room moved together: {new_bridges:?}");

    everyone_sees_everyone(&bystanders).await;
    for (bystander, before) in bystanders.iter().zip(gaps_before) {
        let stats = bystander.stats();
        assert!(stats.reconnects.is_empty(), "bystanders keep their session");
        assert_eq!(bystander.bridge_id(), bystander_bridge);
        let gap = max_gap_ms(bystander);
        assert!(
            gap <= NO_INTERRUPTION_GAP_MS.max(before),
            "a participant on another bridge saw a {gap} ms gap while b1 died"
        );
    }

    // The killed bridge comes back with its id and takes a new room (it is the idlest).
    deployment.restart_bridge("b1").await;
    let gamma = RoomId::new("gamma").unwrap();
    let newcomer = join(&deployment, &gamma, "g1").await;
    assert_eq!(
        newcomer.bridge_id(),
        b1,
        "a returning bridge takes participants again"
    );
    newcomer.leave().await.unwrap();
    for participant in victims.into_iter().chain(bystanders) {
        participant.leave().await.unwrap();
    }
}

/// The longest gap between two camera or microphone packets from any remote.
fn max_gap_ms(participant: &SyntheticParticipant) -> u64 {
    participant
        .stats()
        .received
        .values()
        .map(|stream| stream.max_gap_ms)
        .max()
        .unwrap_or(0)
}
