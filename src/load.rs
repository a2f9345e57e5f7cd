//! `bridgemesh load`: synthetic participants (real WebRTC, [`bridgemesh_sim`]) against a running
//! cluster, and a report of what they felt and what it cost the bridges.
//!
//! # Layout
//! - this file: [`LoadRun`] (the driver: start, hold, finish), [`run`] (all three), [`Progress`]
//!   for a progress line.
//! - `config`: [`LoadConfig`] (`Default` + `validate`), its limits, [`LoadError`].
//! - `fault_hold`: [`LoadRun::hold_with_faults`], the leader-outage watch and its probe joins,
//!   [`run_local`].
//! - [`report`]: [`LoadReport`] (serde), the fold that builds it one participant at a time, the
//!   verdict.
//! - [`bridge_metrics`]: the bridge list from control's admin API, their `/metrics` scrapes.
//! - [`histogram`]: constant-memory quantiles.
//! - [`local_cluster`]: a cluster of child processes on 127.0.0.1 that [`run_local`] starts for
//!   itself (`--local-cluster`), and its teardown.
//! - [`replay_bench`]: `bridgemesh load-replay`, the bridge's CPU per forwarded packet at high
//!   rates under the cheap generator of `bridgemesh_sim::replay`.
//! - [`faults`]: kills on a timeline during the hold ([`LoadRun::hold_with_faults`]) and the
//!   recovery as the participants felt it.
//!
//! # Run loop
//! 1. `GET /health` on control; with an admin token, list the bridges and scrape their metrics.
//! 2. Ramp-up: join `i` of `n` starts `i·ramp_up/n` after the first, rooms taken in turn, at
//!    most `joins_in_flight_max` joins in flight; then scrape the bridges again.
//! 3. Hold for `duration_s` after the last join finished.
//! 4. Snapshot every participant's stats into the report, scrape the bridges again.
//! 5. Leave (bounded concurrency), judge.
//!
//! A scenario that breaks something while the participants are connected (a bridge killed, the
//! control leader killed) calls [`LoadRun::start`], does its damage during the hold, and reads
//! the recovery from the participants' reconnect records: [`run_local`] does this with its own
//! cluster and a [`FaultPlan`], and the report's `faults` section says what happened.

pub mod bridge_metrics;
mod config;
mod fault_hold;
pub mod faults;
pub mod histogram;
pub mod local_cluster;
pub mod replay_bench;
pub mod report;

pub use bridge_metrics::{BridgeFigures, BridgeUsage};
pub use faults::{FaultPlan, FaultReport};
pub use local_cluster::{LocalCluster, LocalClusterConfig};
pub use report::LoadReport;

pub use config::{
    BIND_IPS_MAX, DURATION_S_MAX, JOINS_IN_FLIGHT_MAX, LoadConfig, LoadError, PARTICIPANTS_MAX, PER_ROOM_MAX,
    RAMP_UP_S_MAX, VIDEO_KBPS_MAX,
};
pub use fault_hold::run_local;

use bridge_metrics::{BridgeTarget, Scrape};
use bridgemesh_control::auth::Secret;
use bridgemesh_proto::api::DISPLAY_NAME_MAX_CHARS;
use bridgemesh_proto::signaling::MediaSource;
use bridgemesh_proto::{BridgeId, ParticipantId, RoomId};
use bridgemesh_sim::{ParticipantError, ParticipantOptions, SyntheticParticipant};
use report::{JoinTally, MediaFold, Member, ReportSettings};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// How often [`Progress`] is updated.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// How often the hold sums the participants' packets for [`Progress`] (only when someone
/// watches): it copies every participant's stats.
const PROGRESS_MEDIA_INTERVAL: Duration = Duration::from_secs(5);
/// Bound on control's `/health` before the run.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
/// Slack past the participant's own join timeout before a join task is given up on.
const JOIN_SLACK: Duration = Duration::from_secs(5);

/// Where a run is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Phase {
    #[default]
    Starting,
    Joining,
    Holding,
    Leaving,
    Done,
}

/// A run's progress, for a progress line.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub phase: Phase,
    /// Participants the run joins.
    pub participants: u64,
    pub joined: u64,
    pub join_failed: u64,
    pub left: u64,
    /// Since the first join started.
    pub elapsed: Duration,
    /// Left of the hold.
    pub hold_remaining: Duration,
    /// Packets received and lost so far (every stream), refreshed every few seconds during the
    /// hold when someone watches.
    pub packets: Option<u64>,
    pub lost: Option<u64>,
}

impl std::fmt::Display for Progress {
    /// One line: `joining 12/16 (1 failed) 6.2 s`, `holding 16 · 24 s left · 120345 packets, 0 lost`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let elapsed_s = self.elapsed.as_secs_f64();
        match self.phase {
            Phase::Starting => write!(f, "starting"),
            Phase::Joining => write!(
                f,
                "joining {}/{} ({} failed) {elapsed_s:.1} s",
                self.joined, self.participants, self.join_failed
            ),
            Phase::Holding => {
                write!(
                    f,
                    "holding {} participants · {} s left",
                    self.joined,
                    self.hold_remaining.as_secs()
                )?;
                if let (Some(packets), Some(lost)) = (self.packets, self.lost) {
                    write!(f, " · {packets} packets received, {lost} lost")?;
                }
                Ok(())
            }
            Phase::Leaving => write!(f, "leaving {}/{}", self.left, self.joined),
            Phase::Done => write!(f, "done in {elapsed_s:.1} s"),
        }
    }
}

/// One participant to be: its room and whether it publishes.
#[derive(Debug, Clone)]
struct Seat {
    room: u32,
    name: String,
    publisher: bool,
    bind_ip: Option<IpAddr>,
}

/// The run's participants, in join order: rooms in turn, so they fill together; `bind_ips`
/// taken in turn.
fn seats(config: &LoadConfig, bind_ips: &[IpAddr]) -> Vec<Seat> {
    let n = config.rooms as usize * config.per_room as usize;
    (0..n)
        .map(|i| {
            let room = (i % config.rooms as usize) as u32;
            let slot = (i / config.rooms as usize) as u32;
            Seat {
                room,
                name: display_name(&config.room_prefix, room, slot),
                publisher: slot < config.publishers_per_room(),
                bind_ip: (!bind_ips.is_empty()).then(|| bind_ips[i % bind_ips.len()]),
            }
        })
        .collect()
}

/// `{room} #{slot}`: whose it is, in the bridge's and control's views.
fn display_name(room_prefix: &str, room: u32, slot: u32) -> String {
    format!("{room_prefix}-{room} #{slot}")
}

/// When join `index` of `count` starts, after the first: evenly over the ramp-up.
fn join_offset(index: usize, count: usize, ramp_up: Duration) -> Duration {
    if count == 0 {
        return Duration::ZERO;
    }
    ramp_up.mul_f64(index as f64 / count as f64)
}

struct Joined {
    room: u32,
    /// Its display name (`{room} #{slot}`), which says where it sat.
    name: String,
    publisher: bool,
    member: Member,
    participant: SyntheticParticipant,
}

/// The bridges as the run found them before the joins and after the ramp-up.
enum BridgesBefore {
    Skipped(String),
    Failed(String),
    Scraped {
        targets: Vec<BridgeTarget>,
        idle: Vec<Result<Scrape, String>>,
        /// After the ramp-up: where the hold's rates start.
        ramped_at: Instant,
        ramped: Vec<Result<Scrape, String>>,
    },
}

/// A run with its participants connected: [`start`](Self::start) joins them,
/// [`hold`](Self::hold) keeps them, [`finish`](Self::finish) measures and leaves.
pub struct LoadRun {
    config: LoadConfig,
    /// The participants' source addresses (given, or found towards control).
    bind_ips: Vec<IpAddr>,
    joined: Vec<Joined>,
    joins: JoinTally,
    /// When the first join started.
    started: Instant,
    /// When the last join finished.
    ramped: Instant,
    /// First join started → last join finished.
    join_window: Duration,
    bridges: BridgesBefore,
    progress: watch::Sender<Progress>,
    /// What [`Self::hold_with_faults`] did, and the cluster [`run_local`] started.
    faults: Option<FaultReport>,
    cluster: Option<local_cluster::ClusterReport>,
}

/// Joins, holds for `config.duration_s`, measures and leaves. `progress` is updated as it goes;
/// pass the sender of a channel whose receiver was dropped if nobody watches.
pub async fn run(config: LoadConfig, progress: watch::Sender<Progress>) -> Result<LoadReport, LoadError> {
    let duration = Duration::from_secs(config.duration_s);
    let mut run = LoadRun::start(config, progress).await?;
    run.hold(duration).await;
    Ok(run.finish().await)
}

impl LoadRun {
    /// Checks control answers, measures the bridges, and joins every participant over the
    /// ramp-up. Failed joins are counted, not fatal.
    pub async fn start(config: LoadConfig, progress: watch::Sender<Progress>) -> Result<Self, LoadError> {
        config.validate()?;
        check_health(&config.control_url).await?;
        let mut bridges = match &config.admin_token {
            None => BridgesBefore::Skipped(
                "no admin token (--admin-token-file or BRIDGEMESH_ADMIN_TOKEN) to list the bridges".into(),
            ),
            Some(token) => match bridge_metrics::list_bridges(&config.control_url, token).await {
                Ok(targets) => {
                    let (_, idle) = bridge_metrics::scrape_all(&targets).await;
                    BridgesBefore::Scraped {
                        targets,
                        idle,
                        ramped_at: Instant::now(),
                        ramped: Vec::new(),
                    }
                }
                Err(error) => BridgesBefore::Failed(error),
            },
        };

        let bind_ips = if config.bind_ips.is_empty() {
            local_address_towards(&config.control_url)
                .await
                .into_iter()
                .collect()
        } else {
            config.bind_ips.clone()
        };
        let seats = seats(&config, &bind_ips);
        let count = seats.len();
        progress.send_replace(Progress {
            phase: Phase::Joining,
            participants: count as u64,
            ..Progress::default()
        });
        let ramp_up = Duration::from_secs(config.ramp_up_s);
        let join_bound = Duration::from_secs(config.join_timeout_s) + JOIN_SLACK;
        let in_flight = Arc::new(Semaphore::new(config.joins_in_flight_max));
        let mut tasks = JoinSet::new();
        let mut joins = JoinTally::default();
        let mut joined = Vec::with_capacity(count);
        let started = Instant::now();
        let first_at = tokio::time::Instant::from_std(started);
        let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
        let mut seats = seats.into_iter().enumerate().peekable();
        loop {
            let next_at = seats
                .peek()
                .map(|(i, _)| first_at + join_offset(*i, count, ramp_up));
            if next_at.is_none() && tasks.is_empty() {
                break;
            }
            tokio::select! {
                permit = permit_at(next_at, &in_flight) => {
                    let (_, seat) = seats.next().expect("a next join time means a next seat");
                    let room = config.room(seat.room);
                    let options = participant_options(&config, &seat);
                    let control_url = config.control_url.clone();
                    tasks.spawn(async move {
                        let _permit = permit;
                        let join_started = Instant::now();
                        let result = tokio::time::timeout(
                            join_bound,
                            SyntheticParticipant::join(&control_url, &room, options),
                        )
                        .await
                        .unwrap_or_else(|_| {
                            Err(ParticipantError::Timeout(format!("join not done after {join_bound:?}")))
                        });
                        (seat, join_started, join_started.elapsed(), result)
                    });
                }
                Some(done) = tasks.join_next() => match done {
                    Ok((seat, join_started, took, Ok(participant))) => {
                        joins.ok(took);
                        joined.push(Joined {
                            room: seat.room,
                            name: seat.name.clone(),
                            publisher: seat.publisher,
                            member: Member {
                                id: participant.participant_id().clone(),
                                join_started,
                            },
                            participant,
                        });
                    }
                    Ok((seat, _, _, Err(error))) => {
                        tracing::debug!(participant = %seat.name, "join failed: {error}");
                        joins.failed(&seat.name, &error);
                    }
                    Err(error) => joins.failed_without_error("a join task", &error.to_string()),
                },
                _ = ticker.tick() => {
                    progress.send_modify(|p| {
                        p.joined = joins.ok_count();
                        p.join_failed = joins.failed_count();
                        p.elapsed = started.elapsed();
                    });
                }
            }
        }
        let join_window = started.elapsed();
        progress.send_modify(|p| {
            p.joined = joins.ok_count();
            p.join_failed = joins.failed_count();
            p.elapsed = started.elapsed();
        });
        if let BridgesBefore::Scraped {
            targets,
            ramped_at,
            ramped,
            ..
        } = &mut bridges
        {
            (*ramped_at, *ramped) = bridge_metrics::scrape_all(targets).await;
        }
        Ok(Self {
            config,
            bind_ips,
            joined,
            joins,
            started,
            ramped: Instant::now(),
            join_window,
            bridges,
            progress,
            faults: None,
            cluster: None,
        })
    }

    /// The participants that joined, for a scenario or a test to look at (or act on) during the
    /// hold.
    pub fn participants(&self) -> impl Iterator<Item = &SyntheticParticipant> {
        self.joined.iter().map(|j| &j.participant)
    }

    /// Keeps the participants connected for `duration`, updating the progress.
    pub async fn hold(&mut self, duration: Duration) {
        let end = Instant::now() + duration;
        self.hold_until(end, end).await;
    }

    /// Keeps the participants connected until `until`, showing the time left to `end` (the end
    /// of the whole hold).
    async fn hold_until(&self, until: Instant, end: Instant) {
        let mut media_due = Instant::now();
        loop {
            let now = Instant::now();
            let remaining = end.saturating_duration_since(now);
            let left = until.saturating_duration_since(now);
            let media = (self.progress.receiver_count() > 0 && now >= media_due).then(|| {
                media_due = now + PROGRESS_MEDIA_INTERVAL;
                self.received_so_far()
            });
            self.progress.send_modify(|p| {
                p.phase = Phase::Holding;
                p.elapsed = self.started.elapsed();
                p.hold_remaining = remaining;
                if let Some((packets, lost)) = media {
                    p.packets = Some(packets);
                    p.lost = Some(lost);
                }
            });
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left.min(PROGRESS_INTERVAL)).await;
        }
    }

    /// Packets received and lost so far, over every stream of every participant.
    fn received_so_far(&self) -> (u64, u64) {
        let mut totals = (0, 0);
        for joined in &self.joined {
            for stream in joined.participant.stats().received.values() {
                totals.0 += stream.packets;
                totals.1 += stream.lost;
            }
        }
        totals
    }

    /// Snapshots every participant into the report, measures the bridges again, and leaves.
    pub async fn finish(self) -> LoadReport {
        let held = self.ramped.elapsed();
        let elapsed = self.started.elapsed();
        let sources = self.config.sources();
        let mut publishers: Vec<Vec<Member>> = vec![Vec::new(); self.config.rooms as usize];
        for joined in self.joined.iter().filter(|j| j.publisher) {
            publishers[joined.room as usize].push(joined.member.clone());
        }
        let mut fold = MediaFold::default();
        for joined in &self.joined {
            let stats = joined.participant.stats();
            fold.add(
                &joined.member,
                &stats,
                &publishers[joined.room as usize],
                &sources,
            );
        }
        let bridges = match self.bridges {
            BridgesBefore::Skipped(reason) => BridgeFigures::Skipped { reason },
            BridgesBefore::Failed(error) => BridgeFigures::Failed { error },
            BridgesBefore::Scraped {
                targets,
                idle,
                ramped_at,
                ramped,
            } => {
                let (after_at, after) = bridge_metrics::scrape_all(&targets).await;
                BridgeFigures::Measured {
                    bridges: bridge_metrics::usage(&targets, &idle, &ramped, &after, after_at - ramped_at),
                }
            }
        };
        self.progress.send_modify(|p| {
            p.phase = Phase::Leaving;
            p.packets = Some(fold.packets());
            p.lost = Some(fold.lost());
        });
        let leaves_failed = leave_all(
            self.joined.into_iter().map(|j| j.participant),
            self.config.joins_in_flight_max,
            &self.progress,
        )
        .await;
        self.progress.send_modify(|p| p.phase = Phase::Done);

        let (streams, time_to_first_packet_ms, media, latency_ms, reconnects, participants_disconnected) =
            fold.finish();
        let config = &self.config;
        let mut joins = self.joins.finish();
        joins.window_s = self.join_window.as_secs_f64();
        joins.per_s = if joins.window_s > 0.0 {
            joins.ok as f64 / joins.window_s
        } else {
            0.0
        };
        let mut report = LoadReport {
            settings: ReportSettings {
                control_url: config.control_url.clone(),
                rooms: config.rooms,
                per_room: config.per_room,
                publishers_per_room: config.publishers_per_room(),
                video_kbps: config.video_kbps,
                duration_s: config.duration_s,
                ramp_up_s: config.ramp_up_s,
                room_prefix: config.room_prefix.clone(),
                bind_ips: self.bind_ips.clone(),
                max_loss_percent: config.max_loss_percent,
            },
            joins,
            streams,
            time_to_first_packet_ms,
            media,
            latency_ms,
            reconnects,
            participants_disconnected,
            leaves_failed,
            elapsed_s: elapsed.as_secs_f64(),
            held_s: held.as_secs_f64(),
            bridges,
            faults: self.faults,
            cluster: self.cluster,
            failures: Vec::new(),
        };
        report.judge();
        report
    }
}

/// `count` loopback addresses (at most [`BIND_IPS_MAX`]), `127.0.1.1` on, skipping the
/// network and broadcast-looking `.0` and `.255`.
fn loopback_sources(count: usize) -> Vec<IpAddr> {
    (0..count.min(BIND_IPS_MAX))
        .map(|i| IpAddr::from([127, 0, 1 + (i / 254) as u8, 1 + (i % 254) as u8]))
        .collect()
}

/// A permit to start the next join, once its time has come; never without a next join.
async fn permit_at(
    at: Option<tokio::time::Instant>,
    in_flight: &Arc<Semaphore>,
) -> tokio::sync::OwnedSemaphorePermit {
    let Some(at) = at else {
        return std::future::pending().await;
    };
    tokio::time::sleep_until(at).await;
    Arc::clone(in_flight)
        .acquire_owned()
        .await
        .expect("the semaphore is never closed")
}

fn participant_options(config: &LoadConfig, seat: &Seat) -> ParticipantOptions {
    ParticipantOptions {
        publish_audio: seat.publisher,
        publish_video: seat.publisher && config.video_kbps > 0,
        video_bitrate_bps: config.video_kbps.max(1) * 1000,
        join_timeout: Duration::from_secs(config.join_timeout_s),
        bind_ip: seat.bind_ip,
        ..ParticipantOptions::new(seat.name.clone())
    }
}

/// The address this machine sends from towards control's host, unless that is loopback: what
/// the participants bind when no source address is given. A synthetic participant's media
/// socket binds 127.0.0.1 by default, which cannot reach a bridge on another machine.
async fn local_address_towards(control_url: &str) -> Option<IpAddr> {
    let url = reqwest::Url::parse(control_url).ok()?;
    let host = url.host_str()?.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default()?;
    let remote = tokio::net::lookup_host((host, port)).await.ok()?.next()?;
    if remote.ip().is_loopback() {
        return None;
    }
    let any: IpAddr = if remote.is_ipv4() {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    };
    // Connecting a UDP socket sends nothing; it only asks the kernel for the route.
    let socket = tokio::net::UdpSocket::bind((any, 0)).await.ok()?;
    socket.connect(remote).await.ok()?;
    Some(socket.local_addr().ok()?.ip())
}

async fn check_health(control_url: &str) -> Result<(), LoadError> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(HEALTH_TIMEOUT)
        .build()
        .map_err(|e| LoadError::Http(e.to_string()))?;
    let url = format!("{}/health", control_url.trim_end_matches('/'));
    // Any answer will do: a control without a leader still answers, and its joins fail visibly.
    http.get(&url)
        .send()
        .await
        .map(drop)
        .map_err(|e| LoadError::ControlUnreachable {
            url: control_url.to_owned(),
            error: e.to_string(),
        })
}

/// Every participant leaves, at most `in_flight_max` at once; returns how many `leave`s failed.
async fn leave_all(
    participants: impl Iterator<Item = SyntheticParticipant>,
    in_flight_max: usize,
    progress: &watch::Sender<Progress>,
) -> u64 {
    let mut tasks = JoinSet::new();
    let mut failed = 0;
    let mut account = |done: Result<Result<(), ParticipantError>, tokio::task::JoinError>| {
        if !matches!(done, Ok(Ok(()))) {
            failed += 1;
        }
        progress.send_modify(|p| p.left += 1);
    };
    for participant in participants {
        if tasks.len() >= in_flight_max
            && let Some(done) = tasks.join_next().await
        {
            account(done);
        }
        tasks.spawn(participant.leave());
    }
    while let Some(done) = tasks.join_next().await {
        account(done);
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_each_limit_is_checked() {
        LoadConfig::default().validate().unwrap();
        let bad = [
            LoadConfig {
                control_url: "127.0.0.1:8080".into(),
                ..LoadConfig::default()
            },
            LoadConfig {
                control_url: "https://control.example.org".into(),
                ..LoadConfig::default()
            },
            LoadConfig {
                rooms: 0,
                ..LoadConfig::default()
            },
            LoadConfig {
                per_room: PER_ROOM_MAX + 1,
                ..LoadConfig::default()
            },
            LoadConfig {
                rooms: 1_000,
                per_room: 11,
                ..LoadConfig::default()
            },
            LoadConfig {
                publishers_per_room: Some(3),
                ..LoadConfig::default()
            },
            LoadConfig {
                duration_s: 0,
                ..LoadConfig::default()
            },
            LoadConfig {
                max_loss_percent: f64::NAN,
                ..LoadConfig::default()
            },
            LoadConfig {
                joins_in_flight_max: 0,
                ..LoadConfig::default()
            },
            LoadConfig {
                room_prefix: "Upper Case".into(),
                ..LoadConfig::default()
            },
            LoadConfig {
                room_prefix: "x".repeat(63),
                ..LoadConfig::default()
            },
            LoadConfig {
                room_prefix: "x".repeat(60),
                ..LoadConfig::default()
            },
        ];
        for config in bad {
            assert!(
                matches!(config.validate(), Err(LoadError::Config(_))),
                "{config:?}"
            );
        }
    }

    #[test]
    fn seats_take_rooms_in_turn_and_the_first_slots_publish() {
        let config = LoadConfig {
            rooms: 2,
            per_room: 3,
            publishers_per_room: Some(2),
            bind_ips: vec!["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()],
            ..LoadConfig::default()
        };
        let seats = seats(&config, &config.bind_ips);
        let rooms: Vec<u32> = seats.iter().map(|s| s.room).collect();
        assert_eq!(rooms, [0, 1, 0, 1, 0, 1]);
        let publishing: Vec<bool> = seats.iter().map(|s| s.publisher).collect();
        assert_eq!(publishing, [true, true, true, true, false, false]);
        assert_eq!(seats[5].name, "load-1 #2");
        assert_eq!(seats[2].bind_ip, Some("127.0.0.2".parse().unwrap()));
        assert_eq!(seats[3].bind_ip, Some("127.0.0.3".parse().unwrap()));
        let listener = participant_options(&config, &seats[4]);
        assert!(!listener.publish_audio && !listener.publish_video);
        let audio_only = LoadConfig {
            video_kbps: 0,
            ..config.clone()
        };
        assert_eq!(audio_only.sources(), [MediaSource::Microphone]);
        let publisher = participant_options(&audio_only, &seats[0]);
        assert!(publisher.publish_audio && !publisher.publish_video);
    }

    #[tokio::test]
    async fn participants_send_from_the_route_to_control_unless_it_is_loopback() {
        assert_eq!(local_address_towards("http://127.0.0.1:8080").await, None);
        assert_eq!(local_address_towards("http://localhost:8080").await, None);
        assert_eq!(local_address_towards("http://[::1]:8080").await, None);
        assert_eq!(local_address_towards("not a url").await, None);
    }

    #[test]
    fn joins_are_spread_evenly_over_the_ramp_up() {
        let ramp = Duration::from_secs(10);
        let offsets: Vec<u128> = (0..5).map(|i| join_offset(i, 5, ramp).as_millis()).collect();
        assert_eq!(offsets, [0, 2000, 4000, 6000, 8000]);
        assert_eq!(join_offset(3, 4, Duration::ZERO), Duration::ZERO);
        assert_eq!(join_offset(0, 0, ramp), Duration::ZERO);
    }
}
