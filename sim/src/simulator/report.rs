//! What a run found: a JSON document and a summary table, both from [`Report`]. Nothing in it
//! depends on the wall clock, so one seed gives one report, byte for byte.

use super::invariants::Violation;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Violations listed in the report (all are counted).
pub const VIOLATIONS_LISTED_MAX: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub scenario: String,
    pub seed: u64,
    pub simulated_s: u64,
    pub events: u64,
    pub participants_arrived: u64,
    pub rooms: u64,
    pub joins_ok: u64,
    pub joins_failed: u64,
    pub join_failures: BTreeMap<String, u64>,
    pub faults: Vec<FaultReport>,
    pub bridges: Vec<BridgeReport>,
    pub regions: Vec<RegionReport>,
    pub violation_count: u64,
    pub violations: Vec<Violation>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultReport {
    pub at_s: u64,
    pub kind: String,
    pub bridge: String,
    /// Participants the fault took off their bridge.
    pub affected: u64,
    /// Of them, back on a bridge; `recovery_ms` is from the fault (or the drain's grace end) to
    /// their new session.
    pub recovered: u64,
    pub gave_up: u64,
    pub recovery_ms: Quantiles,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BridgeReport {
    pub id: String,
    pub region: String,
    pub capacity: u32,
    pub peak_participants: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionReport {
    pub id: String,
    pub peak_participants: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quantiles {
    pub p50: Option<u64>,
    pub p95: Option<u64>,
    pub p99: Option<u64>,
    pub max: Option<u64>,
}

impl Quantiles {
    pub fn of(samples: &[u64]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let at =
            |q: f64| (!sorted.is_empty()).then(|| sorted[((sorted.len() - 1) as f64 * q).round() as usize]);
        Quantiles {
            p50: at(0.5),
            p95: at(0.95),
            p99: at(0.99),
            max: sorted.last().copied(),
        }
    }
}

fn ms(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v} ms"))
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes")
    }

    /// The summary table printed after a run.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "scenario {:?}, seed {}: {} s simulated, {} events",
            self.scenario, self.seed, self.simulated_s, self.events
        );
        let _ = writeln!(
            out,
            "participants {} in {} rooms; joins ok {}, failed {}",
            self.participants_arrived, self.rooms, self.joins_ok, self.joins_failed
        );
        for (reason, count) in &self.join_failures {
            let _ = writeln!(out, "  join failed ×{count}: {reason}");
        }
        if !self.faults.is_empty() {
            let _ = writeln!(
                out,
                "{:<7} {:<15} {:<12} {:>8} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9}",
                "at", "fault", "bridge", "affected", "recovered", "gave up", "p50", "p95", "p99", "max"
            );
            for f in &self.faults {
                let _ = writeln!(
                    out,
                    "{:<7} {:<15} {:<12} {:>8} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9}",
                    format!("{} s", f.at_s),
                    f.kind,
                    f.bridge,
                    f.affected,
                    f.recovered,
                    f.gave_up,
                    ms(f.recovery_ms.p50),
                    ms(f.recovery_ms.p95),
                    ms(f.recovery_ms.p99),
                    ms(f.recovery_ms.max)
                );
            }
        }
        let busiest: Vec<_> = {
            let mut bridges: Vec<&BridgeReport> = self.bridges.iter().collect();
            bridges.sort_by(|a, b| {
                b.peak_participants
                    .cmp(&a.peak_participants)
                    .then(a.id.cmp(&b.id))
            });
            bridges.into_iter().take(10).collect()
        };
        let _ = writeln!(out, "peak load, busiest bridges:");
        for b in busiest {
            let _ = writeln!(
                out,
                "  {:<12} {:<8} {:>6} / {:<6}",
                b.id, b.region, b.peak_participants, b.capacity
            );
        }
        let regions: Vec<String> = self
            .regions
            .iter()
            .map(|r| format!("{} {}", r.id, r.peak_participants))
            .collect();
        let _ = writeln!(out, "peak participants per region: {}", regions.join(", "));
        if self.violation_count == 0 {
            let _ = writeln!(out, "invariants: all held");
        } else {
            let _ = writeln!(
                out,
                "invariants: {} violations (seed {})",
                self.violation_count, self.seed
            );
            for v in &self.violations {
                let _ = writeln!(out, "  {} ms {}: {}", v.at_ms, v.invariant, v.message);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_nothing_are_none_and_of_samples_are_taken_from_them() {
        assert_eq!(Quantiles::of(&[]).p50, None);
        let q = Quantiles::of(&[5, 1, 3, 2, 4]);
        assert_eq!((q.p50, q.max), (Some(3), Some(5)));
    }
}
