//! Faults: bridge and control failures, elections, partitions and healing, re-registration.

use super::*;

impl World {
    pub(super) fn fault(&mut self, index: usize) {
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
                    Then::Nothing,
                );
            }
        }
    }

    /// The leader is lost (crashed, or cut from the majority): nothing commits until the others
    /// elect a new one, `election_ms` from now, if a majority of them can.
    pub(super) fn start_election(&mut self, fault: Option<usize>, election_ms: u64) {
        self.lost_leader = Some((self.cluster.leader, self.now_ms));
        self.leader_down_until_ms = self.now_ms + election_ms;
        self.leader_fault = fault;
        self.schedule(self.leader_down_until_ms, Event::NewLeader);
    }

    /// When `bridge`'s session, broken at `lost_at_ms` by the loss of `old_leader`, opens at the
    /// leader elected now: its real session's search for it (backoff, redirects), with the
    /// bridge's latency to control as half the round trip. Seeded by the run's seed, the bridge
    /// and the term, so it replays without drawing from the run's RNG.
    pub(super) fn session_reaches_new_leader(
        &self,
        bridge: usize,
        old_leader: usize,
        lost_at_ms: u64,
        latency_ms: u64,
    ) -> u64 {
        // The session is registered with the old leader from its own time 0; shift so that the
        // loss comes after that.
        let offset = 60_000;
        let change = crate::simulator::rediscovery::LeaderChange {
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
        let opens = crate::simulator::rediscovery::session_opens_at_ms(
            &change,
            self.bridges[bridge].registration.clone(),
            seed,
        );
        lost_at_ms + (opens - offset)
    }

    /// The bridge's session reaches control and registers (its current process instance).
    pub(super) fn register(&mut self, bridge: usize) {
        if !self.control_reachable(self.bridges[bridge].region) {
            // Its session waits for the partition to heal, which registers it.
            return;
        }
        self.bridges[bridge].session_up = true;
        self.open_hub_session(bridge);
    }

    pub(super) fn partition_starts(
        &mut self,
        fault: usize,
        region: &str,
        duration_s: u64,
        direction: CutDirection,
    ) {
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

    pub(super) fn partition_heals(&mut self, fault: usize) {
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
    pub(super) fn replay_deferred(&mut self, bridge: usize) {
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

    pub(super) fn reregistered(&mut self, bridge: usize) {
        if !self.bridges[bridge].alive || self.bridges[bridge].session_up {
            return;
        }
        self.register(bridge);
        if !self.bridges[bridge].session_up {
            return;
        }
        // Control's reconcile of its registration moves away the participants it hosts that
        // control seated elsewhere meanwhile (see `hub`).
        self.replay_deferred(bridge);
    }
}
