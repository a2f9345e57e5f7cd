//! The routes peers call on the cluster listener: Raft RPCs, and writes or reads forwarded to
//! the leader. Only connections whose client certificate names a control node get past the
//! first check.

use super::cluster::{ClusterNode, MembershipChange, ProposeError};
use super::{CommandResult, TypeConfig};
use crate::state::Proposal;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bridgemesh_pki::{ClusterName, ClusterPeer};
use openraft::Snapshot;
use openraft::alias::{SnapshotMetaOf, VoteOf};
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::Cursor;
use std::sync::Arc;

/// Largest Raft request accepted: a snapshot of a large deployment travels in one request.
const RAFT_BODY_MAX_BYTES: usize = 256 * 1024 * 1024;

pub fn router(node: Arc<ClusterNode>) -> Router {
    Router::new()
        .route("/raft/v1/append", post(append))
        .route("/raft/v1/vote", post(vote))
        .route("/raft/v1/pre-vote", post(pre_vote))
        .route("/raft/v1/snapshot", post(snapshot))
        .route("/raft/v1/transfer-leader", post(transfer_leader))
        .route("/raft/v1/propose", post(propose))
        .route("/raft/v1/membership", post(membership))
        .route("/raft/v1/read-index", post(read_index))
        .route_layer(middleware::from_fn(require_member))
        .with_state(node)
}

/// Lets through only requests from a control node: the connection's client certificate (verified
/// under the cluster CA by the listener) names one. A bridge's certificate is refused here.
pub async fn require_member(request: Request, next: Next) -> Response {
    match request.extensions().get::<ConnectInfo<ClusterPeer>>() {
        Some(ConnectInfo(ClusterPeer {
            name: ClusterName::Control(_),
            ..
        })) => next.run(request).await,
        _ => crate::node::ApiError::new(
            bridgemesh_proto::api::ErrorCode::Forbidden,
            "control-to-control requests need a control node's certificate from the cluster CA",
        )
        .into_response(),
    }
}

async fn body<T: DeserializeOwned>(body: Body) -> Result<T, Response> {
    let bytes = axum::body::to_bytes(body, RAFT_BODY_MAX_BYTES)
        .await
        .map_err(|err| (StatusCode::PAYLOAD_TOO_LARGE, err.to_string()).into_response())?;
    serde_json::from_slice(&bytes).map_err(|err| (StatusCode::BAD_REQUEST, err.to_string()).into_response())
}

fn json<T: Serialize>(value: &T) -> Response {
    axum::Json(value).into_response()
}

async fn append(State(node): State<Arc<ClusterNode>>, request: Body) -> Response {
    match body::<AppendEntriesRequest<TypeConfig>>(request).await {
        Ok(request) => json(&node.raft().append_entries(request).await),
        Err(response) => response,
    }
}

async fn vote(State(node): State<Arc<ClusterNode>>, request: Body) -> Response {
    match body::<VoteRequest<TypeConfig>>(request).await {
        Ok(request) => json(&node.raft().vote(request).await),
        Err(response) => response,
    }
}

async fn pre_vote(State(node): State<Arc<ClusterNode>>, request: Body) -> Response {
    match body::<VoteRequest<TypeConfig>>(request).await {
        Ok(request) => json(&node.raft().pre_vote(request).await),
        Err(response) => response,
    }
}

async fn snapshot(State(node): State<Arc<ClusterNode>>, request: Body) -> Response {
    type Request = (VoteOf<TypeConfig>, SnapshotMetaOf<TypeConfig>, Vec<u8>);
    match body::<Request>(request).await {
        Ok((vote, meta, data)) => {
            let snapshot = Snapshot {
                meta,
                snapshot: Cursor::new(data),
            };
            let answer = node
                .raft()
                .install_full_snapshot(vote, snapshot)
                .await
                .map_err(openraft::errors::RaftError::<TypeConfig>::Fatal);
            json(&answer)
        }
        Err(response) => response,
    }
}

async fn transfer_leader(State(node): State<Arc<ClusterNode>>, request: Body) -> Response {
    match body::<TransferLeaderRequest<TypeConfig>>(request).await {
        Ok(request) => json(&node.raft().handle_transfer_leader(request).await),
        Err(response) => response,
    }
}

async fn propose(State(node): State<Arc<ClusterNode>>, request: Body) -> Response {
    match body::<Proposal>(request).await {
        Ok(proposal) => {
            let answer: Result<CommandResult, ProposeError> = node.propose_as_leader(proposal).await;
            json(&answer)
        }
        Err(response) => response,
    }
}

async fn membership(State(node): State<Arc<ClusterNode>>, request: Body) -> Response {
    match body::<MembershipChange>(request).await {
        Ok(change) => json(&node.change_membership_as_leader(change).await),
        Err(response) => response,
    }
}

async fn read_index(State(node): State<Arc<ClusterNode>>) -> Response {
    json(&node.read_index_as_leader().await)
}
