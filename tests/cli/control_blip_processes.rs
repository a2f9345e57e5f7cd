//! A blip between control and one bridge moves nobody: the bridge's session with control goes
//! silent for a few seconds (a relay between them stops passing bytes) while its participants'
//! media flows as before. Control marks the bridge unreachable (no new participants) but, with
//! no participant reporting it lost, does not declare it down; when the path comes back the
//! bridge is up again and its participants never noticed.

#[path = "deployment/mod.rs"]
mod deployment;

use bridgemesh_proto::signaling::MediaSource;
use bridgemesh_proto::{BridgeId, RoomId};
use bridgemesh_sim::participant::{ParticipantOptions, SyntheticParticipant};
use deployment::{BridgeSpec, Deployment, PausableProxy};
use std::time::Duration;

/// Longer than control's suspicion (1 s without a heartbeat), shorter than its down_after (10 s).
const BLIP: Duration = Duration::from_secs(4);
/// See `bridge_failover_processes.rs`: a pause this long between packets is an interruption.
const NO_INTERRUPTION_GAP_MS: u64 = 1_500;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blip_between_control_and_a_bridge_moves_nobody() {
    let mut deployment = Deployment::start("").await;
    let proxy = PausableProxy::start(deployment.cluster_port).await;
    deployment
        .add_bridge(BridgeSpec::new("b1", "eu").via(proxy.url()))
        .await;
    deployment.add_bridge(BridgeSpec::new("b2", "eu")).await;
    let b1 = BridgeId::new("b1").unwrap();

    let room = RoomId::new("steady").unwrap();
    let mut group = Vec::new();
    for name in ["s1", "s2"] {
        let participant =
            SyntheticParticipant::join(&deployment.control_url(), &room, ParticipantOptions::new(name))
                .await
                .unwrap();
        assert_eq!(participant.bridge_id(), b1, "the first idle bridge by id");
        group.push(participant);
    }
    for (a, b) in [(0, 1), (1, 0)] {
        let from = group[b].participant_id().clone();
        group[a]
            .wait_until("media before the blip", Duration::from_secs(20), |s, _| {
                s.intact_from(&from, MediaSource::Camera) > 10
            })
            .await
            .unwrap();
    }

    proxy.pause(true);
    deployment.wait_for_status("b1", "unreachable").await;
    let newcomer = SyntheticParticipant::join(
        &deployment.control_url(),
        &RoomId::new("other").unwrap(),
        ParticipantOptions::new("n1"),
    )
    .await
    .unwrap();
    assert_ne!(newcomer.bridge_id(), b1, "an unreachable bridge gets nobody new");
    tokio::time::sleep(BLIP).await;
    assert_eq!(
        deployment.bridge_field("b1", "status").await,
        "unreachable",
        "silence without reports is not death"
    );
    proxy.pause(false);
    deployment.wait_for_status("b1", "up").await;

    for (a, b) in [(0, 1), (1, 0)] {
        let from = group[b].participant_id().clone();
        let seen = group[a].stats().intact_from(&from, MediaSource::Camera);
        group[a]
            .wait_until("media after the blip", Duration::from_secs(20), |s, _| {
                s.intact_from(&from, MediaSource::Camera) > seen + 10
            })
            .await
            .unwrap();
        let stats = group[a].stats();
        assert!(
            stats.reconnects.is_empty(),
            "nobody was moved: {:?}",
            stats.reconnects
        );
        assert_eq!(group[a].bridge_id(), b1);
        let gap = stats.received.values().map(|r| r.max_gap_ms).max().unwrap_or(0);
        assert!(
            gap <= NO_INTERRUPTION_GAP_MS,
            "media paused {gap} ms during the blip"
        );
    }
    assert_eq!(deployment.bridge_field("b1", "participants").await, 2);
    newcomer.leave().await.unwrap();
    for participant in group {
        participant.leave().await.unwrap();
    }
}
