//! A TCP listener that hands axum only connections whose mutual TLS handshake succeeded, each
//! with the cluster member its certificate names ([`ClusterPeer`], as axum's connect info).
//!
//! Handshakes run on tasks of their own (a slow or silent client holds up nobody), at most
//! [`HANDSHAKES_IN_FLIGHT_MAX`] at once and each for at most [`HANDSHAKE_TIMEOUT`].

use crate::ca::ClusterName;
use crate::tls::peer_name;
use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use rustls::ServerConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

pub const HANDSHAKES_IN_FLIGHT_MAX: usize = 256;
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Authenticated connections accepted and not yet taken by the server.
const READY_CONNECTIONS_MAX: usize = 64;

/// The far end of a cluster connection: its address and who its certificate names.
#[derive(Debug, Clone)]
pub struct ClusterPeer {
    pub addr: SocketAddr,
    pub name: ClusterName,
}

impl Connected<IncomingStream<'_, ClusterListener>> for ClusterPeer {
    fn connect_info(stream: IncomingStream<'_, ClusterListener>) -> Self {
        stream.remote_addr().clone()
    }
}

pub struct ClusterListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, ClusterPeer)>,
    local: ClusterPeer,
    accept_task: JoinHandle<()>,
}

impl Drop for ClusterListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl ClusterListener {
    /// Accepts on `tcp` from now on. `own` is this node's name (what [`Listener::local_addr`]
    /// reports beside the address). Must be called within a Tokio runtime.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>, own: ClusterName) -> std::io::Result<Self> {
        let local = ClusterPeer {
            addr: tcp.local_addr()?,
            name: own,
        };
        let (ready_tx, ready) = mpsc::channel(READY_CONNECTIONS_MAX);
        let acceptor = TlsAcceptor::from(config);
        let handshakes = Arc::new(Semaphore::new(HANDSHAKES_IN_FLIGHT_MAX));
        let accept_task = tokio::spawn(async move {
            loop {
                let Ok(permit) = handshakes.clone().acquire_owned().await else {
                    return;
                };
                let (stream, addr) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of file descriptors and the like: pause rather than spin.
                        tracing::warn!(%err, "cluster listener cannot accept");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let acceptor = acceptor.clone();
                let ready_tx = ready_tx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(err)) => {
                            tracing::debug!(%err, %addr, "cluster TLS handshake refused");
                            return;
                        }
                        Err(_) => return,
                    };
                    let Some(name) = peer_name(tls.get_ref().1) else {
                        tracing::debug!(%addr, "cluster certificate names no member");
                        return;
                    };
                    let _ = ready_tx.send((tls, ClusterPeer { addr, name })).await;
                });
            }
        });
        Ok(Self {
            ready,
            local,
            accept_task,
        })
    }
}

impl Listener for ClusterListener {
    type Io = TlsStream<TcpStream>;
    type Addr = ClusterPeer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local.clone())
    }
}
