use super::*;
use crate::state::{Command, JoinRequestRecord};
use bridgemesh_proto::ParticipantId;
use bridgemesh_proto::bridge_session::{BridgeRegistration, LoadReport};

const FRANKFURT: GeoPoint = GeoPoint {
    latitude: 50.11,
    longitude: 8.68,
};
const PARIS: GeoPoint = GeoPoint {
    latitude: 48.86,
    longitude: 2.35,
};
const ASHBURN: GeoPoint = GeoPoint {
    latitude: 39.04,
    longitude: -77.49,
};
const SINGAPORE: GeoPoint = GeoPoint {
    latitude: 1.35,
    longitude: 103.82,
};

fn bid(name: &str) -> BridgeId {
    BridgeId::new(name).unwrap()
}

fn register(state: &mut ControlState, id: &str, region: &str, at: GeoPoint, capacity: u32) {
    state
        .apply(Command::RegisterBridge {
            registration: BridgeRegistration {
                id: bid(id),
                region: RegionId::new(region).unwrap(),
                location: Some(at),
                signaling_url: format!("ws://{id}"),
                media_addresses: vec![],
                turn_urls: vec![],
                capacity,
                max_participants_per_room: 2,
                cascade_addr: None,
            },
            instance: Some(format!("{id}-instance")),
            at_ms: 0,
        })
        .unwrap();
}

fn report(state: &mut ControlState, id: &str, stress: f64) {
    state
        .apply(Command::ReportLoad {
            bridge: bid(id),
            load: LoadReport {
                stress,
                ..LoadReport::default()
            },
            at_ms: 0,
        })
        .unwrap();
}

fn three_regions() -> ControlState {
    let mut state = ControlState::default();
    register(&mut state, "eu-1", "eu", FRANKFURT, 10);
    register(&mut state, "eu-2", "eu", PARIS, 10);
    register(&mut state, "us-1", "us", ASHBURN, 10);
    register(&mut state, "ap-1", "ap", SINGAPORE, 10);
    state
}

fn at(point: GeoPoint) -> ClientPlace {
    ClientPlace {
        point: Some(point),
        region: None,
    }
}

/// Places and commits a join, as a control node does.
fn place(state: &mut ControlState, room: &str, participant: &str, client: ClientPlace) -> Option<BridgeId> {
    let room = RoomId::new(room).unwrap();
    let bridge = choose_bridge(state, &room, &client, None)?;
    state
        .apply(Command::Join(JoinRequestRecord {
            client,
            ..JoinRequestRecord::guest(room, ParticipantId::new(participant).unwrap(), bridge.clone(), 0)
        }))
        .unwrap();
    Some(bridge)
}

#[test]
fn each_participant_goes_to_the_nearest_region() {
    let mut state = three_regions();
    let near_singapore = GeoPoint {
        latitude: 3.1,
        longitude: 101.7,
    }; // Kuala Lumpur
    let near_ashburn = GeoPoint {
        latitude: 40.7,
        longitude: -74.0,
    }; // New York
    let near_paris = GeoPoint {
        latitude: 51.5,
        longitude: -0.1,
    }; // London
    assert_eq!(
        place(&mut state, "r1", "p1", at(near_singapore)),
        Some(bid("ap-1"))
    );
    assert_eq!(place(&mut state, "r2", "p2", at(near_ashburn)), Some(bid("us-1")));
    let eu = place(&mut state, "r3", "p3", at(near_paris)).unwrap();
    assert_eq!(state.bridges[&eu].region.as_str(), "eu");
}

#[test]
fn within_a_region_the_room_stays_together_until_the_per_room_cap() {
    let mut state = three_regions();
    let first = place(&mut state, "r", "p1", at(PARIS)).unwrap();
    assert_eq!(place(&mut state, "r", "p2", at(FRANKFURT)), Some(first.clone()));
    let third = place(&mut state, "r", "p3", at(PARIS)).unwrap();
    assert_ne!(
        third, first,
        "the per-room cap (2) moves the third to the other eu bridge"
    );
    assert_eq!(state.bridges[&third].region.as_str(), "eu");
}

#[test]
fn a_full_region_spills_to_the_next_nearest() {
    let mut state = ControlState::default();
    register(&mut state, "eu-1", "eu", FRANKFURT, 1);
    register(&mut state, "us-1", "us", ASHBURN, 10);
    register(&mut state, "ap-1", "ap", SINGAPORE, 10);
    assert_eq!(place(&mut state, "a", "p1", at(PARIS)), Some(bid("eu-1")));
    assert_eq!(
        place(&mut state, "b", "p2", at(PARIS)),
        Some(bid("us-1")),
        "eu-1 is full; Ashburn is nearer Paris than Singapore"
    );
}

#[test]
fn overloaded_bridges_are_skipped_and_used_only_as_a_last_resort() {
    let mut state = three_regions();
    report(&mut state, "eu-1", 0.9);
    assert_eq!(place(&mut state, "a", "p1", at(FRANKFURT)), Some(bid("eu-2")));
    report(&mut state, "eu-2", 0.95);
    assert_eq!(
        place(&mut state, "b", "p2", at(FRANKFURT)),
        Some(bid("us-1")),
        "both eu bridges are overloaded: the nearest region with headroom"
    );
    for id in ["us-1", "ap-1"] {
        report(&mut state, id, 0.99);
    }
    assert_eq!(
        place(&mut state, "c", "p3", at(FRANKFURT)),
        Some(bid("eu-1")),
        "all overloaded: the least stressed in the nearest region"
    );
}

#[test]
fn joins_since_the_last_report_count_toward_stress() {
    let mut state = three_regions();
    state.placement.stress_per_join = 0.1;
    report(&mut state, "eu-1", 0.5);
    report(&mut state, "eu-2", 0.55);
    // eu-1 looks least loaded, but each join placed there adds 0.1 until its next report.
    assert_eq!(place(&mut state, "a", "p1", at(FRANKFURT)), Some(bid("eu-1")));
    assert_eq!(place(&mut state, "b", "p2", at(FRANKFURT)), Some(bid("eu-2")));
    assert_eq!(place(&mut state, "c", "p3", at(FRANKFURT)), Some(bid("eu-1")));
    report(&mut state, "eu-1", 0.5);
    assert_eq!(
        state.bridges[&bid("eu-1")].load.placed_since_report,
        0,
        "a report resets the count"
    );
}

#[test]
fn unknown_locations_go_to_the_default_region_then_nearest_to_it() {
    let mut state = three_regions();
    state.placement.default_region = Some(RegionId::new("us").unwrap());
    assert_eq!(
        place(&mut state, "a", "p1", ClientPlace::default()),
        Some(bid("us-1"))
    );
    let hinted = ClientPlace {
        point: None,
        region: Some(RegionId::new("ap").unwrap()),
    };
    assert_eq!(place(&mut state, "b", "p2", hinted), Some(bid("ap-1")));
    state.bridges.get_mut(&bid("us-1")).unwrap().status = BridgeStatus::Draining;
    let fallback = place(&mut state, "c", "p3", ClientPlace::default()).unwrap();
    assert_eq!(
        state.bridges[&fallback].region.as_str(),
        "eu",
        "the default region has no bridge up: Europe is nearer Ashburn than Singapore"
    );
}

#[test]
fn only_up_bridges_take_participants_and_exclude_is_honoured() {
    let mut state = three_regions();
    for (id, status) in [
        ("eu-1", BridgeStatus::Unreachable),
        ("eu-2", BridgeStatus::Down),
        ("us-1", BridgeStatus::Draining),
    ] {
        state.bridges.get_mut(&bid(id)).unwrap().status = status;
    }
    let room = RoomId::new("r").unwrap();
    assert_eq!(choose_bridge(&state, &room, &at(PARIS), None), Some(bid("ap-1")));
    assert_eq!(choose_bridge(&state, &room, &at(PARIS), Some(&bid("ap-1"))), None);
}

#[test]
fn region_locations_average_their_bridges_across_the_antimeridian() {
    let mut state = ControlState::default();
    register(
        &mut state,
        "a",
        "pacific",
        GeoPoint {
            latitude: -10.0,
            longitude: 179.0,
        },
        1,
    );
    register(
        &mut state,
        "b",
        "pacific",
        GeoPoint {
            latitude: -20.0,
            longitude: -179.0,
        },
        1,
    );
    let pacific = region_locations(&state)[&RegionId::new("pacific").unwrap()];
    assert!((pacific.latitude + 15.0).abs() < 1e-9);
    assert!((pacific.longitude.abs() - 180.0).abs() < 1e-6, "{pacific:?}");
}
