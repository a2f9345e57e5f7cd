//! Raft RPCs to peers over mutual TLS, on their cluster listeners.
//!
//! Both ends present a control node certificate from the cluster CA (see `bridgemesh_pki`): a
//! peer is a cluster member because its certificate says so, and nobody without such a
//! certificate can read or write Raft traffic. The server side checks the client's certificate
//! names a control node (`server::require_member`).

use super::{NodeId, TypeConfig};
use bridgemesh_pki::{ClusterClient, ClusterIdentity, PkiError};
use openraft::alias::{SnapshotOf, VoteOf};
use openraft::errors::{NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, v2::RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{NodeInfo, OptionalSend};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::io::Cursor;
use std::time::Duration;

/// Builds one [`PeerClient`] per peer; they share a connection pool.
#[derive(Clone)]
pub struct PeerNetwork {
    client: ClusterClient,
}

impl PeerNetwork {
    /// Peers are reached presenting `identity`, this node's control certificate.
    pub fn new(identity: &ClusterIdentity) -> Result<Self, PkiError> {
        Ok(Self {
            client: ClusterClient::new(identity)?,
        })
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerClient {
        PeerClient {
            target,
            base_url: peer_base_url(&node.raft_addr),
            network: self.clone(),
        }
    }
}

/// A peer's cluster address (`host:port`, or a URL of old configurations) → the `host:port`
/// requests go to.
pub fn peer_base_url(addr: &str) -> String {
    bridgemesh_pki::client::authority(addr).to_owned()
}

pub struct PeerClient {
    target: NodeId,
    base_url: String,
    network: PeerNetwork,
}

/// Sends one JSON request to a peer's `/raft/v1/{path}` over mutual TLS.
pub async fn post_to_peer<Req, Resp>(
    network: &PeerNetwork,
    base_url: &str,
    path: &str,
    request: &Req,
    timeout: Duration,
) -> Result<Resp, PeerRequestError>
where
    Req: Serialize + ?Sized,
    Resp: DeserializeOwned,
{
    let body = serde_json::to_vec(request).map_err(|err| PeerRequestError::Network(err.to_string()))?;
    let answer = network
        .client
        .post_json(base_url, &format!("/raft/v1/{path}"), body, timeout)
        .await
        .map_err(|err| match err {
            bridgemesh_pki::client::ClientError::Unreachable { .. } => {
                PeerRequestError::Unreachable(err.to_string())
            }
            _ => PeerRequestError::Network(err.to_string()),
        })?;
    if !(200..300).contains(&answer.status) {
        return Err(PeerRequestError::Network(format!(
            "HTTP {} from {base_url}/raft/v1/{path}",
            answer.status
        )));
    }
    serde_json::from_slice(&answer.body)
        .map_err(|err| PeerRequestError::Network(format!("bad answer from {base_url}: {err}")))
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerRequestError {
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    #[error("peer request failed: {0}")]
    Network(String),
}

impl PeerClient {
    async fn call<Req, Resp>(
        &self,
        path: &str,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let answer: Result<Resp, RaftError<TypeConfig>> =
            post_to_peer(&self.network, &self.base_url, path, request, option.soft_ttl())
                .await
                .map_err(|err| match err {
                    PeerRequestError::Unreachable(message) => {
                        RPCError::Unreachable(Unreachable::from_string(message))
                    }
                    PeerRequestError::Network(message) => {
                        RPCError::Network(NetworkError::from_string(message))
                    }
                })?;
        // The only error a peer's Raft returns to an RPC is that it is shutting down.
        answer.map_err(|err| {
            RPCError::Unreachable(Unreachable::from_string(format!(
                "node {} is stopping: {err}",
                self.target
            )))
        })
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call("append", &request, &option).await
    }

    async fn vote(
        &mut self,
        request: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call("vote", &request, &option).await
    }

    async fn pre_vote(
        &mut self,
        request: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call("pre-vote", &request, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, Cursor<Vec<u8>>>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let request = (vote, snapshot.meta, snapshot.snapshot.into_inner());
        tokio::pin!(cancel);
        tokio::select! {
            closed = &mut cancel => Err(StreamingError::Closed(closed)),
            answer = self.call("snapshot", &request, &option) => Ok(answer?),
        }
    }

    async fn transfer_leader(
        &mut self,
        request: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call("transfer-leader", &request, &option).await
    }
}
