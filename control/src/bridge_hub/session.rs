//! One bridge's session on the leader: registration, its events committed in order, load
//! reports, and the messages both ways.

use super::*;

impl BridgeHub {
    /// Serves one bridge's session until it ends. `authenticated` is the bridge the connection's
    /// certificate names: the session may register that bridge and no other.
    pub async fn serve(self: Arc<Self>, socket: WebSocket, authenticated: BridgeId) {
        let (mut sink, mut stream) = socket.split();
        let first = tokio::time::timeout(REGISTER_TIMEOUT, next_message(&mut stream)).await;
        let Ok(Some(Ok(BridgeToControl::Register {
            bridge: registration,
            instance,
            participants,
            load,
        }))) = first
        else {
            let _ = send(
                &mut sink,
                &refused("register_expected", "the first message must be register"),
            )
            .await;
            return;
        };
        if !self.cluster.is_leader() {
            let _ = send(
                &mut sink,
                &ControlToBridge::NotLeader {
                    leader_url: self.leader_session_url(),
                },
            )
            .await;
            return;
        }
        if participants.len() > REGISTER_PARTICIPANTS_MAX || instance.is_empty() || instance.len() > 128 {
            let _ = send(
                &mut sink,
                &refused(
                    "invalid",
                    "register lists too many participants or a bad instance",
                ),
            )
            .await;
            return;
        }
        let bridge = registration.id.clone();
        if bridge != authenticated {
            tracing::warn!(%authenticated, claimed = %bridge, "a bridge tried to register under another bridge's id");
            let _ = send(
                &mut sink,
                &refused(
                    "bridge_id_mismatch",
                    &format!("this connection's certificate is bridge {authenticated}'s, not {bridge}'s"),
                ),
            )
            .await;
            return;
        }
        if let Some(message) = self.claimed_by_another(&bridge, &instance) {
            let _ = send(&mut sink, &refused("bridge_id_in_use", &message)).await;
            return;
        }
        let committed = self
            .cluster
            .propose(Command::RegisterBridge {
                registration,
                instance: Some(instance.clone()),
                at_ms: now_unix_ms(),
            })
            .await;
        let status = match committed {
            Ok(Ok(Outcome::BridgeRegistered { status })) => status,
            Ok(Ok(other)) => {
                tracing::error!(?other, "unexpected outcome of a registration");
                return;
            }
            Ok(Err(err)) => {
                let _ = send(&mut sink, &refused("invalid", &err.to_string())).await;
                return;
            }
            Err(err) => {
                // Leadership moved while committing: the bridge retries and is redirected.
                let _ = send(&mut sink, &ControlToBridge::NotLeader { leader_url: None }).await;
                tracing::debug!(%err, "registration not committed");
                return;
            }
        };
        let (to_bridge, mut outgoing) = mpsc::channel(TO_BRIDGE_QUEUE_MAX);
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let shared_rooms = {
            let mut guard = lock(&self);
            let hub = &mut *guard;
            // Membership changes not pushed yet go out to the sessions as they stand (to this
            // bridge's old session, if any, as well). This session is then told its rooms' full
            // sets as of now, right after `registered` and before anything queued to it from
            // here on (a later change): taken under the same lock as the session's insertion.
            let due = self.cluster.read(|state| hub.membership.poll(state));
            for (to, message) in due {
                tell(&hub.sessions, &to, message);
            }
            if let Some(old) = hub.sessions.insert(
                bridge.clone(),
                Session {
                    serial,
                    instance,
                    to_bridge: to_bridge.clone(),
                    load_commits: LoadCommitThrottle::default(),
                },
            ) {
                let _ = old.to_bridge.try_send(ControlToBridge::Refused {
                    code: "replaced".into(),
                    message: "a newer session of this bridge took over".into(),
                });
            }
            hub.detector.session_opened(&bridge, now_unix_ms());
            // Sent straight to the socket below rather than queued: a bridge may share more
            // rooms than its queue holds.
            hub.membership.room_bridges_of(&bridge)
        };
        tracing::info!(%bridge, ?status, "bridge registered");
        let registered = ControlToBridge::Registered {
            heartbeat_interval_ms: self.config.heartbeat_interval_ms,
            status,
        };
        let complete = ControlToBridge::RoomBridgesComplete;
        for message in std::iter::once(&registered)
            .chain(&shared_rooms)
            .chain(std::iter::once(&complete))
        {
            if send(&mut sink, message).await.is_err() {
                self.session_ended(&bridge, serial);
                return;
            }
        }
        drop(shared_rooms);
        let (work, work_queue) = mpsc::channel(FROM_BRIDGE_QUEUE_MAX);
        let worker = tokio::spawn(self.clone().commit_bridge_events(
            bridge.clone(),
            work_queue,
            to_bridge.clone(),
        ));
        let hosted: BTreeSet<HostedParticipant> = participants.into_iter().collect();
        let _ = work.try_send(BridgeWork::Reconcile(hosted));
        self.note_load(&bridge, serial, load);

        // A bridge whose host vanished closes nothing; its session ends once it has been silent
        // long enough to be declared down anyway, so dead sessions do not pile up.
        let idle_limit = Duration::from_millis(
            self.config
                .detector
                .down_after_ms
                .max(self.config.heartbeat_interval_ms * 3),
        );
        let mut last_message = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(last_message + idle_limit) => {
                    tracing::info!(%bridge, "bridge session silent too long; closing it");
                    break;
                }
                message = outgoing.recv() => {
                    let Some(message) = message else { break };
                    let last = matches!(message, ControlToBridge::NotLeader { .. } | ControlToBridge::Refused { .. });
                    if send(&mut sink, &message).await.is_err() || last {
                        break;
                    }
                }
                incoming = next_message(&mut stream) => match incoming {
                    Some(Ok(message)) => {
                        last_message = tokio::time::Instant::now();
                        lock(&self).detector.heard(&bridge, now_unix_ms());
                        match message {
                            BridgeToControl::Heartbeat { load } => self.note_load(&bridge, serial, load),
                            BridgeToControl::ParticipantJoined { room, participant } => {
                                queue(&work, BridgeWork::Joined(HostedParticipant { room, participant }));
                            }
                            BridgeToControl::ParticipantLeft { room, participant, dropped } => {
                                lock(&self).media.forget(&bridge, &room, &participant);
                                let entry = HostedParticipant { room, participant };
                                queue(&work, if dropped { BridgeWork::Dropped(entry) } else { BridgeWork::Left(entry) });
                            }
                            BridgeToControl::Drain { grace_ms } => queue(&work, BridgeWork::Drain(grace_ms)),
                            BridgeToControl::ParticipantsMedia { updates } => lock(&self).media.note(&bridge, updates),
                            BridgeToControl::Register { .. } => {
                                tracing::warn!(%bridge, "second register on one session ignored");
                            }
                            other => tracing::debug!(%bridge, ?other, "unexpected bridge message"),
                        }
                    }
                    Some(Err(err)) => {
                        tracing::warn!(%bridge, %err, "bad message on a bridge session; closing it");
                        let _ = send(&mut sink, &refused("protocol_error", &err)).await;
                        break;
                    }
                    None => break,
                },
            }
        }
        drop(work);
        let _ = worker.await;
        self.session_ended(&bridge, serial);
        let _ = sink.close().await;
    }

    /// Another live process already holds this bridge id.
    pub(super) fn claimed_by_another(&self, bridge: &BridgeId, instance: &str) -> Option<String> {
        let hub = lock(self);
        let session = hub.sessions.get(bridge)?;
        if session.instance == instance {
            return None;
        }
        let alive = hub.detector.heard_since(
            bridge,
            now_unix_ms().saturating_sub(self.config.detector.suspect_after_ms),
        );
        (alive == Liveliness::HeardSince)
            .then(|| format!("bridge id {bridge} is held by another live bridge process"))
    }

    pub(super) fn session_ended(&self, bridge: &BridgeId, serial: u64) {
        let mut hub = lock(self);
        if hub.sessions.get(bridge).is_some_and(|s| s.serial == serial) {
            hub.sessions.remove(bridge);
            hub.media.forget_bridge(bridge);
            hub.detector.session_closed(bridge, now_unix_ms());
            tracing::info!(%bridge, "bridge session closed");
        }
        drop(hub);
        self.wake.notify_one();
    }

    /// Commits a load report when it changed enough or the last one is getting old.
    pub(super) fn note_load(self: &Arc<Self>, bridge: &BridgeId, serial: u64, load: LoadReport) {
        let now = now_unix_ms();
        {
            let mut hub = lock(self);
            let Some(session) = hub.sessions.get_mut(bridge).filter(|s| s.serial == serial) else {
                return;
            };
            if !session.load_commits.take(now, load.stress) {
                return;
            }
        }
        let hub = self.clone();
        let bridge = bridge.clone();
        tokio::spawn(async move {
            let command = Command::ReportLoad {
                bridge,
                load,
                at_ms: now,
            };
            if let Err(err) = hub.cluster.propose(command).await {
                tracing::debug!(%err, "load report not committed");
            }
        });
    }

    /// Commits one bridge's events in the order it sent them.
    pub(super) async fn commit_bridge_events(
        self: Arc<Self>,
        bridge: BridgeId,
        mut queue: mpsc::Receiver<BridgeWork>,
        to_bridge: mpsc::Sender<ControlToBridge>,
    ) {
        let tell = |message: ControlToBridge| {
            if to_bridge.try_send(message).is_err() {
                tracing::warn!(%bridge, "bridge session queue full");
            }
        };
        while let Some(work) = queue.recv().await {
            match work {
                BridgeWork::Reconcile(hosted) => {
                    let plan = self.cluster.read(|state| reconcile(state, &bridge, &hosted));
                    plan.to_bridge.into_iter().for_each(&tell);
                    for entry in plan.confirm {
                        self.confirm(&bridge, entry, &tell).await;
                    }
                    // Gone while the bridge was away from control: left or dropped, nobody knows;
                    // as a drop, a participant that is reconnecting keeps its place.
                    for entry in plan.leave {
                        self.unconfirm(&bridge, entry).await;
                    }
                }
                BridgeWork::Joined(entry) => self.confirm(&bridge, entry, &tell).await,
                BridgeWork::Left(entry) => self.leave(&bridge, entry).await,
                BridgeWork::Dropped(entry) => self.unconfirm(&bridge, entry).await,
                BridgeWork::Drain(grace_ms) => {
                    let command = Command::Drain {
                        bridge: bridge.clone(),
                        grace_ms,
                        by_operator: false,
                        at_ms: now_unix_ms(),
                    };
                    if let Err(err) = self.cluster.propose(command).await {
                        tracing::warn!(%bridge, %err, "drain not committed");
                    }
                }
            }
        }
    }

    pub(super) async fn confirm(
        &self,
        bridge: &BridgeId,
        entry: HostedParticipant,
        tell: &impl Fn(ControlToBridge),
    ) {
        let command = Command::Confirm {
            room: entry.room.clone(),
            participant: entry.participant.clone(),
            bridge: Some(bridge.clone()),
        };
        match self.cluster.propose(command).await {
            Ok(Ok(_)) => {}
            // Placed elsewhere since (moved while its ticket was in flight).
            Ok(Err(ApplyError::NotOnBridge(..))) => tell(ControlToBridge::Move {
                room: entry.room,
                participant: entry.participant,
            }),
            // Control no longer holds it: its meeting ended, or it was kicked or expired after its
            // ticket was issued. Its ticket must not outlive that decision.
            Ok(Err(ApplyError::UnknownParticipant(..))) => {
                let still_on = self.cluster.read(|state| {
                    state
                        .rooms
                        .get(&entry.room)
                        .and_then(|r| r.participants.get(&entry.participant))
                        .is_some_and(|p| {
                            p.status == ParticipantStatus::Connected && p.bridge.as_ref() == Some(bridge)
                        })
                });
                if still_on {
                    return; // already confirmed (a reconcile and the joined event raced)
                }
                if self.cluster.read(|state| state.rooms.contains_key(&entry.room)) {
                    tell(ControlToBridge::Kick {
                        room: entry.room,
                        participant: entry.participant,
                    });
                } else {
                    tell(ControlToBridge::EndRoom { room: entry.room });
                }
            }
            Ok(Err(err)) => tracing::debug!(%bridge, %err, "confirm refused"),
            Err(err) => tracing::warn!(%bridge, %err, "confirm not committed"),
        }
    }

    pub(super) async fn unconfirm(&self, bridge: &BridgeId, entry: HostedParticipant) {
        let command = Command::Unconfirm {
            room: entry.room,
            participant: entry.participant,
            bridge: bridge.clone(),
            at_ms: now_unix_ms(),
        };
        match self.cluster.propose(command).await {
            Ok(Ok(_)) => {}
            // Moved off this bridge, or already gone.
            Ok(Err(err)) => tracing::debug!(%bridge, %err, "a drop did not change the room state"),
            Err(err) => tracing::warn!(%bridge, %err, "drop not committed"),
        }
    }

    pub(super) async fn leave(&self, bridge: &BridgeId, entry: HostedParticipant) {
        let command = Command::Leave {
            room: entry.room,
            participant: entry.participant,
            bridge: Some(bridge.clone()),
        };
        match self.cluster.propose(command).await {
            Ok(Ok(_)) => {}
            // Already gone (expired, kicked, ended) or moved off this bridge.
            Ok(Err(err)) => tracing::debug!(%bridge, %err, "a leave did not change the room state"),
            Err(err) => tracing::warn!(%bridge, %err, "leave not committed"),
        }
    }
}

/// Queues `message` toward `bridge`'s session, if it has one.
pub(super) fn tell(sessions: &BTreeMap<BridgeId, Session>, bridge: &BridgeId, message: ControlToBridge) {
    if let Some(session) = sessions.get(bridge)
        && session.to_bridge.try_send(message).is_err()
    {
        tracing::warn!(%bridge, "bridge session queue full; an instruction is lost until it reconnects");
    }
}

pub(super) enum BridgeWork {
    Reconcile(BTreeSet<HostedParticipant>),
    Joined(HostedParticipant),
    Left(HostedParticipant),
    Dropped(HostedParticipant),
    Drain(u64),
}

pub(super) fn queue(work: &mpsc::Sender<BridgeWork>, item: BridgeWork) {
    if work.try_send(item).is_err() {
        tracing::warn!("bridge event queue full; the bridge's next registration reconciles");
    }
}

/// The session URL of the control node whose API listens at `addr` (`host:port`).
pub fn session_url(addr: &str) -> String {
    format!(
        "wss://{}{BRIDGE_SESSION_PATH}",
        bridgemesh_pki::client::authority(addr)
    )
}

pub(super) fn refused(code: &str, message: &str) -> ControlToBridge {
    ControlToBridge::Refused {
        code: code.into(),
        message: message.into(),
    }
}

pub(super) async fn send(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    message: &ControlToBridge,
) -> Result<(), axum::Error> {
    let text = serde_json::to_string(message).expect("control messages serialize");
    sink.send(Message::Text(text.into())).await
}

/// The next bridge message; `None` when the socket ended, `Some(Err)` for a frame that is not one.
pub(super) async fn next_message(
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
) -> Option<Result<BridgeToControl, String>> {
    loop {
        match stream.next().await? {
            Ok(Message::Text(text)) => {
                return Some(
                    serde_json::from_str(text.as_str()).map_err(|err| format!("not a bridge message: {err}")),
                );
            }
            Ok(Message::Binary(_)) => return Some(Err("binary frame on a bridge session".into())),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}
