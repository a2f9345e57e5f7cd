//! TURN server configuration: a plain struct; the binary fills it from flags, `bridgemesh up`
//! from its own defaults.

use crate::rate_limit::RateLimit;
use bridgemesh_proto::cidr::Cidr;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// `Debug` is written by hand: it prints the secret's length, never the secret.
#[derive(Clone)]
pub struct TurnConfig {
    /// Off: nothing listens and no join response names this server.
    pub enabled: bool,
    /// `turn:host:port` (UDP).
    pub udp_listen: Option<SocketAddr>,
    /// `turn:host:port?transport=tcp`: RFC 5766 §2.1 framing over one TCP stream.
    pub tcp_listen: Option<SocketAddr>,
    /// `turns:host:port?transport=tcp`: the same over TLS, with `tls_cert_path`/`tls_key_path`.
    pub tls_listen: Option<SocketAddr>,
    /// PEM certificate chain and private key for `tls_listen`.
    pub tls_cert_path: Option<PathBuf>,
    pub tls_key_path: Option<PathBuf>,
    /// Address relay sockets bind to: one of this host's, or the unspecified address of the
    /// external IP's family (any local address) when `external_ip` is set.
    pub relay_ip: IpAddr,
    /// The address XOR-RELAYED-ADDRESS names when it is not `relay_ip`: the public side of a
    /// 1:1 NAT (a cloud elastic IP), as coturn's `--external-ip`. Clients and peers must reach
    /// it; the NAT forwards it to `relay_ip`, keeping the port.
    pub external_ip: Option<IpAddr>,
    pub relay_port_min: u16,
    pub relay_port_max: u16,
    pub realm: String,
    /// Shared with whoever issues credentials (control): `password = base64(HMAC-SHA1(secret, username))`.
    pub secret: Vec<u8>,
    /// How long issued credentials stay valid for new allocations; used by issuers, and by the
    /// server to tell when a credential was issued (to refuse those of an ended session). An
    /// allocation outlives its credential: requests on it are served with the credential that
    /// made it, expired or not, until the allocation ends or its session does.
    pub credential_ttl_s: u64,
    pub allocations_max: usize,
    pub allocations_per_user_max: usize,
    /// Allocations of all users together from one source IP: a host cannot take the server's
    /// relays with many participants' credentials. Generous for a NAT hiding an office.
    pub allocations_per_source_max: usize,
    /// Users whose session ended that the server remembers (see `ended_sessions`).
    pub ended_sessions_max: usize,
    /// Bytes per second an allocation may relay, both directions together; excess is dropped.
    pub allocation_bandwidth_bytes_per_s: u64,
    /// Burst on top of the rate, so a keyframe is not cut.
    pub allocation_bandwidth_burst_bytes: u64,
    pub permissions_per_allocation_max: usize,
    pub channels_per_allocation_max: usize,
    pub allocation_lifetime_max_s: u32,
    /// Exact peer addresses allowed despite the deny policy: the cluster's bridge media addresses.
    pub allow_peer_addrs: Vec<SocketAddr>,
    /// Networks allowed despite the deny policy (labs). Empty in production.
    pub allow_peer_nets: Vec<Cidr>,
    /// Relay to every globally routable address too, as a general-purpose TURN server does. Off:
    /// only the cluster's bridges (the configured ones and those control reports) and
    /// `allow_peer_nets` are reachable.
    pub allow_public_peers: bool,
    /// Budget per source IP for requests without valid credentials.
    pub unauthenticated_limit: RateLimit,
    /// TCP and TLS connections open at once.
    pub stream_connections_max: usize,
    /// TCP and TLS connections open at once from one source IP, so one host cannot take every slot.
    pub stream_connections_per_source_max: usize,
    /// A stream that has no allocation this long after it was accepted (or after its allocation
    /// ended) is closed, however much it sends.
    pub stream_idle_without_allocation_s: u64,
    pub nonce_lifetime_s: u64,
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            udp_listen: Some(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 3478))),
            tcp_listen: Some(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 3478))),
            tls_listen: None,
            tls_cert_path: None,
            tls_key_path: None,
            relay_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            external_ip: None,
            relay_port_min: 49152,
            relay_port_max: 65535,
            realm: "bridgemesh".to_owned(),
            secret: Vec::new(),
            // Enough to join and gather candidates; allocations outlive it.
            credential_ttl_s: 600,
            allocations_max: 10_000,
            allocations_per_user_max: 10,
            allocations_per_source_max: 256,
            ended_sessions_max: 100_000,
            // 5 Mbit/s: well above one participant's simulcast upload or a 1080p download.
            allocation_bandwidth_bytes_per_s: 625_000,
            allocation_bandwidth_burst_bytes: 250_000,
            permissions_per_allocation_max: 32,
            channels_per_allocation_max: 32,
            allocation_lifetime_max_s: 3600,
            allow_peer_addrs: Vec::new(),
            allow_peer_nets: Vec::new(),
            allow_public_peers: false,
            unauthenticated_limit: RateLimit::default(),
            stream_connections_max: 10_000,
            stream_connections_per_source_max: 16,
            stream_idle_without_allocation_s: 30,
            nonce_lifetime_s: 600,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("no listener: set at least one of udp_listen, tcp_listen, tls_listen")]
    NoListener,
    #[error("tls_listen needs tls_cert_path and tls_key_path")]
    TlsWithoutCertificate,
    #[error(
        "relay_ip must be a concrete address peers can reach, not 0.0.0.0 / :: (binding any address needs an external_ip to advertise)"
    )]
    UnspecifiedRelayIp,
    #[error("external_ip must be a concrete address peers can reach, not 0.0.0.0 / ::")]
    UnspecifiedExternalIp,
    #[error(
        "external_ip {external} and relay_ip {relay} are of different families; a 1:1 NAT keeps the family"
    )]
    RelayFamilyMismatch { relay: IpAddr, external: IpAddr },
    #[error("relay port range {0}-{1} is empty or starts below 1024")]
    RelayPortRange(u16, u16),
    #[error("the shared secret must be at least 16 bytes")]
    WeakSecret,
    #[error("the realm must be 1 to 127 printable characters")]
    Realm,
    #[error("credential_ttl_s must be between 60 s and 7 days")]
    CredentialTtl,
    #[error("{0} must be positive")]
    Zero(&'static str),
}

impl TurnConfig {
    /// The address clients and peers see relays at: `external_ip`, else `relay_ip`.
    pub fn relay_advertised_ip(&self) -> IpAddr {
        self.external_ip.unwrap_or(self.relay_ip)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        if self.udp_listen.is_none() && self.tcp_listen.is_none() && self.tls_listen.is_none() {
            return Err(ConfigError::NoListener);
        }
        if self.tls_listen.is_some() && (self.tls_cert_path.is_none() || self.tls_key_path.is_none()) {
            return Err(ConfigError::TlsWithoutCertificate);
        }
        match self.external_ip {
            None if self.relay_ip.is_unspecified() => return Err(ConfigError::UnspecifiedRelayIp),
            None => {}
            Some(external) if external.is_unspecified() => {
                return Err(ConfigError::UnspecifiedExternalIp);
            }
            Some(external) if external.is_ipv4() != self.relay_ip.is_ipv4() => {
                return Err(ConfigError::RelayFamilyMismatch {
                    relay: self.relay_ip,
                    external,
                });
            }
            Some(_) => {}
        }
        if self.relay_port_min < 1024 || self.relay_port_min > self.relay_port_max {
            return Err(ConfigError::RelayPortRange(
                self.relay_port_min,
                self.relay_port_max,
            ));
        }
        if self.secret.len() < 16 {
            return Err(ConfigError::WeakSecret);
        }
        if self.realm.is_empty() || self.realm.len() > 127 || self.realm.chars().any(char::is_control) {
            return Err(ConfigError::Realm);
        }
        if !(60..=7 * 24 * 3600).contains(&self.credential_ttl_s) {
            return Err(ConfigError::CredentialTtl);
        }
        for (value, name) in [
            (self.allocations_max, "allocations_max"),
            (self.allocations_per_user_max, "allocations_per_user_max"),
            (self.allocations_per_source_max, "allocations_per_source_max"),
            (self.ended_sessions_max, "ended_sessions_max"),
            (
                self.permissions_per_allocation_max,
                "permissions_per_allocation_max",
            ),
            (self.channels_per_allocation_max, "channels_per_allocation_max"),
            (self.stream_connections_max, "stream_connections_max"),
            (
                self.stream_connections_per_source_max,
                "stream_connections_per_source_max",
            ),
            (
                self.stream_idle_without_allocation_s as usize,
                "stream_idle_without_allocation_s",
            ),
            (
                self.allocation_bandwidth_bytes_per_s as usize,
                "allocation_bandwidth_bytes_per_s",
            ),
            (
                self.allocation_lifetime_max_s as usize,
                "allocation_lifetime_max_s",
            ),
            (
                self.unauthenticated_limit.sources_max,
                "unauthenticated_limit.sources_max",
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for TurnConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured, so a new field cannot be forgotten here.
        let Self {
            enabled,
            udp_listen,
            tcp_listen,
            tls_listen,
            tls_cert_path,
            tls_key_path,
            relay_ip,
            external_ip,
            relay_port_min,
            relay_port_max,
            realm,
            secret,
            credential_ttl_s,
            allocations_max,
            allocations_per_user_max,
            allocations_per_source_max,
            ended_sessions_max,
            allocation_bandwidth_bytes_per_s,
            allocation_bandwidth_burst_bytes,
            permissions_per_allocation_max,
            channels_per_allocation_max,
            allocation_lifetime_max_s,
            allow_peer_addrs,
            allow_peer_nets,
            allow_public_peers,
            unauthenticated_limit,
            stream_connections_max,
            stream_connections_per_source_max,
            stream_idle_without_allocation_s,
            nonce_lifetime_s,
        } = self;
        f.debug_struct("TurnConfig")
            .field("enabled", enabled)
            .field("udp_listen", udp_listen)
            .field("tcp_listen", tcp_listen)
            .field("tls_listen", tls_listen)
            .field("tls_cert_path", tls_cert_path)
            .field("tls_key_path", tls_key_path)
            .field("relay_ip", relay_ip)
            .field("external_ip", external_ip)
            .field("relay_port_min", relay_port_min)
            .field("relay_port_max", relay_port_max)
            .field("realm", realm)
            .field("secret", &Redacted(secret))
            .field("credential_ttl_s", credential_ttl_s)
            .field("allocations_max", allocations_max)
            .field("allocations_per_user_max", allocations_per_user_max)
            .field("allocations_per_source_max", allocations_per_source_max)
            .field("ended_sessions_max", ended_sessions_max)
            .field(
                "allocation_bandwidth_bytes_per_s",
                allocation_bandwidth_bytes_per_s,
            )
            .field(
                "allocation_bandwidth_burst_bytes",
                allocation_bandwidth_burst_bytes,
            )
            .field("permissions_per_allocation_max", permissions_per_allocation_max)
            .field("channels_per_allocation_max", channels_per_allocation_max)
            .field("allocation_lifetime_max_s", allocation_lifetime_max_s)
            .field("allow_peer_addrs", allow_peer_addrs)
            .field("allow_peer_nets", allow_peer_nets)
            .field("allow_public_peers", allow_public_peers)
            .field("unauthenticated_limit", unauthenticated_limit)
            .field("stream_connections_max", stream_connections_max)
            .field(
                "stream_connections_per_source_max",
                stream_connections_per_source_max,
            )
            .field(
                "stream_idle_without_allocation_s",
                stream_idle_without_allocation_s,
            )
            .field("nonce_lifetime_s", nonce_lifetime_s)
            .finish()
    }
}

/// A secret in `Debug` output: its length only, so configs and directories can be logged.
pub(crate) struct Redacted<'a>(pub(crate) &'a [u8]);

impl std::fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<redacted, {} bytes>", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> TurnConfig {
        TurnConfig {
            relay_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            secret: vec![1; 32],
            ..TurnConfig::default()
        }
    }

    #[test]
    fn default_needs_only_a_relay_ip_and_a_secret() {
        assert_eq!(
            TurnConfig::default().validate(),
            Err(ConfigError::UnspecifiedRelayIp)
        );
        assert_eq!(valid().validate(), Ok(()));
        let behind_nat = TurnConfig {
            relay_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            external_ip: Some("203.0.113.7".parse().unwrap()),
            ..valid()
        };
        assert_eq!(behind_nat.validate(), Ok(()), "any local address, one public one");
        assert_eq!(behind_nat.relay_advertised_ip().to_string(), "203.0.113.7");
        assert_eq!(valid().relay_advertised_ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        let disabled = TurnConfig {
            enabled: false,
            ..TurnConfig::default()
        };
        assert_eq!(disabled.validate(), Ok(()), "nothing to check when off");
    }

    #[test]
    fn debug_output_does_not_show_the_secret() {
        let config = TurnConfig {
            secret: b"s3cr3t-value-0123456789".to_vec(),
            ..valid()
        };
        let text = format!("{config:?} {config:#?}");
        assert!(!text.contains("s3cr3t"), "{text}");
        // Nor as the byte list the derived Debug of a Vec<u8> prints.
        assert!(!text.contains("115, 51"), "{text}");
        assert!(text.contains("23 bytes"), "{text}");
        assert!(
            text.contains("relay_ip: 127.0.0.1"),
            "the rest is still shown: {text}"
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let cases = [
            (
                TurnConfig {
                    secret: vec![1; 4],
                    ..valid()
                },
                ConfigError::WeakSecret,
            ),
            (
                TurnConfig {
                    relay_port_min: 6000,
                    relay_port_max: 5000,
                    ..valid()
                },
                ConfigError::RelayPortRange(6000, 5000),
            ),
            (
                TurnConfig {
                    tls_listen: Some("127.0.0.1:5349".parse().unwrap()),
                    ..valid()
                },
                ConfigError::TlsWithoutCertificate,
            ),
            (
                TurnConfig {
                    udp_listen: None,
                    tcp_listen: None,
                    ..valid()
                },
                ConfigError::NoListener,
            ),
            (
                TurnConfig {
                    external_ip: Some("::".parse().unwrap()),
                    ..valid()
                },
                ConfigError::UnspecifiedExternalIp,
            ),
            (
                TurnConfig {
                    external_ip: Some("2001:db8::7".parse().unwrap()),
                    ..valid()
                },
                ConfigError::RelayFamilyMismatch {
                    relay: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    external: "2001:db8::7".parse().unwrap(),
                },
            ),
            (
                TurnConfig {
                    relay_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    ..valid()
                },
                ConfigError::UnspecifiedRelayIp,
            ),
            (
                TurnConfig {
                    allocations_per_user_max: 0,
                    ..valid()
                },
                ConfigError::Zero("allocations_per_user_max"),
            ),
            (
                TurnConfig {
                    stream_connections_per_source_max: 0,
                    ..valid()
                },
                ConfigError::Zero("stream_connections_per_source_max"),
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(config.validate(), Err(expected));
        }
    }
}
