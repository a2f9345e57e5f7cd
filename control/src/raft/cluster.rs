//! One control node's place in the cluster: starting Raft on its data directory, bootstrapping,
//! membership changes, proposing commands from any node, reads, and health.

use super::network::{PeerNetwork, PeerRequestError, peer_base_url, post_to_peer};
use super::store::{self, Applied};
use super::{CommandResult, NodeId, Raft, TypeConfig};
use crate::state::{Command, ControlState, Proposal, ProposalId};
use bridgemesh_pki::{ClusterIdentity, ClusterName};
use openraft::async_runtime::WatchReceiver as _;
use openraft::errors::{ClientWriteError, RaftError};
use openraft::raft::ReadPolicy;
use openraft::{ChangeMembers, NodeInfo, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Tries at committing one command: each try may wait for an election or follow a new leader.
const PROPOSE_ATTEMPTS_MAX: usize = 4;
/// Bound on waiting for the store to close after Raft stopped: its tasks drop it as they end,
/// and the database's drop writes its last state.
const STORE_CLOSE_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    pub node_id: NodeId,
    /// `host:port` where peers reach this node's HTTP server.
    pub advertise_addr: String,
    pub data_dir: PathBuf,
    /// The voters a brand-new cluster starts with (id → `host:port`), this node included. Empty
    /// for a node that waits to be added to a running cluster.
    pub initial_members: BTreeMap<NodeId, String>,
    /// Leader heartbeats. Across regions, a few times the worst round trip.
    pub heartbeat_interval_ms: u64,
    /// Followers start an election after this long without a heartbeat (randomised up to the
    /// max). Must exceed the worst round trip plus the heartbeat interval, or leaders churn.
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// A snapshot is taken after this many applied entries, and the log before it compacted.
    pub snapshot_every_entries: u64,
    /// Entries kept before the latest snapshot, so a follower a little behind catches up from
    /// the log instead of receiving the whole snapshot.
    pub logs_kept_after_snapshot: u64,
    /// A follower this many entries behind the cluster's commit reports itself lagging.
    pub lag_threshold_entries: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            advertise_addr: "127.0.0.1:7700".into(),
            data_dir: PathBuf::from("bridgemesh-control-data"),
            initial_members: BTreeMap::new(),
            // For nodes within one region (round trips of a few ms). A follower refuses to vote
            // while its leader lease (the max timeout) runs, so a dead leader is replaced after
            // about max + a random part of it: ~0.5 s here. Across regions, raise all three.
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 200,
            election_timeout_max_ms: 400,
            snapshot_every_entries: 20_000,
            logs_kept_after_snapshot: 1_000,
            lag_threshold_entries: 1_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid control cluster configuration: {0}")]
pub struct ClusterConfigError(pub String);

impl ClusterConfig {
    pub fn validate(&self) -> Result<(), ClusterConfigError> {
        let fail = |message: String| Err(ClusterConfigError(message));
        if self.advertise_addr.is_empty() {
            return fail("advertise_addr must be set".into());
        }
        if self.heartbeat_interval_ms == 0 {
            return fail("heartbeat_interval_ms must be positive".into());
        }
        if self.election_timeout_min_ms <= self.heartbeat_interval_ms {
            return fail(format!(
                "election_timeout_min_ms ({}) must exceed heartbeat_interval_ms ({})",
                self.election_timeout_min_ms, self.heartbeat_interval_ms
            ));
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return fail("election_timeout_max_ms must exceed election_timeout_min_ms".into());
        }
        if !self.initial_members.is_empty() && !self.initial_members.contains_key(&self.node_id) {
            return fail(format!(
                "initial_members must include this node ({}) or be empty",
                self.node_id
            ));
        }
        if self.snapshot_every_entries == 0 {
            return fail("snapshot_every_entries must be positive".into());
        }
        Ok(())
    }

    fn raft_config(&self) -> Result<openraft::Config, ClusterConfigError> {
        openraft::Config {
            cluster_name: "bridgemesh".into(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            enable_pre_vote: Some(true),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every_entries),
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            ..Default::default()
        }
        .validate()
        .map_err(|err| ClusterConfigError(err.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ClusterConfigError),
    #[error("cannot open the data directory: {0}")]
    Storage(#[from] std::io::Error),
    #[error("raft failed to start: {0}")]
    Raft(String),
    #[error("invalid token configuration: {0}")]
    Auth(String),
    #[error("the node's cluster certificate: {0}")]
    Certificate(String),
}

/// Why a command could not be committed. Distinguishes "try again / elsewhere" from "this node
/// is gone", as the API must.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ProposeError {
    #[error("no leader is reachable: {0}")]
    NoLeader(String),
    #[error("this control node is shutting down")]
    Stopped,
    #[error("membership change refused: {0}")]
    Membership(String),
}

/// A membership change, as forwarded to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Add as learner, wait for it to catch up, then promote to voter.
    AddVoter {
        id: NodeId,
        addr: String,
    },
    Remove {
        id: NodeId,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RaftRole {
    Leader,
    Follower,
    Candidate,
    Learner,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterHealth {
    pub node_id: NodeId,
    pub role: RaftRole,
    /// Behind the cluster's commit by more than the threshold, or no leader known.
    pub lagging: bool,
    pub leader_id: Option<NodeId>,
    pub term: u64,
    pub last_applied_index: Option<u64>,
    pub cluster_committed_index: Option<u64>,
    /// Last entry covered by this node's snapshot (built here or installed from the leader).
    pub snapshot_index: Option<u64>,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
}

pub struct ClusterNode {
    id: NodeId,
    config: ClusterConfig,
    raft: Raft,
    applied: Arc<RwLock<Applied>>,
    outcomes: tokio::sync::broadcast::Sender<Arc<crate::state::Outcome>>,
    network: PeerNetwork,
    /// Closed once Raft's tasks have all dropped the store: then the data directory can be opened
    /// again (by a restart in the same process).
    store_closed: store::StoreClosed,
}

impl ClusterNode {
    /// Starts the node; it reaches its peers presenting `identity`, its control certificate.
    pub async fn start(config: ClusterConfig, identity: &ClusterIdentity) -> Result<Self, StartError> {
        config.validate()?;
        match identity.name() {
            ClusterName::Control(id) if *id == config.node_id => {}
            other => {
                return Err(StartError::Certificate(format!(
                    "it names {other}, but this is control node {}; issue one with `bridgemesh ca issue-control --node-id {}`",
                    config.node_id, config.node_id
                )));
            }
        }
        let network = PeerNetwork::new(identity).map_err(|err| StartError::Certificate(err.to_string()))?;
        let raft_config = Arc::new(config.raft_config()?);
        let data_dir = config.data_dir.clone();
        let (log, state_machine, store_closed) = tokio::task::spawn_blocking(move || store::open(&data_dir))
            .await
            .map_err(|err| StartError::Raft(err.to_string()))??;
        let applied = state_machine.applied();
        let outcomes = state_machine.outcomes();
        let raft = Raft::new(config.node_id, raft_config, network.clone(), log, state_machine)
            .await
            .map_err(|err| StartError::Raft(err.to_string()))?;
        let node = Self {
            id: config.node_id,
            config,
            raft,
            applied,
            outcomes,
            network,
            store_closed,
        };
        node.bootstrap_if_new().await?;
        Ok(node)
    }

    /// A node listed in `initial_members` whose store is empty proposes that membership. Every
    /// initial member does this with the same list, which yields the same first entry on each, so
    /// the cluster forms whichever nodes come up first.
    async fn bootstrap_if_new(&self) -> Result<(), StartError> {
        if self.config.initial_members.is_empty()
            || self
                .raft
                .is_initialized()
                .await
                .map_err(|err| StartError::Raft(err.to_string()))?
        {
            return Ok(());
        }
        let members: BTreeMap<NodeId, NodeInfo> = self
            .config
            .initial_members
            .iter()
            .map(|(id, addr)| (*id, NodeInfo::new(addr, "")))
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Another initial member's first entry arrived first: the cluster already formed.
            Err(RaftError::APIError(_)) => Ok(()),
            Err(err) => Err(StartError::Raft(err.to_string())),
        }
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn network(&self) -> &PeerNetwork {
        &self.network
    }

    /// Applied outcomes that bridges must act on, from now on.
    pub fn subscribe_outcomes(&self) -> tokio::sync::broadcast::Receiver<Arc<crate::state::Outcome>> {
        self.outcomes.subscribe()
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The leader as this node knows it right now: its id and the address of its API.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let leader = metrics.current_leader?;
        let node = metrics.membership_config.membership().get_node(&leader)?.clone();
        Some((leader, node.raft_addr))
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow_watched().state == ServerState::Leader
    }

    /// Runs `view` on this node's applied state (possibly behind the leader by a heartbeat).
    pub fn read<R>(&self, view: impl FnOnce(&ControlState) -> R) -> R {
        view(&self.applied.read().expect("state lock").state)
    }

    /// Like [`read`](Self::read), but after this node has applied everything the cluster had
    /// committed when the call began: a read that sees every acknowledged write.
    pub async fn read_linearizable<R>(
        &self,
        view: impl FnOnce(&ControlState) -> R,
    ) -> Result<R, ProposeError> {
        let index = match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(read_log_id) => Some(read_log_id.index()),
            Err(err) => match err.forward_to_leader().and_then(|f| f.leader_node.clone()) {
                Some(leader) => {
                    let url = peer_base_url(&leader.raft_addr);
                    let index: Result<Option<u64>, ProposeError> =
                        post_to_peer(&self.network, &url, "read-index", &(), self.forward_timeout())
                            .await
                            .map_err(|err| ProposeError::NoLeader(err.to_string()))?;
                    index?
                }
                None => return Err(ProposeError::NoLeader(err.to_string())),
            },
        };
        self.raft
            .wait(Some(self.forward_timeout()))
            .applied_index_at_least(index, "linearizable read")
            .await
            .map_err(|err| ProposeError::NoLeader(err.to_string()))?;
        Ok(self.read(view))
    }

    /// On the leader: the index a linearizable read must wait for.
    pub async fn read_index_as_leader(&self) -> Result<Option<u64>, ProposeError> {
        self.raft
            .ensure_linearizable(ReadPolicy::ReadIndex)
            .await
            .map(|id| Some(id.index()))
            .map_err(|err| ProposeError::NoLeader(err.to_string()))
    }

    fn forward_timeout(&self) -> Duration {
        Duration::from_millis(self.config.election_timeout_max_ms * 4).max(Duration::from_secs(2))
    }

    /// Commits `command` through the leader, wherever it is, and returns what applying it gave.
    pub async fn propose(&self, command: Command) -> Result<CommandResult, ProposeError> {
        // One id for every try: a command that committed although its answer was lost is
        // answered from the state machine's memory on the retry, not applied again.
        let proposal = Proposal {
            id: ProposalId(rand::random(), rand::random()),
            command,
        };
        let mut last_error = String::from("no attempt made");
        for attempt in 0..PROPOSE_ATTEMPTS_MAX {
            match self.raft.client_write(proposal.clone()).await {
                Ok(response) => return Ok(response.data),
                Err(RaftError::Fatal(_)) => return Err(ProposeError::Stopped),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                    match (forward.leader_id, forward.leader_node) {
                        (Some(leader), Some(node)) if leader != self.id => {
                            match self.forward_command(&node, &proposal).await {
                                Ok(result) => return Ok(result),
                                Err(err) => last_error = err.to_string(),
                            }
                        }
                        _ => last_error = "no leader elected yet".into(),
                    }
                }
                Err(RaftError::APIError(err)) => last_error = err.to_string(),
            }
            // Give an election time to finish before the next try.
            let pause_ms = self.config.election_timeout_max_ms / 2 * (attempt as u64 + 1);
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        }
        Err(ProposeError::NoLeader(last_error))
    }

    /// Commits on this node only if it leads; used for requests other nodes forwarded here, so a
    /// request is never forwarded twice.
    pub async fn propose_as_leader(&self, proposal: Proposal) -> Result<CommandResult, ProposeError> {
        match self.raft.client_write(proposal).await {
            Ok(response) => Ok(response.data),
            Err(RaftError::Fatal(_)) => Err(ProposeError::Stopped),
            Err(RaftError::APIError(err)) => Err(ProposeError::NoLeader(err.to_string())),
        }
    }

    async fn forward_command(
        &self,
        leader: &NodeInfo,
        proposal: &Proposal,
    ) -> Result<CommandResult, PeerRequestError> {
        let url = peer_base_url(&leader.raft_addr);
        let answer: Result<CommandResult, ProposeError> =
            post_to_peer(&self.network, &url, "propose", proposal, self.forward_timeout()).await?;
        answer.map_err(|err| PeerRequestError::Network(err.to_string()))
    }

    /// Adds or removes a control node, from any node (forwarded to the leader).
    pub async fn change_membership(&self, change: MembershipChange) -> Result<(), ProposeError> {
        if let Some(leader) = self.leader_elsewhere().await {
            let url = peer_base_url(&leader.raft_addr);
            let timeout = Duration::from_secs(60);
            let answer: Result<(), ProposeError> =
                post_to_peer(&self.network, &url, "membership", &change, timeout)
                    .await
                    .map_err(|err| ProposeError::NoLeader(err.to_string()))?;
            return answer;
        }
        self.change_membership_as_leader(change).await
    }

    pub async fn change_membership_as_leader(&self, change: MembershipChange) -> Result<(), ProposeError> {
        let refused = |err: RaftError<TypeConfig, ClientWriteError<TypeConfig>>| match err {
            RaftError::Fatal(_) => ProposeError::Stopped,
            RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
                ProposeError::NoLeader("no leader to change the membership".into())
            }
            RaftError::APIError(err) => ProposeError::Membership(err.to_string()),
        };
        match change {
            MembershipChange::AddVoter { id, addr } => {
                // As a learner first: it copies the log without counting toward the quorum, so
                // adding a node never stalls commits while it catches up.
                self.raft
                    .add_learner(id, NodeInfo::new(addr, ""), true)
                    .await
                    .map_err(refused)?;
                self.raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                    .await
                    .map_err(refused)?;
            }
            MembershipChange::Remove { id } => {
                self.raft
                    .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                    .await
                    .map_err(refused)?;
            }
        }
        Ok(())
    }

    /// The leader's address when another node leads; waits briefly for an election.
    async fn leader_elsewhere(&self) -> Option<NodeInfo> {
        for _ in 0..PROPOSE_ATTEMPTS_MAX {
            let metrics = self.raft.metrics().borrow_watched().clone();
            if let Some(leader) = metrics.current_leader {
                if leader == self.id {
                    return None;
                }
                return metrics.membership_config.membership().get_node(&leader).cloned();
            }
            tokio::time::sleep(Duration::from_millis(self.config.election_timeout_max_ms)).await;
        }
        None
    }

    pub fn health(&self) -> ClusterHealth {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let role = match metrics.state {
            ServerState::Leader => RaftRole::Leader,
            ServerState::Follower => RaftRole::Follower,
            ServerState::Candidate => RaftRole::Candidate,
            ServerState::Learner => RaftRole::Learner,
            ServerState::Shutdown => RaftRole::Stopped,
        };
        let last_applied_index = metrics.last_applied.as_ref().map(|id| id.index());
        let cluster_committed_index = metrics.cluster_committed.as_ref().map(|id| id.index());
        let behind = cluster_committed_index
            .unwrap_or(0)
            .saturating_sub(last_applied_index.unwrap_or(0));
        let membership = metrics.membership_config.membership();
        ClusterHealth {
            node_id: self.id,
            role,
            lagging: metrics.current_leader.is_none() || behind > self.config.lag_threshold_entries,
            leader_id: metrics.current_leader,
            term: metrics.current_term,
            last_applied_index,
            cluster_committed_index,
            snapshot_index: metrics.snapshot.as_ref().map(|id| id.index()),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
        }
    }

    /// Stops Raft and waits (a few seconds at most) until its store is closed, so the data
    /// directory can be opened again.
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
        if !self.store_closed.wait(STORE_CLOSE_WAIT).await {
            tracing::warn!(node = self.id, "the Raft store is still open after shutdown");
        }
    }
}
