//! Bridge-to-bridge cascade: one mutually authenticated QUIC connection per bridge pair.
//!
//! - [`pki`]: the cluster CA and the bridge certificates it issues.
//! - [`endpoint`]: the QUIC endpoint, server and client at once, that cascade links run on.

pub mod endpoint;
pub mod pki;

pub use endpoint::{
    CASCADE_ALPN, CascadeConfig, CascadeConfigError, CascadeConnectError, CascadeConnection, CascadeEndpoint,
    EndpointError,
};
pub use pki::{BridgeIdentity, ClusterCa, PkiError};
