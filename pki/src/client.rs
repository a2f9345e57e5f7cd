//! HTTP/1.1 over mutual TLS to a control node's cluster listener: from another control node
//! (Raft RPCs, forwarded writes) or from a bridge (its TURN server's peers), with a small pool
//! of open connections per peer address.
//!
//! reqwest's rustls support brings hyper-rustls with its default features, aws-lc among them;
//! a POST of a JSON body needs little more than hyper's connection API, so this is that.

use crate::ca::{ClusterIdentity, PkiError};
use crate::tls::{any_control_server_name, control_client_config};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Idle connections kept per peer; more are opened under load and closed after use. Forwarded
/// joins keep as many requests in flight toward the leader as there are clients waiting, and a
/// connection closed after use costs a handshake (two ECDSA signatures) when the next burst comes.
const IDLE_CONNECTIONS_PER_PEER_MAX: usize = 64;
/// Peers with idle connections remembered (a cluster has a handful of control nodes).
const PEERS_MAX: usize = 64;
/// How long a pooled connection may take to be ready again before a new one is opened instead.
const POOLED_READY_WAIT: Duration = Duration::from_millis(500);
/// Largest answer read from a peer.
pub const RESPONSE_MAX_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No connection: the peer is down, unreachable, or not a control node of this cluster.
    #[error("cannot reach {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("request to {addr} failed: {reason}")]
    Failed { addr: String, reason: String },
    #[error("request to {addr} timed out")]
    TimedOut { addr: String },
}

/// What a peer answered.
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

/// Open connections not in use, by peer address.
type IdleConnections = HashMap<String, Vec<SendRequest<Full<Bytes>>>>;

/// The client side of the cluster listener. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct ClusterClient {
    connector: TlsConnector,
    idle: Arc<Mutex<IdleConnections>>,
}

impl ClusterClient {
    /// A client presenting `identity` that talks only to control nodes of its CA.
    pub fn new(identity: &ClusterIdentity) -> Result<Self, PkiError> {
        Ok(Self {
            connector: TlsConnector::from(control_client_config(identity)?),
            idle: Arc::default(),
        })
    }

    /// POSTs `body` (JSON) to `path` on the control node at `addr` (`host:port`, or a URL whose
    /// scheme is ignored: the link is always TLS), within `timeout`.
    pub async fn post_json(
        &self,
        addr: &str,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Answer, ClientError> {
        let addr = authority(addr).to_owned();
        match tokio::time::timeout(timeout, self.post_inner(&addr, path, body)).await {
            Ok(answer) => answer,
            Err(_) => Err(ClientError::TimedOut { addr }),
        }
    }

    /// GETs `path` from the control node at `addr`, within `timeout`.
    pub async fn get(&self, addr: &str, path: &str, timeout: Duration) -> Result<Answer, ClientError> {
        let addr = authority(addr).to_owned();
        match tokio::time::timeout(timeout, self.request(hyper::Method::GET, &addr, path, Vec::new())).await {
            Ok(answer) => answer,
            Err(_) => Err(ClientError::TimedOut { addr }),
        }
    }

    async fn post_inner(&self, addr: &str, path: &str, body: Vec<u8>) -> Result<Answer, ClientError> {
        self.request(hyper::Method::POST, addr, path, body).await
    }

    async fn request(
        &self,
        method: hyper::Method,
        addr: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Answer, ClientError> {
        let mut sender = match self.take_idle(addr).await {
            Some(sender) => sender,
            None => self.connect(addr).await?,
        };
        let failed = |reason: String| ClientError::Failed {
            addr: addr.to_owned(),
            reason,
        };
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, addr)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|err| failed(err.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| failed(err.to_string()))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), RESPONSE_MAX_BYTES)
            .collect()
            .await
            .map_err(|err| failed(err.to_string()))?
            .to_bytes();
        self.put_idle(addr, sender);
        Ok(Answer { status, body })
    }

    async fn connect(&self, addr: &str) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        let unreachable = |reason: String| ClientError::Unreachable {
            addr: addr.to_owned(),
            reason,
        };
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|err| unreachable(err.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .connector
            .connect(any_control_server_name(), tcp)
            .await
            .map_err(|err| unreachable(format!("TLS: {err}")))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|err| unreachable(err.to_string()))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// An open connection to `addr` ready for a request, if the pool has one.
    async fn take_idle(&self, addr: &str) -> Option<SendRequest<Full<Bytes>>> {
        loop {
            let mut sender = {
                let mut idle = self.idle.lock().expect("pool lock");
                idle.get_mut(addr)?.pop()?
            };
            // A connection put back a moment ago may not have noticed yet that its last response
            // is done; waiting for it is cheaper than a new handshake. A closed one says so.
            if sender.is_closed() {
                continue;
            }
            if let Ok(Ok(())) = tokio::time::timeout(POOLED_READY_WAIT, sender.ready()).await {
                return Some(sender);
            }
        }
    }

    fn put_idle(&self, addr: &str, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().expect("pool lock");
        if !idle.contains_key(addr) && idle.len() >= PEERS_MAX {
            idle.retain(|_, senders| senders.iter().any(|s| !s.is_closed()));
            if idle.len() >= PEERS_MAX {
                return;
            }
        }
        let senders = idle.entry(addr.to_owned()).or_default();
        senders.retain(|s| !s.is_closed());
        if senders.len() < IDLE_CONNECTIONS_PER_PEER_MAX {
            senders.push(sender);
        }
    }
}

/// Opens a TLS connection under `config` (e.g. [`control_client_config`]) to the control node
/// whose cluster listener is at `addr` (`host:port`).
pub async fn connect(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(authority(addr)).await?;
    let _ = tcp.set_nodelay(true);
    TlsConnector::from(config)
        .connect(any_control_server_name(), tcp)
        .await
}

/// `https://host:port/` → `host:port`.
pub fn authority(addr: &str) -> &str {
    let rest = addr.split_once("://").map_or(addr, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}
