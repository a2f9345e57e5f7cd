//! The discrete-event run: virtual time in milliseconds, one queue of events, one seeded RNG.
//!
//! Control is the real replicated state machine (`ControlState::apply`, which also moves the
//! participants of a bridge that is down or drained, with the real placement), the real
//! placement function for joins, and the real hub engine on the leader (a new one at each
//! election): bridges register through it (its reconcile moves away what a returning bridge
//! hosts that control seated elsewhere), its failure detector is fed by their heartbeats and
//! clients' loss reports, it commits their load as the real hub does, and its membership push
//! tells them who shares their rooms. Consensus is modeled ([`super::consensus`]): a
//! command is applied `consensus_delay_ms` after it is proposed, in proposal order, while the
//! leader holds a majority. Bridges and clients are models: bridges host sessions, heartbeat at
//! control's interval while alive and hear control's pushes; clients join, connect, leave, and
//! reconnect through control when their bridge is lost or they are moved. The network between
//! them is [`super::network`].
//!
//! # Layout
//! - this file: the events, the bridge and client models, the world, its setup and run loop.
//! - `dispatch`: what each event does; `clients`: joins, connects, leaves, moves, reconnects.
//! - `control`: committing commands; `hub`: the hub engine's driver; `faults`: failures,
//!   elections, partitions; `reporting`: the report and timeline; `views`: what invariants read.

use super::cascade::{self, CascadeModel, Group, MembershipUpdate};
use super::consensus::{ControlCluster, Quorum};
use super::invariants::{self, Violation};
use super::network::{Cut, Network};
use super::report::{BridgeReport, FaultReport, MediaReport, Quantiles, RegionReport, Report};
use super::rng::SimRng;
use super::scenario::{CutDirection, FaultKind, Scenario};
use bridgemesh_control::failure_detector::FailureDetectorConfig;
use bridgemesh_control::hub_engine::{HubConfig, HubEngine, SessionId};
use bridgemesh_control::placement::{ClientPlace, PlacementPolicy, choose_bridge};
use bridgemesh_control::state::{ApplyError, Command, ControlState, JoinRequestRecord, Moved, Outcome};
use bridgemesh_proto::bridge_session::{
    BridgeRegistration, BridgeStatus, ControlToBridge, GeoPoint, LoadReport,
};
use bridgemesh_proto::{BridgeId, ParticipantId, RegionId, RoomId};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

mod clients;
mod control;
mod dispatch;
mod faults;
mod hub;
mod reporting;
mod views;

pub use views::{BridgeView, ParticipantView};

/// A placement: the real one is [`choose_bridge`]; tests inject broken ones.
pub type Placement = fn(&ControlState, &RoomId, &ClientPlace) -> Option<BridgeId>;

/// The real placement, as control's join path calls it.
pub fn real_placement(state: &ControlState, room: &RoomId, client: &ClientPlace) -> Option<BridgeId> {
    choose_bridge(state, room, client, None)
}

/// How often control's hub is ticked while no leader leads (it says when otherwise), and how
/// often the leader ticks the state.
const DETECTOR_POLL_MS: u64 = 50;
const TICK_MS: u64 = 1_000;
const SAMPLE_MS: u64 = 10_000;
/// How often (simulated) the run reports its progress.
const PROGRESS_EVERY_MS: u64 = 10_000;
/// Messages bridges cut off by a partition keep for their return, at most.
const DEFERRED_MAX: usize = 1_000_000;
/// A client whose peer connection stops carrying anything (its path is cut, nothing closes)
/// gives it up after this long.
const PEER_CONNECTION_FAILED_MS: u64 = 3_000;
/// A client that cannot reach control retries this often, for this long at most.
const CONTROL_RETRY_MS: u64 = 1_000;
const JOIN_BUDGET_MS: u64 = 30_000;
/// A join tries this many placements when bridges fill up under it.
const JOIN_ATTEMPTS: u32 = 3;
/// A reconnecting client asks control again this often while its bridge is not declared down.
const RECONNECT_RETRY_MS: u64 = 100;
const ROOM_GRACE_MS: u64 = 60_000;
/// `leader_down_until_ms` while no majority can elect a leader: until the network changes.
const NO_LEADER: u64 = u64::MAX;
/// A bridge whose session stops hearing from control gives it up after this long (the bridge's
/// silence timeout), closing it: control sees the close if the way back is open.
const SESSION_SILENCE_MS: u64 = 2_000;

#[derive(Debug, Clone)]
enum Event {
    Arrival,
    JoinAtControl {
        participant: usize,
        attempt: u32,
    },
    /// A proposal commits: the state applies it.
    Commit {
        command: Box<Command>,
        then: Then,
    },
    Connect {
        participant: usize,
        bridge: usize,
        epoch: u64,
    },
    Leave {
        participant: usize,
    },
    /// Every live bridge heartbeats: one event per interval for all of them, each heard at
    /// control after its own latency (what keeps a 1,000-bridge hour in budget).
    HeartbeatRound,
    SessionClosed {
        bridge: usize,
    },
    DetectorPoll,
    Tick,
    Sample,
    Fault {
        index: usize,
    },
    /// A new control leader is elected after a crash.
    NewLeader,
    /// A partition ends.
    PartitionHeals {
        fault: usize,
    },
    /// A degraded link is itself again.
    LinkRestored {
        fault: usize,
    },
    /// A `room_bridges` from control's hub reaches a bridge (the process it was sent to).
    Membership {
        bridge: usize,
        instance: u64,
        update: Box<MembershipUpdate>,
    },
    /// A bridge cut from control is back on its session: it registers again, and control
    /// reconciles what it hosts.
    Reregistered {
        bridge: usize,
    },
    /// A bridge's session reaches the new leader.
    SessionOpened {
        bridge: usize,
    },
    /// The client asks control where to go after losing its session.
    Reconnect {
        participant: usize,
        epoch: u64,
        lost: usize,
        since_ms: u64,
    },
    /// Control's `move` reaches the bridge, which says `bye{moved}` to the client.
    MoveArrives {
        participant: usize,
        bridge: usize,
    },
}

#[derive(Debug, Clone)]
enum Then {
    Join {
        participant: usize,
        attempt: u32,
    },
    /// Proposed by the hub engine of that generation (see `hub`).
    Hub {
        generation: u64,
        id: bridgemesh_control::hub_engine::ProposalId,
    },
    Nothing,
}

struct SimBridge {
    id: BridgeId,
    region: usize,
    capacity: u32,
    registration: BridgeRegistration,
    alive: bool,
    /// Its session with the control leader is open: it heartbeats, reports, hears pushes.
    session_up: bool,
    /// When the last message control sent on the session arrives: the session is one TCP
    /// stream, so a message sent later never arrives earlier, whatever it met on the way.
    session_arrival_ms: u64,
    instance: u64,
    hosted: usize,
    peak: usize,
    /// Its session as the leader's hub engine knows it.
    hub_session: Option<SessionId>,
}

struct SimParticipant {
    id: ParticipantId,
    room: RoomId,
    /// The room's number, from 0: rooms fill one after another, so this is the last one made.
    room_number: usize,
    region: usize,
    place: ClientPlace,
    acked: bool,
    active: bool,
    /// The bridge hosting its session now, if any.
    hosted_on: Option<usize>,
    /// Bumped at every new session, so events of an old one are ignored.
    epoch: u64,
    /// The fault whose recovery this participant is in, and since when.
    recovering: Option<(usize, u64)>,
    connected_once: bool,
    arrived_ms: u64,
    /// When its current session opened.
    connected_at_ms: u64,
    /// Joins whose answer never reached it: each retry is a new participant to control.
    retries: u32,
}

struct Scheduled {
    at_ms: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ms, self.seq) == (other.at_ms, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at_ms, self.seq).cmp(&(other.at_ms, other.seq))
    }
}

pub struct World {
    scenario: Scenario,
    seed: u64,
    rng: SimRng,
    now_ms: u64,
    end_ms: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    /// Commits are applied in proposal order: the last scheduled commit time.
    last_commit_ms: u64,
    /// While a new leader is elected nothing commits, heartbeats go nowhere and nobody polls the
    /// detector; the fault whose election it is.
    leader_down_until_ms: u64,
    leader_fault: Option<usize>,
    cluster: ControlCluster,
    /// The node a `kill_control_leader` took down; it is back once a new leader is elected.
    crashed_node: Option<usize>,
    /// The leader lost, and when: the bridges' sessions broke then and look for the new one.
    lost_leader: Option<(usize, u64)>,
    /// Proposals made while no leader can be elected (a partition leaves no majority), with
    /// when: the new leader takes them.
    stalled: Vec<(Command, Then, u64)>,
    last_commit: invariants::no_split_brain::LastCommit,
    elections: Vec<super::report::ElectionReport>,
    network: Network,
    cascade: CascadeModel,
    /// When the last fault is over: the media invariant holds from then (plus its bound).
    faults_end_ms: u64,
    media: MediaReport,
    timeline_media_missing: Vec<u64>,
    /// What bridges cut from control would have told it; their sessions replay it on return.
    deferred: Vec<(usize, Command)>,
    state: ControlState,
    /// The real hub engine, on the leader.
    hub: HubEngine,
    hub_generation: u64,
    hub_sessions: HashMap<SessionId, usize>,
    placement: Placement,
    bridges: Vec<SimBridge>,
    bridge_index: HashMap<BridgeId, usize>,
    participants: Vec<SimParticipant>,
    participant_index: HashMap<ParticipantId, usize>,
    control_region: usize,
    region_ids: Vec<RegionId>,
    filling_room: Option<(RoomId, u32)>,
    rooms_created: u64,
    joins_ok: u64,
    joins_failed: u64,
    join_failures: BTreeMap<String, u64>,
    faults: Vec<FaultRecord>,
    region_hosted: Vec<usize>,
    region_peak: Vec<usize>,
    violations: Vec<Violation>,
    events: u64,
    bridges_declared_down: u64,
    /// Peak cascade bandwidth per directed bridge pair (kbit/s), and the total over time.
    cascade_peak_kbps: BTreeMap<(usize, usize), u64>,
    timeline_cascade_kbps: Vec<u64>,
    /// Every 10 s: the time, participants hosted per region and per bridge.
    timeline_t_s: Vec<u64>,
    timeline_regions: Vec<Vec<u32>>,
    timeline_bridges: Vec<Vec<u32>>,
}

struct FaultRecord {
    at_ms: u64,
    kind: String,
    /// What the fault hit: a bridge, `region <id>` or `control`.
    bridge: String,
    affected: u64,
    recovery_ms: Vec<u64>,
    gave_up: u64,
    /// Affected participants that left before they were back.
    left: u64,
}

impl World {
    pub fn new(scenario: Scenario, seed: u64, placement: Placement) -> Self {
        let region_index = |id: &str| scenario.region_index(id);
        let first_region = scenario.control.region.as_deref().map_or(0, region_index);
        let node_regions: Vec<usize> = if scenario.control.nodes.is_empty() {
            vec![first_region; 3]
        } else {
            scenario.control.nodes.iter().map(|id| region_index(id)).collect()
        };
        let first_leader = node_regions
            .iter()
            .position(|r| *r == first_region)
            .expect("validated: a node in the control region");
        let cluster = ControlCluster::new(node_regions, first_leader);
        let control_region = cluster.leader_region();
        let n = scenario.regions.len();
        let network = Network::new(&scenario);
        let region_ids: Vec<RegionId> = scenario
            .regions
            .iter()
            .map(|r| RegionId::new(&r.id).expect("validated"))
            .collect();
        let mut bridges = Vec::new();
        for (region_index, region) in scenario.regions.iter().enumerate() {
            for n in 1..=region.bridges {
                let id = BridgeId::new(format!("{}-{n}", region.id)).expect("valid bridge id");
                let registration = BridgeRegistration {
                    id: id.clone(),
                    region: region_ids[region_index].clone(),
                    location: Some(GeoPoint {
                        latitude: region.latitude,
                        longitude: region.longitude,
                    }),
                    signaling_url: format!("ws://{id}.sim/bridge/v1/signal"),
                    media_addresses: Vec::new(),
                    turn_urls: Vec::new(),
                    capacity: region.capacity,
                    max_participants_per_room: region.max_per_room,
                    // A label: nothing is sent to it, but control names it to the bridge's peers.
                    cascade_addr: Some(std::net::SocketAddr::from((
                        [127, 1, (bridges.len() >> 8) as u8, bridges.len() as u8],
                        7710,
                    ))),
                };
                bridges.push(SimBridge {
                    id,
                    region: region_index,
                    capacity: region.capacity,
                    registration,
                    alive: true,
                    session_up: true,
                    session_arrival_ms: 0,
                    instance: 1,
                    hosted: 0,
                    peak: 0,
                    hub_session: None,
                });
            }
        }
        let bridge_index = bridges
            .iter()
            .enumerate()
            .map(|(i, b)| (b.id.clone(), i))
            .collect();
        let c = &scenario.control;
        let hub = HubEngine::new(HubConfig {
            heartbeat_interval_ms: c.heartbeat_interval_ms,
            detector: FailureDetectorConfig {
                suspect_after_ms: c.suspect_after_ms,
                down_after_ms: c.down_after_ms,
                loss_reports_needed: c.loss_reports_needed,
                leader_grace_ms: c.leader_grace_ms,
                ..FailureDetectorConfig::default()
            },
            placement: PlacementPolicy::default(),
        });
        let end_ms = (scenario.duration_s + scenario.liveness_s) * 1000;
        let faults = scenario
            .faults
            .iter()
            .map(|f| FaultRecord {
                at_ms: f.at_s * 1000,
                kind: f.kind.name().to_owned(),
                bridge: match &f.kind {
                    FaultKind::PartitionRegion {
                        region,
                        direction: CutDirection::Both,
                        ..
                    } => format!("region {region}"),
                    FaultKind::PartitionRegion {
                        region, direction, ..
                    } => {
                        format!("region {region} ({})", direction.name())
                    }
                    FaultKind::DegradeLink { from, to, .. } => format!("link {from}–{to}"),
                    FaultKind::KillControlLeader { .. } => "control".to_owned(),
                    other => other.bridge().unwrap_or_default().to_owned(),
                },
                affected: 0,
                recovery_ms: Vec::new(),
                gave_up: 0,
                left: 0,
            })
            .collect();
        let faults_end_ms = scenario
            .faults
            .iter()
            .map(|f| f.kind.ends_ms(f.at_s))
            .max()
            .unwrap_or(0);
        let cascade = CascadeModel::new(bridges.len());
        let region_peak = vec![0; n];
        let region_hosted = vec![0; n];
        let mut world = World {
            rng: SimRng::new(seed),
            seed,
            now_ms: 0,
            end_ms,
            seq: 0,
            queue: BinaryHeap::new(),
            last_commit_ms: 0,
            leader_down_until_ms: 0,
            leader_fault: None,
            cluster,
            crashed_node: None,
            lost_leader: None,
            stalled: Vec::new(),
            last_commit: None,
            elections: Vec::new(),
            network,
            cascade,
            faults_end_ms,
            media: MediaReport::default(),
            timeline_media_missing: Vec::new(),
            deferred: Vec::new(),
            state: ControlState::default(),
            hub,
            hub_generation: 0,
            hub_sessions: HashMap::new(),
            placement,
            bridges,
            bridge_index,
            participants: Vec::new(),
            participant_index: HashMap::new(),
            control_region,
            region_ids,
            filling_room: None,
            rooms_created: 0,
            joins_ok: 0,
            joins_failed: 0,
            join_failures: BTreeMap::new(),
            faults,
            region_hosted,
            region_peak,
            violations: Vec::new(),
            events: 0,
            bridges_declared_down: 0,
            cascade_peak_kbps: BTreeMap::new(),
            timeline_cascade_kbps: Vec::new(),
            timeline_t_s: Vec::new(),
            timeline_regions: Vec::new(),
            timeline_bridges: Vec::new(),
            scenario,
        };
        world.start();
        world
    }

    fn schedule(&mut self, at_ms: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at_ms,
            seq: self.seq,
            event,
        }));
    }

    fn propose(&mut self, command: Command, then: Then) {
        if self.leader_down_until_ms == NO_LEADER {
            if self.stalled.len() < DEFERRED_MAX {
                self.stalled.push((command, then, self.now_ms));
            }
            return;
        }
        let delay = self.scenario.control.consensus_delay_ms;
        let mut at = (self.now_ms + delay).max(self.last_commit_ms);
        if self.now_ms < self.leader_down_until_ms {
            // No leader: the proposer retries until the new one commits it.
            let retried = self.leader_down_until_ms + delay;
            if let (Some(fault), Command::Join(_)) = (self.leader_fault, &command) {
                self.faults[fault].affected += 1;
                self.faults[fault].recovery_ms.push(retried - self.now_ms);
            }
            at = at.max(retried);
        }
        self.last_commit_ms = at;
        self.schedule(
            at,
            Event::Commit {
                command: Box::new(command),
                then,
            },
        );
    }

    /// A proposal from a bridge: sent on its session, or, while its session is down (a
    /// partition), kept for the session to carry when it is back (as a bridge's register does).
    fn propose_from_bridge(&mut self, bridge: usize, command: Command) {
        if !self.bridges[bridge].session_up {
            if self.deferred.len() < DEFERRED_MAX {
                self.deferred.push((bridge, command));
            }
            return;
        }
        self.propose(command, Then::Nothing);
    }

    /// One message's latency between two regions, jitter included.
    fn latency(&mut self, from_region: usize, to_region: usize) -> u64 {
        self.network.message_ms(&mut self.rng, from_region, to_region)
    }

    /// Whether a client (or bridge) in `region` and the control leader can talk: a request and
    /// its answer.
    fn control_reachable(&self, region: usize) -> bool {
        self.network.both_ways(region, self.control_region)
    }

    fn start(&mut self) {
        self.state
            .apply(Command::SetPlacementPolicy(PlacementPolicy::default()))
            .expect("a policy always applies");
        self.new_hub();
        // The bridges were registered before the run starts: their registrations commit at once.
        for index in 0..self.bridges.len() {
            self.open_hub_session(index);
        }
        let mut others = Vec::new();
        while let Some(Reverse(scheduled)) = self.queue.pop() {
            match scheduled.event {
                Event::Commit { command, then } => self.commit(*command, then),
                event => others.push((scheduled.at_ms, event)),
            }
        }
        for (at_ms, event) in others {
            self.schedule(at_ms, event);
        }
        self.last_commit_ms = 0;
        self.schedule(self.scenario.control.heartbeat_interval_ms, Event::HeartbeatRound);
        self.schedule(0, Event::Arrival);
        self.schedule(DETECTOR_POLL_MS, Event::DetectorPoll);
        self.schedule(TICK_MS, Event::Tick);
        self.schedule(SAMPLE_MS, Event::Sample);
        for index in 0..self.scenario.faults.len() {
            let at = self.scenario.faults[index].at_s * 1000;
            self.schedule(at, Event::Fault { index });
        }
    }

    /// Runs to the end; `progress` is called with the simulated time now and then.
    pub fn run(mut self, mut progress: impl FnMut(u64, u64)) -> Report {
        let mut next_progress = 0;
        while let Some(Reverse(next)) = self.queue.pop() {
            if next.at_ms > self.end_ms {
                break;
            }
            self.now_ms = next.at_ms;
            self.events += 1;
            self.handle(next.event);
            if self.now_ms >= next_progress {
                progress(self.now_ms, self.end_ms);
                next_progress = self.now_ms + PROGRESS_EVERY_MS;
            }
        }
        self.now_ms = self.end_ms;
        let converged = invariants::liveness::check(&self);
        self.violations.extend(converged);
        self.violations.extend(invariants::acked_joins::check(&self));
        self.violations.extend(invariants::one_live_bridge::check(&self));
        if self.timeline_t_s.last() != Some(&(self.end_ms / 1000)) {
            let media = self.sample_media();
            self.violations
                .extend(invariants::media_delivery::check(&self, &media));
        }
        self.report()
    }
}
