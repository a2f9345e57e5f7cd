//! The cluster's public-key infrastructure: the CA, the certificates it issues to bridges and
//! control nodes, and the mutual-TLS plumbing every link between nodes uses.
//!
//! # Layout
//! - [`ca`]: the cluster CA, the certificates it issues, who a certificate names.
//! - [`identity`]: what a bridge or control node presents on every link.
//! - [`tls`]: rustls configurations for control's cluster listener and its clients.
//! - [`listener`]: an axum listener that serves only authenticated cluster members.
//! - [`client`]: HTTP/1.1 over mutual TLS between control nodes, pooled.
//!
//! Bridge to bridge links (QUIC) build their own configurations from [`ca`] in the bridge's
//! `cascade::endpoint`.

pub mod ca;
pub mod client;
pub mod identity;
pub mod listener;
mod pem_files;
pub mod tls;

pub use ca::{BridgeIdentity, ClusterCa, ClusterIdentity, ClusterName, PkiError};
pub use client::ClusterClient;
pub use listener::{ClusterListener, ClusterPeer};

/// The TLS crates of every cluster link, for callers that build a connection themselves (tests).
pub use {rustls, tokio_rustls};
