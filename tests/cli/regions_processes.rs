//! Placement across regions with real processes: a control node with a MaxMind database the repo
//! generates (`bridgemesh geoip test-db`), bridges in three regions, and clients joining from
//! distinct 127.x.y.z source addresses that the database puts in Frankfurt, Ashburn, Singapore,
//! Paris and San Francisco. Each lands in its own region; a full bridge is skipped; an unknown
//! address lands in the default region; a spoofed X-Forwarded-For from an untrusted peer is
//! ignored while a trusted proxy's is honoured; a drained bridge gets nobody new and empties, its
//! participants carried to another bridge with their media.

#[path = "deployment/mod.rs"]
mod deployment;

use bridgemesh_proto::RoomId;
use bridgemesh_proto::api::JoinResponse;
use bridgemesh_proto::signaling::MediaSource;
use bridgemesh_sim::participant::{ParticipantOptions, SyntheticParticipant};
use deployment::{BridgeSpec, Deployment};
use std::net::IpAddr;
use std::time::Duration;

/// A join over HTTP from `source`, optionally with forwarding headers; returns the bridge.
async fn placed_from(deployment: &Deployment, source: &str, room: &str, headers: &[(&str, &str)]) -> String {
    let source: IpAddr = source.parse().unwrap();
    let http = reqwest::Client::builder()
        .no_proxy()
        .local_address(source)
        .build()
        .unwrap();
    let mut request = http
        .post(format!("{}/api/v1/rooms/{room}/join", deployment.control_url()))
        .json(&serde_json::json!({ "display_name": format!("from {source}") }));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "join from {source}: {status} {text}");
    let join: JoinResponse = serde_json::from_str(&text).unwrap();
    join.bridge_id.to_string()
}

fn region_of(bridge: &str) -> &str {
    bridge.split('-').next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn participants_land_in_their_region_and_a_drained_bridge_empties() {
    let (_db_dir, db) = deployment::test_geoip_db();
    let regions = format!(
        "geoip_db = \"{}\"\ndefault_region = \"us\"\ntrusted_proxies = [\"127.0.0.200\"]\n",
        db.display()
    );
    let mut deployment = Deployment::start(&regions).await;
    for spec in [
        BridgeSpec::new("eu-a", "eu").at(50.11, 8.68).capacity(1),
        BridgeSpec::new("eu-b", "eu").at(50.11, 8.68),
        BridgeSpec::new("eu-c", "eu").at(48.86, 2.35),
        BridgeSpec::new("us-1", "us").at(39.04, -77.49),
        BridgeSpec::new("ap-1", "ap").at(1.35, 103.82),
    ] {
        deployment.add_bridge(spec).await;
    }

    // Frankfurt: eu-a (idle, first by id); its capacity is 1, so the next one is skipped past it.
    assert_eq!(placed_from(&deployment, "127.1.0.1", "fra-1", &[]).await, "eu-a");
    let second = placed_from(&deployment, "127.1.0.2", "fra-2", &[]).await;
    assert!(
        second == "eu-b" || second == "eu-c",
        "a full bridge is skipped: {second}"
    );
    assert_eq!(placed_from(&deployment, "127.2.0.1", "ash", &[]).await, "us-1");
    assert_eq!(placed_from(&deployment, "127.3.0.1", "sin", &[]).await, "ap-1");
    assert_eq!(
        region_of(&placed_from(&deployment, "127.4.0.1", "par", &[]).await),
        "eu"
    );
    assert_eq!(placed_from(&deployment, "127.5.0.1", "sfo", &[]).await, "us-1");
    // Unknown to the database: the default region.
    assert_eq!(
        placed_from(&deployment, "127.9.0.1", "unknown", &[]).await,
        "us-1"
    );
    // An untrusted peer cannot claim to be in Singapore.
    for header in ["x-forwarded-for", "forwarded"] {
        let value = if header == "forwarded" {
            "for=127.3.0.7"
        } else {
            "127.3.0.7"
        };
        assert_eq!(
            placed_from(&deployment, "127.9.0.2", "spoof", &[(header, value)]).await,
            "us-1",
            "{header} from an untrusted peer is ignored"
        );
    }
    // The trusted proxy's word is taken.
    assert_eq!(
        placed_from(
            &deployment,
            "127.0.0.200",
            "proxied",
            &[("x-forwarded-for", "127.3.0.8")]
        )
        .await,
        "ap-1"
    );

    // Two participants with media from Frankfurt, in one room.
    let room = RoomId::new("drained").unwrap();
    let mut group = Vec::new();
    for (name, ip) in [("d1", "127.1.0.10"), ("d2", "127.1.0.11")] {
        let options = ParticipantOptions {
            bind_ip: Some(ip.parse().unwrap()),
            ..ParticipantOptions::new(name)
        };
        group.push(
            SyntheticParticipant::join(&deployment.control_url(), &room, options)
                .await
                .unwrap(),
        );
    }
    let drained = group[0].bridge_id();
    assert_eq!(group[1].bridge_id(), drained);
    assert_eq!(region_of(drained.as_str()), "eu");
    for (a, b) in [(0, 1), (1, 0)] {
        let from = group[b].participant_id().clone();
        group[a]
            .wait_until("camera before the drain", Duration::from_secs(20), |s, _| {
                s.intact_from(&from, MediaSource::Camera) > 10
            })
            .await
            .unwrap();
    }

    let out = deployment.admin_cli(&["bridges", "drain", drained.as_str()]);
    assert!(out.contains("true"), "{out}");
    deployment.wait_for_status(drained.as_str(), "draining").await;
    let newcomer = placed_from(&deployment, "127.1.0.3", "fra-3", &[]).await;
    assert_ne!(newcomer, drained.as_str(), "a draining bridge gets nobody new");
    assert_eq!(region_of(&newcomer), "eu");

    // Its participants are moved (bye moved → reconnect) and get media again on the new bridge.
    for (a, b) in [(0, 1), (1, 0)] {
        let from = group[b].participant_id().clone();
        let seen = group[a].stats().intact_from(&from, MediaSource::Camera);
        group[a]
            .wait_until("camera after the drain", Duration::from_secs(20), |s, _| {
                s.intact_from(&from, MediaSource::Camera) > seen + 10 && !s.reconnects.is_empty()
            })
            .await
            .unwrap();
        assert_ne!(group[a].bridge_id(), drained, "moved off the drained bridge");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while deployment.bridge_field(drained.as_str(), "participants").await != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the drained bridge did not empty"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let table = deployment.admin_cli(&["bridges"]);
    assert!(table.contains("draining"), "{table}");

    deployment.admin_cli(&["bridges", "undrain", drained.as_str()]);
    deployment.wait_for_status(drained.as_str(), "up").await;
    for participant in group {
        participant.leave().await.unwrap();
    }
}
