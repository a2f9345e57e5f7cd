//! The estimator against the simulated bottleneck ([`super::bottleneck`]).

use super::bottleneck::Bottleneck;
use std::time::Duration;

const SECOND: Duration = Duration::from_secs(1);

/// The estimates seen between `from` and `to` (from the start).
fn estimates(samples: &[(Duration, u64)], from: Duration, to: Duration) -> Vec<u64> {
    samples
        .iter()
        .filter(|(at, _)| *at >= from && *at < to)
        .map(|(_, e)| *e)
        .collect()
}

#[test]
fn the_estimate_converges_under_the_cap_backs_off_on_a_drop_and_climbs_back_when_lifted() {
    let mut link = Bottleneck::new();
    let mut samples = Vec::new();
    // A sender that would take 5 Mbit/s (many sources, all wanted high).
    let fill = |_| (5_000_000.0, 5_000_000.0);
    link.run(30 * SECOND, 2_000_000.0, fill, |at, e| samples.push((at, e)));
    let settled = estimates(&samples, 20 * SECOND, 30 * SECOND);
    let mean = settled.iter().sum::<u64>() as f64 / settled.len() as f64;
    assert!(
        (1_200_000.0..=2_100_000.0).contains(&mean),
        "settled at {mean} under a 2 Mbit/s cap"
    );
    // The cap drops to 400 kbit/s.
    link.run(60 * SECOND, 400_000.0, fill, |at, e| samples.push((at, e)));
    let followed = samples
        .iter()
        .find(|(at, e)| *at >= 30 * SECOND && *e <= 440_000)
        .map(|(at, _)| *at - 30 * SECOND)
        .expect("the estimate followed the cap down");
    assert!(followed < 3 * SECOND, "took {followed:?}");
    let capped = estimates(&samples, 45 * SECOND, 60 * SECOND);
    let mean = capped.iter().sum::<u64>() as f64 / capped.len() as f64;
    assert!(
        (240_000.0..=440_000.0).contains(&mean),
        "settled at {mean} under 400 kbit/s"
    );
    // Lifted again.
    link.run(90 * SECOND, 2_000_000.0, fill, |at, e| samples.push((at, e)));
    let recovered = samples
        .iter()
        .find(|(at, e)| *at >= 60 * SECOND && *e >= 1_200_000)
        .map(|(at, _)| *at - 60 * SECOND)
        .expect("the estimate climbed back");
    assert!(recovered < 15 * SECOND, "took {recovered:?}");
}

/// A subscriber whose layers are all low (300 kbit/s in all) sends too little for the estimate
/// to grow past 1.5 times that; probes find the 2 Mbit/s the path has, so an allocation that
/// wants 1.5 Mbit/s learns it fits.
#[test]
fn probes_find_headroom_the_media_alone_cannot_show() {
    let media = 300_000.0;
    let mut without = Bottleneck::new();
    without.run(20 * SECOND, 2_000_000.0, |_| (media, 0.0), |_, _| {});
    assert!(
        without.estimator.estimate_bps() <= 1_100_000,
        "{}",
        without.estimator.estimate_bps()
    );
    let mut probed = Bottleneck::new();
    let mut samples = Vec::new();
    probed.run(
        20 * SECOND,
        2_000_000.0,
        |_| (media, 1_500_000.0),
        |at, e| samples.push((at, e)),
    );
    let found = samples.iter().find(|(_, e)| *e >= 1_400_000).map(|(at, _)| *at);
    assert!(
        found.is_some_and(|at| at < 10 * SECOND),
        "probes found {found:?}, {samples:?}"
    );
    // And never past the path by much.
    assert!(samples.iter().all(|(_, e)| *e <= 2_600_000), "{samples:?}");
}

/// One camera's layers behind a link capped to 400 kbit/s and lifted again: the allocation over
/// the ladder settles on the 180p layer (never more than the cap lets through), and probing
/// brings the 720p layer back within seconds of the lift.
#[test]
fn a_layer_ladder_follows_a_cap_down_and_probes_back_up() {
    use super::bottleneck::ladder;
    let mut link = Bottleneck::new();
    let mut layers = Vec::new();
    let choose = |e| {
        let (media, wanted, _) = ladder(e);
        (media, wanted)
    };
    let mut watch = |at, e| layers.push((at, ladder(e).2));
    link.run(20 * SECOND, 2_500_000.0, choose, &mut watch);
    link.run(40 * SECOND, 400_000.0, choose, &mut watch);
    link.run(60 * SECOND, 2_500_000.0, choose, &mut watch);
    let at = |from: Duration, to: Duration| {
        layers
            .iter()
            .filter(move |(t, _)| *t >= from && *t < to)
            .map(|l| l.1)
    };
    assert!(
        at(10 * SECOND, 20 * SECOND).all(|l| l == 2),
        "720p before the cap: {layers:?}"
    );
    assert!(
        at(25 * SECOND, 40 * SECOND).all(|l| l == 0),
        "180p under the cap: {layers:?}"
    );
    let back = layers
        .iter()
        .find(|(t, l)| *t >= 40 * SECOND && *l == 2)
        .map(|(t, _)| *t - 40 * SECOND);
    assert!(
        back.is_some_and(|t| t < 8 * SECOND),
        "back to 720p after {back:?}"
    );
}
