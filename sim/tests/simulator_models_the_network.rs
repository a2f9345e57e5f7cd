//! The simulator's network: one-way partitions cut what they should and nothing more, a degraded
//! link congests the cascade across it while it lasts, media that cannot flow after the faults
//! breaks the media invariant, and control nodes spread over regions elect a new leader when a
//! partition cuts the old one from the majority — while a broken quorum rule is caught as a
//! split brain. Failures print the seed.

use bridgemesh_sim::simulator::consensus::ControlCluster;
use bridgemesh_sim::simulator::network::Network;
use bridgemesh_sim::simulator::{self, Report, Scenario, World, real_placement};

/// Frankfurt (control's region), Ashburn and Singapore; ten minutes of arrivals, then faults
/// appended by each test.
const BASE: &str = r#"
name = "network"
duration_s = 600
seed = 9
[control]
region = "eu"
[[regions]]
id = "eu"
latitude = 50.11
longitude = 8.68
weight = 2
bridges = 3
capacity = 300
[[regions]]
id = "us"
latitude = 39.04
longitude = -77.49
bridges = 2
capacity = 300
[[regions]]
id = "ap"
latitude = 1.35
longitude = 103.82
bridges = 2
capacity = 300
[participants]
arrivals_per_s = 2.0
stay_s_mean = 300
room_size_min = 2
room_size_max = 6
"#;

fn run(extra: &str) -> Report {
    let scenario = Scenario::from_toml(&format!("{BASE}{extra}")).unwrap_or_else(|e| panic!("{e}"));
    simulator::run(scenario, 9, |_, _| {})
}

const CUT_INTO_AP: &str = r#"
[[faults]]
at_s = 240
kind = "partition_region"
region = "ap"
direction = "inbound"
duration_s = 60
"#;

#[test]
fn a_cut_into_a_region_loses_controls_answers_and_its_bridges_sessions() {
    let report = run(CUT_INTO_AP);
    assert_eq!(report.violation_count, 0, "{}", report.summary());
    // Singapore's joins reach control, which places them, but no answer comes back: they are
    // given up as such, and the seats they took are never acknowledged, so losing them is fine.
    assert!(
        report.join_failures.contains_key("control's answer lost"),
        "{}",
        report.summary()
    );
    assert!(
        !report.join_failures.contains_key("control unreachable"),
        "{}",
        report.summary()
    );
    // The bridges stop hearing control and close their sessions; control sees the closes and
    // declares them down.
    assert_eq!(report.bridges_declared_down, 2, "{}", report.summary());
    assert_eq!(report.faults[0].bridge, "region ap (inbound)");
    assert!(report.media.samples_with_gaps > 0, "{}", report.summary());
}

#[test]
fn a_cut_out_of_a_region_silences_it() {
    let report = run(&CUT_INTO_AP.replace("inbound", "outbound"));
    assert_eq!(report.violation_count, 0, "{}", report.summary());
    // Nothing from Singapore reaches control: its joins never arrive.
    assert!(
        report.join_failures.contains_key("control unreachable"),
        "{}",
        report.summary()
    );
    assert!(
        !report.join_failures.contains_key("control's answer lost"),
        "{}",
        report.summary()
    );
    assert_eq!(report.bridges_declared_down, 2, "{}", report.summary());
    let cut = &report.faults[0];
    assert!(cut.affected > 0 && cut.recovered > 0, "{}", report.summary());
}

#[test]
fn a_degraded_link_congests_the_cascade_while_it_lasts() {
    let degraded = run(r#"
[[faults]]
at_s = 200
kind = "degrade_link"
from = "eu"
to = "ap"
duration_s = 120
extra_latency_ms = 150
loss_percent = 5.0
bandwidth_kbps = 2000
"#);
    // Congestion during the fault is reported, not a violation: the invariant holds from the
    // fault's end (plus its bound), and by then the link carries everything again.
    assert_eq!(degraded.violation_count, 0, "{}", degraded.summary());
    assert!(
        degraded.media.congested_link_samples > 0,
        "{}",
        degraded.summary()
    );
    assert!(degraded.media.samples_with_gaps > 0, "{}", degraded.summary());
    assert_eq!(degraded.faults[0].bridge, "link eu–ap");
    let clean = run("");
    assert_eq!(clean.media.congested_link_samples, 0, "{}", clean.summary());
    assert_eq!(clean.media.samples_with_gaps, 0, "{}", clean.summary());
}

#[test]
fn a_link_too_thin_for_its_calls_breaks_media_delivery_and_the_seed_is_printed() {
    let report = run(r#"
[[latency]]
from = "eu"
to = "ap"
bandwidth_kbps = 2000
"#);
    let media: Vec<_> = report
        .violations
        .iter()
        .filter(|v| v.invariant == "media_delivery")
        .collect();
    assert!(!media.is_empty(), "{}", report.summary());
    assert!(media[0].message.contains("does not receive"), "{media:?}");
    assert!(report.summary().contains("(seed 9)"), "{}", report.summary());
}

/// Control nodes in all three regions, the leader in Frankfurt; Frankfurt is cut off for a
/// minute.
const LEADER_REGION_CUT: &str = r#"
[[faults]]
at_s = 240
kind = "partition_region"
region = "eu"
duration_s = 60
"#;

fn spread_control(extra: &str) -> Scenario {
    let text = format!("{BASE}{extra}").replace(
        "[control]\nregion = \"eu\"",
        "[control]\nregion = \"eu\"\nnodes = [\"eu\", \"us\", \"ap\"]",
    );
    Scenario::from_toml(&text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_leader_cut_from_the_majority_is_replaced_and_nothing_commits_on_its_side() {
    let report = simulator::run(spread_control(LEADER_REGION_CUT), 9, |_, _| {});
    assert_eq!(report.violation_count, 0, "{}", report.summary());
    // Ashburn and Singapore elect Ashburn (the first node a majority can elect), one election
    // timeout after the cut; nothing else changes leader.
    assert_eq!(report.elections.len(), 1, "{}", report.summary());
    assert_eq!(report.elections[0].region, "us");
    assert_eq!(report.elections[0].at_ms, 240_000 + 700);
    // Frankfurt's clients reach no leader meanwhile.
    assert!(
        report.join_failures.contains_key("control unreachable"),
        "{}",
        report.summary()
    );
}

/// A node counts only its own vote: the rule a split brain needs.
fn own_vote(cluster: &ControlCluster, node: usize, _: &Network) -> bool {
    cluster.up[node]
}

#[test]
fn a_quorum_of_one_commits_on_the_cut_side_and_breaks_no_split_brain() {
    let report = World::new(spread_control(LEADER_REGION_CUT), 9, real_placement)
        .with_quorum(own_vote)
        .run(|_, _| {});
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.invariant == "no_split_brain" && v.message.contains("reaching 1 of 3")),
        "{}",
        report.summary()
    );
    assert!(report.summary().contains("(seed 9)"), "{}", report.summary());
}
