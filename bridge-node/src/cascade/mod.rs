//! Bridge-to-bridge cascade: one mutually authenticated QUIC connection per bridge pair.
//!
//! - [`pki`]: the cluster CA and the bridge certificates it issues (the `bridgemesh-pki` crate).
//! - [`endpoint`]: the QUIC endpoint, server and client at once, that cascade links run on.
//! - [`link`]: one link: its control stream, its datagrams, the rooms it shares.
//! - [`link_outbox`]: a link's pending control messages, coalesced, with a budget per room.
//! - [`manager`]: which peers to link to (control says, room by room), dialing, reconnecting.
//!
//! The shards' side (remote participants, what crosses a link) is `shard/cascade.rs`.

pub mod endpoint;
pub mod link;
pub mod link_outbox;
pub mod manager;
pub use bridgemesh_pki::ca as pki;

pub use link::{LinkStats, LinkTable};
pub use manager::{CascadeHandle, CascadeManagerConfig};

pub use endpoint::{
    CASCADE_ALPN, CascadeConfig, CascadeConfigError, CascadeConnectError, CascadeConnection, CascadeEndpoint,
    EndpointError,
};
pub use pki::{BridgeIdentity, ClusterCa, PkiError};
