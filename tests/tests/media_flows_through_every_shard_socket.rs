//! Each shard reads its own `SO_REUSEPORT` socket on the one media port: the kernel spreads
//! participants over the sockets by their address, and a datagram read by a shard that does not
//! own its participant's room is handed over to the one that does.

use bridgemesh::up::{UpConfig, start};
use bridgemesh_proto::signaling::MediaSource;
use bridgemesh_sim::SyntheticParticipant;
use bridgemesh_tests::harness::{MEDIA_TIMEOUT, init_tracing, join, room};

/// Enough that the hash leaves one of two sockets without a participant only with probability
/// 2^-(PARTICIPANTS_MAX - 1).
const PARTICIPANTS_MAX: usize = 14;
const ENOUGH: u64 = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_shards_both_sockets_read_and_everyone_gets_everyones_media() {
    init_tracing();
    let running = start(UpConfig {
        shards: Some(2),
        ..UpConfig::ephemeral()
    })
    .await
    .expect("bridgemesh up starts");
    assert_eq!(running.bridge.config().shard_count, 2);
    // One room: it lives on one shard, so whatever the other socket reads is handed over.
    let room = room("both-sockets");
    let mut participants: Vec<SyntheticParticipant> = vec![];
    for i in 0..PARTICIPANTS_MAX {
        participants.push(join(&running, &room, &format!("p{i}")).await);
        // A participant that joined has passed ICE and DTLS through its socket.
        if participants.len() >= 2 && running.bridge.socket_reads().iter().all(|&reads| reads > 0) {
            break;
        }
    }
    let reads = running.bridge.socket_reads();
    assert!(
        reads.iter().all(|&r| r > 0),
        "a socket read nothing after {} participants: {reads:?}",
        participants.len()
    );
    for receiver in &participants {
        let others: Vec<_> = participants
            .iter()
            .filter(|p| p.participant_id() != receiver.participant_id())
            .map(|p| p.participant_id().clone())
            .collect();
        receiver
            .wait_until(
                "audio and video from every other participant",
                MEDIA_TIMEOUT,
                |stats, _| {
                    others.iter().all(|id| {
                        stats.intact_from(id, MediaSource::Microphone) >= ENOUGH
                            && stats.intact_from(id, MediaSource::Camera) >= ENOUGH
                    })
                },
            )
            .await
            .unwrap();
        assert_eq!(
            receiver.stats().total_corrupt(),
            0,
            "{}",
            receiver.stats().summary()
        );
    }
    let stats = running.bridge.stats();
    assert!(
        stats.datagrams_handed_over > 0,
        "nothing crossed between shards: {stats:?}"
    );
    assert_eq!(stats.datagrams_handoff_dropped, 0);
    assert!(
        stats.send_syscalls <= stats.shards.datagrams_out,
        "sends are batched: {stats:?}"
    );
    for participant in participants {
        participant.leave().await.unwrap();
    }
    running.stop().await;
}
