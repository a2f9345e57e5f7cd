//! The network between regions: one-way latency, jitter, loss and bandwidth per region pair,
//! and the faults on it (partitions, full or one-way, and degraded links). Messages are not
//! packets here: a control-plane message (TCP) that meets a loss arrives a retransmission later;
//! media is streams and bitrates, checked against a link's bandwidth by the cascade model.

use super::rng::SimRng;
use super::scenario::{CutDirection, Scenario};
use bridgemesh_proto::bridge_session::GeoPoint;

/// TCP's smallest retransmission timeout (Linux), and the most retransmissions one message
/// waits for before the model lets it through (a connection losing more is a partition).
const RTO_MIN_MS: u64 = 200;
const RETRANSMISSIONS_MAX: u32 = 6;

/// A region cut off by a `partition_region` fault.
#[derive(Debug, Clone, Copy)]
pub struct Cut {
    pub fault: usize,
    pub region: usize,
    pub direction: CutDirection,
    pub since_ms: u64,
}

impl Cut {
    fn blocks(&self, from: usize, to: usize) -> bool {
        from != to
            && match self.direction {
                CutDirection::Both => from == self.region || to == self.region,
                CutDirection::Outbound => from == self.region,
                CutDirection::Inbound => to == self.region,
            }
    }
}

/// A link made worse by a `degrade_link` fault, both ways.
#[derive(Debug, Clone, Copy)]
struct Degradation {
    fault: usize,
    a: usize,
    b: usize,
    extra_latency_ms: u64,
    loss: f64,
    bandwidth_kbps: Option<u64>,
}

impl Degradation {
    fn joins(&self, from: usize, to: usize) -> bool {
        (from, to) == (self.a, self.b) || (from, to) == (self.b, self.a)
    }
}

pub struct Network {
    latency_ms: Vec<Vec<u64>>,
    loss: Vec<Vec<f64>>,
    bandwidth_kbps: Vec<Vec<Option<u64>>>,
    jitter_ms: u64,
    cuts: Vec<Cut>,
    degradations: Vec<Degradation>,
}

impl Network {
    pub fn new(scenario: &Scenario) -> Self {
        let point = |r: &super::scenario::Region| GeoPoint {
            latitude: r.latitude,
            longitude: r.longitude,
        };
        let n = scenario.regions.len();
        let mut latency_ms: Vec<Vec<u64>> = scenario
            .regions
            .iter()
            .map(|ra| {
                scenario
                    .regions
                    .iter()
                    .map(|rb| {
                        if ra.id == rb.id {
                            1
                        } else {
                            2 + (bridgemesh_control::geo::distance_km(point(ra), point(rb)) / 100.0) as u64
                        }
                    })
                    .collect()
            })
            .collect();
        let mut loss = vec![vec![0.0; n]; n];
        let mut bandwidth_kbps = vec![vec![None; n]; n];
        for link in &scenario.latency {
            let (a, b) = (scenario.region_index(&link.from), scenario.region_index(&link.to));
            for (x, y) in [(a, b), (b, a)] {
                if let Some(ms) = link.ms {
                    latency_ms[x][y] = ms;
                }
                loss[x][y] = link.loss_percent / 100.0;
                bandwidth_kbps[x][y] = link.bandwidth_kbps;
            }
        }
        Network {
            latency_ms,
            loss,
            bandwidth_kbps,
            jitter_ms: scenario.jitter_ms,
            cuts: Vec::new(),
            degradations: Vec::new(),
        }
    }

    /// Whether what `from` sends reaches `to` now.
    pub fn reaches(&self, from: usize, to: usize) -> bool {
        self.cut_between(from, to).is_none()
    }

    /// Whether both ways are open: what a connection needs (TCP, ICE and DTLS, QUIC).
    pub fn both_ways(&self, a: usize, b: usize) -> bool {
        self.reaches(a, b) && self.reaches(b, a)
    }

    /// The cut that stops what `from` sends to `to`, if one does.
    pub fn cut_between(&self, from: usize, to: usize) -> Option<&Cut> {
        self.cuts.iter().find(|cut| cut.blocks(from, to))
    }

    /// One message's way from `from` to `to`: latency, jitter, and a retransmission for each
    /// loss it meets.
    pub fn message_ms(&self, rng: &mut SimRng, from: usize, to: usize) -> u64 {
        let mut extra_ms = 0;
        let mut loss = self.loss[from][to];
        for d in self.degradations.iter().filter(|d| d.joins(from, to)) {
            extra_ms += d.extra_latency_ms;
            loss = 1.0 - (1.0 - loss) * (1.0 - d.loss);
        }
        let one_way_ms = self.latency_ms[from][to] + extra_ms;
        let mut ms = one_way_ms + rng.between(0, self.jitter_ms);
        if loss > 0.0 {
            let mut rto_ms = RTO_MIN_MS.max(3 * 2 * one_way_ms);
            for _ in 0..RETRANSMISSIONS_MAX {
                if rng.unit() >= loss {
                    break;
                }
                ms += rto_ms;
                rto_ms *= 2;
            }
        }
        ms
    }

    /// What the cascade between two regions may carry each way now, if it is capped.
    pub fn bandwidth_kbps(&self, a: usize, b: usize) -> Option<u64> {
        self.degradations
            .iter()
            .filter(|d| d.joins(a, b))
            .filter_map(|d| d.bandwidth_kbps)
            .chain(self.bandwidth_kbps[a][b])
            .min()
    }

    pub fn cut(&mut self, cut: Cut) {
        self.cuts.push(cut);
    }

    /// Ends the cut of `fault`; returns it.
    pub fn heal(&mut self, fault: usize) -> Option<Cut> {
        let at = self.cuts.iter().position(|c| c.fault == fault)?;
        Some(self.cuts.remove(at))
    }

    pub fn degrade(
        &mut self,
        fault: usize,
        (a, b): (usize, usize),
        extra_latency_ms: u64,
        loss_percent: f64,
        bandwidth_kbps: Option<u64>,
    ) {
        self.degradations.push(Degradation {
            fault,
            a,
            b,
            extra_latency_ms,
            loss: loss_percent / 100.0,
            bandwidth_kbps,
        });
    }

    pub fn restore(&mut self, fault: usize) {
        self.degradations.retain(|d| d.fault != fault);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three_regions() -> Network {
        let scenario = Scenario::from_toml(
            r#"
name = "t"
duration_s = 10
jitter_ms = 0
[[regions]]
id = "eu"
latitude = 50.0
longitude = 8.0
bridges = 1
capacity = 10
[[regions]]
id = "us"
latitude = 39.0
longitude = -77.0
bridges = 1
capacity = 10
[[regions]]
id = "ap"
latitude = 1.0
longitude = 103.0
bridges = 1
capacity = 10
[[latency]]
from = "eu"
to = "us"
ms = 40
bandwidth_kbps = 1000
[participants]
arrivals_per_s = 1.0
stay_s_mean = 10
room_size_min = 2
room_size_max = 2
"#,
        )
        .expect("valid");
        Network::new(&scenario)
    }

    #[test]
    fn one_way_cuts_block_one_direction_only() {
        let mut net = three_regions();
        net.cut(Cut {
            fault: 0,
            region: 2,
            direction: CutDirection::Outbound,
            since_ms: 0,
        });
        assert!(!net.reaches(2, 0) && !net.reaches(2, 1));
        assert!(net.reaches(0, 2) && net.reaches(2, 2) && net.reaches(0, 1));
        assert!(!net.both_ways(0, 2));
        net.cut(Cut {
            fault: 1,
            region: 0,
            direction: CutDirection::Inbound,
            since_ms: 0,
        });
        assert!(!net.reaches(1, 0) && net.reaches(0, 1));
        assert_eq!(net.heal(0).map(|c| c.region), Some(2));
        assert!(
            net.reaches(2, 1) && !net.reaches(2, 0),
            "the inbound cut of eu stays"
        );
        net.heal(1);
        assert!(net.both_ways(0, 2));
    }

    #[test]
    fn degradation_adds_latency_and_caps_bandwidth_until_restored() {
        let mut net = three_regions();
        let mut rng = SimRng::new(1);
        assert_eq!(net.message_ms(&mut rng, 0, 1), 40);
        assert_eq!(net.bandwidth_kbps(1, 0), Some(1000));
        assert_eq!(net.bandwidth_kbps(0, 2), None);
        let eu_ap_ms = net.message_ms(&mut rng, 0, 2);
        net.degrade(3, (1, 0), 100, 0.0, Some(300));
        assert_eq!(net.message_ms(&mut rng, 0, 1), 140);
        assert_eq!(net.bandwidth_kbps(0, 1), Some(300));
        assert_eq!(
            net.message_ms(&mut rng, 0, 2),
            eu_ap_ms,
            "other links as they were"
        );
        assert_eq!(net.bandwidth_kbps(0, 2), None);
        net.restore(3);
        assert_eq!(net.message_ms(&mut rng, 1, 0), 40);
    }

    #[test]
    fn a_lossy_link_delays_some_messages_by_retransmissions() {
        let mut net = three_regions();
        net.degrade(0, (0, 1), 0, 50.0, None);
        let mut rng = SimRng::new(7);
        let delays: Vec<u64> = (0..200).map(|_| net.message_ms(&mut rng, 0, 1)).collect();
        let on_time = delays.iter().filter(|&&ms| ms == 40).count();
        assert!((60..140).contains(&on_time), "about half on time: {on_time}");
        // The first retransmission waits the larger of 200 ms and three round trips.
        assert!(delays.contains(&(40 + 240)));
        assert!(delays.iter().all(|&ms| ms == 40 || ms >= 280));
    }
}
