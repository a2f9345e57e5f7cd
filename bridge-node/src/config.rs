//! Bridge configuration: a plain struct the binary fills from flags, files or defaults.

use bridgemesh_proto::{BridgeId, RegionId};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

#[derive(Debug, Clone)]
pub struct BridgeConfig {
    pub bridge_id: BridgeId,
    pub region: RegionId,
    /// The one UDP port every participant's media uses.
    pub media_bind: SocketAddr,
    /// The address put in the ICE candidate. It differs from `media_bind` behind a 1:1 NAT or when
    /// binding `0.0.0.0`; it must be what participants can reach.
    pub media_advertised_ip: IpAddr,
    /// The key control signs participant tickets with (derived from the cluster secret; a bridge
    /// never holds the cluster secret itself).
    pub ticket_key: Vec<u8>,
    /// Packet-processing threads; each owns a share of the rooms.
    pub shard_count: usize,
    pub max_participants: usize,
    /// Largest room this bridge hosts; a join past it is refused with `room_full`.
    pub max_participants_per_room: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error(
        "the advertised media address must not be unspecified (0.0.0.0 / ::); set it to an address participants reach"
    )]
    UnspecifiedAdvertisedIp,
    #[error("the ticket key must be at least 32 bytes")]
    WeakClusterSecret,
    #[error("shard_count must be between 1 and 64")]
    ShardCount,
    #[error("max_participants and max_participants_per_room must be positive")]
    ZeroCapacity,
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
            ticket_key,
            shard_count: std::thread::available_parallelism().map_or(1, |n| n.get()).min(8),
            max_participants: 1000,
            max_participants_per_room: 100,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.media_advertised_ip.is_unspecified() {
            return Err(ConfigError::UnspecifiedAdvertisedIp);
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
        Ok(())
    }
}
