//! Clients: arrivals, joins at control, connecting to a bridge, leaving, being moved and reconnecting.

use super::*;

impl World {
    pub(super) fn arrival(&mut self) {
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

    pub(super) fn join_at_control(&mut self, participant: usize, attempt: u32) {
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
    pub(super) fn join_failed(&mut self, participant: usize, reason: &str, refused: bool) {
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
    pub(super) fn answer_lost(&mut self, participant: usize) {
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
    /// The answer (with its ticket) reaches the client, which connects to the bridge.
    pub(super) fn send_to_bridge(&mut self, participant: usize, bridge: usize) {
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

    pub(super) fn connect(&mut self, participant: usize, bridge: usize, epoch: u64) {
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

    pub(super) fn drop_session(&mut self, participant: usize) {
        if let Some(bridge) = self.participants[participant].hosted_on.take() {
            self.bridges[bridge].hosted = self.bridges[bridge].hosted.saturating_sub(1);
            let region = self.participants[participant].region;
            self.region_hosted[region] = self.region_hosted[region].saturating_sub(1);
        }
        self.participants[participant].epoch += 1;
    }

    pub(super) fn leave(&mut self, participant: usize) {
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
    pub(super) fn moved(&mut self, moved: &[Moved]) {
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

    pub(super) fn reconnect(&mut self, participant: usize, epoch: u64, lost: usize, since_ms: u64) {
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
                self.hub_loss_report(lost, participant);
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
}
