//! Whose budget a join spends: the client's address as resolved through the trusted proxies
//! (`client_ip`), not the TCP peer's, so that behind a TLS proxy each client has its own budget
//! instead of the whole deployment sharing one; and an IPv6 client's whole /64 (the block one
//! subscriber gets), so that a host cannot join without limit by walking its own /64.

use crate::client_ip::{TrustedProxies, client_ip};
use axum::http::HeaderMap;
use std::net::IpAddr;

/// IPv6 prefix length one join budget covers.
pub const JOIN_IPV6_PREFIX_LEN: u8 = 64;

/// The key of a join's budget: the resolved client address, IPv6 cut to `ipv6_prefix_len` bits.
pub fn join_budget_key(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
    ipv6_prefix_len: u8,
) -> IpAddr {
    match client_ip(peer, headers, trusted) {
        IpAddr::V6(v6) => {
            let len = u32::from(ipv6_prefix_len.min(128));
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limit::{JOIN_LIMIT, RateLimiter};
    use axum::http::HeaderValue;
    use std::time::Instant;

    fn proxy() -> TrustedProxies {
        TrustedProxies::parse(["10.0.0.0/8"]).unwrap()
    }

    fn forwarded_for(client: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_str(client).unwrap());
        headers
    }

    #[test]
    fn clients_behind_a_trusted_proxy_each_have_their_own_budget() {
        let proxy_addr: IpAddr = "10.0.0.5".parse().unwrap();
        let mut limiter = RateLimiter::new(JOIN_LIMIT);
        let now = Instant::now();
        // Each of 100 clients joins 20 times through the one proxy: all within their budgets.
        for client in 0..100 {
            let headers = forwarded_for(&format!("198.51.100.{client}"));
            for _ in 0..20 {
                let key = join_budget_key(proxy_addr, &headers, &proxy(), JOIN_IPV6_PREFIX_LEN);
                assert!(limiter.allow(&key, now), "client {client} refused");
            }
        }
        // Keyed on the proxy (as before), the 21st join of the whole deployment was refused.
        let mut by_peer = RateLimiter::new(JOIN_LIMIT);
        let refused = (0..100).filter(|_| !by_peer.allow(&proxy_addr, now)).count();
        assert_eq!(refused, 80);
    }

    #[test]
    fn an_untrusted_peer_cannot_pick_its_budget_with_a_header() {
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        let key = join_budget_key(
            peer,
            &forwarded_for("198.51.100.1"),
            &proxy(),
            JOIN_IPV6_PREFIX_LEN,
        );
        assert_eq!(key, peer);
    }

    #[test]
    fn a_slash_64_flood_shares_one_budget_and_other_blocks_keep_theirs() {
        let mut limiter = RateLimiter::new(JOIN_LIMIT);
        let now = Instant::now();
        let none = TrustedProxies::default();
        let admitted = (0..1000u32)
            .filter(|host| {
                let ip: IpAddr = format!("2001:db8:aa:bb::{host:x}").parse().unwrap();
                limiter.allow(
                    &join_budget_key(ip, &HeaderMap::new(), &none, JOIN_IPV6_PREFIX_LEN),
                    now,
                )
            })
            .count();
        assert_eq!(admitted, JOIN_LIMIT.burst as usize, "a /64 gets one burst");
        let neighbour: IpAddr = "2001:db8:aa:bc::1".parse().unwrap();
        assert!(limiter.allow(
            &join_budget_key(neighbour, &HeaderMap::new(), &none, JOIN_IPV6_PREFIX_LEN),
            now
        ));
        // A /128 setting (per host) and a /48 one.
        let host: IpAddr = "2001:db8:aa:bb::7".parse().unwrap();
        assert_eq!(join_budget_key(host, &HeaderMap::new(), &none, 128), host);
        assert_eq!(
            join_budget_key(host, &HeaderMap::new(), &none, 48),
            "2001:db8:aa::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            join_budget_key(host, &HeaderMap::new(), &none, 0),
            "::".parse::<IpAddr>().unwrap()
        );
    }
}
