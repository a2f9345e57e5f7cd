//! How busy the bridge is, as control's placement sees it: process CPU, packet rate and
//! participants, folded into one `stress` figure where 1.0 means "at the configured limit".
//!
//! [`LoadMeter`] is pure: it turns cumulative counters sampled at instants into rates. Reading
//! the counters is the thin layer below it: [`ProcessCpu`] for `/proc/self/stat`, and the
//! bridge's own stats for packets and participants (see [`LoadSample::from_bridge`]).

use crate::driver::Bridge;
use bridgemesh_proto::bridge_session::LoadReport;
use std::time::Instant;

/// CPU share at which the bridge counts as full: headroom for bursts and for the other
/// processes of the machine.
pub const CPU_CEILING_DEFAULT: f64 = 0.8;
/// Packets (received plus sent) per second at which the bridge counts as full. Well under the
/// forwarding target (≥ 300k forwarded packets/s/core) so a single-core bridge is not overrated.
pub const PACKETS_PER_S_CEILING_DEFAULT: f64 = 200_000.0;
/// `/proc` reports CPU time in clock ticks of `USER_HZ`, which the kernel fixes at 100 for user
/// space on every architecture we run on (x86, arm); reading it with `sysconf` would take `libc`
/// and `unsafe`, which the workspace forbids.
const USER_HZ: f64 = 100.0;

/// The limits `stress` is measured against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadCeilings {
    /// Share of the machine's CPU (0–1] at which the bridge is full.
    pub cpu: f64,
    pub packets_per_s: f64,
    /// Participants at which the bridge is full: its capacity.
    pub participants: u32,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadCeilingsError {
    #[error("the CPU ceiling must be more than 0 and at most 1, not {0}")]
    Cpu(f64),
    #[error("the packet-rate ceiling must be a positive number, not {0}")]
    PacketsPerS(f64),
    #[error("the participant capacity must be positive")]
    Participants,
}

impl LoadCeilings {
    /// The default CPU and packet ceilings with `capacity` participants.
    pub fn with_capacity(capacity: u32) -> Self {
        Self {
            cpu: CPU_CEILING_DEFAULT,
            packets_per_s: PACKETS_PER_S_CEILING_DEFAULT,
            participants: capacity,
        }
    }

    pub fn validate(&self) -> Result<(), LoadCeilingsError> {
        if !(self.cpu > 0.0 && self.cpu <= 1.0) {
            return Err(LoadCeilingsError::Cpu(self.cpu));
        }
        if !(self.packets_per_s.is_finite() && self.packets_per_s > 0.0) {
            return Err(LoadCeilingsError::PacketsPerS(self.packets_per_s));
        }
        if self.participants == 0 {
            return Err(LoadCeilingsError::Participants);
        }
        Ok(())
    }
}

/// The largest of CPU ÷ its ceiling, packet rate ÷ its ceiling and participants ÷ capacity.
pub fn stress(ceilings: &LoadCeilings, cpu: f64, packets_per_s: f64, participants: u32) -> f64 {
    let ratios = [
        cpu / ceilings.cpu,
        packets_per_s / ceilings.packets_per_s,
        f64::from(participants) / f64::from(ceilings.participants.max(1)),
    ];
    ratios.into_iter().filter(|r| r.is_finite()).fold(0.0, f64::max)
}

/// Cumulative counters read at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadSample {
    pub at: Instant,
    /// CPU time the process has used since it started, in seconds; `None` when unreadable.
    pub cpu_time_s: Option<f64>,
    /// Datagrams received plus sent since the bridge started.
    pub packets_total: u64,
    pub participants: u32,
}

impl LoadSample {
    /// The bridge's counters now. Shards publish their counters every 100 ms, so a rate over a
    /// second or more is accurate to a few percent.
    pub fn from_bridge(bridge: &Bridge, cpu_time_s: Option<f64>, at: Instant) -> Self {
        let stats = bridge.stats().shards;
        Self {
            at,
            cpu_time_s,
            packets_total: stats.datagrams_in.saturating_add(stats.datagrams_out),
            participants: u32::try_from(stats.participants).unwrap_or(u32::MAX),
        }
    }
}

/// Turns successive [`LoadSample`]s into [`LoadReport`]s: rates are over the time between the
/// last two samples.
#[derive(Debug, Clone)]
pub struct LoadMeter {
    ceilings: LoadCeilings,
    cores: f64,
    previous: Option<LoadSample>,
    last: LoadReport,
}

impl LoadMeter {
    /// `cores`: the CPUs this process may use (at least 1 is assumed).
    pub fn new(ceilings: LoadCeilings, cores: usize) -> Self {
        Self {
            ceilings,
            cores: cores.max(1) as f64,
            previous: None,
            last: LoadReport::default(),
        }
    }

    /// The latest report, without a new sample.
    pub fn last(&self) -> LoadReport {
        self.last
    }

    pub fn update(&mut self, sample: LoadSample) -> LoadReport {
        let (cpu, packets_per_s) = match self.previous {
            Some(previous) if sample.at > previous.at => {
                let elapsed_s = sample.at.duration_since(previous.at).as_secs_f64();
                let cpu = match (previous.cpu_time_s, sample.cpu_time_s) {
                    (Some(before), Some(after)) => {
                        ((after - before).max(0.0) / elapsed_s / self.cores).clamp(0.0, 1.0)
                    }
                    _ => 0.0,
                };
                let packets = sample.packets_total.saturating_sub(previous.packets_total);
                (cpu, packets as f64 / elapsed_s)
            }
            // No interval yet (first sample, or one at the same instant): keep the last rates.
            _ => (self.last.cpu, self.last.packets_per_s),
        };
        if self.previous.is_none_or(|previous| sample.at > previous.at) {
            self.previous = Some(sample);
        }
        self.last = LoadReport {
            participants: sample.participants,
            cpu,
            packets_per_s,
            stress: stress(&self.ceilings, cpu, packets_per_s, sample.participants),
        };
        self.last
    }
}

/// Why the process's CPU time could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CpuTimeError {
    #[error("cannot read /proc/self/stat: {0}")]
    Read(#[from] std::io::Error),
    #[error("/proc/self/stat has an unexpected format")]
    Format,
}

/// User plus system CPU seconds from the text of `/proc/<pid>/stat`.
pub fn parse_proc_stat_cpu_s(text: &str) -> Result<f64, CpuTimeError> {
    // The command name (field 2) is in parentheses and may itself hold spaces and parentheses;
    // the fields after the last ')' are plain numbers and letters.
    let (_, rest) = text.rsplit_once(')').ok_or(CpuTimeError::Format)?;
    let mut fields = rest.split_ascii_whitespace();
    // After the name: state (3), ppid, pgrp, session, tty_nr, tpgid, flags, minflt, cminflt,
    // majflt, cmajflt (13), utime (14), stime (15).
    let mut tick = |skip| -> Result<u64, CpuTimeError> {
        fields
            .nth(skip)
            .and_then(|f| f.parse().ok())
            .ok_or(CpuTimeError::Format)
    };
    let utime = tick(11)?;
    let stime = tick(0)?;
    Ok((utime + stime) as f64 / USER_HZ)
}

/// Reads the process's CPU time from `/proc/self/stat`. Where that fails (not Linux, a
/// restricted `/proc`) the CPU share is reported as 0, and said so once.
#[derive(Debug, Default)]
pub struct ProcessCpu {
    failure_reported: bool,
}

impl ProcessCpu {
    pub fn read_s(&mut self) -> Option<f64> {
        let result = std::fs::read_to_string("/proc/self/stat")
            .map_err(CpuTimeError::from)
            .and_then(|text| parse_proc_stat_cpu_s(&text));
        match result {
            Ok(seconds) => Some(seconds),
            Err(err) => {
                if !self.failure_reported {
                    self.failure_reported = true;
                    tracing::warn!(%err, "the bridge's CPU load is unknown and reported to control as 0");
                }
                None
            }
        }
    }
}

/// The CPUs this process may use: the affinity mask and cgroup quota, as the standard library
/// reads them.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ceilings() -> LoadCeilings {
        LoadCeilings {
            cpu: 0.8,
            packets_per_s: 200_000.0,
            participants: 1000,
        }
    }

    fn sample(at: Instant, cpu_time_s: Option<f64>, packets_total: u64, participants: u32) -> LoadSample {
        LoadSample {
            at,
            cpu_time_s,
            packets_total,
            participants,
        }
    }

    #[test]
    fn stress_is_the_largest_of_the_three_ratios() {
        let c = ceilings();
        assert_eq!(stress(&c, 0.4, 0.0, 0), 0.5);
        assert_eq!(stress(&c, 0.1, 150_000.0, 10), 0.75);
        assert_eq!(stress(&c, 0.1, 1_000.0, 900), 0.9);
        assert!(
            (stress(&c, 0.96, 0.0, 0) - 1.2).abs() < 1e-9,
            "past the ceiling is more than 1"
        );
        assert_eq!(stress(&c, 0.0, 0.0, 0), 0.0);
        assert_eq!(stress(&c, f64::NAN, 100_000.0, 0), 0.5, "a NaN never wins");
    }

    #[test]
    fn rates_come_from_the_deltas_between_samples() {
        let start = Instant::now();
        let mut meter = LoadMeter::new(ceilings(), 4);
        let first = meter.update(sample(start, Some(10.0), 1_000, 3));
        assert_eq!(
            first,
            LoadReport {
                participants: 3,
                cpu: 0.0,
                packets_per_s: 0.0,
                stress: 0.003
            },
            "one sample has no rate"
        );
        // 2 CPU-seconds over 2 s on 4 cores: a quarter of the machine.
        let second = meter.update(sample(start + Duration::from_secs(2), Some(12.0), 301_000, 7));
        assert_eq!(second.cpu, 0.25);
        assert_eq!(second.packets_per_s, 150_000.0);
        assert_eq!(second.participants, 7);
        assert_eq!(second.stress, 0.75);
        // The next rate is over the last interval only.
        let third = meter.update(sample(start + Duration::from_secs(3), Some(12.4), 311_000, 7));
        assert!((third.cpu - 0.1).abs() < 1e-9, "{third:?}");
        assert_eq!(third.packets_per_s, 10_000.0);
        assert_eq!(meter.last(), third);
    }

    #[test]
    fn unreadable_cpu_counts_as_zero_and_odd_samples_do_not_break_the_rates() {
        let start = Instant::now();
        let mut meter = LoadMeter::new(ceilings(), 0);
        meter.update(sample(start, None, 0, 0));
        let report = meter.update(sample(start + Duration::from_secs(1), Some(5.0), 100, 0));
        assert_eq!(report.cpu, 0.0, "no earlier CPU reading to compare with");
        assert_eq!(report.packets_per_s, 100.0);
        // A sample at the same instant keeps the rates rather than dividing by zero.
        let same = meter.update(sample(start + Duration::from_secs(1), Some(5.0), 100, 2));
        assert_eq!((same.cpu, same.packets_per_s, same.participants), (0.0, 100.0, 2));
        // CPU past every core (a clock oddity) is capped; a counter going back counts as none.
        let report = meter.update(sample(start + Duration::from_secs(2), Some(9.0), 50, 0));
        assert_eq!(report.cpu, 1.0);
        assert_eq!(report.packets_per_s, 0.0);
    }

    #[test]
    fn proc_stat_gives_user_plus_system_time() {
        let text = "4242 (bridge (shard) 1) S 1 4242 4242 0 -1 4194560 1200 0 3 0 250 125 0 0 20 0 9 0 \
                    7001 123456789 4567 18446744073709551615 1 1 0 0 0 0 0 4096 17096 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(parse_proc_stat_cpu_s(text).unwrap(), 3.75);
        for bad in ["", "4242 (x) S 1 2", "4242 (x) S 1 2 3 4 5 6 7 8 9 10 x 12"] {
            assert!(
                matches!(parse_proc_stat_cpu_s(bad), Err(CpuTimeError::Format)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ceilings_are_validated() {
        assert!(LoadCeilings::with_capacity(10).validate().is_ok());
        for bad in [
            LoadCeilings {
                cpu: 0.0,
                ..ceilings()
            },
            LoadCeilings {
                cpu: 1.5,
                ..ceilings()
            },
            LoadCeilings {
                cpu: f64::NAN,
                ..ceilings()
            },
            LoadCeilings {
                packets_per_s: -1.0,
                ..ceilings()
            },
            LoadCeilings {
                packets_per_s: f64::INFINITY,
                ..ceilings()
            },
            LoadCeilings {
                participants: 0,
                ..ceilings()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_cpu_time_is_readable_and_grows() {
        let mut cpu = ProcessCpu::default();
        let before = cpu.read_s().expect("/proc/self/stat on Linux");
        // Burn a little CPU: at least a few ticks of 10 ms, bounded.
        let started = Instant::now();
        let mut x = 0u64;
        while cpu.read_s().unwrap() < before + 0.02 && started.elapsed() < Duration::from_secs(10) {
            for i in 0..100_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            std::hint::black_box(x);
        }
        assert!(cpu.read_s().unwrap() >= before + 0.02);
    }
}
