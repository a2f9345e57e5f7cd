//! Raft RPCs to peers over HTTP, authenticated as cluster members.
//!
//! Every control node shares the cluster secret. Peers do not send the secret itself: they send a
//! key derived from it for this one purpose ([`ClusterCredential`]), so a captured Raft request
//! cannot be used to sign bridge tickets. Bridges hold only the ticket key (also derived, see
//! `node::ticket_key`), from which this credential cannot be computed.
//!
//! The credential is a static bearer value over plain HTTP: someone who can read the traffic
//! between control nodes can replay it. Keep `/raft/v1/` on a private network until control
//! traffic moves to mutual TLS.

use super::{NodeId, TypeConfig};
use hmac::{Hmac, Mac};
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
use sha2::Sha256;
use std::future::Future;
use std::io::Cursor;
use std::time::Duration;

/// Header carrying [`ClusterCredential`] on every request between control nodes.
pub const CLUSTER_AUTH_HEADER: &str = "x-bridgemesh-cluster";

/// Proof of cluster membership for control-to-control requests: HMAC-SHA256 of a fixed label
/// under the cluster secret.
#[derive(Clone)]
pub struct ClusterCredential {
    token: String,
}

impl ClusterCredential {
    pub fn derive(cluster_secret: &[u8]) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(cluster_secret).expect("HMAC takes any key length");
        mac.update(b"bridgemesh control raft v1");
        Self {
            token: hex::encode(mac.finalize().into_bytes()),
        }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Constant-time comparison, so response timing does not leak the credential.
    pub fn matches(&self, presented: &str) -> bool {
        let expected = self.token.as_bytes();
        let presented = presented.as_bytes();
        if expected.len() != presented.len() {
            return false;
        }
        expected
            .iter()
            .zip(presented)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// Builds one [`PeerClient`] per peer; they share a connection pool.
#[derive(Clone)]
pub struct PeerNetwork {
    http: reqwest::Client,
    credential: ClusterCredential,
}

impl PeerNetwork {
    pub fn new(credential: ClusterCredential) -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client without TLS always builds");
        Self { http, credential }
    }

    pub fn credential(&self) -> &ClusterCredential {
        &self.credential
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

/// `host:port` or a full URL → the base URL requests go to.
pub fn peer_base_url(addr: &str) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.trim_end_matches('/').to_owned()
    } else {
        format!("http://{addr}")
    }
}

pub struct PeerClient {
    target: NodeId,
    base_url: String,
    network: PeerNetwork,
}

/// Sends one authenticated JSON request to a peer's `/raft/v1/{path}`.
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
    let url = format!("{base_url}/raft/v1/{path}");
    let response = network
        .http
        .post(&url)
        .header(CLUSTER_AUTH_HEADER, network.credential.token())
        .json(request)
        .timeout(timeout)
        .send()
        .await
        .map_err(|err| {
            if err.is_connect() {
                PeerRequestError::Unreachable(err.to_string())
            } else {
                PeerRequestError::Network(err.to_string())
            }
        })?;
    let status = response.status();
    if !status.is_success() {
        return Err(PeerRequestError::Network(format!("HTTP {status} from {url}")));
    }
    response
        .json()
        .await
        .map_err(|err| PeerRequestError::Network(format!("bad answer from {url}: {err}")))
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
