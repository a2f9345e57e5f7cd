//! Joining and the lobby: who a caller is, placing them or seating them in the lobby, and their session.

use super::*;

impl ControlNode {
    /// Who a join comes from: a logged-in host, the token's identity, an invitee, or a guest
    /// where the policy lets guests in.
    pub async fn caller(
        &self,
        room: &RoomId,
        authorization: Option<&str>,
        invite: Option<&str>,
    ) -> Result<Caller, ApiError> {
        let token = crate::auth::bearer(authorization)?;
        if let Some(host) = self.host_session(token).await? {
            return Ok(Self::host_caller(&host));
        }
        let invite = invite.map(|invite| self.invite_for(room, invite)).transpose()?;
        if token.is_none() && invite.is_some() {
            return Ok(Caller {
                invite,
                ..Caller::guest()
            });
        }
        // A quick refusal from this node's view; the state machine re-checks at commit.
        let opened = self.read(|state| state.rooms.get(room).is_some_and(|r| r.opened_by_moderator));
        let admission = self
            .tokens
            .admit(token, room, opened, now_unix_ms() / 1000)
            .map_err(|err| match err {
                // Without join tokens, the only credentials are host logins and invites.
                AuthError::TokenRequired if !self.tokens.tokens_enabled() => ApiError::new(
                    ErrorCode::HostsOnly,
                    "this meeting is for hosts only: log in as a host, or ask a host for an invite link",
                ),
                err => err.into(),
            })?;
        Ok(match admission {
            Admission::Guest => Caller::guest(),
            Admission::Token(identity) => Caller {
                role: if identity.moderator {
                    Role::Moderator
                } else {
                    Role::Member
                },
                // A kick bans the token's user from the meeting. Tokens without a user id (`sub` is
                // the tenant, shared by everyone) are banned by the token itself.
                user_id: Some(identity.user_id.unwrap_or_else(|| {
                    let digest = Sha256::digest(token.unwrap_or_default().as_bytes());
                    format!("token-{}", hex::encode(&digest[..16]))
                })),
                invite,
            },
        })
    }

    /// Places a participant (or seats them in the lobby) and issues what they need next.
    pub async fn join(
        &self,
        room: RoomId,
        display_name: &str,
        password: Option<String>,
        caller: Caller,
        client: ClientPlace,
    ) -> Result<JoinAnswer, ApiError> {
        let display_name = validate_display_name(display_name)?;
        let tokens_enabled = self.tokens.tokens_enabled();
        let policy = self.tokens.guest_policy();
        let guest_needs_moderator = policy == GuestPolicy::AfterModerator;
        // Only where anyone may open a room does opening it make a moderator; with host accounts
        // (`after_moderator`, `none`) a host does.
        let moderator_if_first = self.policy.first_participant_moderates
            && !tokens_enabled
            && policy == GuestPolicy::Open
            && caller.role == Role::Guest;
        let password_generation = self.check_password(&room, password, caller.role).await?;
        let participant = new_participant_id();
        // A placement can go stale between reading the state and committing (another join took
        // the last seat); the state machine refuses it and we place again.
        for _ in 0..3 {
            let bridge = self
                .read(|state| choose_bridge(state, &room, &client, None))
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::NoCapacity,
                        "no bridge has room for another participant",
                    )
                })?;
            let command = Command::Join(JoinRequestRecord {
                room: room.clone(),
                participant: participant.clone(),
                display_name: display_name.clone(),
                user_id: caller.user_id.clone(),
                role: caller.role,
                moderator_if_first,
                guest_needs_moderator,
                password_generation,
                bridge,
                at_ms: now_unix_ms(),
                client: client.clone(),
                invite: caller.invite.clone(),
            });
            match self.cluster.propose(command).await? {
                Ok(Outcome::Placed { bridge, role }) => {
                    return self
                        .joined(&room, &participant, &display_name, &bridge, role)
                        .map(JoinAnswer::Joined);
                }
                Ok(Outcome::InLobby { .. }) => {
                    return Ok(JoinAnswer::Lobby(self.lobby_wait(&room, &participant)));
                }
                Err(err) if err.is_placement_race() => continue,
                // The first try committed but its answer was lost (leader change); the id is ours.
                Err(ApplyError::DuplicateParticipant(_)) => {
                    return self.answer_for_existing(&room, &participant);
                }
                Err(err) => return Err(err.into()),
                Ok(other) => {
                    return Err(ApiError::new(
                        ErrorCode::Internal,
                        format!("unexpected outcome {other:?}"),
                    ));
                }
            }
        }
        Err(ApiError::new(
            ErrorCode::NoCapacity,
            "no bridge has room for another participant",
        ))
    }

    /// The password generation the caller's password matched, or why they cannot enter.
    pub(super) async fn check_password(
        &self,
        room: &RoomId,
        password: Option<String>,
        role: Role,
    ) -> Result<Option<u64>, ApiError> {
        let stored = self.read(|state| {
            state.rooms.get(room).and_then(|r| {
                r.settings
                    .password_hash
                    .clone()
                    .map(|h| (h, r.settings.password_generation))
            })
        });
        let Some((stored_hash, generation)) = stored else {
            return Ok(None);
        };
        if role == Role::Moderator {
            return Ok(None);
        }
        let Some(password) = password else {
            return Err(ApiError::new(
                ErrorCode::PasswordRequired,
                "this room has a password",
            ));
        };
        if password.chars().count() > PASSWORD_MAX_CHARS {
            return Err(ApiError::new(ErrorCode::WrongPassword, "wrong password"));
        }
        let _permit = self.password_permit()?;
        let matches = tokio::task::spawn_blocking(move || password::verify(&password, &stored_hash))
            .await
            .map_err(|err| ApiError::new(ErrorCode::Internal, err.to_string()))?;
        if matches {
            Ok(Some(generation))
        } else {
            Err(ApiError::new(ErrorCode::WrongPassword, "wrong password"))
        }
    }

    pub(super) fn password_permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
        self.password_checks.try_acquire().map_err(|_| {
            ApiError::new(
                ErrorCode::RateLimited,
                "too many password checks at once; retry in a moment",
            )
        })
    }

    pub(super) fn answer_for_existing(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
    ) -> Result<JoinAnswer, ApiError> {
        let record = self.participant(room, participant)?;
        match (record.status, &record.bridge) {
            (ParticipantStatus::Lobby, _) => Ok(JoinAnswer::Lobby(self.lobby_wait(room, participant))),
            (status, Some(bridge)) if status.on_bridge() => self
                .joined(room, participant, &record.display_name, bridge, record.role)
                .map(JoinAnswer::Joined),
            (ParticipantStatus::Kicked, _) => Err(ApiError::new(
                ErrorCode::Kicked,
                "you were removed from this meeting",
            )),
            (ParticipantStatus::Denied, _) => {
                Err(ApiError::new(ErrorCode::LobbyDenied, "a moderator declined"))
            }
            _ => Err(ApiError::new(
                ErrorCode::Conflict,
                "the participant is no longer in the room",
            )),
        }
    }

    pub(super) fn participant(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
    ) -> Result<ParticipantRecord, ApiError> {
        self.read(|state| {
            state
                .rooms
                .get(room)
                .and_then(|r| r.participants.get(participant))
                .cloned()
        })
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such participant in this room"))
    }

    pub(super) fn lobby_wait(&self, room: &RoomId, participant: &ParticipantId) -> LobbyWait {
        LobbyWait {
            room: room.clone(),
            participant_id: participant.clone(),
            session_token: self.sessions.issue(room, participant, now_unix_ms() / 1000),
            status: LobbyState::Waiting,
        }
    }

    /// The ticket and session for a participant placed on `bridge`.
    pub(super) fn joined(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
        display_name: &str,
        bridge: &BridgeId,
        role: Role,
    ) -> Result<JoinResponse, ApiError> {
        let record = self
            .read(|state| state.bridges.get(bridge).cloned())
            .ok_or_else(|| ApiError::new(ErrorCode::NoCapacity, format!("bridge {bridge} is gone")))?;
        let iat = now_unix_ms() / 1000;
        let claims = TicketClaims {
            aud: record.id.clone(),
            jti: format!("{:032x}", rand::rng().random::<u128>()),
            exp: iat + TICKET_TTL_S,
            iat,
            room: room.clone(),
            participant_id: participant.clone(),
            display_name: display_name.to_owned(),
            moderator: role == Role::Moderator,
        };
        let key = EncodingKey::from_secret(&keyed_by_bridge(&self.bridge_master_key, &record.id));
        let ticket = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
            .map_err(|err| ApiError::new(ErrorCode::Internal, format!("cannot sign ticket: {err}")))?;
        let ice_servers = self.ice_servers(&record.id, &record.turn_urls, participant, iat);
        Ok(JoinResponse {
            room: room.clone(),
            participant_id: participant.clone(),
            bridge_id: record.id,
            signaling_url: record.signaling_url,
            ticket,
            ticket_expires_in_s: TICKET_TTL_S,
            ice_servers,
            role,
            session_token: self.sessions.issue(room, participant, iat),
        })
    }

    /// The session's claims, or 401.
    pub fn session(&self, token: Option<&str>, room: &RoomId) -> Result<SessionClaims, ApiError> {
        token
            .and_then(|token| self.sessions.check(token, room))
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthorized,
                    "a valid session token for this room is needed",
                )
            })
    }

    /// A lobby waiter's poll: still waiting, admitted (with a ticket), or refused.
    pub fn lobby_status(&self, room: &RoomId, session: &SessionClaims) -> Result<JoinAnswer, ApiError> {
        let record = self.participant(room, &session.participant_id)?;
        match record.status {
            ParticipantStatus::Lobby => Ok(JoinAnswer::Lobby(LobbyWait {
                room: room.clone(),
                participant_id: session.participant_id.clone(),
                session_token: String::new(),
                status: LobbyState::Waiting,
            })),
            ParticipantStatus::Denied => Err(ApiError::new(ErrorCode::LobbyDenied, "a moderator declined")),
            ParticipantStatus::Kicked => Err(ApiError::new(
                ErrorCode::Kicked,
                "you were removed from this meeting",
            )),
            ParticipantStatus::Placed | ParticipantStatus::Connected => {
                let bridge = record.bridge.as_ref().expect("a placed participant has a bridge");
                self.joined(
                    room,
                    &session.participant_id,
                    &record.display_name,
                    bridge,
                    record.role,
                )
                .map(JoinAnswer::Joined)
            }
        }
    }

    /// A guest gives up waiting in the lobby (or a placement it will not use): its place is freed
    /// at once instead of at expiry.
    pub async fn withdraw(&self, room: &RoomId, session: &SessionClaims) -> Result<(), ApiError> {
        let record = self.participant(room, &session.participant_id)?;
        if record.status == ParticipantStatus::Connected {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "connected participants leave through their bridge",
            ));
        }
        self.participant_left(room.clone(), session.participant_id.clone())
            .await
    }
}
