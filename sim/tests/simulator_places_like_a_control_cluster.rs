//! Differential: a recorded workload — bridges with locations and capacities, their load
//! reports, and joins from known places into rooms — is played against a real 3-node control
//! cluster (openraft over HTTP on 127.0.0.1, durable stores, its own join path) and against the
//! simulator's control (the same state machine and placement, with the Raft log modeled). Every
//! join must land on the same bridge in both.

use bridgemesh_control::auth::{AdminAuth, AuthConfig, Secret};
use bridgemesh_control::http::ApiConfig;
use bridgemesh_control::node::{Caller, JoinAnswer, RoomPolicy};
use bridgemesh_control::placement::{ClientPlace, PlacementPolicy};
use bridgemesh_control::raft::cluster::ClusterConfig;
use bridgemesh_control::rate_limit::JoinLimits;
use bridgemesh_control::service::{ControlService, ControlServiceConfig};
use bridgemesh_control::state::{Command, ControlState, JoinRequestRecord, Outcome};
use bridgemesh_proto::bridge_session::{BridgeRegistration, GeoPoint, LoadReport};
use bridgemesh_proto::{BridgeId, ParticipantId, RegionId, RoomId};
use bridgemesh_sim::simulator::real_placement;
use bridgemesh_sim::simulator::rng::SimRng;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// One recorded step.
#[derive(Debug, Clone)]
enum Step {
    Load { bridge: BridgeId, stress: f64 },
    Join { room: RoomId, place: ClientPlace },
}

const REGIONS: [(&str, f64, f64); 3] = [("eu", 50.11, 8.68), ("us", 39.04, -77.49), ("ap", 1.35, 103.82)];

fn bridges() -> Vec<BridgeRegistration> {
    let mut out = Vec::new();
    for (region, latitude, longitude) in REGIONS {
        for n in 1..=2 {
            out.push(BridgeRegistration {
                id: BridgeId::new(format!("{region}-{n}")).unwrap(),
                region: RegionId::new(region).unwrap(),
                location: Some(GeoPoint { latitude, longitude }),
                signaling_url: format!("ws://127.0.0.1:9/{region}-{n}"),
                media_addresses: Vec::new(),
                turn_urls: Vec::new(),
                // Small, so rooms spill to the second bridge and regions fill up.
                capacity: 8,
                max_participants_per_room: 3,
                cascade_addr: None,
            });
        }
    }
    out
}

/// A workload drawn from a seed: joins from near each region (with some spread), rooms of a few
/// people, and load reports now and then.
fn workload(seed: u64) -> Vec<Step> {
    let mut rng = SimRng::new(seed);
    let ids: Vec<BridgeId> = bridges().into_iter().map(|b| b.id).collect();
    let mut steps = Vec::new();
    for n in 0..56 {
        if n % 7 == 3 {
            let bridge = ids[rng.between(0, ids.len() as u64 - 1) as usize].clone();
            steps.push(Step::Load {
                bridge,
                stress: rng.unit() * 0.9,
            });
        }
        let (_, latitude, longitude) = REGIONS[rng.between(0, 2) as usize];
        steps.push(Step::Join {
            room: RoomId::new(format!("room-{}", n / 3)).unwrap(),
            place: ClientPlace {
                point: Some(GeoPoint {
                    latitude: latitude + (rng.unit() - 0.5) * 10.0,
                    longitude: longitude + (rng.unit() - 0.5) * 10.0,
                }),
                region: None,
            },
        });
    }
    steps
}

fn load(stress: f64) -> LoadReport {
    LoadReport {
        participants: 0,
        cpu: stress,
        packets_per_s: 0.0,
        stress,
    }
}

/// The simulator's control: the state machine, applied in order, with the simulator's placement.
fn simulated(steps: &[Step]) -> Vec<Option<BridgeId>> {
    let mut state = ControlState::default();
    state
        .apply(Command::SetPlacementPolicy(PlacementPolicy::default()))
        .unwrap();
    for registration in bridges() {
        state
            .apply(Command::RegisterBridge {
                registration,
                instance: None,
                at_ms: 1,
            })
            .unwrap();
    }
    let mut placed = Vec::new();
    for (n, step) in steps.iter().enumerate() {
        match step {
            Step::Load { bridge, stress } => {
                state
                    .apply(Command::ReportLoad {
                        bridge: bridge.clone(),
                        load: load(*stress),
                        at_ms: 2,
                    })
                    .unwrap();
            }
            Step::Join { room, place } => {
                let Some(bridge) = real_placement(&state, room, place) else {
                    placed.push(None);
                    continue;
                };
                let participant = ParticipantId::new(format!("sim-{n}")).unwrap();
                let outcome = state.apply(Command::Join(JoinRequestRecord {
                    moderator_if_first: true,
                    client: place.clone(),
                    ..JoinRequestRecord::guest(room.clone(), participant, bridge, 3)
                }));
                placed.push(match outcome {
                    Ok(Outcome::Placed { bridge, .. }) => Some(bridge),
                    _ => None,
                });
            }
        }
    }
    placed
}

async fn start_cluster(dir: &std::path::Path) -> Vec<ControlService> {
    let mut listeners = Vec::new();
    for id in 1..=3u64 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cluster_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listeners.push((id, listener, cluster_listener));
    }
    let members: BTreeMap<u64, String> = listeners
        .iter()
        .map(|(id, _, l)| (*id, l.local_addr().unwrap().to_string()))
        .collect();
    let ca = bridgemesh_pki::ClusterCa::generate().unwrap();
    let mut services = Vec::new();
    for (id, listener, cluster_listener) in listeners {
        let config = ControlServiceConfig {
            cluster: ClusterConfig {
                node_id: id,
                advertise_addr: members[&id].clone(),
                data_dir: dir.join(format!("node-{id}")),
                initial_members: members.clone(),
                ..ClusterConfig::default()
            },
            cluster_secret: b"differential test cluster secret!".to_vec(),
            identity: ca.issue_control_cert(id).unwrap(),
            api: ApiConfig {
                admin: Some(Arc::new(
                    AdminAuth::new(Secret::new("an admin token of at least 32 bytes")).unwrap(),
                )),
                metrics_token: None,
            },
            auth: AuthConfig::default(),
            policy: RoomPolicy::default(),
            join_limits: JoinLimits::UNLIMITED,
            regions: Default::default(),
        };
        services.push(
            ControlService::start(config, listener, cluster_listener)
                .await
                .unwrap(),
        );
    }
    services
}

/// The same workload through a real cluster: each join goes to the leader, whose state holds
/// every earlier commit when it places.
async fn real(steps: &[Step]) -> Vec<Option<BridgeId>> {
    let dir = tempfile::tempdir().unwrap();
    let services = start_cluster(dir.path()).await;
    let leader = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(leader) = services.iter().find(|s| s.node.cluster().is_leader()) {
                return leader;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a leader within 20 s");
    let cluster = leader.node.cluster().clone();
    // The policy the simulator starts with, committed as the leader's hub would.
    cluster
        .propose(Command::SetPlacementPolicy(PlacementPolicy::default()))
        .await
        .unwrap()
        .unwrap();
    for registration in bridges() {
        leader.node.register_bridge(registration).await.unwrap();
    }
    let mut placed = Vec::new();
    for step in steps {
        match step {
            Step::Load { bridge, stress } => {
                cluster
                    .propose(Command::ReportLoad {
                        bridge: bridge.clone(),
                        load: load(*stress),
                        at_ms: 2,
                    })
                    .await
                    .unwrap()
                    .unwrap();
            }
            Step::Join { room, place } => {
                let answer = leader
                    .node
                    .join(room.clone(), "p", None, Caller::guest(), place.clone())
                    .await;
                placed.push(match answer {
                    Ok(JoinAnswer::Joined(response)) => Some(response.bridge_id),
                    _ => None,
                });
            }
        }
    }
    for service in services {
        service.stop().await;
    }
    placed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_places_every_join_where_a_real_three_node_cluster_does() {
    for seed in [1, 2] {
        let steps = workload(seed);
        let simulated = simulated(&steps);
        let real = real(&steps).await;
        assert_eq!(simulated.len(), real.len());
        // The workload fills bridges and spills rooms, or the comparison proves little.
        let distinct: std::collections::BTreeSet<_> = real.iter().flatten().collect();
        assert!(distinct.len() >= 4, "seed {seed}: too few bridges used: {real:?}");
        assert!(
            real.iter().any(Option::is_none),
            "seed {seed}: no join was ever refused"
        );
        for (n, (sim, cluster)) in simulated.iter().zip(&real).enumerate() {
            assert_eq!(
                sim, cluster,
                "seed {seed}, join {n}: simulator {sim:?}, cluster {cluster:?}"
            );
        }
    }
}
