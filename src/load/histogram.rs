//! A fixed-size log-linear histogram: quantiles over any number of samples in constant memory,
//! so that a run's report does not grow with its participants, streams or packets.

use serde::{Deserialize, Serialize};

/// Values below this are counted exactly.
const EXACT_BELOW: u64 = 64;
/// Buckets per power of two above [`EXACT_BELOW`]: a quantile is within 1/32 (3.2%) of the
/// true sample's value.
const SUB_BUCKETS: u64 = 32;
const SUB_BUCKET_BITS: u32 = SUB_BUCKETS.trailing_zeros();
/// `EXACT_BELOW` is 2^6; powers 6..=63 each get `SUB_BUCKETS` buckets.
const BUCKETS: usize = (EXACT_BELOW + (64 - 6) * SUB_BUCKETS) as usize;

#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            count: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

/// The bucket of `value`.
fn index(value: u64) -> usize {
    if value < EXACT_BELOW {
        return value as usize;
    }
    let power = 63 - value.leading_zeros();
    let shift = power - SUB_BUCKET_BITS;
    let sub = (value >> shift) & (SUB_BUCKETS - 1);
    (EXACT_BELOW + u64::from(power - 6) * SUB_BUCKETS + sub) as usize
}

/// The smallest and largest value of bucket `index`.
fn bounds(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < EXACT_BELOW {
        return (index, index);
    }
    let power = (index - EXACT_BELOW) / SUB_BUCKETS + 6;
    let sub = (index - EXACT_BELOW) % SUB_BUCKETS;
    let shift = power as u32 - SUB_BUCKET_BITS;
    let low = (SUB_BUCKETS + sub) << shift;
    (low, low + ((1u64 << shift) - 1))
}

impl Histogram {
    pub fn record(&mut self, value: u64) {
        self.counts[index(value)] += 1;
        self.count += 1;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The nearest-rank `q`-quantile (0.0..=1.0): the middle of the bucket holding the sample
    /// of rank ⌈q·n⌉, kept within the exact minimum and maximum. `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (index, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (low, high) = bounds(index);
                return Some((low + (high - low) / 2).clamp(self.min, self.max));
            }
        }
        unreachable!("the counts add up to `count`")
    }

    /// p50, p95, p99 and the extremes, divided by `divisor` (1000 turns µs into ms).
    pub fn summary(&self, divisor: f64) -> Quantiles {
        let scaled = |v: Option<u64>| v.map(|v| v as f64 / divisor);
        Quantiles {
            count: self.count,
            p50: scaled(self.quantile(0.50)),
            p95: scaled(self.quantile(0.95)),
            p99: scaled(self.quantile(0.99)),
            min: scaled((self.count > 0).then_some(self.min)),
            max: scaled((self.count > 0).then_some(self.max)),
        }
    }
}

/// Quantiles of a [`Histogram`]; `None` when there were no samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    pub count: u64,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_that_contains_it() {
        let mut values: Vec<u64> = (0..5000).collect();
        values.extend((0..64).map(|p| 1u64 << p));
        values.extend((1..64).map(|p| (1u64 << p) - 1));
        values.extend([u64::MAX, 1_000_003, 123_456_789]);
        for v in values {
            let i = index(v);
            assert!(i < BUCKETS, "{v} → {i}");
            let (low, high) = bounds(i);
            assert!(low <= v && v <= high, "{v} in bucket {i} = {low}..={high}");
            assert!(
                high - low <= low / SUB_BUCKETS,
                "{v}: bucket {low}..={high} too wide"
            );
        }
    }

    #[test]
    fn quantiles_are_nearest_rank_within_the_bucket_precision() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.summary(1.0), Quantiles::default());
        for v in 1..=1000u64 {
            h.record(v * 100);
        }
        assert_eq!(h.count(), 1000);
        for (q, exact) in [
            (0.5, 50_000.0),
            (0.95, 95_000.0),
            (0.99, 99_000.0),
            (1.0, 100_000.0),
        ] {
            let got = h.quantile(q).unwrap() as f64;
            assert!((got - exact).abs() <= exact / 32.0, "q{q}: {got} vs {exact}");
        }
        assert_eq!(h.quantile(0.0), Some(100), "the smallest sample");
        let s = h.summary(1000.0);
        assert_eq!((s.min, s.max), (Some(0.1), Some(100.0)));
    }

    #[test]
    fn one_sample_is_every_quantile_exactly() {
        let mut h = Histogram::default();
        h.record(12_345);
        for q in [0.0, 0.5, 0.99, 1.0] {
            assert_eq!(h.quantile(q), Some(12_345));
        }
    }
}
