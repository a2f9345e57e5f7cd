//! The cascade with real processes: a control node placing participants by a MaxMind database
//! the repo generates, bridges in three regions linked by QUIC with certificates of the
//! deployment's cluster CA (`bridgemesh ca init` / `ca issue`), and synthetic participants
//! joining one room from 127.x.y.z addresses the database puts in Frankfurt, Ashburn and
//! Singapore, so the room spans the bridges.

#[path = "deployment/mod.rs"]
mod deployment;

use bridgemesh_proto::signaling::MediaSource;
use bridgemesh_proto::{ParticipantId, RoomId};
use bridgemesh_sim::participant::{ParticipantOptions, SyntheticParticipant};
use deployment::{BridgeSpec, Deployment, PausableUdpRelay, free_udp_port, metric_value};
use std::time::Duration;

/// Packets each stream must deliver intact: about a second of audio, a little video.
const ENOUGH: u64 = 40;
const MEDIA_TIMEOUT: Duration = Duration::from_secs(20);

const FRANKFURT: (f64, f64) = (50.11, 8.68);
const ASHBURN: (f64, f64) = (39.04, -77.49);
const SINGAPORE: (f64, f64) = (1.35, 103.82);

/// A control node with the generated GeoIP database (in the returned directory, which must
/// live as long as the deployment), and `bridges`.
async fn deployment_with(bridges: Vec<BridgeSpec>) -> (Deployment, tempfile::TempDir) {
    let (db_dir, db) = deployment::test_geoip_db();
    let regions = format!("geoip_db = \"{}\"\ndefault_region = \"us\"\n", db.display());
    let mut deployment = Deployment::start(&regions).await;
    for spec in bridges {
        deployment.add_bridge(spec).await;
    }
    (deployment, db_dir)
}

fn eu() -> BridgeSpec {
    BridgeSpec::new("eu-1", "eu").at(FRANKFURT.0, FRANKFURT.1)
}

fn us() -> BridgeSpec {
    BridgeSpec::new("us-1", "us").at(ASHBURN.0, ASHBURN.1)
}

/// One bridge per region: eu-1 (Frankfurt), us-1 (Ashburn), ap-1 (Singapore).
async fn three_regions() -> (Deployment, tempfile::TempDir) {
    deployment_with(vec![
        eu(),
        us(),
        BridgeSpec::new("ap-1", "ap").at(SINGAPORE.0, SINGAPORE.1),
    ])
    .await
}

async fn join_from(
    deployment: &Deployment,
    room: &RoomId,
    name: &str,
    ip: &str,
    options: ParticipantOptions,
) -> SyntheticParticipant {
    let options = ParticipantOptions {
        bind_ip: Some(ip.parse().unwrap()),
        display_name: name.into(),
        ..options
    };
    match SyntheticParticipant::join(&deployment.control_url(), room, options).await {
        Ok(participant) => participant,
        Err(err) => deployment.fail(&format!("{name} to join: {err}")).await,
    }
}

/// A participant publishing audio and video, joining from `ip`.
async fn join_at(deployment: &Deployment, room: &RoomId, name: &str, ip: &str) -> SyntheticParticipant {
    join_from(deployment, room, name, ip, ParticipantOptions::default()).await
}

async fn wait_for_media(
    deployment: &Deployment,
    receiver: &SyntheticParticipant,
    publishers: &[&SyntheticParticipant],
    enough: u64,
) {
    let ids: Vec<ParticipantId> = publishers.iter().map(|p| p.participant_id().clone()).collect();
    let waited = receiver
        .wait_until(
            "audio and video from every publisher",
            MEDIA_TIMEOUT,
            |stats, _| {
                ids.iter().all(|id| {
                    stats.intact_from(id, MediaSource::Microphone) >= enough
                        && stats.intact_from(id, MediaSource::Camera) >= enough
                })
            },
        )
        .await;
    if let Err(err) = waited {
        let mut metrics = String::new();
        for (spec, _) in &deployment.bridges {
            let text = deployment.bridge_metrics(&spec.id).await;
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with('#') && (l.contains("cascade") || l.contains("rtp")))
                .collect();
            metrics.push_str(&format!("{}:\n{}\n", spec.id, lines.join("\n")));
        }
        deployment
            .fail(&format!(
                "{} to receive media: {err}\n{}\n{metrics}",
                receiver.participant_id(),
                receiver.stats().summary()
            ))
            .await;
    }
}

/// The value of `name{...peer="<peer>"}` in a metrics text, if the series is there.
fn link_metric(metrics: &str, name: &str, peer: &str) -> Option<f64> {
    metric_value(metrics, name, &[("peer", peer)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_room_across_three_bridges_everyone_receives_everyone() {
    let (deployment, _db) = three_regions().await;
    let room = RoomId::new("across-three").unwrap();
    let ada = join_at(&deployment, &room, "ada", "127.1.0.1").await;
    let eve = join_at(&deployment, &room, "eve", "127.1.0.2").await;
    let bob = join_at(&deployment, &room, "bob", "127.2.0.1").await;
    let cy = join_at(&deployment, &room, "cy", "127.3.0.1").await;
    let placed: Vec<String> = [&ada, &eve, &bob, &cy]
        .iter()
        .map(|p| p.bridge_id().to_string())
        .collect();
    assert_eq!(
        placed,
        ["eu-1", "eu-1", "us-1", "ap-1"],
        "each lands in its region"
    );

    let everyone = [&ada, &eve, &bob, &cy];
    for receiver in everyone {
        let others: Vec<&SyntheticParticipant> = everyone
            .iter()
            .copied()
            .filter(|p| p.participant_id() != receiver.participant_id())
            .collect();
        wait_for_media(&deployment, receiver, &others, ENOUGH).await;
    }
    for participant in everyone {
        let stats = participant.stats();
        assert_eq!(stats.total_corrupt(), 0, "{}", stats.summary());
        let roster = participant.roster();
        assert_eq!(
            roster.len(),
            3,
            "{} sees the three others: {roster:?}",
            participant.participant_id()
        );
    }
    // One link per pair, each carrying the room.
    for (bridge, peers) in [
        ("eu-1", ["us-1", "ap-1"]),
        ("us-1", ["eu-1", "ap-1"]),
        ("ap-1", ["eu-1", "us-1"]),
    ] {
        let metrics = deployment.bridge_metrics(bridge).await;
        for peer in peers {
            assert_eq!(
                link_metric(&metrics, "bridgemesh_cascade_link_rooms", peer),
                Some(1.0),
                "{bridge} shares the room with {peer}:\n{metrics}"
            );
            assert!(
                link_metric(
                    &metrics,
                    "bridgemesh_cascade_link_media_sent_datagrams_total",
                    peer
                )
                .unwrap_or(0.0)
                    > 0.0,
                "{bridge} sends media to {peer}"
            );
        }
    }

    // Bob leaves: the others see him go, and us-1's side of the room is torn down.
    let bob_id = bob.participant_id().clone();
    bob.leave().await.unwrap();
    for remaining in [&ada, &eve, &cy] {
        remaining
            .wait_until("bob leaves the roster", MEDIA_TIMEOUT, |_, roster| {
                !roster.contains_key(&bob_id)
            })
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + MEDIA_TIMEOUT;
    loop {
        let metrics = deployment.bridge_metrics("us-1").await;
        let shared: f64 = ["eu-1", "ap-1"]
            .iter()
            .map(|peer| link_metric(&metrics, "bridgemesh_cascade_link_rooms", peer).unwrap_or(0.0))
            .sum();
        if shared == 0.0 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            deployment.fail("us-1 to close its side of the room").await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for participant in [ada, eve, cy] {
        participant.leave().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_publisher_crosses_the_link_once_for_five_subscribers_and_gets_their_keyframe_requests() {
    let (deployment, _db) = three_regions().await;
    let room = RoomId::new("one-to-five").unwrap();
    // Keyframes only when asked: any keyframe the subscribers see was requested across the link.
    let publisher = join_from(
        &deployment,
        &room,
        "speaker",
        "127.1.0.1",
        ParticipantOptions {
            keyframe_interval: Duration::from_secs(3600),
            ..ParticipantOptions::default()
        },
    )
    .await;
    assert_eq!(publisher.bridge_id().as_str(), "eu-1");
    let listener_options = ParticipantOptions {
        publish_audio: false,
        publish_video: false,
        ..ParticipantOptions::default()
    };
    let mut listeners = Vec::new();
    for n in 0..5 {
        let listener = join_from(
            &deployment,
            &room,
            &format!("listener-{n}"),
            &format!("127.2.0.{}", n + 1),
            listener_options.clone(),
        )
        .await;
        assert_eq!(listener.bridge_id().as_str(), "us-1");
        listeners.push(listener);
    }
    for listener in &listeners {
        wait_for_media(&deployment, listener, &[&publisher], ENOUGH).await;
        let stats = listener.stats();
        let video = stats
            .from(publisher.participant_id(), MediaSource::Camera)
            .unwrap();
        assert!(
            video.keyframes >= 1,
            "no keyframe reached {}",
            listener.participant_id()
        );
    }
    assert!(
        publisher.stats().plis_received >= 1,
        "the publisher never heard a keyframe request: {}",
        publisher.stats().summary()
    );

    // Over seconds of steady state, what eu-1 sends to us-1 against what was published.
    // One snapshot at each end, so both figures cover the same window; long enough that the
    // shards' stats, published every 100 ms, are a small error on it.
    let metrics_before = deployment.bridge_metrics("eu-1").await;
    let published_before = published_bytes(&metrics_before);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let metrics_after = deployment.bridge_metrics("eu-1").await;
    let published_after = published_bytes(&metrics_after);
    let link_bytes = link_metric(
        &metrics_after,
        "bridgemesh_cascade_link_udp_sent_bytes_total",
        "us-1",
    )
    .unwrap()
        - link_metric(
            &metrics_before,
            "bridgemesh_cascade_link_udp_sent_bytes_total",
            "us-1",
        )
        .unwrap();
    let published = published_after - published_before;
    assert!(
        published > 200_000.0,
        "the publisher sent {published} bytes in 8 s"
    );
    let ratio = link_bytes / published;
    eprintln!("link bytes {link_bytes} for {published} bytes published: {ratio:.3}×");
    assert!(
        ratio <= 1.05,
        "the link carried {link_bytes} bytes for {published} published ({ratio:.3}×): more than once"
    );
    for listener in listeners {
        listener.leave().await.unwrap();
    }
    publisher.leave().await.unwrap();
}

/// What the publisher sent its bridge, the only participant there: the bytes of its UDP
/// datagrams (`bridgemesh_bridge_datagram_received_bytes_total`), as the link's bytes are
/// counted too. Its RTP alone (without SRTP's tag, RTCP and consent checks) is about 3 % less;
/// `cargo bench --bench cascade` reports the ratio against both.
fn published_bytes(metrics: &str) -> f64 {
    metric_value(metrics, "bridgemesh_bridge_datagram_received_bytes_total", &[])
        .expect("the bridge exports bridgemesh_bridge_datagram_received_bytes_total")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_link_cut_off_reconnects_and_media_resumes() {
    // eu-1 dials us-1 (its id is smaller) at the address us-1 registered: the relay's.
    let cascade_port = free_udp_port();
    let relay = PausableUdpRelay::start(cascade_port).await;
    let (deployment, _db) = deployment_with(vec![eu(), us().cascade_via(cascade_port, relay.addr())]).await;
    let room = RoomId::new("cut-link").unwrap();
    let ada = join_at(&deployment, &room, "ada", "127.1.0.1").await;
    let bob = join_at(&deployment, &room, "bob", "127.2.0.1").await;
    assert_eq!(bob.bridge_id().as_str(), "us-1");
    wait_for_media(&deployment, &bob, &[&ada], ENOUGH).await;
    wait_for_media(&deployment, &ada, &[&bob], ENOUGH).await;

    // The path between eu-1 and us-1 goes dark for longer than the link's idle timeout.
    relay.pause(true);
    let ada_id = ada.participant_id().clone();
    let deadline = tokio::time::Instant::now() + MEDIA_TIMEOUT;
    loop {
        let metrics = deployment.bridge_metrics("eu-1").await;
        if link_metric(&metrics, "bridgemesh_cascade_link_up", "us-1").is_none() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            deployment.fail("eu-1 to notice its link to us-1 is dead").await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bob.wait_until(
        "ada leaves bob's roster with the link",
        MEDIA_TIMEOUT,
        |_, roster| !roster.contains_key(&ada_id),
    )
    .await
    .unwrap();
    relay.pause(false);
    let before = bob.stats().intact_from(&ada_id, MediaSource::Camera);
    wait_for_media(&deployment, &bob, &[&ada], before + ENOUGH).await;
    let bob_id = bob.participant_id().clone();
    ada.wait_until("bob is back in ada's roster", MEDIA_TIMEOUT, |_, roster| {
        roster.contains_key(&bob_id)
    })
    .await
    .unwrap();
    let before = ada.stats().intact_from(&bob_id, MediaSource::Camera);
    wait_for_media(&deployment, &ada, &[&bob], before + ENOUGH).await;
    for participant in [ada, bob] {
        participant.leave().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bridge_with_a_certificate_of_another_ca_is_not_admitted() {
    // us-1 holds a certificate, but not one of this cluster's CA: control's cluster listener and
    // the bridge refuse each other, so it never registers, and never hosts or links anything.
    let (mut deployment, _db) = deployment_with(vec![eu()]).await;
    let stranger = us().foreign_ca();
    let process = deployment.spawn_bridge(&stranger);
    deployment.bridges.push((stranger, process));
    let deadline = std::time::Instant::now() + MEDIA_TIMEOUT;
    while !deployment.bridges[1].1.log_tail().contains("certificates") {
        assert!(
            std::time::Instant::now() < deadline,
            "us-1 never said why it cannot register:\n{}",
            deployment.bridges[1].1.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Its sessions failed at the TLS handshake: control knows no us-1.
    assert_eq!(
        deployment.bridge_field("us-1", "status").await,
        serde_json::Value::Null
    );
    let room = RoomId::new("stranger").unwrap();
    let ada = join_at(&deployment, &room, "ada", "127.1.0.1").await;
    let bob = join_at(&deployment, &room, "bob", "127.2.0.1").await;
    assert_eq!(
        bob.bridge_id().as_str(),
        "eu-1",
        "a participant near us-1 goes to a cluster member"
    );
    wait_for_media(&deployment, &ada, &[&bob], ENOUGH).await;
    assert_eq!(
        deployment.bridge_field("us-1", "status").await,
        serde_json::Value::Null
    );
    for participant in [ada, bob] {
        participant.leave().await.unwrap();
    }
}
