//! What a run found: a JSON document and a summary table, both from [`Report`]. Nothing in it
//! depends on the wall clock, so one seed gives one report, byte for byte.

use super::invariants::Violation;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Violations listed in the report (all are counted).
pub const VIOLATIONS_LISTED_MAX: usize = 100;
/// Bridges whose load over time the report keeps and plots: the busiest by peak.
pub const TIMELINE_BRIDGES_MAX: usize = 8;
/// Cascade links listed (the busiest by peak); all are counted.
pub const LINKS_LISTED_MAX: usize = 10;

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
    /// Times control declared a bridge down.
    pub bridges_declared_down: u64,
    /// Directed bridge pairs that carried a room at some point, and the busiest of them.
    pub cascade_links: u64,
    pub busiest_links: Vec<LinkReport>,
    pub media: MediaReport,
    /// Control leaders elected after the start, in order.
    pub elections: Vec<ElectionReport>,
    pub join_failures: BTreeMap<String, u64>,
    pub faults: Vec<FaultReport>,
    pub bridges: Vec<BridgeReport>,
    pub regions: Vec<RegionReport>,
    pub violation_count: u64,
    pub violations: Vec<Violation>,
    pub timeline: Timeline,
}

/// What the plots show, sampled every 10 simulated seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    pub t_s: Vec<u64>,
    /// Participants on a bridge, per region.
    pub regions: BTreeMap<String, Vec<u32>>,
    /// Participants on each of the busiest bridges.
    pub busiest_bridges: BTreeMap<String, Vec<u32>>,
    /// Every recovery of every fault, in ms.
    pub recovery_ms: Vec<u64>,
    /// Cascade bandwidth over every link together, kbit/s.
    pub cascade_kbps: Vec<u64>,
    /// Subscriber–publisher pairs without media.
    pub media_pairs_missing: Vec<u64>,
}

/// A new control leader.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ElectionReport {
    pub at_ms: u64,
    pub term: u64,
    /// The leader's region.
    pub region: String,
}

/// Who missed whom, from the samples every 10 s: a subscriber misses a publisher on another
/// bridge when the two bridges do not both know they share the room, their regions cannot hold
/// a connection, or the link between the regions is over its bandwidth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MediaReport {
    pub samples: u64,
    pub samples_with_gaps: u64,
    pub pairs_missing_peak: u64,
    pub pairs_missing_peak_at_s: u64,
    /// Samples × region pairs whose cascade was over the link's bandwidth.
    pub congested_link_samples: u64,
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
    /// Left the meeting before they were back.
    pub left: u64,
    pub recovery_ms: Quantiles,
}

/// Cascade bandwidth from one bridge to another, at its peak (sampled every 10 s).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkReport {
    pub from: String,
    pub to: String,
    pub peak_kbps: u64,
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
            "participants {} in {} rooms; joins ok {}, failed {}; bridges declared down {}",
            self.participants_arrived,
            self.rooms,
            self.joins_ok,
            self.joins_failed,
            self.bridges_declared_down
        );
        for (reason, count) in &self.join_failures {
            let _ = writeln!(out, "  join failed ×{count}: {reason}");
        }
        if !self.faults.is_empty() {
            let _ = writeln!(
                out,
                "{:<7} {:<20} {:<12} {:>8} {:>9} {:>7} {:>4} {:>9} {:>9} {:>9} {:>9}",
                "at",
                "fault",
                "bridge",
                "affected",
                "recovered",
                "gave up",
                "left",
                "p50",
                "p95",
                "p99",
                "max"
            );
            for f in &self.faults {
                let _ = writeln!(
                    out,
                    "{:<7} {:<20} {:<12} {:>8} {:>9} {:>7} {:>4} {:>9} {:>9} {:>9} {:>9}",
                    format!("{} s", f.at_s),
                    f.kind,
                    f.bridge,
                    f.affected,
                    f.recovered,
                    f.gave_up,
                    f.left,
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
        if !self.elections.is_empty() {
            let elected: Vec<String> = self
                .elections
                .iter()
                .map(|e| {
                    format!(
                        "{:.1} s in {} (term {})",
                        e.at_ms as f64 / 1000.0,
                        e.region,
                        e.term
                    )
                })
                .collect();
            let _ = writeln!(out, "control leaders elected: {}", elected.join(", "));
        }
        let m = &self.media;
        let _ = writeln!(
            out,
            "media: {} of {} samples with a subscriber missing a publisher (at most {} pairs, at {} s); region links over bandwidth in {} samples",
            m.samples_with_gaps,
            m.samples,
            m.pairs_missing_peak,
            m.pairs_missing_peak_at_s,
            m.congested_link_samples
        );
        let _ = writeln!(
            out,
            "cascade: {} bridge pairs carried a room; busiest links at their peak:",
            self.cascade_links
        );
        for link in self.busiest_links.iter().take(5) {
            let _ = writeln!(
                out,
                "  {:<12} → {:<12} {:>8.1} Mbit/s",
                link.from,
                link.to,
                link.peak_kbps as f64 / 1000.0
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

const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
    "#17becf",
];
const PLOT_WIDTH: f64 = 720.0;
const PLOT_HEIGHT: f64 = 240.0;
const MARGIN: f64 = 40.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A line chart of named series over `t_s`, as an SVG element.
fn line_chart(title: &str, t_s: &[u64], series: &BTreeMap<String, Vec<u32>>) -> String {
    let t_max = t_s.last().copied().unwrap_or(1).max(1) as f64;
    let y_max = series.values().flatten().copied().max().unwrap_or(1).max(1) as f64;
    let x = |t: u64| MARGIN + t as f64 / t_max * (PLOT_WIDTH - 2.0 * MARGIN);
    let y = |v: u32| PLOT_HEIGHT - MARGIN + -(f64::from(v) / y_max) * (PLOT_HEIGHT - 2.0 * MARGIN);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{PLOT_WIDTH}" height="{}" font-family="sans-serif" font-size="11">"#,
        PLOT_HEIGHT + 16.0 * series.len().div_ceil(4) as f64
    );
    let _ = write!(
        svg,
        r##"<text x="{MARGIN}" y="16" font-size="13">{}</text><line x1="{MARGIN}" y1="{b}" x2="{r}" y2="{b}" stroke="#999"/><line x1="{MARGIN}" y1="{t}" x2="{MARGIN}" y2="{b}" stroke="#999"/><text x="{MARGIN}" y="{lb}">0 s</text><text x="{r}" y="{lb}" text-anchor="end">{t_max} s</text><text x="4" y="{t}">{y_max}</text>"##,
        escape(title),
        b = PLOT_HEIGHT - MARGIN,
        r = PLOT_WIDTH - MARGIN,
        t = MARGIN,
        lb = PLOT_HEIGHT - MARGIN + 14.0,
    );
    for (i, (name, values)) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let points: Vec<String> = t_s
            .iter()
            .zip(values)
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
            points.join(" ")
        );
        let (lx, ly) = (
            MARGIN + (i % 4) as f64 * 170.0,
            PLOT_HEIGHT + (i / 4) as f64 * 16.0,
        );
        let _ = write!(
            svg,
            r#"<rect x="{lx}" y="{}" width="10" height="10" fill="{color}"/><text x="{}" y="{ly}">{}</text>"#,
            ly - 9.0,
            lx + 14.0,
            escape(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A histogram of recovery times, as an SVG element.
fn histogram(title: &str, samples_ms: &[u64]) -> String {
    const BINS: usize = 20;
    let max = samples_ms.iter().copied().max().unwrap_or(0).max(1);
    let width = max.div_ceil(BINS as u64).max(1);
    let mut counts = [0u64; BINS];
    for sample in samples_ms {
        counts[((sample / width) as usize).min(BINS - 1)] += 1;
    }
    let peak = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let bar_width = (PLOT_WIDTH - 2.0 * MARGIN) / BINS as f64;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{PLOT_WIDTH}" height="{PLOT_HEIGHT}" font-family="sans-serif" font-size="11"><text x="{MARGIN}" y="16" font-size="13">{}</text>"#,
        escape(title)
    );
    for (i, count) in counts.iter().enumerate() {
        let h = *count as f64 / peak * (PLOT_HEIGHT - 2.0 * MARGIN);
        let _ = write!(
            svg,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#1f77b4"><title>{}–{} ms: {count}</title></rect>"##,
            MARGIN + i as f64 * bar_width,
            PLOT_HEIGHT - MARGIN - h,
            bar_width - 1.0,
            i as u64 * width,
            (i as u64 + 1) * width
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{MARGIN}" y="{lb}">0 ms</text><text x="{r}" y="{lb}" text-anchor="end">{} ms</text><text x="4" y="{MARGIN}">{peak}</text></svg>"#,
        width * BINS as u64,
        lb = PLOT_HEIGHT - MARGIN + 14.0,
        r = PLOT_WIDTH - MARGIN,
    );
    svg
}

impl Report {
    /// A self-contained HTML page: the summary and three plots (participants per region over
    /// time, the busiest bridges' load over time, the recovery-time distribution).
    pub fn to_html(&self) -> String {
        let mut html = format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head><body style=\"font-family:sans-serif\">\n<h1>{}</h1>\n<pre>{}</pre>\n",
            escape(&self.scenario),
            escape(&self.scenario),
            escape(&self.summary())
        );
        let t = &self.timeline;
        html.push_str(&line_chart(
            "Participants on a bridge, per region",
            &t.t_s,
            &t.regions,
        ));
        html.push('\n');
        html.push_str(&line_chart(
            "Load of the busiest bridges (participants)",
            &t.t_s,
            &t.busiest_bridges,
        ));
        html.push('\n');
        let cascade = BTreeMap::from([(
            "all links".to_owned(),
            t.cascade_kbps.iter().map(|kbps| (*kbps / 1000) as u32).collect(),
        )]);
        html.push_str(&line_chart(
            "Cascade bandwidth between bridges (Mbit/s)",
            &t.t_s,
            &cascade,
        ));
        html.push('\n');
        html.push_str(&histogram(
            "Time to recover after a fault (every affected participant)",
            &t.recovery_ms,
        ));
        html.push_str("\n</body></html>\n");
        html
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
