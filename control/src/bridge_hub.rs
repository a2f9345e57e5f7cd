//! The control side of the bridges' sessions: one WebSocket per bridge, on the leader.
//!
//! # Layout
//! - [`HubEngine`] (`hub_engine.rs`): every decision, with no I/O — registrations, the failure
//!   detector and its verdicts, load commits, the bridges' events committed in order, membership
//!   pushes, reconcile and the instructions that follow applied outcomes.
//! - [`BridgeHub`]: the driver. It owns the sockets, the clock, the tasks and the openraft calls:
//!   it feeds the engine what happens and carries out its outputs.
//!
//! # Run loop
//! ```text
//! session task (per bridge):  open_session → first message → handle_register → (commit)
//!                             → registered batch → messages → handle_message
//!                             outputs for the session (send, close) → the socket
//! hub task:                   every 50 ms or when woken: handle_leadership, handle_tick;
//!                             applied outcome → handle_applied
//! proposal task (per output): cluster.propose → handle_committed
//! ```
//! Only the leader keeps sessions (others answer `not_leader`), so one detector sees every
//! bridge; a new leader gives every bridge a grace period to reconnect.

use crate::node::now_unix_ms;
use crate::raft::cluster::ClusterNode;
use crate::raft::network::{peer_base_url, post_to_peer};
use crate::state::ControlState;
use axum::extract::ws::{Message, WebSocket};
use bridgemesh_proto::bridge_session::{BRIDGE_SESSION_PATH, BridgeToControl, ControlToBridge};
use bridgemesh_proto::{BridgeId, ParticipantId, RoomId};
use futures_util::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, broadcast, mpsc, watch};

pub use crate::hub_engine::{
    HUB_TICK_MS, HubConfig, HubEngine, HubOutput, LossReport, LossVerdict, Reconciliation, SessionId,
    instructions_for, reconcile,
};

/// A bridge must say `register` this soon after connecting.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages queued toward one bridge; a bridge this far behind is reconciled after it reconnects.
const TO_BRIDGE_QUEUE_MAX: usize = 4_096;
/// How long a loss report waits on the leader for a verdict before answering "undecided".
const LOSS_VERDICT_WAIT: Duration = Duration::from_secs(3);

/// What a session's task writes to its socket.
enum ToSocket {
    Message(ControlToBridge),
    Batch(Vec<ControlToBridge>),
    Close(Option<ControlToBridge>),
}

struct Inner {
    engine: HubEngine,
    /// Each open session's way to its socket task.
    routes: BTreeMap<SessionId, mpsc::Sender<ToSocket>>,
}

pub struct BridgeHub {
    cluster: Arc<ClusterNode>,
    inner: Mutex<Inner>,
    wake: Notify,
}

fn lock(hub: &BridgeHub) -> std::sync::MutexGuard<'_, Inner> {
    hub.inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl BridgeHub {
    /// Sessions are authenticated by the cluster listener (each bridge's certificate); the hub
    /// holds them to the bridge their certificate names.
    pub fn new(cluster: Arc<ClusterNode>, config: HubConfig) -> Arc<Self> {
        Arc::new(Self {
            cluster,
            inner: Mutex::new(Inner {
                engine: HubEngine::new(config),
                routes: BTreeMap::new(),
            }),
            wake: Notify::new(),
        })
    }

    /// The hub's task: leadership, the engine's ticks, applied outcomes. Ends on `stop`.
    pub fn run(self: &Arc<Self>, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let hub = self.clone();
        let mut outcomes = self.cluster.subscribe_outcomes();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(HUB_TICK_MS));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = hub.wake.notified() => {}
                    outcome = outcomes.recv() => match outcome {
                        Ok(outcome) => hub.drive(|engine, _, _| engine.handle_applied(&outcome)),
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            tracing::warn!(missed, "bridge hub fell behind the applied log; reconnecting bridges to reconcile");
                            hub.close_all_sessions(None);
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = stop.changed() => {
                        hub.close_all_sessions(None);
                        return;
                    }
                }
                hub.sync_leadership();
                hub.drive(|engine, now, state| engine.handle_tick(now, state));
            }
        })
    }

    /// Runs `event` on the engine with the clock and the applied state, then carries out what it
    /// decided.
    fn drive<R>(self: &Arc<Self>, event: impl FnOnce(&mut HubEngine, u64, &ControlState) -> R) -> R {
        let mut guard = lock(self);
        let inner = &mut *guard;
        let result = self
            .cluster
            .read(|state| event(&mut inner.engine, now_unix_ms(), state));
        self.carry_out(inner);
        result
    }

    /// The engine's outputs: proposals to openraft, messages and closes to the sessions' sockets.
    fn carry_out(self: &Arc<Self>, inner: &mut Inner) {
        while let Some(output) = inner.engine.poll_output() {
            match output {
                HubOutput::Propose { id, command } => {
                    let hub = self.clone();
                    tokio::spawn(async move {
                        let result = hub.cluster.propose(command).await.map_err(|err| err.to_string());
                        hub.drive(|engine, now, state| engine.handle_committed(now, id, result, state));
                        hub.wake.notify_one();
                    });
                }
                HubOutput::Send { session, message } => {
                    if let Some(route) = inner.routes.get(&session)
                        && route.try_send(ToSocket::Message(message)).is_err()
                    {
                        tracing::warn!(
                            session,
                            "bridge session queue full; an instruction is lost until it reconnects"
                        );
                    }
                }
                HubOutput::Registered { session, messages } => {
                    if let Some(route) = inner.routes.get(&session) {
                        let _ = route.try_send(ToSocket::Batch(messages));
                    }
                }
                HubOutput::Close { session, last } => {
                    // Dropping the route ends the socket task once it has written what is queued,
                    // even when the queue had no room for the last word.
                    if let Some(route) = inner.routes.remove(&session) {
                        let _ = route.try_send(ToSocket::Close(last));
                    }
                }
            }
        }
    }

    fn sync_leadership(self: &Arc<Self>) {
        let leading = self.cluster.is_leader();
        let leader_url = self.leader_session_url();
        self.drive(|engine, now, state| engine.handle_leadership(now, leading, leader_url, state));
    }

    fn leader_session_url(&self) -> Option<String> {
        self.cluster
            .leader()
            .filter(|(id, _)| *id != self.cluster.id())
            .map(|(_, addr)| session_url(&addr))
    }

    /// Ends every bridge session, telling the bridges where the leader is when known.
    pub fn close_all_sessions(self: &Arc<Self>, leader_url: Option<String>) {
        self.drive(|engine, now, _| engine.close_all_sessions(now, leader_url));
    }

    /// Asks `bridge` to tell `participant` to mute (admin API); `false` when this node holds no
    /// session with that bridge (it does not lead, or the bridge is away).
    pub fn request_mute(
        self: &Arc<Self>,
        bridge: &BridgeId,
        room: &RoomId,
        participant: &ParticipantId,
    ) -> bool {
        self.drive(|engine, _, _| engine.request_mute(bridge, room, participant))
    }

    /// What `participant`'s bridge last reported of its media, and which bridge that was; known
    /// on the leader only (the bridges' sessions end there).
    pub fn participant_media(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
    ) -> Option<(BridgeId, bridgemesh_proto::bridge_session::ParticipantMedia)> {
        lock(self)
            .engine
            .participant_media(room, participant)
            .map(|(bridge, media)| (bridge.clone(), media.clone()))
    }

    /// A client lost `report.bridge`. On the leader: counts the report and waits (briefly) for
    /// the verdict; elsewhere: forwards it to the leader.
    pub async fn report_loss(self: &Arc<Self>, report: LossReport) -> LossVerdict {
        if self.cluster.is_leader() {
            return self.report_loss_here(report).await;
        }
        let Some((_, addr)) = self.cluster.leader() else {
            return LossVerdict::Undecided;
        };
        let timeout = LOSS_VERDICT_WAIT + Duration::from_secs(1);
        post_to_peer(
            self.cluster.network(),
            &peer_base_url(&addr),
            "bridge-loss",
            &report,
            timeout,
        )
        .await
        .unwrap_or(LossVerdict::Undecided)
    }

    /// A loss report on this node, if it leads (a forwarded report is never forwarded again).
    pub async fn report_loss_here(self: &Arc<Self>, report: LossReport) -> LossVerdict {
        if !self.cluster.is_leader() {
            return LossVerdict::Undecided;
        }
        let reported_at = now_unix_ms();
        self.drive(|engine, _, _| engine.handle_loss_report(reported_at, &report));
        self.wake.notify_one();
        let deadline = tokio::time::Instant::now() + LOSS_VERDICT_WAIT;
        loop {
            let verdict = {
                let inner = lock(self);
                self.cluster
                    .read(|state| inner.engine.loss_verdict(&report, reported_at, state))
            };
            if let Some(verdict) = verdict {
                return verdict;
            }
            if tokio::time::Instant::now() >= deadline {
                return LossVerdict::Undecided;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

mod session;

pub use session::session_url;
