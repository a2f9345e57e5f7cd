//! Event dispatch: what each scheduled event does when its virtual time comes.

use super::*;

impl World {
    pub(super) fn handle(&mut self, event: Event) {
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
                        self.hub_heartbeat(bridge, self.now_ms + lat);
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
                self.close_hub_session(bridge);
            }
            Event::DetectorPoll => {
                let next = if self.now_ms >= self.leader_down_until_ms {
                    self.hub_tick();
                    self.hub.poll_timeout().max(self.now_ms + 1)
                } else {
                    self.now_ms + DETECTOR_POLL_MS
                };
                self.schedule(next, Event::DetectorPoll);
            }
            Event::Tick => {
                self.propose(
                    Command::Tick {
                        now_ms: self.now_ms,
                        room_grace_ms: ROOM_GRACE_MS,
                        unconfirmed_join_ttl_ms: None,
                    },
                    Then::Nothing,
                );
                self.schedule(self.now_ms + TICK_MS, Event::Tick);
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
                self.elections.push(crate::simulator::report::ElectionReport {
                    at_ms: self.now_ms,
                    term: self.cluster.term,
                    region: self.region_ids[self.control_region].to_string(),
                });
                // It knows nothing of the bridges: each gets the leader's grace from now, and
                // registers again when its session, looking for the new leader on its own, gets
                // here (the real session's search, run on the side: see `rediscovery`).
                self.new_hub();
                let (old_leader, lost_at_ms) = self
                    .lost_leader
                    .take()
                    .unwrap_or((self.cluster.leader, self.now_ms));
                for bridge in 0..self.bridges.len() {
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
                    self.open_hub_session(bridge);
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
}
