//! One bridge's session in the engine: its registration, its messages, and its events committed
//! in order.

use super::*;
use crate::state::ParticipantStatus;
use bridgemesh_proto::bridge_session::{BridgeToControl, REGISTER_PARTICIPANTS_MAX};

impl HubEngine {
    /// A bridge connected: the id under which the driver reports what the session does.
    pub fn open_session(&mut self) -> SessionId {
        let id = self.next_session;
        self.next_session += 1;
        id
    }

    /// The session's first message. `authenticated` is the bridge the connection's certificate
    /// names: the session may register that bridge and no other.
    pub fn handle_register(
        &mut self,
        now_ms: u64,
        session: SessionId,
        authenticated: &BridgeId,
        first: BridgeToControl,
    ) {
        let BridgeToControl::Register {
            bridge: registration,
            instance,
            participants,
            load,
        } = first
        else {
            let last = refused("register_expected", "the first message must be register");
            return self.close(session, Some(last));
        };
        if !self.leading {
            let last = ControlToBridge::NotLeader {
                leader_url: self.leader_url.clone(),
            };
            return self.close(session, Some(last));
        }
        if participants.len() > REGISTER_PARTICIPANTS_MAX || instance.is_empty() || instance.len() > 128 {
            let last = refused(
                "invalid",
                "register lists too many participants or a bad instance",
            );
            return self.close(session, Some(last));
        }
        let bridge = registration.id.clone();
        if &bridge != authenticated {
            tracing::warn!(%authenticated, claimed = %bridge, "a bridge tried to register under another bridge's id");
            let message =
                format!("this connection's certificate is bridge {authenticated}'s, not {bridge}'s");
            return self.close(session, Some(refused("bridge_id_mismatch", &message)));
        }
        if let Some(message) = self.claimed_by_another(now_ms, &bridge, &instance) {
            return self.close(session, Some(refused("bridge_id_in_use", &message)));
        }
        let command = Command::RegisterBridge {
            registration,
            instance: Some(instance.clone()),
            at_ms: now_ms,
        };
        self.pending.insert(
            session,
            Pending {
                bridge,
                instance,
                hosted: participants.into_iter().collect(),
                load,
            },
        );
        self.propose(command, Purpose::Register { session });
    }

    /// A message on a registered session (messages on others are ignored).
    pub fn handle_message(&mut self, now_ms: u64, session: SessionId, message: BridgeToControl) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        s.last_message_ms = now_ms;
        let bridge = s.bridge.clone();
        self.detector.heard(&bridge, now_ms);
        match message {
            BridgeToControl::Heartbeat { load } => self.note_load(now_ms, session, load),
            BridgeToControl::ParticipantJoined { room, participant } => {
                self.enqueue(
                    now_ms,
                    session,
                    BridgeWork::Joined(HostedParticipant { room, participant }),
                );
            }
            BridgeToControl::ParticipantLeft {
                room,
                participant,
                dropped,
            } => {
                self.media.forget(&bridge, &room, &participant);
                let entry = HostedParticipant { room, participant };
                let work = if dropped {
                    BridgeWork::Dropped(entry)
                } else {
                    BridgeWork::Left(entry)
                };
                self.enqueue(now_ms, session, work);
            }
            BridgeToControl::Drain { grace_ms } => self.enqueue(now_ms, session, BridgeWork::Drain(grace_ms)),
            BridgeToControl::ParticipantsMedia { updates } => self.media.note(&bridge, updates),
            BridgeToControl::Register { .. } => {
                tracing::warn!(%bridge, "second register on one session ignored");
            }
            other => tracing::debug!(%bridge, ?other, "unexpected bridge message"),
        }
    }

    /// The session ended (closed by the bridge, broken, or closed on the engine's word). Its
    /// events already received are still committed.
    pub fn handle_session_closed(&mut self, now_ms: u64, session: SessionId) {
        self.pending.remove(&session);
        self.session_gone(now_ms, session);
    }

    /// A proposal's result.
    pub fn handle_committed(&mut self, now_ms: u64, id: ProposalId, result: Committed, state: &ControlState) {
        let Some(purpose) = self.proposals.remove(&id) else {
            return;
        };
        match purpose {
            Purpose::Register { session } => self.registration_committed(now_ms, session, result, state),
            Purpose::Verdict { bridge } => {
                self.verdicts_in_flight.remove(&bridge);
                match result {
                    Ok(Ok(Outcome::BridgeStatusChanged { moved, .. })) if !moved.is_empty() => {
                        tracing::info!(%bridge, moved = moved.len(), "participants moved off the bridge");
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => tracing::debug!(%bridge, %err, "status change refused"),
                    Err(err) => tracing::warn!(%bridge, %err, "status change not committed"),
                }
            }
            Purpose::Work { session, item } => {
                let bridge = match self.queues.get_mut(&session) {
                    Some(queue) => {
                        queue.in_flight = false;
                        queue.bridge.clone()
                    }
                    None => return,
                };
                self.work_done(session, &bridge, item, result, state);
                self.pump(now_ms, session);
            }
            Purpose::Plain => match result {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => tracing::debug!(%err, "refused"),
                Err(err) => tracing::debug!(%err, "not committed"),
            },
        }
    }

    fn registration_committed(
        &mut self,
        now_ms: u64,
        session: SessionId,
        result: Committed,
        state: &ControlState,
    ) {
        let Some(pending) = self.pending.remove(&session) else {
            return; // the session ended meanwhile
        };
        let status = match result {
            Ok(Ok(Outcome::BridgeRegistered { status })) => status,
            Ok(Ok(other)) => {
                tracing::error!(?other, "unexpected outcome of a registration");
                return self.close(session, None);
            }
            Ok(Err(err)) => return self.close(session, Some(refused("invalid", &err.to_string()))),
            Err(err) => {
                // Leadership moved while committing: the bridge retries and is redirected.
                tracing::debug!(%err, "registration not committed");
                return self.close(session, Some(ControlToBridge::NotLeader { leader_url: None }));
            }
        };
        let Pending {
            bridge,
            instance,
            hosted,
            load,
        } = pending;
        // Membership changes not pushed yet go out to the sessions as they stand (to this
        // bridge's old session, if any, as well); this session is then told its rooms' full sets
        // as of now.
        self.push_membership(state);
        if let Some(old) = self.current.insert(bridge.clone(), session) {
            self.sessions.remove(&old);
            self.outputs.push_back(HubOutput::Close {
                session: old,
                last: Some(refused("replaced", "a newer session of this bridge took over")),
            });
            if let Some(queue) = self.queues.get_mut(&old) {
                queue.open = false;
            }
        }
        self.sessions.insert(
            session,
            Session {
                bridge: bridge.clone(),
                instance,
                load_commits: LoadCommitThrottle::default(),
                last_message_ms: now_ms,
            },
        );
        self.detector.session_opened(&bridge, now_ms);
        tracing::info!(%bridge, ?status, "bridge registered");
        let mut messages = vec![ControlToBridge::Registered {
            heartbeat_interval_ms: self.config.heartbeat_interval_ms,
            status,
        }];
        messages.extend(self.membership.room_bridges_of(&bridge));
        messages.push(ControlToBridge::RoomBridgesComplete);
        self.outputs
            .push_back(HubOutput::Registered { session, messages });

        let plan = reconcile(state, &bridge, &hosted);
        for message in plan.to_bridge {
            self.outputs.push_back(HubOutput::Send { session, message });
        }
        // Gone while the bridge was away from control: left or dropped, nobody knows; as a drop,
        // a participant that is reconnecting keeps its place.
        let items = plan
            .confirm
            .into_iter()
            .map(BridgeWork::Joined)
            .chain(plan.leave.into_iter().map(BridgeWork::Dropped))
            .collect();
        self.queues.insert(
            session,
            WorkQueue {
                bridge,
                items,
                in_flight: false,
                open: true,
            },
        );
        self.pump(now_ms, session);
        self.note_load(now_ms, session, load);
    }

    /// Another live process already holds this bridge id.
    fn claimed_by_another(&self, now_ms: u64, bridge: &BridgeId, instance: &str) -> Option<String> {
        let session = self.sessions.get(self.current.get(bridge)?)?;
        if session.instance == instance {
            return None;
        }
        let since = now_ms.saturating_sub(self.config.detector.suspect_after_ms);
        (self.detector.heard_since(bridge, since) == Liveliness::HeardSince)
            .then(|| format!("bridge id {bridge} is held by another live bridge process"))
    }

    /// Commits a load report when it changed enough or the last one is getting old.
    fn note_load(&mut self, now_ms: u64, session: SessionId, load: LoadReport) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        if !s.load_commits.take(now_ms, load.stress) {
            return;
        }
        let command = Command::ReportLoad {
            bridge: s.bridge.clone(),
            load,
            at_ms: now_ms,
        };
        self.propose(command, Purpose::Plain);
    }

    fn enqueue(&mut self, now_ms: u64, session: SessionId, work: BridgeWork) {
        let Some(queue) = self.queues.get_mut(&session) else {
            return;
        };
        if queue.items.len() >= FROM_BRIDGE_QUEUE_MAX {
            tracing::warn!(bridge = %queue.bridge, "bridge event queue full; the bridge's next registration reconciles");
            return;
        }
        queue.items.push_back(work);
        self.pump(now_ms, session);
    }

    /// Proposes the session's next event unless one is in flight; drops a drained closed queue.
    fn pump(&mut self, now_ms: u64, session: SessionId) {
        let Some(queue) = self.queues.get_mut(&session) else {
            return;
        };
        if queue.in_flight {
            return;
        }
        let Some(item) = queue.items.pop_front() else {
            if !queue.open {
                self.queues.remove(&session);
            }
            return;
        };
        queue.in_flight = true;
        let bridge = queue.bridge.clone();
        let command = match &item {
            BridgeWork::Joined(entry) => Command::Confirm {
                room: entry.room.clone(),
                participant: entry.participant.clone(),
                bridge: Some(bridge),
            },
            BridgeWork::Left(entry) => Command::Leave {
                room: entry.room.clone(),
                participant: entry.participant.clone(),
                bridge: Some(bridge),
            },
            BridgeWork::Dropped(entry) => Command::Unconfirm {
                room: entry.room.clone(),
                participant: entry.participant.clone(),
                bridge,
                at_ms: now_ms,
            },
            BridgeWork::Drain(grace_ms) => Command::Drain {
                bridge,
                grace_ms: *grace_ms,
                by_operator: false,
                at_ms: now_ms,
            },
        };
        self.propose(command, Purpose::Work { session, item });
    }

    /// What follows from one of a bridge's events once committed.
    fn work_done(
        &mut self,
        session: SessionId,
        bridge: &BridgeId,
        item: BridgeWork,
        result: Committed,
        state: &ControlState,
    ) {
        let tell = |engine: &mut Self, message| {
            if engine.sessions.contains_key(&session) {
                engine.outputs.push_back(HubOutput::Send { session, message });
            }
        };
        match (item, result) {
            (_, Ok(Ok(_))) => {}
            (_, Err(err)) => tracing::warn!(%bridge, %err, "a bridge's event not committed"),
            // Placed elsewhere since (moved while its ticket was in flight).
            (BridgeWork::Joined(entry), Ok(Err(ApplyError::NotOnBridge(..)))) => tell(
                self,
                ControlToBridge::Move {
                    room: entry.room,
                    participant: entry.participant,
                },
            ),
            // Control no longer holds it: its meeting ended, or it was kicked or expired after its
            // ticket was issued. Its ticket must not outlive that decision.
            (BridgeWork::Joined(entry), Ok(Err(ApplyError::UnknownParticipant(..)))) => {
                let room = state.rooms.get(&entry.room);
                let still_on = room
                    .and_then(|r| r.participants.get(&entry.participant))
                    .is_some_and(|p| {
                        p.status == ParticipantStatus::Connected && p.bridge.as_ref() == Some(bridge)
                    });
                if still_on {
                    return; // already confirmed (a reconcile and the joined event raced)
                }
                let message = if room.is_some() {
                    ControlToBridge::Kick {
                        room: entry.room,
                        participant: entry.participant,
                    }
                } else {
                    ControlToBridge::EndRoom { room: entry.room }
                };
                tell(self, message);
            }
            // Moved off this bridge, or already gone.
            (_, Ok(Err(err))) => {
                tracing::debug!(%bridge, %err, "a bridge's event did not change the room state")
            }
        }
    }

    fn close(&mut self, session: SessionId, last: Option<ControlToBridge>) {
        self.outputs.push_back(HubOutput::Close { session, last });
    }

    /// Forgets a session that ended or was closed here; its queue drains on.
    pub(super) fn session_gone(&mut self, now_ms: u64, session: SessionId) {
        if let Some(s) = self.sessions.remove(&session)
            && self.current.get(&s.bridge) == Some(&session)
        {
            self.current.remove(&s.bridge);
            self.media.forget_bridge(&s.bridge);
            self.detector.session_closed(&s.bridge, now_ms);
            tracing::info!(bridge = %s.bridge, "bridge session closed");
        }
        if let Some(queue) = self.queues.get_mut(&session) {
            queue.open = false;
            if queue.items.is_empty() && !queue.in_flight {
                self.queues.remove(&session);
            }
        }
    }
}

pub(super) fn refused(code: &str, message: &str) -> ControlToBridge {
    ControlToBridge::Refused {
        code: code.into(),
        message: message.into(),
    }
}
