//! How fast a subscriber's bandwidth estimate follows a rate cap, and how fast it climbs back
//! when the cap is lifted: the bridge's estimator (`bridgemesh_bridge::bwe`) against a simulated
//! bottleneck in virtual time (a fixed-rate link with a 30 kB drop-tail queue, 25 ms each way,
//! transport-cc feedback every 100 ms). Deterministic: the numbers do not depend on the machine.
//!
//! `cargo run -p bridgemesh-bridge --example bwe_bottleneck`

use bridgemesh_bridge::bwe::bottleneck::{Bottleneck, ladder};
use std::time::Duration;

const SECOND: Duration = Duration::from_secs(1);

fn main() {
    let (high, cap) = (2_500_000.0, 400_000.0);
    // One camera's three layers, allocated from the estimate (`ladder`: the highest that fits
    // with 10 % to spare).
    let choose = |e| {
        let (media, wanted, _) = ladder(e);
        (media, wanted)
    };
    let mut samples: Vec<(Duration, u64)> = Vec::new();
    let mut link = Bottleneck::new();
    link.run(30 * SECOND, high, choose, |at, e| samples.push((at, e)));
    link.run(60 * SECOND, cap, choose, |at, e| samples.push((at, e)));
    link.run(90 * SECOND, high, choose, |at, e| samples.push((at, e)));
    let first = |from: Duration, ok: &dyn Fn(u64) -> bool| {
        samples
            .iter()
            .find(|(at, e)| *at >= from && ok(*e))
            .map(|(at, _)| (*at - from).as_secs_f64())
    };
    let mean = |from: Duration, to: Duration| {
        let window: Vec<u64> = samples
            .iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .map(|s| s.1)
            .collect();
        window.iter().sum::<u64>() as f64 / window.len().max(1) as f64
    };
    println!("link 2.5 Mbit/s, capped to 400 kbit/s at 30 s, lifted at 60 s");
    for (at, estimate) in samples.iter().filter(|(at, _)| at.subsec_millis() == 0) {
        println!(
            "  t={:>3}s estimate {:>5} kbit/s, layer {}",
            at.as_secs(),
            estimate / 1000,
            ladder(*estimate).2
        );
    }
    println!(
        "settled before the cap (20-30 s): {:.0} kbit/s",
        mean(20 * SECOND, 30 * SECOND) / 1000.0
    );
    println!(
        "cap -> estimate <= 440 kbit/s: {:?} s",
        first(30 * SECOND, &|e| e as f64 <= cap * 1.1)
    );
    println!(
        "settled under the cap (45-60 s): {:.0} kbit/s",
        mean(45 * SECOND, 60 * SECOND) / 1000.0
    );
    println!(
        "cap -> the 180p layer: {:?} s",
        first(30 * SECOND, &|e| ladder(e).2 == 0)
    );
    println!(
        "lift -> the 720p layer again: {:?} s",
        first(60 * SECOND, &|e| ladder(e).2 == 2)
    );
    println!(
        "settled after the lift (80-90 s): {:.0} kbit/s",
        mean(80 * SECOND, 90 * SECOND) / 1000.0
    );
    println!("packets dropped by the queue: {}", link.lost);
}
