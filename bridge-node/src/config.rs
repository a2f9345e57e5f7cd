//! Bridge configuration: a plain struct the binary fills from flags, files or defaults.

use crate::signaling_limits::{SignalingLimits, SignalingLimitsError};
use bridgemesh_proto::{BridgeId, RegionId};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

#[derive(Debug, Clone)]
pub struct BridgeConfig {
    pub bridge_id: BridgeId,
    pub region: RegionId,
    /// The one UDP port every participant's media uses.
    pub media_bind: SocketAddr,
    /// The address put in the ICE candidate. It differs from `media_bind` behind a 1:1 NAT or when
    /// binding `0.0.0.0`; it must be what participants can reach.
    pub media_advertised_ip: IpAddr,
    /// A second host candidate, the bridge's IPv6 address, for a bridge with an IPv4
    /// `media_advertised_ip` bound to `[::]` (one dual-stack socket): participants on either
    /// family reach the one media port.
    pub media_advertised_ipv6: Option<Ipv6Addr>,
    /// The key control signs participant tickets with (derived from the cluster secret; a bridge
    /// never holds the cluster secret itself).
    pub ticket_key: Vec<u8>,
    /// Packet-processing threads; each owns a share of the rooms.
    pub shard_count: usize,
    pub max_participants: usize,
    /// Largest room this bridge hosts; a join past it is refused with `room_full`.
    pub max_participants_per_room: usize,
    /// The media sockets' kernel buffers.
    pub media_socket: MediaSocketConfig,
    /// Rate limits on each client's signaling messages.
    pub signaling_limits: SignalingLimits,
    /// Where and how much rooms are recorded; `None`: this bridge does not record.
    pub recording: Option<crate::recording::RecordingConfig>,
}

/// The kernel buffers of each shard's media socket. A receive buffer too small for a burst (a
/// keyframe from every publisher at once) is where the bridge loses packets; the
/// `bridgemesh_bridge_datagrams_dropped_by_kernel` metric counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaSocketConfig {
    /// `SO_RCVBUF` per shard socket. Past `net.core.rmem_max` it takes CAP_NET_ADMIN
    /// (`SO_RCVBUFFORCE`) or a raised sysctl; otherwise the kernel caps it (logged at start).
    pub recv_buffer_bytes: usize,
    /// `SO_SNDBUF` per shard socket (capped by `net.core.wmem_max` the same way).
    pub send_buffer_bytes: usize,
}

impl MediaSocketConfig {
    pub const BUFFER_BYTES_MIN: usize = 64 * 1024;
    pub const BUFFER_BYTES_MAX: usize = 256 * 1024 * 1024;

    pub fn validate(&self) -> Result<(), ConfigError> {
        let range = Self::BUFFER_BYTES_MIN..=Self::BUFFER_BYTES_MAX;
        if !range.contains(&self.recv_buffer_bytes) || !range.contains(&self.send_buffer_bytes) {
            return Err(ConfigError::SocketBuffer);
        }
        Ok(())
    }
}

impl Default for MediaSocketConfig {
    /// 4 MiB in: about 3,000 full-size datagrams, 30 ms of 100,000 packets/s arriving while the
    /// shard is busy. 1 MiB out: sends are batched and drained as they go.
    fn default() -> Self {
        Self {
            recv_buffer_bytes: 4 * 1024 * 1024,
            send_buffer_bytes: 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error(
        "the advertised media address must not be unspecified (0.0.0.0 / ::); set it to an address participants reach"
    )]
    UnspecifiedAdvertisedIp,
    #[error("the advertised media address {0} is not a unicast address participants can send to")]
    AdvertisedIpNotUnicast(IpAddr),
    #[error(
        "the advertised media address {advertised} and the bound one {bind} are of different families: the media socket only receives its own family (a 1:1 NAT keeps the family)"
    )]
    FamilyMismatch { bind: IpAddr, advertised: IpAddr },
    #[error(
        "a second, IPv6 media address ({0}) needs an IPv4 advertised address and the media socket bound to [::] (both families on one port)"
    )]
    Ipv6WithoutDualStack(Ipv6Addr),
    #[error("the ticket key must be at least 32 bytes")]
    WeakClusterSecret,
    #[error("shard_count must be between 1 and 64")]
    ShardCount,
    #[error("max_participants and max_participants_per_room must be positive")]
    ZeroCapacity,
    #[error("media socket buffers must be between 64 KiB and 256 MiB")]
    SocketBuffer,
    #[error(transparent)]
    SignalingLimits(#[from] SignalingLimitsError),
    #[error(transparent)]
    Recording(#[from] crate::recording::RecordingConfigError),
}

impl BridgeConfig {
    /// A bridge on loopback, as `bridgemesh up` runs it.
    pub fn loopback(bridge_id: BridgeId, ticket_key: Vec<u8>, media_port: u16) -> Self {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Self {
            bridge_id,
            region: RegionId::new("local").expect("valid region literal"),
            media_bind: SocketAddr::new(ip, media_port),
            media_advertised_ip: ip,
            media_advertised_ipv6: None,
            ticket_key,
            shard_count: std::thread::available_parallelism().map_or(1, |n| n.get()).min(8),
            max_participants: 1000,
            max_participants_per_room: 100,
            media_socket: MediaSocketConfig::default(),
            signaling_limits: SignalingLimits::default(),
            recording: None,
        }
    }

    /// Whether the media socket takes both families: bound to `[::]`, it is made dual-stack.
    pub fn binds_dual_stack(&self) -> bool {
        self.media_bind.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(recording) = &self.recording {
            recording.validate()?;
        }
        let advertised = self.media_advertised_ip;
        if advertised.is_unspecified() {
            return Err(ConfigError::UnspecifiedAdvertisedIp);
        }
        if !is_unicast(advertised) {
            return Err(ConfigError::AdvertisedIpNotUnicast(advertised));
        }
        if advertised.is_ipv4() != self.media_bind.is_ipv4() && !self.binds_dual_stack() {
            return Err(ConfigError::FamilyMismatch {
                bind: self.media_bind.ip(),
                advertised,
            });
        }
        if let Some(v6) = self.media_advertised_ipv6 {
            let v6_ip = IpAddr::V6(v6);
            if v6.is_unspecified() || !is_unicast(v6_ip) || v6.to_ipv4_mapped().is_some() {
                return Err(ConfigError::AdvertisedIpNotUnicast(v6_ip));
            }
            if !advertised.is_ipv4() || !self.binds_dual_stack() {
                return Err(ConfigError::Ipv6WithoutDualStack(v6));
            }
        }
        if self.ticket_key.len() < 32 {
            return Err(ConfigError::WeakClusterSecret);
        }
        if !(1..=64).contains(&self.shard_count) {
            return Err(ConfigError::ShardCount);
        }
        if self.max_participants == 0 || self.max_participants_per_room == 0 {
            return Err(ConfigError::ZeroCapacity);
        }
        self.media_socket.validate()?;
        self.signaling_limits.validate()?;
        Ok(())
    }
}

/// Whether `ip` names one host: not multicast, not the IPv4 broadcast address.
pub fn is_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_multicast() && !v4.is_broadcast(),
        IpAddr::V6(v6) => !v6.is_multicast(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> BridgeConfig {
        BridgeConfig::loopback(BridgeId::new("b1").unwrap(), vec![7; 32], 0)
    }

    #[test]
    fn socket_buffers_outside_the_sane_range_are_refused() {
        let mut config = valid();
        config.media_socket.recv_buffer_bytes = 1024;
        assert_eq!(config.validate(), Err(ConfigError::SocketBuffer));
        config.media_socket = MediaSocketConfig {
            send_buffer_bytes: MediaSocketConfig::BUFFER_BYTES_MAX + 1,
            ..MediaSocketConfig::default()
        };
        assert_eq!(config.validate(), Err(ConfigError::SocketBuffer));
        assert_eq!(MediaSocketConfig::default().validate(), Ok(()));
    }

    #[test]
    fn advertised_addresses_it_cannot_serve_are_named() {
        assert_eq!(valid().validate(), Ok(()));
        let behind_nat = BridgeConfig {
            media_bind: "0.0.0.0:10000".parse().unwrap(),
            media_advertised_ip: "198.18.0.77".parse().unwrap(),
            ..valid()
        };
        assert_eq!(
            behind_nat.validate(),
            Ok(()),
            "bind one address, advertise another"
        );
        let dual_stack = BridgeConfig {
            media_bind: "[::]:10000".parse().unwrap(),
            media_advertised_ip: "198.18.0.77".parse().unwrap(),
            media_advertised_ipv6: Some("2001:db8::7".parse().unwrap()),
            ..valid()
        };
        assert_eq!(dual_stack.validate(), Ok(()), "both families on [::]");
        for (bind, v6, advertised) in [
            ("0.0.0.0:10000", "2001:db8::7", "198.18.0.77"),
            ("[::]:10000", "2001:db8::7", "2001:db8::8"),
        ] {
            let config = BridgeConfig {
                media_bind: bind.parse().unwrap(),
                media_advertised_ip: advertised.parse().unwrap(),
                media_advertised_ipv6: Some(v6.parse().unwrap()),
                ..valid()
            };
            assert_eq!(
                config.validate(),
                Err(ConfigError::Ipv6WithoutDualStack(v6.parse().unwrap())),
                "{bind} {advertised}"
            );
        }
        for mapped in ["::ffff:10.0.0.1", "ff02::1", "::"] {
            let config = BridgeConfig {
                media_advertised_ipv6: Some(mapped.parse().unwrap()),
                ..dual_stack.clone()
            };
            assert!(config.validate().is_err(), "{mapped}");
        }
        let cases = [
            ("0.0.0.0", "127.0.0.1:0", ConfigError::UnspecifiedAdvertisedIp),
            ("::", "[::1]:0", ConfigError::UnspecifiedAdvertisedIp),
            (
                "224.0.0.1",
                "127.0.0.1:0",
                ConfigError::AdvertisedIpNotUnicast("224.0.0.1".parse().unwrap()),
            ),
            (
                "255.255.255.255",
                "127.0.0.1:0",
                ConfigError::AdvertisedIpNotUnicast("255.255.255.255".parse().unwrap()),
            ),
            (
                "ff02::1",
                "[::]:0",
                ConfigError::AdvertisedIpNotUnicast("ff02::1".parse().unwrap()),
            ),
            (
                "2001:db8::7",
                "0.0.0.0:0",
                ConfigError::FamilyMismatch {
                    bind: "0.0.0.0".parse().unwrap(),
                    advertised: "2001:db8::7".parse().unwrap(),
                },
            ),
            (
                "203.0.113.7",
                "[::1]:0",
                ConfigError::FamilyMismatch {
                    bind: "::1".parse().unwrap(),
                    advertised: "203.0.113.7".parse().unwrap(),
                },
            ),
        ];
        for (advertised, bind, expected) in cases {
            let config = BridgeConfig {
                media_bind: bind.parse().unwrap(),
                media_advertised_ip: advertised.parse().unwrap(),
                ..valid()
            };
            assert_eq!(config.validate(), Err(expected), "{advertised} bound at {bind}");
        }
    }
}
