//! The QUIC endpoint a bridge's cascade links run on: one UDP socket, server and client at once.
//!
//! Both ends of every connection are authenticated by the cluster CA (see [`super::pki`]): the
//! server requires a client certificate, the client checks the server certificate names the bridge
//! it meant to reach. Either way the peer's bridge id comes from its verified certificate and is
//! carried by [`CascadeConnection`], so the link layer knows who is on the other end.
//!
//! Media travels as QUIC datagrams, so the initial MTU is raised above quinn's 1,200-byte default
//! (which leaves 1,162-byte datagrams) to fit a full-size RTP packet from the start.

use super::pki::{self, BridgeIdentity, PkiError};
use bridgemesh_proto::ids::BridgeId;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, MtuDiscoveryConfig, TransportConfig, VarInt};
use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// ALPN of cascade links; a new incompatible version gets a new name.
pub const CASCADE_ALPN: &[u8] = b"bridgemesh-cascade/1";

/// The smallest `initial_mtu` QUIC allows.
const QUIC_MIN_MTU: u16 = 1200;
/// The largest UDP payload (IPv6 jumbo aside).
const MAX_UDP_PAYLOAD: u16 = 65527;

/// Tuning of cascade connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CascadeConfig {
    /// UDP payload size used from the first packet. 1452 fits an Ethernet path over IPv4 and
    /// IPv6 and gives datagrams of about 1,410 bytes, enough for RTP packets that left a browser
    /// at ~1,200 bytes plus cascade framing. A path that cannot carry it is detected as a black
    /// hole and falls back to 1,200.
    pub initial_mtu: u16,
    /// Ping interval on an idle connection, so that the idle timeout only fires on a dead peer.
    pub keep_alive_interval_ms: u64,
    /// A peer silent this long is dead and its connection ends (quinn waits at least three
    /// probe timeouts, so on a slow path it can be longer).
    pub idle_timeout_ms: u64,
    /// Received datagrams the application has not read yet, in bytes; beyond it the oldest are
    /// dropped (late media is worthless).
    pub datagram_receive_buffer_bytes: usize,
    /// Datagrams waiting for congestion window, in bytes; beyond it the oldest are dropped.
    pub datagram_send_buffer_bytes: usize,
    /// Control streams a peer may have open at once on one connection.
    pub max_concurrent_bidi_streams: u32,
    /// Connections (both directions) this endpoint holds at once: one per peer bridge, with room
    /// for reconnects that overlap the connection they replace.
    pub max_connections: usize,
}

impl Default for CascadeConfig {
    fn default() -> Self {
        Self {
            initial_mtu: 1452,
            keep_alive_interval_ms: 500,
            idle_timeout_ms: 2_000,
            datagram_receive_buffer_bytes: 1 << 20,
            datagram_send_buffer_bytes: 1 << 20,
            max_concurrent_bidi_streams: 16,
            max_connections: 256,
        }
    }
}

/// Why a [`CascadeConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CascadeConfigError {
    #[error("initial_mtu must be within {QUIC_MIN_MTU}..={MAX_UDP_PAYLOAD}, not {0}")]
    InitialMtu(u16),
    #[error("idle_timeout_ms must be positive and below 2^62")]
    IdleTimeout,
    #[error(
        "keep_alive_interval_ms must be positive and below idle_timeout_ms, or the connection dies between pings"
    )]
    KeepAlive,
    #[error("{0} must hold at least one datagram of initial_mtu bytes")]
    DatagramBuffer(&'static str),
    #[error("{0} must be positive")]
    Zero(&'static str),
}

impl CascadeConfig {
    pub fn validate(&self) -> Result<(), CascadeConfigError> {
        if !(QUIC_MIN_MTU..=MAX_UDP_PAYLOAD).contains(&self.initial_mtu) {
            return Err(CascadeConfigError::InitialMtu(self.initial_mtu));
        }
        if self.idle_timeout_ms == 0
            || IdleTimeout::try_from(Duration::from_millis(self.idle_timeout_ms)).is_err()
        {
            return Err(CascadeConfigError::IdleTimeout);
        }
        if self.keep_alive_interval_ms == 0 || self.keep_alive_interval_ms >= self.idle_timeout_ms {
            return Err(CascadeConfigError::KeepAlive);
        }
        let mtu = usize::from(self.initial_mtu);
        if self.datagram_receive_buffer_bytes < mtu {
            return Err(CascadeConfigError::DatagramBuffer(
                "datagram_receive_buffer_bytes",
            ));
        }
        if self.datagram_send_buffer_bytes < mtu {
            return Err(CascadeConfigError::DatagramBuffer("datagram_send_buffer_bytes"));
        }
        if self.max_concurrent_bidi_streams == 0 {
            return Err(CascadeConfigError::Zero("max_concurrent_bidi_streams"));
        }
        if self.max_connections == 0 {
            return Err(CascadeConfigError::Zero("max_connections"));
        }
        Ok(())
    }

    fn transport(&self) -> TransportConfig {
        let mut transport = TransportConfig::default();
        transport
            .initial_mtu(self.initial_mtu)
            // Keep probing upwards from there on paths that allow more (never below the start).
            .mtu_discovery_config(Some({
                let mut mtu = MtuDiscoveryConfig::default();
                mtu.upper_bound(self.initial_mtu.max(1452));
                mtu
            }))
            .keep_alive_interval(Some(Duration::from_millis(self.keep_alive_interval_ms)))
            .max_idle_timeout(Some(
                IdleTimeout::try_from(Duration::from_millis(self.idle_timeout_ms)).expect("validated"),
            ))
            .datagram_receive_buffer_size(Some(self.datagram_receive_buffer_bytes))
            .datagram_send_buffer_size(self.datagram_send_buffer_bytes)
            .max_concurrent_bidi_streams(VarInt::from_u32(self.max_concurrent_bidi_streams))
            // Nothing in the cascade protocol uses unidirectional streams.
            .max_concurrent_uni_streams(VarInt::from_u32(0));
        transport
    }
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    #[error("invalid cascade configuration: {0}")]
    Config(#[from] CascadeConfigError),
    #[error("TLS configuration refused: {0}")]
    Tls(String),
    #[error("cannot bind the cascade socket to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// Why a connection to or from a peer bridge failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CascadeConnectError {
    /// The peer's id cannot be a certificate name, so no bridge can hold it.
    #[error(transparent)]
    PeerId(#[from] PkiError),
    #[error("cannot start the connection: {0}")]
    Start(#[from] quinn::ConnectError),
    /// Handshake failed (certificate refused by either side, timeout, ...) or the connection ended.
    #[error("handshake failed: {0}")]
    Handshake(#[from] quinn::ConnectionError),
    /// Verified, yet not the bridge asked for. Cannot happen with certificates from
    /// [`pki::ClusterCa`], which carry one bridge name each.
    #[error("reached bridge {actual}, not {expected}")]
    WrongPeer { expected: BridgeId, actual: BridgeId },
    #[error("refused: this endpoint already holds {0} connections")]
    TooManyConnections(usize),
}

/// A cascade endpoint: accepts connections from peer bridges and opens connections to them.
#[derive(Debug, Clone)]
pub struct CascadeEndpoint {
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    bridge_id: BridgeId,
    max_connections: usize,
}

/// A connection to a peer bridge whose certificate has been verified.
#[derive(Debug, Clone)]
pub struct CascadeConnection {
    peer: BridgeId,
    connection: quinn::Connection,
}

impl CascadeConnection {
    /// The peer bridge, as its certificate names it.
    pub fn peer(&self) -> &BridgeId {
        &self.peer
    }

    /// The QUIC connection: datagrams for media, bidirectional streams for control.
    pub fn quic(&self) -> &quinn::Connection {
        &self.connection
    }
}

fn tls_error(e: impl std::fmt::Display) -> EndpointError {
    EndpointError::Tls(e.to_string())
}

impl CascadeEndpoint {
    /// Binds `listen` (UDP) and serves cascade connections for `identity`'s bridge.
    /// Must be called within a Tokio runtime.
    pub fn bind(
        listen: SocketAddr,
        identity: &BridgeIdentity,
        config: &CascadeConfig,
    ) -> Result<Self, EndpointError> {
        config.validate()?;
        let provider = pki::crypto_provider();
        let roots = pki::root_store(identity.ca_cert())?;
        let transport = Arc::new(config.transport());

        let client_verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(tls_error)?;
        let mut server_tls = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_error)?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(identity.cert_chain().to_vec(), identity.key().clone_key())
            .map_err(tls_error)?;
        server_tls.alpn_protocols = vec![CASCADE_ALPN.to_vec()];
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(
            QuicServerConfig::try_from(server_tls).map_err(tls_error)?,
        ));
        server_config.transport_config(transport.clone());
        // Handshakes not yet accepted: bounded so an unauthenticated flood cannot queue without end.
        server_config.max_incoming(config.max_connections);

        let server_verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(tls_error)?;
        let mut client_tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_error)?
            .with_webpki_verifier(server_verifier)
            .with_client_auth_cert(identity.cert_chain().to_vec(), identity.key().clone_key())
            .map_err(tls_error)?;
        client_tls.alpn_protocols = vec![CASCADE_ALPN.to_vec()];
        let mut client_config = quinn::ClientConfig::new(Arc::new(
            QuicClientConfig::try_from(client_tls).map_err(tls_error)?,
        ));
        client_config.transport_config(transport);

        // Connections are told apart by their addresses (one per peer bridge, which never
        // migrates), so they need no connection ids: 8 bytes less on every datagram.
        let mut endpoint_config = quinn::EndpointConfig::default();
        endpoint_config.cid_generator(|| Box::new(NoConnectionIds));
        let socket = std::net::UdpSocket::bind(listen)
            .map_err(|source| EndpointError::Bind { addr: listen, source })?;
        let runtime = quinn::default_runtime().ok_or_else(|| EndpointError::Bind {
            addr: listen,
            source: std::io::Error::other("no async runtime"),
        })?;
        let endpoint = quinn::Endpoint::new(endpoint_config, Some(server_config), socket, runtime)
            .map_err(|source| EndpointError::Bind { addr: listen, source })?;
        Ok(Self {
            endpoint,
            client_config,
            bridge_id: identity.bridge_id().clone(),
            max_connections: config.max_connections,
        })
    }

    /// This bridge.
    pub fn bridge_id(&self) -> &BridgeId {
        &self.bridge_id
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Connects to bridge `peer` at `addr`; fails unless the server's certificate, issued by the
    /// cluster CA, names `peer`.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        peer: &BridgeId,
    ) -> Result<CascadeConnection, CascadeConnectError> {
        if self.endpoint.open_connections() >= self.max_connections {
            return Err(CascadeConnectError::TooManyConnections(self.max_connections));
        }
        let server_name = match pki::bridge_server_name(peer)? {
            rustls::pki_types::ServerName::DnsName(name) => name.as_ref().to_owned(),
            _ => unreachable!("bridge_server_name returns DNS names only"),
        };
        let connection = self
            .endpoint
            .connect_with(self.client_config.clone(), addr, &server_name)?
            .await?;
        let actual = verified_peer_id(&connection)?;
        if &actual != peer {
            connection.close(VarInt::from_u32(0), b"wrong peer");
            return Err(CascadeConnectError::WrongPeer {
                expected: peer.clone(),
                actual,
            });
        }
        Ok(CascadeConnection {
            peer: actual,
            connection,
        })
    }

    /// The next connection a peer bridge opened; `None` once the endpoint is closed. An `Err` is
    /// one failed handshake: keep accepting.
    pub async fn accept(&self) -> Option<Result<CascadeConnection, CascadeConnectError>> {
        let incoming = self.endpoint.accept().await?;
        // `open_connections` does not count this handshake yet: it becomes a connection on accept.
        if self.endpoint.open_connections() >= self.max_connections {
            incoming.refuse();
            return Some(Err(CascadeConnectError::TooManyConnections(self.max_connections)));
        }
        let connection = match incoming.await {
            Ok(connection) => connection,
            Err(e) => return Some(Err(e.into())),
        };
        Some(
            verified_peer_id(&connection)
                .map(|peer| CascadeConnection { peer, connection })
                .map_err(Into::into),
        )
    }

    /// Closes every connection (peers are told) and stops accepting.
    pub fn close(&self) {
        self.endpoint.close(VarInt::from_u32(0), b"bridge shutting down");
    }

    /// Waits until closed connections have told their peers, or timed out.
    pub async fn wait_idle(&self) {
        self.endpoint.wait_idle().await;
    }
}

/// Zero-length connection ids: quinn then routes by the peers' addresses.
struct NoConnectionIds;

impl quinn::ConnectionIdGenerator for NoConnectionIds {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        quinn::ConnectionId::new(&[])
    }

    fn cid_len(&self) -> usize {
        0
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// The bridge id in the certificate rustls verified during the handshake.
fn verified_peer_id(connection: &quinn::Connection) -> Result<BridgeId, PkiError> {
    let chain = connection
        .peer_identity()
        .and_then(|identity| identity.downcast::<Vec<CertificateDer<'static>>>().ok())
        // Unreachable with client certificates required: the handshake fails without one.
        .ok_or(PkiError::NoBridgeName)?;
    let end_entity = chain.first().ok_or(PkiError::NoBridgeName)?;
    pki::bridge_id_of(end_entity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_nonsense_is_refused() {
        let ok = CascadeConfig::default();
        assert_eq!(ok.validate(), Ok(()));
        let with = |change: fn(&mut CascadeConfig)| {
            let mut config = ok.clone();
            change(&mut config);
            config.validate()
        };
        assert_eq!(
            with(|c| c.initial_mtu = 1199),
            Err(CascadeConfigError::InitialMtu(1199))
        );
        assert_eq!(
            with(|c| c.idle_timeout_ms = 0),
            Err(CascadeConfigError::IdleTimeout)
        );
        assert_eq!(
            with(|c| c.keep_alive_interval_ms = c.idle_timeout_ms),
            Err(CascadeConfigError::KeepAlive)
        );
        assert_eq!(
            with(|c| c.keep_alive_interval_ms = 0),
            Err(CascadeConfigError::KeepAlive)
        );
        assert!(matches!(
            with(|c| c.datagram_receive_buffer_bytes = 1000),
            Err(CascadeConfigError::DatagramBuffer(_))
        ));
        assert!(matches!(
            with(|c| c.datagram_send_buffer_bytes = 1000),
            Err(CascadeConfigError::DatagramBuffer(_))
        ));
        assert!(matches!(
            with(|c| c.max_connections = 0),
            Err(CascadeConfigError::Zero(_))
        ));
        assert!(matches!(
            with(|c| c.max_concurrent_bidi_streams = 0),
            Err(CascadeConfigError::Zero(_))
        ));
    }
}
