//! The discrete-event run: virtual time in milliseconds, one queue of events, one seeded RNG.
//!
//! Control is the real replicated state machine (`ControlState::apply`, which also moves the
//! participants of a bridge that is down or drained, with the real placement), the real
//! placement function for joins, the real failure detector fed by heartbeats and clients' loss
//! reports, and the real cascade membership push. Consensus is modeled ([`super::consensus`]): a
//! command is applied `consensus_delay_ms` after it is proposed, in proposal order, while the
//! leader holds a majority. Bridges and clients are models: bridges host sessions, heartbeat at
//! control's interval while alive and hear control's pushes; clients join, connect, leave, and
//! reconnect through control when their bridge is lost or they are moved. The network between
//! them is [`super::network`].

use super::cascade::{self, CascadeModel, Group, MembershipUpdate};
use super::consensus::{ControlCluster, Quorum};
use super::invariants::{self, Violation};
use super::network::{Cut, Network};
use super::report::{BridgeReport, FaultReport, MediaReport, Quantiles, RegionReport, Report};
use super::rng::SimRng;
use super::scenario::{CutDirection, FaultKind, Scenario};
use bridgemesh_control::cascade_membership::MembershipPush;
use bridgemesh_control::failure_detector::{FailureDetector, FailureDetectorConfig};
use bridgemesh_control::load_throttle::LoadCommitThrottle;
use bridgemesh_control::placement::{ClientPlace, PlacementPolicy, choose_bridge};
use bridgemesh_control::state::{Command, ControlState, JoinRequestRecord, Moved, Outcome};
use bridgemesh_proto::bridge_session::{
    BridgeRegistration, BridgeStatus, ControlToBridge, GeoPoint, LoadReport,
};
use bridgemesh_proto::{BridgeId, ParticipantId, RegionId, RoomId};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

/// A placement: the real one is [`choose_bridge`]; tests inject broken ones.
pub type Placement = fn(&ControlState, &RoomId, &ClientPlace) -> Option<BridgeId>;

/// The real placement, as control's join path calls it.
pub fn real_placement(state: &ControlState, room: &RoomId, client: &ClientPlace) -> Option<BridgeId> {
    choose_bridge(state, room, client, None)
}

/// How often control's hub looks at the failure detector, and how often it ticks the state.
const DETECTOR_POLL_MS: u64 = 50;
const TICK_MS: u64 = 1_000;
const LOAD_REPORT_MS: u64 = 1_000;
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
    LoadReport,
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
    Status {
        bridge: usize,
    },
    /// The hub then sends the bridge every room it shares.
    Registered {
        bridge: usize,
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
    /// Which of its load reports control commits: the hub's own rule.
    load_commits: LoadCommitThrottle,
    peak: usize,
    verdict_in_flight: bool,
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
    detector: FailureDetector,
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
                    load_commits: LoadCommitThrottle::default(),
                    peak: 0,
                    verdict_in_flight: false,
                });
            }
        }
        let bridge_index = bridges
            .iter()
            .enumerate()
            .map(|(i, b)| (b.id.clone(), i))
            .collect();
        let c = &scenario.control;
        let detector = FailureDetector::new(FailureDetectorConfig {
            suspect_after_ms: c.suspect_after_ms,
            down_after_ms: c.down_after_ms,
            loss_reports_needed: c.loss_reports_needed,
            leader_grace_ms: c.leader_grace_ms,
            ..FailureDetectorConfig::default()
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
            detector,
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
        self.detector.became_leader(0);
        for index in 0..self.bridges.len() {
            let registration = self.bridges[index].registration.clone();
            self.state
                .apply(Command::RegisterBridge {
                    registration,
                    instance: Some("1".into()),
                    at_ms: 0,
                })
                .expect("a fresh bridge registers");
            self.detector.session_opened(&self.bridges[index].id.clone(), 0);
        }
        self.schedule(self.scenario.control.heartbeat_interval_ms, Event::HeartbeatRound);
        self.schedule(0, Event::Arrival);
        self.schedule(DETECTOR_POLL_MS, Event::DetectorPoll);
        self.schedule(TICK_MS, Event::Tick);
        self.schedule(LOAD_REPORT_MS, Event::LoadReport);
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

    fn handle(&mut self, event: Event) {
        match event {
            Event::Arrival => self.arrival(),
            Event::JoinAtControl { participant, attempt } => self.join_at_control(participant, attempt),
            Event::Commit { command, then } => {
                if !self.cluster.can_commit(&self.network) {
                    // The leader lost its majority after the proposal: it commits nothing; the
                    // proposer retries with whoever leads next.
                    if self.now_ms >= self.leader_down_until_ms {
                        self.start_election(None, self.scenario.control.election_ms);
                    }
                    self.propose(*command, then);
                    return;
                }
                self.violations
                    .extend(invariants::no_split_brain::check(self, self.last_commit));
                self.last_commit = Some((self.cluster.term, self.cluster.leader));
                self.commit(*command, then)
            }
            Event::Connect {
                participant,
                bridge,
                epoch,
            } => self.connect(participant, bridge, epoch),
            Event::Leave { participant } => self.leave(participant),
            Event::HeartbeatRound => {
                let leading = self.now_ms >= self.leader_down_until_ms;
                for bridge in 0..self.bridges.len() {
                    let region = self.bridges[bridge].region;
                    let b = &self.bridges[bridge];
                    if leading && b.alive && b.session_up && self.network.reaches(region, self.control_region)
                    {
                        let lat = self.latency(self.bridges[bridge].region, self.control_region);
                        let id = self.bridges[bridge].id.clone();
                        self.detector.heard(&id, self.now_ms + lat);
                    }
                }
                let next = self.now_ms + self.scenario.control.heartbeat_interval_ms;
                self.schedule(next, Event::HeartbeatRound);
            }
            Event::SessionClosed { bridge } => {
                if self.bridges[bridge].session_up {
                    // A newer session opened meanwhile.
                    return;
                }
                let id = self.bridges[bridge].id.clone();
                self.detector.session_closed(&id, self.now_ms);
            }
            Event::DetectorPoll => {
                let verdicts = if self.now_ms >= self.leader_down_until_ms {
                    self.detector.poll(self.now_ms, &self.state)
                } else {
                    Vec::new()
                };
                for (id, status) in verdicts {
                    let index = self.bridge_index[&id];
                    if self.bridges[index].verdict_in_flight {
                        continue;
                    }
                    self.bridges[index].verdict_in_flight = true;
                    self.propose(
                        Command::SetBridgeStatus {
                            bridge: id,
                            status,
                            at_ms: self.now_ms,
                        },
                        Then::Status { bridge: index },
                    );
                }
                if self.now_ms >= self.leader_down_until_ms {
                    self.hub_push();
                }
                self.schedule(self.now_ms + DETECTOR_POLL_MS, Event::DetectorPoll);
            }
            Event::Tick => {
                self.propose(
                    Command::Tick {
                        now_ms: self.now_ms,
                        room_grace_ms: ROOM_GRACE_MS,
                    },
                    Then::Nothing,
                );
                self.schedule(self.now_ms + TICK_MS, Event::Tick);
            }
            Event::LoadReport => {
                for index in 0..self.bridges.len() {
                    let bridge = &self.bridges[index];
                    if !bridge.alive || !bridge.session_up {
                        continue;
                    }
                    let stress = bridge.hosted as f64 / f64::from(bridge.capacity.max(1));
                    if !self.bridges[index].load_commits.take(self.now_ms, stress) {
                        continue;
                    }
                    let bridge = &self.bridges[index];
                    let command = Command::ReportLoad {
                        bridge: bridge.id.clone(),
                        load: LoadReport {
                            participants: bridge.hosted as u32,
                            cpu: stress * 0.8,
                            packets_per_s: 0.0,
                            stress,
                        },
                        at_ms: self.now_ms,
                    };
                    self.propose(command, Then::Nothing);
                }
                self.schedule(self.now_ms + LOAD_REPORT_MS, Event::LoadReport);
            }
            Event::Sample => {
                self.timeline_t_s.push(self.now_ms / 1000);
                self.timeline_regions
                    .push(self.region_hosted.iter().map(|n| *n as u32).collect());
                self.timeline_bridges
                    .push(self.bridges.iter().map(|b| b.hosted as u32).collect());
                let media = self.sample_media();
                self.violations
                    .extend(invariants::media_delivery::check(self, &media));
                self.violations.extend(invariants::capacity::check(self));
                self.violations.extend(invariants::acked_joins::check(self));
                self.schedule(self.now_ms + SAMPLE_MS, Event::Sample);
            }
            Event::Fault { index } => self.fault(index),
            Event::NewLeader => {
                if let Some(node) = self.crashed_node.take() {
                    // Its process is restarted meanwhile; it comes back as a follower.
                    self.cluster.up[node] = true;
                }
                if !self.cluster.elect(&self.network) {
                    self.leader_down_until_ms = NO_LEADER;
                    return;
                }
                self.leader_down_until_ms = self.now_ms;
                self.control_region = self.cluster.leader_region();
                self.elections.push(super::report::ElectionReport {
                    at_ms: self.now_ms,
                    term: self.cluster.term,
                    region: self.region_ids[self.control_region].to_string(),
                });
                // It knows nothing of the bridges: each gets the leader's grace from now, and
                // registers again when its session, looking for the new leader on its own, gets
                // here (the real session's search, run on the side: see `rediscovery`).
                self.detector.became_leader(self.now_ms);
                self.cascade.push = MembershipPush::default();
                let (old_leader, lost_at_ms) = self
                    .lost_leader
                    .take()
                    .unwrap_or((self.cluster.leader, self.now_ms));
                for bridge in 0..self.bridges.len() {
                    self.bridges[bridge].verdict_in_flight = false;
                    self.bridges[bridge].session_up = false;
                    if self.bridges[bridge].alive {
                        let lat = self.latency(self.bridges[bridge].region, self.control_region);
                        let opens_at = self.session_reaches_new_leader(bridge, old_leader, lost_at_ms, lat);
                        self.schedule(opens_at, Event::SessionOpened { bridge });
                    }
                }
                for (command, then, since_ms) in std::mem::take(&mut self.stalled) {
                    if let (Some(fault), Command::Join(_)) = (self.leader_fault, &command) {
                        self.faults[fault].affected += 1;
                        self.faults[fault].recovery_ms.push(self.now_ms - since_ms);
                    }
                    self.propose(command, then);
                }
                self.leader_fault = None;
            }
            Event::PartitionHeals { fault } => self.partition_heals(fault),
            Event::LinkRestored { fault } => self.network.restore(fault),
            Event::Membership {
                bridge,
                instance,
                update,
            } => {
                let b = &self.bridges[bridge];
                if b.alive && b.instance == instance {
                    self.cascade.hear(bridge, *update);
                }
            }
            Event::Reregistered { bridge } => self.reregistered(bridge),
            Event::SessionOpened { bridge } => {
                let b = &self.bridges[bridge];
                if b.alive && !b.session_up && self.control_reachable(b.region) {
                    self.bridges[bridge].session_up = true;
                    let id = self.bridges[bridge].id.clone();
                    self.detector.session_opened(&id, self.now_ms);
                    self.registered_push(bridge);
                    self.replay_deferred(bridge);
                }
            }
            Event::Reconnect {
                participant,
                epoch,
                lost,
                since_ms,
            } => self.reconnect(participant, epoch, lost, since_ms),
            Event::MoveArrives { participant, bridge } => {
                let p = &self.participants[participant];
                if p.hosted_on != Some(bridge) {
                    return;
                }
                self.drop_session(participant);
                let lat = self.latency(self.bridges[bridge].region, self.participants[participant].region);
                let epoch = self.participants[participant].epoch;
                self.schedule(
                    self.now_ms + lat,
                    Event::Reconnect {
                        participant,
                        epoch,
                        lost: bridge,
                        since_ms: self.now_ms,
                    },
                );
            }
        }
    }

    fn arrival(&mut self) {
        let p = &self.scenario.participants;
        let in_burst = p.burst_s > 0 && (self.now_ms / 1000) % 3600 < p.burst_s;
        let rate = p.arrivals_per_s * if in_burst { p.burst_factor } else { 1.0 };
        let gap_ms = (self.rng.exponential(1000.0 / rate)).max(1.0) as u64;
        if self.now_ms + gap_ms <= self.scenario.duration_s * 1000 {
            self.schedule(self.now_ms + gap_ms, Event::Arrival);
        }
        let weights: Vec<f64> = self.scenario.regions.iter().map(|r| r.weight).collect();
        let region = self.rng.weighted(&weights);
        let room = match self.filling_room.take() {
            Some((room, left)) if left > 1 => {
                self.filling_room = Some((room.clone(), left - 1));
                room
            }
            Some((room, _)) => room,
            None => {
                self.rooms_created += 1;
                let room = RoomId::new(format!("room-{}", self.rooms_created)).expect("valid room id");
                let size = self.rng.between(
                    u64::from(self.scenario.participants.room_size_min),
                    u64::from(self.scenario.participants.room_size_max),
                ) as u32;
                if size > 1 {
                    self.filling_room = Some((room.clone(), size - 1));
                }
                room
            }
        };
        let index = self.participants.len();
        let id = ParticipantId::new(format!("p-{index}")).expect("valid participant id");
        let r = &self.scenario.regions[region];
        let place = ClientPlace {
            point: Some(GeoPoint {
                latitude: r.latitude,
                longitude: r.longitude,
            }),
            region: None,
        };
        self.participant_index.insert(id.clone(), index);
        self.participants.push(SimParticipant {
            id,
            room,
            room_number: self.rooms_created as usize - 1,
            region,
            place,
            acked: false,
            active: true,
            hosted_on: None,
            epoch: 0,
            recovering: None,
            connected_once: false,
            arrived_ms: self.now_ms,
            connected_at_ms: 0,
            retries: 0,
        });
        let lat = self.latency(region, self.control_region);
        self.schedule(
            self.now_ms + lat,
            Event::JoinAtControl {
                participant: index,
                attempt: 1,
            },
        );
    }

    fn join_at_control(&mut self, participant: usize, attempt: u32) {
        if !self
            .network
            .reaches(self.participants[participant].region, self.control_region)
        {
            if self.now_ms - self.participants[participant].arrived_ms > JOIN_BUDGET_MS {
                self.join_failed(participant, "control unreachable", false);
            } else {
                self.schedule(
                    self.now_ms + CONTROL_RETRY_MS,
                    Event::JoinAtControl { participant, attempt },
                );
            }
            return;
        }
        let p = &self.participants[participant];
        let Some(bridge) = (self.placement)(&self.state, &p.room, &p.place) else {
            self.join_failed(participant, "no bridge can take it", true);
            return;
        };
        let command = Command::Join(JoinRequestRecord {
            moderator_if_first: true,
            client: p.place.clone(),
            ..JoinRequestRecord::guest(p.room.clone(), p.id.clone(), bridge, self.now_ms)
        });
        self.propose(command, Then::Join { participant, attempt });
    }

    /// A join that did not make it. `refused`: control refused it (placement or the state
    /// machine), which the `refused_with_room` invariant judges; otherwise it never got there.
    fn join_failed(&mut self, participant: usize, reason: &str, refused: bool) {
        self.joins_failed += 1;
        *self.join_failures.entry(reason.to_owned()).or_insert(0) += 1;
        self.participants[participant].active = false;
        if refused {
            let room = self.participants[participant].room.clone();
            self.violations
                .extend(invariants::refused_with_room::check(self, &room, reason));
        }
    }

    /// Control placed the participant but its answer cannot reach it: the client times out and
    /// asks again, as a new participant to control (the first seat, never confirmed, expires).
    fn answer_lost(&mut self, participant: usize) {
        let p = &mut self.participants[participant];
        if self.now_ms - p.arrived_ms > JOIN_BUDGET_MS {
            self.join_failed(participant, "control's answer lost", false);
            return;
        }
        p.retries += 1;
        let id = ParticipantId::new(format!("p-{participant}-{}", p.retries)).expect("valid participant id");
        let old = std::mem::replace(&mut p.id, id.clone());
        self.participant_index.remove(&old);
        self.participant_index.insert(id, participant);
        self.schedule(
            self.now_ms + CONTROL_RETRY_MS,
            Event::JoinAtControl {
                participant,
                attempt: 1,
            },
        );
    }

    /// Control's hub, at every poll: the `room_bridges` due since the last one go out on the
    /// bridges' sessions.
    fn hub_push(&mut self) {
        for (id, message) in self.cascade.push.poll(&self.state) {
            let Some(&bridge) = self.bridge_index.get(&id) else {
                continue;
            };
            let update = self.membership_update(message);
            self.tell_bridge(bridge, update);
        }
    }

    /// A bridge registered: the hub sends it every room it shares (after a poll, as the hub).
    fn registered_push(&mut self, bridge: usize) {
        self.hub_push();
        let rooms = self
            .cascade
            .push
            .room_bridges_of(&self.bridges[bridge].id)
            .into_iter()
            .filter_map(|message| match self.membership_update(message) {
                MembershipUpdate::Room(room, peers) => Some((room, peers)),
                MembershipUpdate::Full(_) => None,
            })
            .collect();
        self.tell_bridge(bridge, MembershipUpdate::Full(rooms));
    }

    fn membership_update(&self, message: ControlToBridge) -> MembershipUpdate {
        match message {
            ControlToBridge::RoomBridges { room, peers } => MembershipUpdate::Room(
                room,
                peers
                    .iter()
                    .filter_map(|peer| self.bridge_index.get(&peer.bridge).copied())
                    .collect(),
            ),
            other => unreachable!("the hub's membership sends only room_bridges, not {other:?}"),
        }
    }

    /// Sends on the bridge's session; lost when there is none.
    fn tell_bridge(&mut self, bridge: usize, update: MembershipUpdate) {
        let b = &self.bridges[bridge];
        if !b.alive || !b.session_up {
            return;
        }
        let instance = b.instance;
        let lat = self.latency(self.control_region, b.region);
        let at = (self.now_ms + lat).max(self.bridges[bridge].session_arrival_ms);
        self.bridges[bridge].session_arrival_ms = at;
        self.schedule(
            at,
            Event::Membership {
                bridge,
                instance,
                update: Box::new(update),
            },
        );
    }

    fn commit(&mut self, command: Command, then: Then) {
        let result = self.state.apply(command);
        match then {
            Then::Join { participant, attempt } => match result {
                Ok(Outcome::Placed { bridge, .. }) => {
                    if !self
                        .network
                        .reaches(self.control_region, self.participants[participant].region)
                    {
                        self.answer_lost(participant);
                        return;
                    }
                    self.joins_ok += 1;
                    self.participants[participant].acked = true;
                    let b = self.bridge_index[&bridge];
                    self.send_to_bridge(participant, b);
                }
                Err(err) if err.is_placement_race() && attempt < JOIN_ATTEMPTS => {
                    self.schedule(
                        self.now_ms,
                        Event::JoinAtControl {
                            participant,
                            attempt: attempt + 1,
                        },
                    );
                }
                Err(err) => self.join_failed(participant, &format!("{err}"), true),
                Ok(other) => self.join_failed(participant, &format!("unexpected {other:?}"), true),
            },
            Then::Status { bridge } => {
                self.bridges[bridge].verdict_in_flight = false;
                if let Ok(Outcome::BridgeStatusChanged { moved, status, .. }) = result {
                    if status == BridgeStatus::Down {
                        self.bridges_declared_down += 1;
                    }
                    self.moved(&moved);
                }
            }
            Then::Registered { bridge } => {
                if result.is_ok() {
                    self.registered_push(bridge);
                }
            }
            Then::Nothing => {
                if let Ok(Outcome::Ticked { moved, .. }) = result {
                    self.moved(&moved);
                }
            }
        }
    }

    /// The answer (with its ticket) reaches the client, which connects to the bridge.
    fn send_to_bridge(&mut self, participant: usize, bridge: usize) {
        let region = self.participants[participant].region;
        let answer = self.latency(self.control_region, region);
        let to_bridge = self.latency(region, self.bridges[bridge].region);
        let p = &self.scenario.participants;
        let (connect, jitter) = (p.connect_ms, p.connect_jitter_ms);
        let at = self.now_ms + answer + to_bridge + connect + self.rng.between(0, jitter);
        let epoch = self.participants[participant].epoch;
        self.schedule(
            at,
            Event::Connect {
                participant,
                bridge,
                epoch,
            },
        );
    }

    fn connect(&mut self, participant: usize, bridge: usize, epoch: u64) {
        let p = &self.participants[participant];
        if p.epoch != epoch || !p.active {
            return;
        }
        let unreachable = !self.network.both_ways(p.region, self.bridges[bridge].region);
        if !self.bridges[bridge].alive || unreachable {
            // Died between the placement and the connect (the client finds nobody there), or
            // a partition lies between them (its ICE checks go unanswered).
            let since = self.now_ms;
            let notice = if unreachable {
                PEER_CONNECTION_FAILED_MS
            } else {
                self.scenario.participants.notice_ms
            };
            self.schedule(
                self.now_ms + notice,
                Event::Reconnect {
                    participant,
                    epoch,
                    lost: bridge,
                    since_ms: since,
                },
            );
            return;
        }
        if let Some(other) = p.hosted_on
            && other != bridge
            && self.bridges[other].alive
        {
            self.violations.push(Violation::new(
                self.now_ms,
                "one_live_bridge",
                format!(
                    "{} connects to {} while {} still hosts it",
                    p.id, self.bridges[bridge].id, self.bridges[other].id
                ),
            ));
        }
        self.participants[participant].hosted_on = Some(bridge);
        self.participants[participant].connected_at_ms = self.now_ms;
        self.participants[participant].epoch += 1;
        let b = &mut self.bridges[bridge];
        b.hosted += 1;
        b.peak = b.peak.max(b.hosted);
        if b.hosted > b.capacity as usize {
            self.violations.push(Violation::new(
                self.now_ms,
                "capacity",
                format!(
                    "{} hosts {} participants, capacity {}",
                    b.id, b.hosted, b.capacity
                ),
            ));
        }
        let region = self.participants[participant].region;
        self.region_hosted[region] += 1;
        self.region_peak[region] = self.region_peak[region].max(self.region_hosted[region]);
        if let Some((fault, since)) = self.participants[participant].recovering.take() {
            self.faults[fault].recovery_ms.push(self.now_ms - since);
        }
        // The bridge tells control it arrived.
        let (room, id) = (
            self.participants[participant].room.clone(),
            self.participants[participant].id.clone(),
        );
        self.propose_from_bridge(
            bridge,
            Command::Confirm {
                room,
                participant: id,
                bridge: Some(self.bridges[bridge].id.clone()),
            },
        );
        if !self.participants[participant].connected_once {
            self.participants[participant].connected_once = true;
            let stay = self
                .rng
                .exponential(self.scenario.participants.stay_s_mean * 1000.0) as u64;
            if self.now_ms + stay < self.scenario.duration_s * 1000 {
                self.schedule(self.now_ms + stay.max(1), Event::Leave { participant });
            }
        }
    }

    fn drop_session(&mut self, participant: usize) {
        if let Some(bridge) = self.participants[participant].hosted_on.take() {
            self.bridges[bridge].hosted = self.bridges[bridge].hosted.saturating_sub(1);
            let region = self.participants[participant].region;
            self.region_hosted[region] = self.region_hosted[region].saturating_sub(1);
        }
        self.participants[participant].epoch += 1;
    }

    fn leave(&mut self, participant: usize) {
        if !self.participants[participant].active {
            return;
        }
        let bridge = self.participants[participant].hosted_on;
        self.drop_session(participant);
        self.participants[participant].active = false;
        if let Some((fault, _)) = self.participants[participant].recovering.take() {
            self.faults[fault].left += 1;
        }
        let (room, id) = (
            self.participants[participant].room.clone(),
            self.participants[participant].id.clone(),
        );
        let command = Command::Leave {
            room,
            participant: id,
            bridge: bridge.map(|b| self.bridges[b].id.clone()),
        };
        match bridge {
            Some(b) => self.propose_from_bridge(b, command),
            None => self.propose(command, Then::Nothing),
        }
    }

    /// Participants control moved: a live bridge hears `move` and says `bye{moved}`; the
    /// clients of a dead one find out by themselves and are already asking.
    fn moved(&mut self, moved: &[Moved]) {
        for m in moved {
            let Some(&participant) = self.participant_index.get(&m.participant) else {
                continue;
            };
            let Some(&from) = self.bridge_index.get(&m.from) else {
                continue;
            };
            if m.to.is_none() {
                // No seat anywhere: control let it go, and it must join again.
                self.participants[participant].acked = false;
            }
            let hosted_there = self.participants[participant].hosted_on == Some(from);
            // A move a partition keeps from the bridge is lost; its return reconciles, and the
            // participant's recovery counts from the cut.
            let region = self.bridges[from].region;
            if hosted_there
                && (!self.bridges[from].session_up || !self.network.reaches(self.control_region, region))
            {
                let cut = self
                    .network
                    .cut_between(self.control_region, region)
                    .or_else(|| self.network.cut_between(region, self.control_region))
                    .copied();
                if let Some(Cut { fault, since_ms, .. }) = cut
                    && self.participants[participant].recovering.is_none()
                {
                    self.faults[fault].affected += 1;
                    self.participants[participant].recovering = Some((fault, since_ms));
                }
                continue;
            }
            if self.bridges[from].alive && hosted_there {
                let lat = self.latency(self.control_region, self.bridges[from].region);
                self.schedule(
                    self.now_ms + lat,
                    Event::MoveArrives {
                        participant,
                        bridge: from,
                    },
                );
            }
        }
    }

    fn reconnect(&mut self, participant: usize, epoch: u64, lost: usize, since_ms: u64) {
        let p = &self.participants[participant];
        if p.epoch != epoch || !p.active {
            return;
        }
        if self.now_ms.saturating_sub(since_ms) > self.scenario.participants.reconnect_budget_ms {
            if let Some((fault, _)) = self.participants[participant].recovering.take() {
                self.faults[fault].gave_up += 1;
            }
            self.participants[participant].active = false;
            return;
        }
        if !self.control_reachable(self.participants[participant].region) {
            self.schedule(
                self.now_ms + CONTROL_RETRY_MS,
                Event::Reconnect {
                    participant,
                    epoch,
                    lost,
                    since_ms,
                },
            );
            return;
        }
        let p = &self.participants[participant];
        let lost_id = self.bridges[lost].id.clone();
        let record = self
            .state
            .rooms
            .get(&p.room)
            .and_then(|room| room.participants.get(&p.id))
            .map(|r| (r.status, r.bridge.clone()));
        match record {
            Some((status, Some(bridge))) if status.on_bridge() && bridge != lost_id => {
                let b = self.bridge_index[&bridge];
                self.send_to_bridge(participant, b);
            }
            Some((status, Some(_))) if status.on_bridge() => {
                // Still on the lost bridge: report it, and ask again until control decides.
                let id = p.id.clone();
                self.detector.report_loss(&lost_id, &id, self.now_ms);
                self.schedule(
                    self.now_ms + RECONNECT_RETRY_MS,
                    Event::Reconnect {
                        participant,
                        epoch,
                        lost,
                        since_ms,
                    },
                );
            }
            _ => {
                // Control no longer holds it (no seat anywhere when it was moved): join again.
                self.participants[participant].epoch += 1;
                self.schedule(
                    self.now_ms,
                    Event::JoinAtControl {
                        participant,
                        attempt: 1,
                    },
                );
            }
        }
    }

    fn fault(&mut self, index: usize) {
        let kind = self.scenario.faults[index].kind.clone();
        let bridge = match (&kind, kind.bridge()) {
            (FaultKind::KillControlLeader { election_ms }, _) => {
                if self.leader_down_until_ms > self.now_ms {
                    // No leader to kill: an election is under way already.
                    return;
                }
                let leader = self.cluster.leader;
                self.cluster.up[leader] = false;
                self.crashed_node = Some(leader);
                self.start_election(Some(index), *election_ms);
                return;
            }
            (
                FaultKind::PartitionRegion {
                    region,
                    duration_s,
                    direction,
                },
                _,
            ) => {
                self.partition_starts(index, region, *duration_s, *direction);
                return;
            }
            (
                FaultKind::DegradeLink {
                    from,
                    to,
                    duration_s,
                    extra_latency_ms,
                    loss_percent,
                    bandwidth_kbps,
                },
                _,
            ) => {
                let pair = (self.scenario.region_index(from), self.scenario.region_index(to));
                self.network
                    .degrade(index, pair, *extra_latency_ms, *loss_percent, *bandwidth_kbps);
                self.schedule(
                    self.now_ms + duration_s * 1000,
                    Event::LinkRestored { fault: index },
                );
                return;
            }
            (_, Some(id)) => self.bridge_index[&BridgeId::new(id).expect("validated")],
            (_, None) => unreachable!("every other fault names a bridge"),
        };
        match kind {
            FaultKind::KillBridge { .. } => {
                if !self.bridges[bridge].alive {
                    return;
                }
                self.bridges[bridge].alive = false;
                self.cascade.forget(bridge);
                if std::mem::take(&mut self.bridges[bridge].session_up) {
                    let lat = self.latency(self.bridges[bridge].region, self.control_region);
                    self.schedule(self.now_ms + lat, Event::SessionClosed { bridge });
                }
                let hosted: Vec<usize> = (0..self.participants.len())
                    .filter(|&p| self.participants[p].hosted_on == Some(bridge))
                    .collect();
                self.faults[index].affected += hosted.len() as u64;
                for participant in hosted {
                    self.drop_session(participant);
                    self.participants[participant].recovering = Some((index, self.now_ms));
                    let to_control = self.latency(self.participants[participant].region, self.control_region);
                    let at = self.now_ms + self.scenario.participants.notice_ms + to_control;
                    let epoch = self.participants[participant].epoch;
                    self.schedule(
                        at,
                        Event::Reconnect {
                            participant,
                            epoch,
                            lost: bridge,
                            since_ms: self.now_ms,
                        },
                    );
                }
            }
            FaultKind::RestartBridge { .. } => {
                if self.bridges[bridge].alive {
                    return;
                }
                let b = &mut self.bridges[bridge];
                b.alive = true;
                b.instance += 1;
                b.load_commits = LoadCommitThrottle::default();
                self.register(bridge);
            }
            FaultKind::KillControlLeader { .. }
            | FaultKind::PartitionRegion { .. }
            | FaultKind::DegradeLink { .. } => {
                unreachable!("handled above")
            }
            FaultKind::DrainBridge { grace_s, .. } => {
                let hosted = (0..self.participants.len())
                    .filter(|&p| self.participants[p].hosted_on == Some(bridge))
                    .collect::<Vec<_>>();
                self.faults[index].affected += hosted.len() as u64;
                for participant in hosted {
                    self.participants[participant].recovering = Some((index, self.now_ms + grace_s * 1000));
                }
                let id = self.bridges[bridge].id.clone();
                self.propose(
                    Command::Drain {
                        bridge: id,
                        grace_ms: grace_s * 1000,
                        by_operator: true,
                        at_ms: self.now_ms,
                    },
                    Then::Status { bridge },
                );
            }
        }
    }

    /// The leader is lost (crashed, or cut from the majority): nothing commits until the others
    /// elect a new one, `election_ms` from now, if a majority of them can.
    fn start_election(&mut self, fault: Option<usize>, election_ms: u64) {
        self.lost_leader = Some((self.cluster.leader, self.now_ms));
        self.leader_down_until_ms = self.now_ms + election_ms;
        self.leader_fault = fault;
        self.schedule(self.leader_down_until_ms, Event::NewLeader);
    }

    /// When `bridge`'s session, broken at `lost_at_ms` by the loss of `old_leader`, opens at the
    /// leader elected now: its real session's search for it (backoff, redirects), with the
    /// bridge's latency to control as half the round trip. Seeded by the run's seed, the bridge
    /// and the term, so it replays without drawing from the run's RNG.
    fn session_reaches_new_leader(
        &self,
        bridge: usize,
        old_leader: usize,
        lost_at_ms: u64,
        latency_ms: u64,
    ) -> u64 {
        // The session is registered with the old leader from its own time 0; shift so that the
        // loss comes after that.
        let offset = 60_000;
        let change = super::rediscovery::LeaderChange {
            nodes: self.cluster.regions.len(),
            old_leader,
            old_leader_back_at_election: true,
            new_leader: self.cluster.leader,
            lost_at_ms: offset,
            elected_at_ms: offset + (self.now_ms - lost_at_ms),
            rtt_ms: 2 * latency_ms.max(1),
        };
        let seed = bridgemesh_bridge::splitmix::SplitMix64::new(
            self.seed ^ (self.cluster.term << 32) ^ bridge as u64,
        )
        .next_u64();
        let opens =
            super::rediscovery::session_opens_at_ms(&change, self.bridges[bridge].registration.clone(), seed);
        lost_at_ms + (opens - offset)
    }

    /// The bridge's session reaches control and registers (its current process instance).
    fn register(&mut self, bridge: usize) {
        if !self.control_reachable(self.bridges[bridge].region) {
            // Its session waits for the partition to heal, which registers it.
            return;
        }
        self.bridges[bridge].session_up = true;
        let registration = self.bridges[bridge].registration.clone();
        let instance = self.bridges[bridge].instance;
        self.propose(
            Command::RegisterBridge {
                registration,
                instance: Some(instance.to_string()),
                at_ms: self.now_ms,
            },
            Then::Registered { bridge },
        );
        let id = self.bridges[bridge].id.clone();
        self.detector.session_opened(&id, self.now_ms);
    }

    fn partition_starts(&mut self, fault: usize, region: &str, duration_s: u64, direction: CutDirection) {
        let region = self.scenario.region_index(region);
        self.network.cut(Cut {
            fault,
            region,
            direction,
            since_ms: self.now_ms,
        });
        self.schedule(self.now_ms + duration_s * 1000, Event::PartitionHeals { fault });
        if self.now_ms >= self.leader_down_until_ms && !self.cluster.can_commit(&self.network) {
            self.start_election(Some(fault), self.scenario.control.election_ms);
        }
        // Sessions across the cut stop carrying anything (one way is enough: ICE consent and
        // DTLS need answers); their clients give up on them.
        for participant in 0..self.participants.len() {
            let Some(bridge) = self.participants[participant].hosted_on else {
                continue;
            };
            if self
                .network
                .both_ways(self.participants[participant].region, self.bridges[bridge].region)
            {
                continue;
            }
            self.faults[fault].affected += 1;
            self.drop_session(participant);
            self.participants[participant].recovering = Some((fault, self.now_ms));
            let epoch = self.participants[participant].epoch;
            self.schedule(
                self.now_ms + PEER_CONNECTION_FAILED_MS,
                Event::Reconnect {
                    participant,
                    epoch,
                    lost: bridge,
                    since_ms: self.now_ms,
                },
            );
        }
        // Bridges' sessions with control across the cut end: the bridge gives control up after
        // its silence timeout and closes the session, which control sees when the way from the
        // bridge is open; otherwise control only stops hearing it.
        for bridge in 0..self.bridges.len() {
            let b = &self.bridges[bridge];
            if !b.alive || !b.session_up || self.control_reachable(b.region) {
                continue;
            }
            let region = b.region;
            self.bridges[bridge].session_up = false;
            if self.network.reaches(region, self.control_region) {
                let lat = self.latency(self.bridges[bridge].region, self.control_region);
                self.schedule(
                    self.now_ms + SESSION_SILENCE_MS + lat,
                    Event::SessionClosed { bridge },
                );
            }
        }
    }

    fn partition_heals(&mut self, fault: usize) {
        self.network.heal(fault);
        if self.leader_down_until_ms == NO_LEADER {
            self.start_election(Some(fault), self.scenario.control.election_ms);
        }
        // The bridges whose sessions it broke open them again.
        for bridge in 0..self.bridges.len() {
            let b = &self.bridges[bridge];
            if b.alive && !b.session_up && self.control_reachable(b.region) {
                let lat = self.latency(self.bridges[bridge].region, self.control_region);
                self.schedule(self.now_ms + lat, Event::Reregistered { bridge });
            }
        }
    }

    /// A bridge back from a partition registers again and replays what happened meanwhile;
    /// control moves away (or tells to rejoin) the participants it hosts that it seated elsewhere.
    /// The bridge's session is open again: what it kept while it was down goes out.
    fn replay_deferred(&mut self, bridge: usize) {
        if !self.deferred.iter().any(|(from, _)| *from == bridge) {
            return;
        }
        let (replay, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deferred)
            .into_iter()
            .partition(|(from, _)| *from == bridge);
        self.deferred = keep;
        for (_, command) in replay {
            self.propose(command, Then::Nothing);
        }
    }

    fn reregistered(&mut self, bridge: usize) {
        if !self.bridges[bridge].alive || self.bridges[bridge].session_up {
            return;
        }
        self.register(bridge);
        if !self.bridges[bridge].session_up {
            return;
        }
        self.replay_deferred(bridge);
        let id = self.bridges[bridge].id.clone();
        for participant in 0..self.participants.len() {
            let p = &self.participants[participant];
            if p.hosted_on != Some(bridge) || !p.active {
                continue;
            }
            let seat = self
                .state
                .rooms
                .get(&p.room)
                .and_then(|room| room.participants.get(&p.id))
                .and_then(|record| record.bridge.clone());
            if seat.as_ref() != Some(&id) {
                let lat = self.latency(self.control_region, self.bridges[bridge].region);
                self.schedule(self.now_ms + lat, Event::MoveArrives { participant, bridge });
            }
        }
    }

    fn report(self) -> Report {
        let faults = self
            .faults
            .iter()
            .map(|f| FaultReport {
                at_s: f.at_ms / 1000,
                kind: f.kind.clone(),
                bridge: f.bridge.clone(),
                affected: f.affected,
                recovered: f.recovery_ms.len() as u64,
                gave_up: f.gave_up,
                left: f.left,
                recovery_ms: Quantiles::of(&f.recovery_ms),
            })
            .collect();
        let bridges = self
            .bridges
            .iter()
            .map(|b| BridgeReport {
                id: b.id.to_string(),
                region: self.region_ids[b.region].to_string(),
                capacity: b.capacity,
                peak_participants: b.peak as u64,
            })
            .collect();
        let regions = self
            .region_ids
            .iter()
            .enumerate()
            .map(|(i, id)| RegionReport {
                id: id.to_string(),
                peak_participants: self.region_peak[i] as u64,
            })
            .collect();
        let timeline = self.timeline();
        let mut links: Vec<super::report::LinkReport> = self
            .cascade_peak_kbps
            .iter()
            .map(|((a, b), kbps)| super::report::LinkReport {
                from: self.bridges[*a].id.to_string(),
                to: self.bridges[*b].id.to_string(),
                peak_kbps: *kbps,
            })
            .collect();
        links.sort_by(|x, y| {
            y.peak_kbps
                .cmp(&x.peak_kbps)
                .then(x.from.cmp(&y.from))
                .then(x.to.cmp(&y.to))
        });
        let cascade_links = links.len() as u64;
        links.truncate(super::report::LINKS_LISTED_MAX);
        let mut violations = self.violations;
        violations
            .sort_by(|a, b| (a.at_ms, &a.invariant, &a.message).cmp(&(b.at_ms, &b.invariant, &b.message)));
        let violation_count = violations.len() as u64;
        violations.truncate(super::report::VIOLATIONS_LISTED_MAX);
        Report {
            scenario: self.scenario.name.clone(),
            seed: self.seed,
            simulated_s: self.end_ms / 1000,
            events: self.events,
            participants_arrived: self.participants.len() as u64,
            rooms: self.rooms_created,
            joins_ok: self.joins_ok,
            joins_failed: self.joins_failed,
            bridges_declared_down: self.bridges_declared_down,
            cascade_links,
            busiest_links: links,
            media: self.media,
            elections: self.elections,
            join_failures: self.join_failures,
            faults,
            bridges,
            regions,
            violation_count,
            violations,
            timeline,
        }
    }

    /// The media now: every room's participants grouped by the bridge hosting them, through the
    /// bridges' views of the cascade. Records the bandwidth per link and who misses whom.
    fn sample_media(&mut self) -> cascade::MediaSample {
        let settled_before_ms = self.now_ms.saturating_sub(invariants::media_delivery::BOUND_MS);
        // By room number, not id: no string comparisons for 100k participants every 10 s.
        let mut rooms: Vec<(Option<&RoomId>, Vec<Group>)> =
            vec![(None, Vec::new()); self.rooms_created as usize];
        for (index, p) in self.participants.iter().enumerate() {
            let Some(bridge) = p.hosted_on.filter(|_| p.active) else {
                continue;
            };
            let (room, groups) = &mut rooms[p.room_number];
            room.get_or_insert(&p.room);
            let group = match groups.iter_mut().position(|g| g.bridge == bridge) {
                Some(at) => &mut groups[at],
                None => {
                    groups.push(Group {
                        bridge,
                        region: self.bridges[bridge].region,
                        ..Group::default()
                    });
                    groups.last_mut().expect("just pushed")
                }
            };
            group.participants += 1;
            if p.connected_at_ms <= settled_before_ms {
                group.settled += 1;
                group.example.get_or_insert(index);
            }
        }
        let per_publisher_kbps =
            u64::from(self.scenario.participants.audio_kbps + self.scenario.participants.video_kbps);
        let network = &self.network;
        let sample = cascade::sample(
            &self.cascade,
            rooms
                .iter()
                .filter_map(|(room, groups)| Some((room.as_ref()?, groups.as_slice())))
                .filter(|(_, groups)| groups.len() > 1)
                .map(|(room, groups)| (*room, groups)),
            per_publisher_kbps,
            |a, b| network.both_ways(a, b),
            |a, b| network.bandwidth_kbps(a, b),
        );
        self.timeline_cascade_kbps.push(sample.link_kbps.values().sum());
        for (link, kbps) in &sample.link_kbps {
            let peak = self.cascade_peak_kbps.entry(*link).or_insert(0);
            *peak = (*peak).max(*kbps);
        }
        let m = &mut self.media;
        m.samples += 1;
        m.samples_with_gaps += u64::from(sample.pairs_missing > 0);
        m.congested_link_samples += sample.congested_links;
        if sample.pairs_missing > m.pairs_missing_peak {
            m.pairs_missing_peak = sample.pairs_missing;
            m.pairs_missing_peak_at_s = self.now_ms / 1000;
        }
        self.timeline_media_missing.push(sample.pairs_missing);
        sample
    }

    /// The per-region series, and the busiest bridges' (by peak), for the report's plots.
    fn timeline(&self) -> super::report::Timeline {
        let series =
            |index: usize, of: &[Vec<u32>]| of.iter().map(|sample| sample[index]).collect::<Vec<_>>();
        let regions = self
            .region_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.to_string(), series(i, &self.timeline_regions)))
            .collect();
        let mut by_peak: Vec<usize> = (0..self.bridges.len()).collect();
        by_peak.sort_by(|a, b| self.bridges[*b].peak.cmp(&self.bridges[*a].peak).then(a.cmp(b)));
        let busiest_bridges = by_peak
            .into_iter()
            .take(super::report::TIMELINE_BRIDGES_MAX)
            .map(|i| (self.bridges[i].id.to_string(), series(i, &self.timeline_bridges)))
            .collect();
        let recovery_ms = self
            .faults
            .iter()
            .flat_map(|f| f.recovery_ms.iter().copied())
            .collect();
        super::report::Timeline {
            t_s: self.timeline_t_s.clone(),
            regions,
            busiest_bridges,
            recovery_ms,
            cascade_kbps: self.timeline_cascade_kbps.clone(),
            media_pairs_missing: self.timeline_media_missing.clone(),
        }
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.now_ms
    }

    pub(super) fn participant_view(&self) -> impl Iterator<Item = ParticipantView<'_>> {
        self.participants.iter().map(|p| ParticipantView {
            id: &p.id,
            room: &p.room,
            acked: p.acked,
            active: p.active,
            hosted_on: p.hosted_on,
        })
    }

    pub(super) fn control_cluster(&self) -> &ControlCluster {
        &self.cluster
    }

    pub(super) fn network(&self) -> &Network {
        &self.network
    }

    /// Replaces the control cluster's quorum rule: tests inject broken ones.
    pub fn with_quorum(mut self, quorum: Quorum) -> Self {
        self.cluster.set_quorum(quorum);
        self
    }

    /// When the last fault is over.
    pub(super) fn faults_end_ms(&self) -> u64 {
        self.faults_end_ms
    }

    pub(super) fn participant_id(&self, index: usize) -> &ParticipantId {
        &self.participants[index].id
    }

    /// The bridge hosting a participant that has a session.
    pub(super) fn hosting_bridge_id(&self, participant: usize) -> &BridgeId {
        let participant = &self.participants[participant];
        &self.bridges[participant.hosted_on.expect("a settled participant is hosted")].id
    }

    pub(super) fn bridge_view(&self) -> impl Iterator<Item = BridgeView<'_>> {
        self.bridges.iter().enumerate().map(|(index, b)| BridgeView {
            index,
            id: &b.id,
            alive: b.alive,
            hosted: b.hosted,
            capacity: b.capacity,
            max_per_room: b.registration.max_participants_per_room,
        })
    }
}

/// What an invariant may look at of a participant.
pub struct ParticipantView<'a> {
    pub id: &'a ParticipantId,
    pub room: &'a RoomId,
    pub acked: bool,
    pub active: bool,
    pub hosted_on: Option<usize>,
}

/// What an invariant may look at of a bridge.
pub struct BridgeView<'a> {
    pub index: usize,
    pub id: &'a BridgeId,
    pub alive: bool,
    pub hosted: usize,
    pub capacity: u32,
    pub max_per_room: u32,
}

impl World {
    pub(super) fn state(&self) -> &ControlState {
        &self.state
    }

    pub(super) fn bridge_status(&self, id: &BridgeId) -> Option<BridgeStatus> {
        self.state.bridges.get(id).map(|b| b.status)
    }
}
