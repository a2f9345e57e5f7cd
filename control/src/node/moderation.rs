//! Moderator actions, room views and settings, and bridge events (leaves, reconnects, the tick).

use super::*;

impl ControlNode {
    /// Checks that the session's participant moderates the room right now.
    pub(super) fn require_moderator(&self, room: &RoomId, session: &SessionClaims) -> Result<(), ApiError> {
        let record = self.participant(room, &session.participant_id)?;
        if record.role == Role::Moderator && record.status.on_bridge() {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                "only a moderator in the meeting can do this",
            ))
        }
    }

    pub fn room_view(&self, room: &RoomId, session: &SessionClaims) -> Result<RoomView, ApiError> {
        let you = self.participant(room, &session.participant_id)?;
        if !you.status.on_bridge() {
            // Waiting, refused or removed participants do not get to see who is in the meeting.
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "only participants in the meeting see it",
            ));
        }
        let moderator = you.role == Role::Moderator;
        self.read(|state| {
            let record = state
                .rooms
                .get(room)
                .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such room"))?;
            let view = |(id, p): (&ParticipantId, &ParticipantRecord)| ParticipantView {
                participant_id: id.clone(),
                display_name: p.display_name.clone(),
                role: p.role,
                bridge_id: p.bridge.clone(),
                since_ms: p.since_ms,
            };
            Ok(RoomView {
                room: room.clone(),
                you: session.participant_id.clone(),
                your_role: you.role,
                password_set: record.settings.password_hash.is_some(),
                lobby_enabled: record.settings.lobby_enabled,
                participants: record
                    .participants
                    .iter()
                    .filter(|(_, p)| p.status.on_bridge())
                    .map(view)
                    .collect(),
                lobby: if moderator {
                    lobby_of(record).map(view).collect()
                } else {
                    Vec::new()
                },
            })
        })
    }

    pub async fn admit(
        &self,
        room: &RoomId,
        session: &SessionClaims,
        target: &ParticipantId,
    ) -> Result<(), ApiError> {
        self.require_moderator(room, session)?;
        let client = self.participant(room, target)?.client;
        for _ in 0..3 {
            let bridge = self
                .read(|state| choose_bridge(state, room, &client, None))
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::NoCapacity,
                        "no bridge has room for another participant",
                    )
                })?;
            let command = Command::Admit {
                room: room.clone(),
                by: session.participant_id.clone(),
                participant: target.clone(),
                bridge,
                at_ms: now_unix_ms(),
            };
            match self.cluster.propose(command).await? {
                Ok(_) => return Ok(()),
                Err(err) if err.is_placement_race() => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(ApiError::new(
            ErrorCode::NoCapacity,
            "no bridge has room for another participant",
        ))
    }

    pub async fn deny(
        &self,
        room: &RoomId,
        session: &SessionClaims,
        target: &ParticipantId,
    ) -> Result<(), ApiError> {
        self.require_moderator(room, session)?;
        self.commit(Command::Deny {
            room: room.clone(),
            by: session.participant_id.clone(),
            participant: target.clone(),
            at_ms: now_unix_ms(),
        })
        .await
    }

    pub async fn kick(
        &self,
        room: &RoomId,
        session: &SessionClaims,
        target: &ParticipantId,
    ) -> Result<(), ApiError> {
        self.require_moderator(room, session)?;
        let outcome = self
            .propose(Command::Kick {
                room: room.clone(),
                by: session.participant_id.clone(),
                participant: target.clone(),
                at_ms: now_unix_ms(),
            })
            .await?;
        // The bridge hub tells the participant's bridge (`Outcome::Kicked`): a participant placed
        // but not yet connected holds a ticket too, which its bridge must refuse.
        let _ = outcome;
        Ok(())
    }

    /// The operator removes `target` (admin API): as a moderator's kick, without a moderator.
    pub async fn admin_kick(&self, room: &RoomId, target: &ParticipantId) -> Result<(), ApiError> {
        self.propose(Command::AdminKick {
            room: room.clone(),
            participant: target.clone(),
            at_ms: now_unix_ms(),
        })
        .await?;
        Ok(())
    }

    /// Asks every participant but the moderator to mute; committed so that the room's bridges
    /// hear of it from whichever node took the request (the bridges relay it).
    pub async fn mute_all(&self, room: &RoomId, session: &SessionClaims) -> Result<(), ApiError> {
        self.require_moderator(room, session)?;
        self.commit(Command::MuteAll {
            room: room.clone(),
            by: session.participant_id.clone(),
        })
        .await
    }

    pub async fn end_meeting(&self, room: &RoomId, session: &SessionClaims) -> Result<(), ApiError> {
        self.require_moderator(room, session)?;
        // The bridge hub tells the room's bridges (`Outcome::RoomEnded`).
        self.commit(Command::EndRoom {
            room: room.clone(),
            by: session.participant_id.clone(),
        })
        .await
    }

    pub async fn update_settings(
        &self,
        room: &RoomId,
        session: &SessionClaims,
        update: RoomSettingsUpdate,
    ) -> Result<(), ApiError> {
        self.require_moderator(room, session)?;
        let password = match update.password {
            None => None,
            Some(None) => Some(PasswordChange::Remove),
            Some(Some(password)) => {
                if password.is_empty() || password.chars().count() > PASSWORD_MAX_CHARS {
                    return Err(ApiError::new(
                        ErrorCode::InvalidField,
                        format!("a password has 1 to {PASSWORD_MAX_CHARS} characters"),
                    ));
                }
                let _permit = self.password_permit()?;
                let hash = tokio::task::spawn_blocking(move || password::hash(&password))
                    .await
                    .map_err(|err| ApiError::new(ErrorCode::Internal, err.to_string()))?;
                Some(PasswordChange::SetHash(hash))
            }
        };
        self.commit(Command::UpdateSettings {
            room: room.clone(),
            by: session.participant_id.clone(),
            password,
            lobby_enabled: update.lobby_enabled,
        })
        .await
    }

    /// The participant gives up its place (bridges report leaves through their session).
    pub async fn participant_left(&self, room: RoomId, participant: ParticipantId) -> Result<(), ApiError> {
        self.commit(Command::Leave {
            room,
            participant,
            bridge: None,
        })
        .await
    }

    /// A participant asks where to go after losing its bridge (`lost_bridge`) or being told it
    /// moved. Its loss report counts toward declaring that bridge down; the answer is a fresh
    /// ticket for its bridge as the state has it once that is decided (or after a bounded wait).
    pub async fn reconnect(
        &self,
        room: &RoomId,
        session: &SessionClaims,
        lost_bridge: Option<BridgeId>,
    ) -> Result<JoinAnswer, ApiError> {
        let participant = &session.participant_id;
        let record = self.participant(room, participant)?;
        if let Some(lost) = lost_bridge
            && record.status.on_bridge()
            && record.bridge.as_ref() == Some(&lost)
        {
            let verdict = self
                .hub
                .report_loss(LossReport {
                    room: room.clone(),
                    participant: participant.clone(),
                    bridge: lost.clone(),
                })
                .await;
            if verdict == LossVerdict::Moved {
                // The leader saw the move; wait for it to be applied here too.
                let deadline = Instant::now() + RECONNECT_MOVE_WAIT;
                while Instant::now() < deadline
                    && self.participant(room, participant)?.bridge.as_ref() == Some(&lost)
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        self.answer_for_existing(room, participant)
    }

    /// Lets time pass in the state (expiries, rooms ending). Only the leader ticks, so a cluster
    /// commits one tick per period, not one per node.
    pub async fn tick(&self) {
        if self.cluster.health().role != crate::raft::cluster::RaftRole::Leader {
            return;
        }
        let command = Command::Tick {
            now_ms: now_unix_ms(),
            room_grace_ms: self.policy.room_grace_ms,
            unconfirmed_join_ttl_ms: Some(self.policy.unconfirmed_join_ttl_ms),
        };
        if let Err(err) = self.propose(command).await {
            tracing::debug!(%err, "tick not committed");
        }
    }
}
