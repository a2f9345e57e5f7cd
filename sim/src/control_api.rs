//! The control HTTP calls a synthetic participant makes: join, reconnect, and the lobby.
//! See docs/api.md for the endpoints.

use crate::error::ParticipantError;
use crate::participant::ParticipantOptions;
use crate::reconnect::{Refusal, classify_error};
use bridgemesh_proto::api::{ErrorBody, JoinRequest, JoinResponse, LobbyWait, ReconnectRequest};
use bridgemesh_proto::{BridgeId, ParticipantId, RoomId};
use std::net::IpAddr;
use std::time::Duration;

/// Largest error body quoted in an [`ParticipantError::Http`].
const ERROR_BODY_QUOTE: usize = 512;
/// Bound on opening a TCP connection to control; the callers bound whole calls.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a participant in the lobby asks whether it was let in (docs/api.md: about 1 s).
pub(crate) const LOBBY_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What control answered to a join, a reconnect or a lobby poll.
#[derive(Debug)]
pub(crate) enum JoinAnswer {
    /// `200`: placed on a bridge, with a fresh ticket.
    Joined(Box<JoinResponse>),
    /// `202`: wait in the lobby for a moderator.
    Lobby(LobbyWait),
}

/// Control's participant API at one base URL.
pub(crate) struct ControlClient {
    http: reqwest::Client,
    base: String,
}

impl ControlClient {
    /// `bind_ip` is the local address requests are sent from (control geolocates clients by it).
    pub(crate) fn new(control_url: &str, bind_ip: Option<IpAddr>) -> Result<Self, ParticipantError> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .local_address(bind_ip)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| ParticipantError::Connect(e.to_string()))?;
        Ok(Self {
            http,
            base: control_url.trim_end_matches('/').to_owned(),
        })
    }

    /// `POST /api/v1/rooms/{room}/join`.
    pub(crate) async fn join(
        &self,
        room: &RoomId,
        options: &ParticipantOptions,
    ) -> Result<JoinAnswer, ParticipantError> {
        let url = format!("{}/api/v1/rooms/{room}/join", self.base);
        let body = JoinRequest {
            display_name: options.display_name.clone(),
            password: options.password.clone(),
            invite: None,
        };
        self.answer("POST", &url, self.http.post(&url).json(&body)).await
    }

    /// `POST /api/v1/rooms/{room}/participants/{participant}/reconnect` with the session token.
    pub(crate) async fn reconnect(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
        session_token: &str,
        lost_bridge: Option<BridgeId>,
    ) -> Result<JoinAnswer, ParticipantError> {
        let url = format!(
            "{}/api/v1/rooms/{room}/participants/{participant}/reconnect",
            self.base
        );
        let request = self
            .http
            .post(&url)
            .bearer_auth(session_token)
            .json(&ReconnectRequest { lost_bridge });
        self.answer("POST", &url, request).await
    }

    /// `GET /api/v1/rooms/{room}/lobby/{participant}` with the session token of the wait.
    pub(crate) async fn lobby_status(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
        session_token: &str,
    ) -> Result<JoinAnswer, ParticipantError> {
        let url = format!("{}/api/v1/rooms/{room}/lobby/{participant}", self.base);
        let request = self.http.get(&url).bearer_auth(session_token);
        self.answer("GET", &url, request).await
    }

    /// `DELETE /api/v1/rooms/{room}/lobby/{participant}`: stop waiting, so the knock leaves the
    /// moderators' list at once. Best effort: the wait expires on its own anyway.
    pub(crate) async fn withdraw_from_lobby(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
        session_token: &str,
    ) {
        let url = format!("{}/api/v1/rooms/{room}/lobby/{participant}", self.base);
        let sent = self
            .http
            .delete(&url)
            .bearer_auth(session_token)
            .timeout(CONNECT_TIMEOUT)
            .send()
            .await;
        if let Err(e) = sent {
            tracing::debug!(%participant, "withdrawing from the lobby: {e}");
        }
    }

    /// Sends `request` and reads a join-shaped answer: `200` a [`JoinResponse`], `202` a
    /// [`LobbyWait`], anything else an error with the envelope's code when there is one.
    async fn answer(
        &self,
        method: &str,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<JoinAnswer, ParticipantError> {
        let response = request
            .send()
            .await
            .map_err(|e| ParticipantError::Connect(format!("{method} {url}: {e}")))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ParticipantError::Connect(format!("reading the answer to {method} {url}: {e}")))?;
        let malformed = |e: serde_json::Error| {
            ParticipantError::Protocol(format!("answer {status} to {method} {url}: {e}"))
        };
        match status.as_u16() {
            200 => Ok(JoinAnswer::Joined(Box::new(
                serde_json::from_slice(&bytes).map_err(malformed)?,
            ))),
            202 => Ok(JoinAnswer::Lobby(
                serde_json::from_slice(&bytes).map_err(malformed)?,
            )),
            code => Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(body) => ParticipantError::Http {
                    status: code,
                    code: Some(body.error.code),
                    message: body.error.message,
                },
                Err(_) => ParticipantError::Http {
                    status: code,
                    code: None,
                    message: String::from_utf8_lossy(&bytes[..bytes.len().min(ERROR_BODY_QUOTE)])
                        .into_owned(),
                },
            }),
        }
    }

    /// Polls the lobby about once a second until a moderator lets the participant in (the
    /// answer carries a ticket), refuses it, or `deadline` passes; then it withdraws, so it does
    /// not linger in the moderators' list. Transient failures (unreachable control, 429, 503)
    /// are retried on the next poll.
    pub(crate) async fn wait_in_lobby(
        &self,
        room: &RoomId,
        wait: &LobbyWait,
        deadline: tokio::time::Instant,
    ) -> Result<JoinResponse, ParticipantError> {
        loop {
            let next = tokio::time::Instant::now() + LOBBY_POLL_INTERVAL;
            if next >= deadline {
                self.withdraw_from_lobby(room, &wait.participant_id, &wait.session_token)
                    .await;
                return Err(ParticipantError::Timeout(format!(
                    "{} still waiting in the lobby of {room}",
                    wait.participant_id
                )));
            }
            tokio::time::sleep_until(next).await;
            let poll = tokio::time::timeout_at(
                deadline,
                self.lobby_status(room, &wait.participant_id, &wait.session_token),
            )
            .await;
            match poll {
                Ok(Ok(JoinAnswer::Joined(join))) => return Ok(*join),
                Ok(Ok(JoinAnswer::Lobby(_))) | Err(_) => {}
                Ok(Err(e)) if classify_error(&e) == Refusal::Retry => {
                    tracing::debug!(participant = %wait.participant_id, "lobby poll: {e}");
                }
                Ok(Err(e)) => return Err(e),
            }
        }
    }
}
