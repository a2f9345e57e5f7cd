//! An IP network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`, or one address): the one network
//! type of the workspace, on `ipnet`.
//!
//! Used for control's trusted proxies, the networks of the test GeoIP database and the TURN
//! server's allowed peer networks. Parsing is strict: these lists decide whose headers are
//! believed and where a relay may send, so a typo (host bits past the prefix, `+8`, a port) is an
//! error naming what was meant rather than a network that quietly means something else.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP network: an address whose bits past the prefix are zero, and the prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr(ipnet::IpNet);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidrError {
    #[error("`{text}` is not an IP address or network (expected e.g. 10.0.0.0/8, ::1/128 or 127.0.0.1)")]
    NotAnAddress { text: String },
    #[error("`{text}`: the prefix length after `/` must be a number from 0 to {max}")]
    BadPrefixLength { text: String, max: u8 },
    #[error("`{text}` has bits set past the /{prefix_len} prefix; the network is {network}/{prefix_len}")]
    HostBitsSet {
        text: String,
        network: IpAddr,
        prefix_len: u8,
    },
}

impl Cidr {
    /// The network `ip/prefix_len`. Fails when the prefix is longer than the address or `ip` has bits
    /// set past the prefix. An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) becomes the IPv4
    /// network it denotes, because addresses are compared in their canonical form.
    pub fn new(ip: IpAddr, prefix_len: u8) -> Result<Self, CidrError> {
        let text = || format!("{ip}/{prefix_len}");
        let (ip, prefix_len) = match ip {
            IpAddr::V6(v6) if prefix_len >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix_len - 96),
                None => (ip, prefix_len),
            },
            _ => (ip, prefix_len),
        };
        let net = ipnet::IpNet::new(ip, prefix_len).map_err(|_| CidrError::BadPrefixLength {
            text: text(),
            max: max_prefix_len(ip),
        })?;
        if net.network() != ip {
            return Err(CidrError::HostBitsSet {
                text: text(),
                network: net.network(),
                prefix_len,
            });
        }
        Ok(Self(net))
    }

    /// The network of exactly one address.
    pub fn host(ip: IpAddr) -> Self {
        Self(ipnet::IpNet::from(ip.to_canonical()))
    }

    pub fn network(&self) -> IpAddr {
        self.0.network()
    }

    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }

    /// Whether `ip` is in the network. IPv4-mapped IPv6 addresses (`::ffff:10.1.2.3`, what a
    /// dual-stack socket reports for an IPv4 peer) count as the IPv4 address they carry.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

fn max_prefix_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `10.0.0.0/8`, `::1/128`, or a bare address (`127.0.0.1`, `::1`) for that one address.
    /// Surrounding whitespace is ignored; anything else (zone ids, brackets, ports) is an error.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let (address, prefix_len) = match trimmed.split_once('/') {
            Some((address, prefix_len)) => (address, Some(prefix_len)),
            None => (trimmed, None),
        };
        let ip: IpAddr = address.parse().map_err(|_| CidrError::NotAnAddress {
            text: text.to_owned(),
        })?;
        let Some(prefix_len) = prefix_len else {
            return Ok(Self::host(ip));
        };
        let max = max_prefix_len(ip);
        // Digits only: `u8::from_str` would also take `+8`.
        let prefix_len = match prefix_len.parse::<u8>() {
            Ok(len) if len <= max && prefix_len.bytes().all(|b| b.is_ascii_digit()) => len,
            _ => {
                return Err(CidrError::BadPrefixLength {
                    text: text.to_owned(),
                    max,
                });
            }
        };
        Self::new(ip, prefix_len).map_err(|error| match error {
            CidrError::HostBitsSet {
                network, prefix_len, ..
            } => CidrError::HostBitsSet {
                text: text.to_owned(),
                network,
                prefix_len,
            },
            other => other,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix_len())
    }
}

impl TryFrom<String> for Cidr {
    type Error = CidrError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Cidr> for String {
    fn from(cidr: Cidr) -> Self {
        cidr.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_networks_and_single_addresses() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert_eq!((net.network(), net.prefix_len()), (ip("10.0.0.0"), 8));
        assert_eq!("127.0.0.1".parse::<Cidr>().unwrap().prefix_len(), 32);
        assert_eq!("::1".parse::<Cidr>().unwrap().prefix_len(), 128);
        assert_eq!("::1/128".parse::<Cidr>().unwrap(), Cidr::host(ip("::1")));
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().prefix_len(), 0);
        assert_eq!(" fd00::/8 ".parse::<Cidr>().unwrap().to_string(), "fd00::/8");
        assert_eq!(
            "::ffff:10.0.0.0/104".parse::<Cidr>().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
            "an IPv4-mapped network is the IPv4 network"
        );
    }

    #[test]
    fn refuses_what_is_not_a_network_with_the_reason() {
        for bad in [
            "",
            "/8",
            "x/8",
            "10.0.0/8",
            "[::1]",
            "::1%eth0",
            "10.0.0.1:80",
            "10.0.0.0 /8",
        ] {
            assert!(
                matches!(bad.parse::<Cidr>(), Err(CidrError::NotAnAddress { .. })),
                "{bad:?}"
            );
        }
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "::/129",
            "::/1x",
        ] {
            assert!(
                matches!(bad.parse::<Cidr>(), Err(CidrError::BadPrefixLength { .. })),
                "{bad:?}"
            );
        }
        let error = "10.0.0.1/8".parse::<Cidr>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "`10.0.0.1/8` has bits set past the /8 prefix; the network is 10.0.0.0/8"
        );
        assert!(matches!(
            "2001:db8::1/32".parse::<Cidr>(),
            Err(CidrError::HostBitsSet { .. })
        ));
    }

    #[test]
    fn contains_compares_the_prefix_bits_only() {
        let net: Cidr = "192.168.0.0/16".parse().unwrap();
        assert!(net.contains(ip("192.168.255.1")));
        assert!(!net.contains(ip("192.169.0.1")));
        assert!(
            net.contains(ip("::ffff:192.168.1.1")),
            "IPv4-mapped counts as IPv4"
        );
        assert!(
            !net.contains(ip("::192.168.1.1")),
            "IPv4-compatible is plain IPv6"
        );
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("32.1.13.184")), "no match across families");
        let everything_v4: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(everything_v4.contains(ip("8.8.8.8")));
        assert!(!everything_v4.contains(ip("::1")));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")));
        assert!(!one.contains(ip("127.0.0.2")));
    }

    #[test]
    fn round_trips_through_serde_as_a_string() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        let json = serde_json::to_string(&net).unwrap();
        assert_eq!(json, "\"10.0.0.0/8\"");
        assert_eq!(serde_json::from_str::<Cidr>(&json).unwrap(), net);
        assert!(serde_json::from_str::<Cidr>("\"10.0.0.1/8\"").is_err());
    }
}
