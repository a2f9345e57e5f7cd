//! The network simulator on its shipped scenarios and on injected faults of its own: the same
//! seed gives the same report byte for byte, another seed another report; a placement that
//! ignores capacity is caught by an invariant, with the seed in the summary; the shipped
//! scenarios run (at a fraction of their size) with every invariant holding.

use bridgemesh_control::placement::ClientPlace;
use bridgemesh_control::state::ControlState;
use bridgemesh_proto::{BridgeId, RoomId};
use bridgemesh_sim::simulator::{self, Scenario, World};

fn shipped(name: &str) -> Scenario {
    let path = format!("{}/scenarios/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Scenario::from_toml(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn one_seed_gives_one_report_and_another_seed_another() {
    let scenario = shipped("three_regions_losing_a_bridge");
    let run = |seed| {
        let report = simulator::run(scenario.clone(), seed, |_, _| {});
        (report.to_json(), report.to_html())
    };
    let first = run(11);
    assert_eq!(first, run(11), "the same seed must replay the same run");
    assert_ne!(first.0, run(12).0, "another seed must give another run");
    // The HTML report is self-contained: the summary and three plots, nothing fetched.
    let html = &first.1;
    assert_eq!(html.matches("<svg").count(), 4, "{html}");
    assert!(html.contains("polyline") && html.contains("<rect"));
    assert!(
        !html.contains("http://") || !html.contains("src="),
        "nothing is loaded from elsewhere"
    );
}

/// Always the first bridge by id, full or not: what a placement that forgot capacity does.
fn ignores_capacity(state: &ControlState, _room: &RoomId, _client: &ClientPlace) -> Option<BridgeId> {
    state.bridges.keys().next().cloned()
}

#[test]
fn a_placement_that_ignores_capacity_breaks_an_invariant_and_the_seed_is_printed() {
    let mut scenario = shipped("three_regions_losing_a_bridge");
    // Small bridges, so the first one fills within minutes.
    for region in &mut scenario.regions {
        region.capacity = 20;
    }
    scenario.faults.clear();
    let report = World::new(scenario.clone(), 5, ignores_capacity).run(|_, _| {});
    assert!(report.violation_count > 0, "{}", report.summary());
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.invariant == "refused_with_room"),
        "{}",
        report.summary()
    );
    assert!(report.summary().contains("(seed 5)"), "{}", report.summary());
    // The real placement on the same scenario and seed: nothing to report.
    let report = simulator::run(scenario, 5, |_, _| {});
    assert_eq!(report.violation_count, 0, "{}", report.summary());
}

#[test]
fn the_shipped_scenarios_run_at_reduced_scale_with_every_invariant_holding() {
    for (name, scale) in [
        ("three_regions_losing_a_bridge", 1.0),
        ("leader_crash_during_a_join_storm", 0.5),
        ("region_partitioned", 1.0),
        ("control_split_across_regions", 1.0),
        ("morning_ramp_ten_regions", 0.02),
    ] {
        let scenario = shipped(name).scaled(scale);
        scenario.validate().unwrap();
        let report = simulator::run(scenario, 3, |_, _| {});
        assert_eq!(report.violation_count, 0, "{name}:\n{}", report.summary());
        assert!(report.joins_ok > 100, "{name}:\n{}", report.summary());
        // Rooms of a few people in several regions span bridges: the cascade carries them.
        assert!(report.cascade_links > 0, "{name}:\n{}", report.summary());
        // A restart or a degraded link takes nobody off a bridge (the media report says what a
        // degraded link did).
        let moving = |kind: &str| kind != "restart_bridge" && kind != "degrade_link";
        for fault in report.faults.iter().filter(|f| moving(&f.kind)) {
            assert!(
                fault.affected > 0,
                "{name}: a fault that hit nobody\n{}",
                report.summary()
            );
            assert_eq!(
                fault.recovered + fault.gave_up + fault.left,
                fault.affected,
                "{name}: every affected participant is accounted for\n{}",
                report.summary()
            );
            assert_eq!(fault.gave_up, 0, "{name}:\n{}", report.summary());
        }
    }
}

#[test]
fn a_killed_bridge_is_declared_down_and_its_participants_move_within_seconds() {
    let report = simulator::run(shipped("three_regions_losing_a_bridge"), 1, |_, _| {});
    let kill = report.faults.iter().find(|f| f.kind == "kill_bridge").unwrap();
    assert_eq!(report.bridges_declared_down, 1, "{}", report.summary());
    // Modeled times are simulated, not measured: this checks behaviour (detection by loss
    // reports, not by the 10 s silence rule), not the machine's speed.
    assert!(kill.recovery_ms.max.unwrap() < 5_000, "{}", report.summary());
}

#[test]
fn a_scenario_with_mistakes_is_refused_with_a_reason() {
    let base = std::fs::read_to_string(format!(
        "{}/scenarios/three_regions_losing_a_bridge.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    for (broken, reason) in [
        (
            base.replace("bridge = \"eu-1\"", "bridge = \"eu-9\""),
            "unknown bridge",
        ),
        (
            base.replace("kind = \"kill_bridge\"", "kind = \"explode\""),
            "unknown fault kind",
        ),
        (
            base.replace("room_size_min = 2", "room_size_min = 0"),
            "room_size_min",
        ),
        (base.replace("duration_s = 600", "duration_s = 0"), "duration_s"),
    ] {
        let err = Scenario::from_toml(&broken).unwrap_err().to_string();
        assert!(err.contains(reason), "{err:?} does not say {reason:?}");
    }
}

/// One bridge, joins flowing, the control leader killed three times (as
/// `tests/cli/leader_kill_costs_no_joins.rs` does to real processes). The bridge's session finds
/// each new leader on its own (the real `ControlSession`'s backoff and redirects, run by the
/// simulator), which can take longer than `suspect_after_ms` after the election.
const ONE_BRIDGE_LEADER_KILLS: &str = r#"
name = "one bridge, three leader kills"
duration_s = 120
liveness_s = 30
[control]
region = "eu"
[[regions]]
id = "eu"
latitude = 50.11
longitude = 8.68
bridges = 1
capacity = 2000
[participants]
arrivals_per_s = 10.0
stay_s_mean = 60
room_size_min = 2
room_size_max = 4
[[faults]]
at_s = 30
kind = "kill_control_leader"
election_ms = 1500
[[faults]]
at_s = 60
kind = "kill_control_leader"
election_ms = 1500
[[faults]]
at_s = 90
kind = "kill_control_leader"
election_ms = 1500
"#;

/// The leader's grace keeps a bridge placeable while it finds the new leader; without it (the
/// rule before: an unheard bridge is suspected after `suspect_after_ms`) joins are refused for
/// capacity with a healthy bridge standing by.
#[test]
fn a_new_leader_refuses_no_join_while_the_bridge_finds_it_and_would_without_its_grace() {
    const REFUSED: &str = "no bridge can take it";
    let scenario = Scenario::from_toml(ONE_BRIDGE_LEADER_KILLS).unwrap();
    let mut refused_without_grace = 0;
    for seed in 1..=4 {
        let report = simulator::run(scenario.clone(), seed, |_, _| {});
        assert_eq!(report.violation_count, 0, "{}", report.summary());
        assert_eq!(report.joins_failed, 0, "{}", report.summary());
        assert_eq!(report.elections.len(), 3, "{}", report.summary());

        let mut without_grace = scenario.clone();
        without_grace.control.leader_grace_ms = without_grace.control.suspect_after_ms;
        without_grace.validate().unwrap();
        let report = simulator::run(without_grace, seed, |_, _| {});
        refused_without_grace += report.join_failures.get(REFUSED).copied().unwrap_or(0);
    }
    assert!(
        refused_without_grace > 0,
        "the simulator shows the gap a new leader without grace leaves"
    );
}

#[test]
fn a_leader_crash_delays_joins_in_flight_and_declares_no_bridge_down() {
    let report = simulator::run(shipped("leader_crash_during_a_join_storm"), 3, |_, _| {});
    assert_eq!(report.violation_count, 0, "{}", report.summary());
    assert_eq!(report.joins_failed, 0, "{}", report.summary());
    assert_eq!(report.bridges_declared_down, 0, "{}", report.summary());
    for fault in &report.faults {
        assert!(
            fault.affected > 0,
            "the storm had joins in flight:\n{}",
            report.summary()
        );
        // No join waited longer than the election and one commit: the new leader took them.
        let election_ms = if fault.at_s == 60 { 700 } else { 1500 };
        assert!(
            fault.recovery_ms.max.unwrap() <= election_ms + 5,
            "{}",
            report.summary()
        );
    }
}

#[test]
fn a_partitioned_region_is_declared_down_cut_off_and_reconciled_when_it_heals() {
    let report = simulator::run(shipped("region_partitioned"), 5, |_, _| {});
    assert_eq!(report.violation_count, 0, "{}", report.summary());
    // Control, in Frankfurt, hears nothing from Singapore's two bridges.
    assert_eq!(report.bridges_declared_down, 2, "{}", report.summary());
    // Only joins from the cut region fail, for want of control.
    assert!(
        report
            .join_failures
            .keys()
            .all(|reason| reason == "control unreachable"),
        "{}",
        report.summary()
    );
    let partition = &report.faults[0];
    assert_eq!(partition.bridge, "region ap");
    assert!(partition.recovered > 0, "{}", report.summary());
    // Nobody control moved off the cut bridges can hear of it before the cut heals (45 s).
    assert!(
        partition.recovery_ms.p50.unwrap() >= 45_000,
        "{}",
        report.summary()
    );
}
