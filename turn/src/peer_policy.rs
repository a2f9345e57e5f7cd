//! Which peers a client may relay to. A TURN server is a proxy that sits inside the operator's
//! network; without a filter, anyone holding credentials (every participant) could reach the
//! cloud metadata service, the admin ports of loopback daemons, the private network, or use the
//! server as a general relay to the internet. TURN is here to reach the cluster's bridges, so by
//! default a peer is allowed only when it is:
//! - one of the cluster's bridge media addresses, exact ip:port: the static ones of the
//!   configuration and the live set control hands the server ([`PeerPolicy::with_bridges`]),
//!   which follows bridges as they come and go and holds the addresses participants use, the
//!   external ones of bridges behind a NAT;
//! - inside a network an operator allows explicitly (labs, private deployments).
//!
//! An operator may widen it to every globally routable address (`allow_public`, the behaviour of
//! a general-purpose TURN server); non-public ones ([`deny_reason`], a pure function) stay denied
//! then, except by the two exceptions above.
//!
//! The server's own addresses (relay IP, external IP, listener IPs) are denied even when public
//! or inside an allowed network: relaying to itself would nest allocations (one user's quota and
//! bandwidth spent twice, traffic laundered through a second allocation) or reach other UDP
//! services on the node. Only an exact bridge ip:port opens one of them (the embedded server's
//! own bridge on the same IP).
//!
//! Permissions (CREATE-PERMISSION, CHANNEL-BIND) name only an IP, so [`PeerPolicy::permits_ip`]
//! admits an IP that has at least one allowed port; every relayed packet is then checked with its
//! port by [`PeerPolicy::permits_addr`], in both directions.

use bridgemesh_proto::cidr::Cidr;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DenyReason {
    Unspecified,
    Loopback,
    /// RFC 1918.
    Private,
    /// 100.64.0.0/10, carrier-grade NAT (RFC 6598).
    SharedAddressSpace,
    /// 169.254.0.0/16 (where cloud metadata services live) and fe80::/10.
    LinkLocal,
    Multicast,
    Broadcast,
    /// 0.0.0.0/8, 192.0.0.0/24, benchmarking, documentation, 240.0.0.0/4, fec0::/10.
    Reserved,
    /// fc00::/7.
    UniqueLocal,
    /// ::ffff:0:0/96 and ::/96: an IPv4 address in IPv6 clothing, which some stacks route as IPv4.
    Ipv4Mapped,
    /// NAT64 (64:ff9b::/96) or 6to4 (2002::/16) carrying a denied IPv4 address; and all of
    /// local-use NAT64 (64:ff9b:1::/48, RFC 8215) and Teredo (2001::/32), whose embedded IPv4
    /// address depends on the site's prefix length or is obfuscated, so is not checked.
    EmbeddedIpv4,
    /// The server's own relay or listener IP (nested allocations, the node's other services).
    OwnAddress,
    /// A public address that is not one of the cluster's bridges, while relaying to any public
    /// address is off (the default).
    NotABridge,
}

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::SharedAddressSpace => "shared_address_space",
            Self::LinkLocal => "link_local",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Reserved => "reserved",
            Self::UniqueLocal => "unique_local",
            Self::Ipv4Mapped => "ipv4_mapped",
            Self::EmbeddedIpv4 => "embedded_ipv4",
            Self::OwnAddress => "own_address",
            Self::NotABridge => "not_a_bridge",
        }
    }
}

/// Why `ip` is not a relay destination by default, or `None` for a globally routable address.
pub fn deny_reason(ip: IpAddr) -> Option<DenyReason> {
    match ip {
        IpAddr::V4(v4) => deny_reason_v4(v4),
        IpAddr::V6(v6) => deny_reason_v6(v6),
    }
}

fn deny_reason_v4(ip: Ipv4Addr) -> Option<DenyReason> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() => DenyReason::Unspecified,
        _ if ip.is_broadcast() => DenyReason::Broadcast,
        (127, _, _) => DenyReason::Loopback,
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => DenyReason::Private,
        (100, 64..=127, _) => DenyReason::SharedAddressSpace,
        (169, 254, _) => DenyReason::LinkLocal,
        (224..=239, _, _) => DenyReason::Multicast,
        (0, _, _)
        | (192, 0, 0)
        | (192, 0, 2)
        | (198, 51, 100)
        | (203, 0, 113)
        | (198, 18..=19, _)
        | (240..=255, _, _) => DenyReason::Reserved,
        _ => return None,
    })
}

fn deny_reason_v6(ip: Ipv6Addr) -> Option<DenyReason> {
    let s = ip.segments();
    Some(match s {
        _ if ip.is_unspecified() => DenyReason::Unspecified,
        _ if ip.is_loopback() => DenyReason::Loopback,
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0, 0, _, _] => DenyReason::Ipv4Mapped,
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => embedded(hi, lo)?,
        [0x2002, hi, lo, ..] => embedded(hi, lo)?,
        [0x64, 0xff9b, 1, ..] | [0x2001, 0, ..] => DenyReason::EmbeddedIpv4,
        [first, ..] if first & 0xfe00 == 0xfc00 => DenyReason::UniqueLocal,
        [first, ..] if first & 0xffc0 == 0xfe80 => DenyReason::LinkLocal,
        [first, ..] if first & 0xffc0 == 0xfec0 => DenyReason::Reserved,
        [first, ..] if first & 0xff00 == 0xff00 => DenyReason::Multicast,
        [0x2001, 0x0db8, ..] => DenyReason::Reserved,
        _ => return None,
    })
}

fn embedded(hi: u16, lo: u16) -> Option<DenyReason> {
    let v4 = Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    deny_reason_v4(v4).map(|_| DenyReason::EmbeddedIpv4)
}

/// The IPv4 address a NAT64 (64:ff9b::/96) or 6to4 (2002::/16) address reaches.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    match ip.segments() {
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] | [0x2002, hi, lo, ..] => {
            Some(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)))
        }
        _ => None,
    }
}

/// Live bridge media addresses one policy holds at most: far above any cluster, so a
/// misbehaving control cannot grow a TURN server's memory without bound.
pub const BRIDGES_MAX: usize = 10_000;

/// The default-deny policy, the server's own addresses, and the exceptions.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    allow_addrs: HashSet<SocketAddr>,
    bridges: HashSet<SocketAddr>,
    allow_nets: Vec<Cidr>,
    allow_public: bool,
    own_ips: HashSet<IpAddr>,
}

impl PeerPolicy {
    /// Exact `allow_addrs` (the bridges known from the configuration) and `allow_nets`; nothing
    /// else until [`PeerPolicy::with_bridges`] or [`PeerPolicy::with_public`].
    pub fn new(allow_addrs: impl IntoIterator<Item = SocketAddr>, allow_nets: Vec<Cidr>) -> Self {
        Self {
            allow_addrs: allow_addrs.into_iter().collect(),
            allow_nets,
            ..Self::default()
        }
    }

    /// Also every globally routable address (a general-purpose relay).
    pub fn with_public(mut self, allow_public: bool) -> Self {
        self.allow_public = allow_public;
        self
    }

    /// The cluster's live bridge media addresses, replacing the previous set; at most
    /// [`BRIDGES_MAX`] are kept.
    pub fn with_bridges(mut self, bridges: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.set_bridges(bridges);
        self
    }

    /// [`PeerPolicy::with_bridges`] in place.
    pub fn set_bridges(&mut self, bridges: impl IntoIterator<Item = SocketAddr>) {
        self.bridges = bridges.into_iter().take(BRIDGES_MAX).collect();
    }

    /// Denies the server's own IPs (relay, listeners) unless an exact ip:port allows one.
    /// Unspecified addresses (a listener on 0.0.0.0) are skipped: they are denied anyway.
    pub fn with_own_ips(mut self, ips: impl IntoIterator<Item = IpAddr>) -> Self {
        self.own_ips
            .extend(ips.into_iter().filter(|ip| !ip.is_unspecified()));
        self
    }

    fn is_own(&self, ip: IpAddr) -> bool {
        let v4 = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.own_ips.contains(&ip) || v4.is_some_and(|v4| self.own_ips.contains(&v4))
    }

    fn is_bridge(&self, addr: SocketAddr) -> bool {
        self.allow_addrs.contains(&addr) || self.bridges.contains(&addr)
    }

    fn has_bridge_on(&self, ip: IpAddr) -> bool {
        self.allow_addrs.iter().chain(&self.bridges).any(|a| a.ip() == ip)
    }

    /// What is left when no exact exception matched: public addresses if allowed, allowed
    /// networks, else the reason.
    fn otherwise(&self, ip: IpAddr) -> Result<(), DenyReason> {
        match deny_reason(ip) {
            None if self.allow_public => Ok(()),
            _ if self.allow_nets.iter().any(|net| net.contains(ip)) => Ok(()),
            None => Err(DenyReason::NotABridge),
            Some(reason) => Err(reason),
        }
    }

    /// Whether a permission for `ip` may be installed.
    pub fn permits_ip(&self, ip: IpAddr) -> Result<(), DenyReason> {
        match (self.is_own(ip), self.has_bridge_on(ip)) {
            (_, true) => Ok(()),
            (true, false) => Err(DenyReason::OwnAddress),
            (false, false) => self.otherwise(ip),
        }
    }

    /// Whether a packet may be relayed to or from `addr`.
    pub fn permits_addr(&self, addr: SocketAddr) -> Result<(), DenyReason> {
        match (self.is_own(addr.ip()), self.is_bridge(addr)) {
            (_, true) => Ok(()),
            (true, false) => Err(DenyReason::OwnAddress),
            (false, false) => self.otherwise(addr.ip()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(text: &str) -> Option<DenyReason> {
        deny_reason(text.parse().unwrap())
    }

    #[test]
    fn every_denied_range_is_denied_at_its_edges() {
        use DenyReason::*;
        let cases: &[(&str, DenyReason)] = &[
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Reserved),
            ("127.0.0.1", Loopback),
            ("127.0.0.2", Loopback),
            ("127.255.255.255", Loopback),
            ("10.0.0.0", Private),
            ("10.255.255.255", Private),
            ("172.16.0.0", Private),
            ("172.31.255.255", Private),
            ("192.168.0.1", Private),
            ("192.168.255.255", Private),
            ("100.64.0.0", SharedAddressSpace),
            ("100.127.255.255", SharedAddressSpace),
            ("169.254.0.1", LinkLocal),
            ("169.254.169.254", LinkLocal),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("255.255.255.255", Broadcast),
            ("240.0.0.1", Reserved),
            ("192.0.0.8", Reserved),
            ("192.0.2.1", Reserved),
            ("198.18.0.1", Reserved),
            ("::", Unspecified),
            ("::1", Loopback),
            ("::ffff:127.0.0.1", Ipv4Mapped),
            ("::ffff:8.8.8.8", Ipv4Mapped),
            ("::127.0.0.1", Ipv4Mapped),
            ("64:ff9b::a9fe:a9fe", EmbeddedIpv4),
            ("2002:a00:1::1", EmbeddedIpv4),
            // Local-use NAT64 and Teredo, whatever they embed.
            ("64:ff9b:1::808:808", EmbeddedIpv4),
            ("64:ff9b:1:ffff:ffff:ffff:ffff:ffff", EmbeddedIpv4),
            ("2001::1", EmbeddedIpv4),
            ("2001:0:ffff:ffff:ffff:ffff:ffff:ffff", EmbeddedIpv4),
            ("fc00::1", UniqueLocal),
            ("fdff:ffff::1", UniqueLocal),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fec0::1", Reserved),
            ("ff02::1", Multicast),
            ("2001:db8::1", Reserved),
        ];
        for (ip, expected) in cases {
            assert_eq!(reason(ip), Some(*expected), "{ip}");
        }
    }

    #[test]
    fn public_addresses_just_outside_each_range_are_allowed() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "223.255.255.255",
            "2001:4860:4860::8888",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "64:ff9b:2::1",
            "2001:1::1",
            "fbff::1",
            "fe00::1",
        ] {
            assert_eq!(reason(ip), None, "{ip}");
        }
    }

    #[test]
    fn exact_exceptions_admit_their_port_only_and_nets_admit_all() {
        let bridge: SocketAddr = "127.0.0.1:10000".parse().unwrap();
        let policy = PeerPolicy::new([bridge], vec!["10.1.0.0/16".parse().unwrap()]);
        assert_eq!(policy.permits_ip(bridge.ip()), Ok(()));
        assert_eq!(policy.permits_addr(bridge), Ok(()));
        assert_eq!(
            policy.permits_addr("127.0.0.1:22".parse().unwrap()),
            Err(DenyReason::Loopback),
            "another port on the bridge's IP"
        );
        assert_eq!(
            policy.permits_ip("127.0.0.2".parse().unwrap()),
            Err(DenyReason::Loopback)
        );
        assert_eq!(policy.permits_addr("10.1.2.3:5".parse().unwrap()), Ok(()));
        assert_eq!(
            policy.permits_addr("10.2.0.1:5".parse().unwrap()),
            Err(DenyReason::Private)
        );
        assert_eq!(
            policy.permits_ip("169.254.169.254".parse().unwrap()),
            Err(DenyReason::LinkLocal)
        );
        assert_eq!(
            policy.permits_ip("::ffff:127.0.0.1".parse().unwrap()),
            Err(DenyReason::Ipv4Mapped),
            "a mapped form of an allowed address is still refused"
        );
    }

    #[test]
    fn the_servers_own_addresses_are_denied_unless_allowed_exactly() {
        let relay: IpAddr = "8.8.4.4".parse().unwrap();
        let listener: IpAddr = "8.8.8.8".parse().unwrap();
        let bridge: SocketAddr = "127.0.0.1:10000".parse().unwrap();
        let policy = PeerPolicy::new([bridge], vec!["0.0.0.0/0".parse().unwrap()])
            .with_public(true)
            .with_own_ips([relay, listener, bridge.ip(), "0.0.0.0".parse().unwrap()]);
        for ip in [relay, listener] {
            assert_eq!(policy.permits_ip(ip), Err(DenyReason::OwnAddress), "{ip}");
            assert_eq!(
                policy.permits_addr(SocketAddr::new(ip, 3478)),
                Err(DenyReason::OwnAddress),
                "{ip}: an allowed network does not open it"
            );
        }
        let nat64: IpAddr = "64:ff9b::808:808".parse().unwrap();
        assert_eq!(policy.permits_ip(nat64), Err(DenyReason::OwnAddress), "via NAT64");
        // `bridgemesh up`: the bridge's exact address on the relay's IP stays reachable, only it.
        assert_eq!(policy.permits_ip(bridge.ip()), Ok(()));
        assert_eq!(policy.permits_addr(bridge), Ok(()));
        assert_eq!(
            policy.permits_addr("127.0.0.1:3478".parse().unwrap()),
            Err(DenyReason::OwnAddress)
        );
        assert_eq!(policy.permits_addr("1.1.1.1:53".parse().unwrap()), Ok(()));
        assert_eq!(
            policy.permits_addr("127.0.0.2:1".parse().unwrap()),
            Ok(()),
            "the net allows it"
        );
    }

    #[test]
    fn by_default_only_the_clusters_bridges_are_reachable_and_they_follow_the_cluster() {
        let own_bridge: SocketAddr = "203.0.113.7:10000".parse().unwrap();
        let other: SocketAddr = "198.51.100.9:10000".parse().unwrap();
        let public: SocketAddr = "8.8.8.8:53".parse().unwrap();
        let policy = PeerPolicy::new([own_bridge], Vec::new()).with_own_ips([own_bridge.ip()]);
        assert_eq!(
            policy.permits_addr(own_bridge),
            Ok(()),
            "its own bridge, external address"
        );
        assert_eq!(policy.permits_ip(public.ip()), Err(DenyReason::NotABridge));
        assert_eq!(policy.permits_addr(public), Err(DenyReason::NotABridge));
        assert_eq!(policy.permits_addr(other), Err(DenyReason::Reserved));
        // Another bridge registers: reachable, on its media port only.
        let policy = policy.with_bridges([other]);
        assert_eq!(policy.permits_ip(other.ip()), Ok(()));
        assert_eq!(policy.permits_addr(other), Ok(()));
        assert_eq!(
            policy.permits_addr(SocketAddr::new(other.ip(), 22)),
            Err(DenyReason::Reserved),
            "another port of a bridge's address"
        );
        assert_eq!(
            policy.permits_addr("203.0.113.7:3478".parse().unwrap()),
            Err(DenyReason::OwnAddress),
            "the server's own other ports"
        );
        // It leaves: the live set is replaced, the configured bridge stays.
        let policy = policy.with_bridges([]);
        assert_eq!(policy.permits_addr(other), Err(DenyReason::Reserved));
        assert_eq!(policy.permits_addr(own_bridge), Ok(()));
        // Widened by the operator: public addresses, still not private ones.
        let policy = policy.with_public(true);
        assert_eq!(policy.permits_addr(public), Ok(()));
        assert_eq!(
            policy.permits_ip("10.0.0.1".parse().unwrap()),
            Err(DenyReason::Private)
        );
        // Bounded, whatever control sends.
        let many = (0..BRIDGES_MAX as u32 + 10).map(|i| SocketAddr::from((i.to_be_bytes(), 1)));
        assert_eq!(
            PeerPolicy::default().with_bridges(many).bridges.len(),
            BRIDGES_MAX
        );
    }

    #[test]
    fn networks_parse_and_match() {
        let net: Cidr = "fd00::/8".parse().unwrap();
        assert!(net.contains("fd12::1".parse().unwrap()));
        assert!(!net.contains("fe00::1".parse().unwrap()));
        assert!(!net.contains("10.0.0.1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("127.0.0.1".parse().unwrap()));
        let one: Cidr = "127.0.0.5".parse().unwrap();
        assert_eq!(one.prefix_len(), 32);
        // Host bits past the prefix are refused, as for control's networks: one type, one rule.
        for bad in ["10.0.0.0/33", "x/8", "10.0.0.0/", "10.1.2.3/8"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
