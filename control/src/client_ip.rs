//! The address a join request really came from, for placing the participant near it.
//!
//! The socket peer is the answer unless the operator listed it as a trusted proxy (a load balancer or
//! reverse proxy in front of control). Then the forwarding headers are read from the right, the end
//! the trusted proxies appended to, over trusted hops, and the first address that is not a trusted
//! proxy is the client. Everything left of it was written by the client or by proxies nobody vouched
//! for, so it is never read.
//!
//! Both `X-Forwarded-For` and RFC 7239 `Forwarded` are understood. Which one a proxy writes is its
//! own choice, and a proxy that writes one usually passes the other through untouched from the
//! client; when both are present and name different clients, one of them is the client's invention,
//! and the answer falls back to the last trusted hop (the peer). A client can thereby only make its
//! own location less precise, never claim another one.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bridgemesh_proto::cidr::{Cidr, CidrError};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};

/// Bytes of one forwarding header (all its lines together) that are read; a longer header is ignored
/// as a whole. A chain of 32 IPv6 hops with ports is under 2 KiB.
pub const FORWARDING_HEADER_BYTES_MAX: usize = 8 * 1024;

/// Hops read from the right of one forwarding header before giving up on finding the client: no
/// real deployment chains this many trusted proxies.
pub const FORWARDING_HOPS_MAX: usize = 32;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The networks of the proxies whose forwarding headers are believed. Empty by default: then only
/// the socket peer counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TrustedProxies {
    networks: Vec<Cidr>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustedProxiesError {
    #[error("trusted proxy #{position}: {source}")]
    Network {
        /// 1-based position in the list, as an operator counts.
        position: usize,
        source: CidrError,
    },
}

impl TrustedProxies {
    pub fn new(networks: Vec<Cidr>) -> Self {
        Self { networks }
    }

    /// Parses `10.0.0.0/8`, `::1/128`, `127.0.0.1` (one address) and the like.
    pub fn parse<I>(networks: I) -> Result<Self, TrustedProxiesError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let networks = networks
            .into_iter()
            .enumerate()
            .map(|(index, text)| {
                text.as_ref()
                    .parse()
                    .map_err(|source| TrustedProxiesError::Network {
                        position: index + 1,
                        source,
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { networks })
    }

    pub fn networks(&self) -> &[Cidr] {
        &self.networks
    }

    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|network| network.contains(ip))
    }
}

/// The client's address: `peer` (the socket's remote address) unless `peer` is a trusted proxy, in
/// which case the forwarding headers decide, as the module documentation explains. IPv4-mapped
/// IPv6 addresses come back as IPv4.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    let from_x_forwarded_for = walk(
        peer,
        headers.get_all(X_FORWARDED_FOR),
        trusted,
        x_forwarded_for_hops,
    );
    let from_forwarded = walk(
        peer,
        headers.get_all(axum::http::header::FORWARDED),
        trusted,
        forwarded_hops,
    );
    match (from_x_forwarded_for, from_forwarded) {
        (Some(a), Some(b)) if a != b => peer,
        (Some(ip), _) | (None, Some(ip)) => ip,
        (None, None) => peer,
    }
}

/// One entry of a forwarding header, as read from the right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    Address(IpAddr),
    /// `unknown`, an obfuscated name, garbage, or an element without `for`: nobody can say who is
    /// behind it.
    Unusable,
}

/// The client according to one header: `None` when the header is absent or lists nobody, otherwise
/// the first untrusted hop from the right, or the last trusted one when the walk stops before finding
/// one.
fn walk(
    peer: IpAddr,
    lines: axum::http::header::GetAll<'_, HeaderValue>,
    trusted: &TrustedProxies,
    hops_of_line: fn(&str, &mut Vec<Hop>) -> Result<(), Malformed>,
) -> Option<IpAddr> {
    let lines: Vec<&HeaderValue> = lines.iter().collect();
    let bytes: usize = lines.iter().map(|line| line.len() + 1).sum();
    if bytes > FORWARDING_HEADER_BYTES_MAX {
        // Read as far as the peer, which wrote nothing readable.
        return Some(peer);
    }
    let mut last_trusted = peer;
    let mut seen = 0;
    let mut hops = Vec::new();
    // The last line is the newest: a proxy that does not append to the existing line adds its own.
    for line in lines.iter().rev() {
        hops.clear();
        // A line is parsed whole (in `Forwarded` a quoted string can hide a comma), so a line that
        // does not parse has no usable hop at all, and the walk ends at it.
        let parsed = match line.to_str() {
            Ok(text) => hops_of_line(text, &mut hops),
            Err(_) => Err(Malformed),
        };
        if parsed.is_err() {
            return Some(last_trusted);
        }
        for hop in &hops {
            seen += 1;
            if seen > FORWARDING_HOPS_MAX {
                return Some(last_trusted);
            }
            match *hop {
                Hop::Address(ip) if trusted.contains(ip) => last_trusted = ip,
                Hop::Address(ip) => return Some(ip),
                Hop::Unusable => return Some(last_trusted),
            }
        }
    }
    // An empty header says nothing, so it cannot disagree with the other one.
    if seen == 0 {
        return None;
    }
    // Every hop was a trusted proxy: the request started at the leftmost of them.
    Some(last_trusted)
}

/// A forwarding header line that does not parse.
#[derive(Debug)]
struct Malformed;

/// `X-Forwarded-For: client, proxy1, proxy2`, entries as bare addresses, `1.2.3.4:5678`,
/// `[2001:db8::1]` or `[2001:db8::1]:5678`. Pushes the hops newest (rightmost) first. Empty
/// entries are skipped as HTTP list syntax allows.
fn x_forwarded_for_hops(line: &str, hops: &mut Vec<Hop>) -> Result<(), Malformed> {
    let entries = line
        .rsplit(',')
        .map(|entry| entry.trim_matches([' ', '\t']))
        .filter(|entry| !entry.is_empty())
        // The walk reads no further than this.
        .take(FORWARDING_HOPS_MAX + 1);
    hops.extend(entries.map(|entry| node(entry).map_or(Hop::Unusable, Hop::Address)));
    Ok(())
}

/// RFC 7239 `Forwarded: for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711"`. Each element
/// gives one hop, from its `for` parameter; pushes them newest (rightmost) first.
fn forwarded_hops(line: &str, hops: &mut Vec<Hop>) -> Result<(), Malformed> {
    let mut rest = line;
    loop {
        // Empty list elements are allowed and say nothing.
        rest = rest.trim_start_matches([',', ' ', '\t']);
        if rest.is_empty() {
            break;
        }
        let mut for_value = None;
        // One element: `name=value` pairs separated by `;`, where empty pairs are allowed.
        loop {
            rest = rest.trim_start_matches([' ', '\t']);
            match rest.as_bytes().first() {
                None | Some(b',') => break,
                Some(b';') => {
                    rest = &rest[1..];
                    continue;
                }
                Some(_) => {}
            }
            let name_end = rest.find('=').ok_or(Malformed)?;
            let name = &rest[..name_end];
            if name.is_empty() || !name.bytes().all(is_tchar) {
                return Err(Malformed);
            }
            let (value, after) = parameter_value(&rest[name_end + 1..])?;
            // A parameter occurs at most once per element (RFC 7239 section 4); with two it would
            // be up to us which to believe.
            if name.eq_ignore_ascii_case("for") && for_value.replace(value).is_some() {
                return Err(Malformed);
            }
            rest = after.trim_start_matches([' ', '\t']);
            match rest.as_bytes().first() {
                None | Some(b',' | b';') => {}
                Some(_) => return Err(Malformed),
            }
        }
        hops.push(
            for_value
                .as_deref()
                .and_then(node)
                .map_or(Hop::Unusable, Hop::Address),
        );
    }
    hops.reverse();
    Ok(())
}

/// A parameter value (a token or a quoted string) and the text after it.
fn parameter_value(text: &str) -> Result<(String, &str), Malformed> {
    let Some(quoted) = text.strip_prefix('"') else {
        // RFC 7239 wants a token here, but proxies write `for=192.0.2.1:80` or `for=[::1]`
        // unquoted too. None of `"`, `;`, `,` or whitespace is taken, so the element boundaries
        // stay where a strict reader would put them.
        let end = text.find(['"', ';', ',', ' ', '\t']).unwrap_or(text.len());
        if end == 0 || text[end..].starts_with('"') {
            return Err(Malformed);
        }
        return Ok((text[..end].to_owned(), &text[end..]));
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &quoted[at + 1..])),
            '\\' => value.push(chars.next().ok_or(Malformed)?.1),
            _ => value.push(c),
        }
    }
    // An unterminated quote: the rest of the line, including anything a proxy appended after the
    // client's text, is inside it, so none of it can be read.
    Err(Malformed)
}

/// RFC 9110 `tchar`: the characters of a parameter name.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A node as forwarding headers write it: `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:80`, with the port possibly obfuscated (`:_abc`, RFC 7239
/// section 6.3). `None` for `unknown`, obfuscated identifiers (`_hidden`) and anything else.
fn node(text: &str) -> Option<IpAddr> {
    let ip = if let Ok(ip) = text.parse::<IpAddr>() {
        ip
    } else if let Ok(addr) = text.parse::<SocketAddr>() {
        addr.ip()
    } else if let Some(bracketed) = text.strip_prefix('[') {
        let (inside, after) = bracketed.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_obfuscated_port)) {
            return None;
        }
        IpAddr::V6(inside.parse().ok()?)
    } else {
        let (address, port) = text.split_once(':')?;
        if !is_obfuscated_port(port) {
            return None;
        }
        IpAddr::V4(address.parse().ok()?)
    };
    Some(ip.to_canonical())
}

/// RFC 7239 `obfport`: `_` and one or more of letters, digits, `.`, `_`, `-`.
fn is_obfuscated_port(port: &str) -> bool {
    port.strip_prefix('_').is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    /// The load balancers of a typical deployment: a private network and the loopback.
    fn lan() -> TrustedProxies {
        TrustedProxies::parse(["10.0.0.0/8", "::1"]).unwrap()
    }

    const PROXY: &str = "10.0.0.5";
    const CLIENT: &str = "203.0.113.7";

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let spoofing = headers(&[
            ("x-forwarded-for", "198.51.100.1"),
            ("forwarded", "for=198.51.100.1"),
        ]);
        assert_eq!(client_ip(ip(CLIENT), &spoofing, &lan()), ip(CLIENT));
        assert_eq!(
            client_ip(ip(PROXY), &spoofing, &TrustedProxies::default()),
            ip(PROXY),
            "no trusted proxies configured: headers never count"
        );
        assert_eq!(client_ip(ip("::ffff:203.0.113.7"), &spoofing, &lan()), ip(CLIENT));
    }

    #[test]
    fn a_trusted_peer_without_headers_is_the_client() {
        assert_eq!(client_ip(ip(PROXY), &HeaderMap::new(), &lan()), ip(PROXY));
    }

    #[test]
    fn x_forwarded_for_is_read_from_the_right_over_trusted_hops() {
        let trusted = lan();
        let cases = [
            (CLIENT, CLIENT),
            ("203.0.113.7, 10.0.0.2", CLIENT),
            ("203.0.113.7,10.0.0.2 ,\t10.9.9.9", CLIENT),
            // What the client wrote itself is left of its real address and never read, even when
            // it names a trusted proxy.
            ("198.51.100.1, 203.0.113.7", CLIENT),
            ("10.0.0.9, 203.0.113.7, 10.0.0.2", CLIENT),
            ("1.1.1.1, 198.51.100.1, 203.0.113.7", CLIENT),
            // Empty list elements are no hops.
            (", 203.0.113.7,,", CLIENT),
            // Ports and brackets.
            ("203.0.113.7:4711", CLIENT),
            ("[2001:db8::7]:4711, 10.0.0.2:80", "2001:db8::7"),
            ("[2001:db8::7]", "2001:db8::7"),
            ("2001:db8::7", "2001:db8::7"),
            ("::ffff:203.0.113.7", CLIENT),
            // All trusted: the request began at the leftmost proxy.
            ("10.0.0.3, 10.0.0.2", "10.0.0.3"),
            ("::1", "::1"),
        ];
        for (value, expected) in cases {
            let found = client_ip(ip(PROXY), &headers(&[("x-forwarded-for", value)]), &trusted);
            assert_eq!(found, ip(expected), "X-Forwarded-For: {value}");
        }
    }

    #[test]
    fn an_unreadable_hop_ends_the_walk_at_the_last_trusted_one() {
        let trusted = lan();
        let cases = [
            ("203.0.113.7, garbage", PROXY),
            ("203.0.113.7, garbage, 10.0.0.2", "10.0.0.2"),
            ("203.0.113.7, unknown, 10.0.0.2", "10.0.0.2"),
            ("203.0.113.7, 10.0.0.2:99999", PROXY),
            ("203.0.113.7, [10.0.0.2]", PROXY),
            ("203.0.113.7, fe80::1%eth0", PROXY),
            ("203.0.113.7, 10.0.0.2/8", PROXY),
        ];
        for (value, expected) in cases {
            let found = client_ip(ip(PROXY), &headers(&[("x-forwarded-for", value)]), &trusted);
            assert_eq!(found, ip(expected), "X-Forwarded-For: {value}");
        }
    }

    #[test]
    fn later_header_lines_are_newer() {
        let found = client_ip(
            ip(PROXY),
            &headers(&[
                ("x-forwarded-for", "198.51.100.1"),
                ("x-forwarded-for", "203.0.113.7, 10.0.0.2"),
            ]),
            &lan(),
        );
        assert_eq!(found, ip(CLIENT));
        let found = client_ip(
            ip(PROXY),
            &headers(&[
                ("x-forwarded-for", "198.51.100.1"),
                ("x-forwarded-for", "10.0.0.2"),
            ]),
            &lan(),
        );
        assert_eq!(found, ip("198.51.100.1"), "walks on into earlier lines");
        let found = client_ip(
            ip(PROXY),
            &headers(&[
                ("x-forwarded-for", "198.51.100.1"),
                ("x-forwarded-for", "10.0.0.2, bad"),
            ]),
            &lan(),
        );
        assert_eq!(found, ip(PROXY), "stops at an unreadable hop in the newest line");
    }

    #[test]
    fn forwarded_is_read_like_x_forwarded_for() {
        let trusted = lan();
        let cases = [
            ("for=203.0.113.7", CLIENT),
            ("for=203.0.113.7;proto=https;by=10.0.0.5", CLIENT),
            ("proto=https;For=203.0.113.7", CLIENT),
            ("FOR=\"203.0.113.7:4711\"", CLIENT),
            ("for=\"[2001:db8:cafe::17]:4711\"", "2001:db8:cafe::17"),
            ("for=\"[2001:db8:cafe::17]\"", "2001:db8:cafe::17"),
            ("for=\"[2001:db8:cafe::17]:_port\"", "2001:db8:cafe::17"),
            ("for=\"203.0.113.7:_p.1-x\"", CLIENT),
            ("for=\"\\2\\03.0.113.7\"", CLIENT),
            ("for=198.51.100.1, for=203.0.113.7;by=x, for=10.0.0.2", CLIENT),
            ("for=203.0.113.7;;proto=http;, ,for=10.0.0.2", CLIENT),
            // Lenient: an unquoted address with a port or brackets.
            ("for=203.0.113.7:80", CLIENT),
            ("for=[2001:db8::7]:80", "2001:db8::7"),
            // Nobody can say who is behind these: the last trusted hop is the answer.
            ("for=203.0.113.7, for=unknown", PROXY),
            ("for=203.0.113.7, for=_hidden, for=10.0.0.2", "10.0.0.2"),
            ("for=203.0.113.7, proto=https", PROXY),
            ("for=203.0.113.7, for=10.0.0.2;for=10.0.0.3", PROXY),
            ("for=203.0.113.7, for=\"\"", PROXY),
            ("for=\"[2001:db8::7]:99999\"", PROXY),
            // Not parsable: the whole line is unreadable.
            ("for=203.0.113.7, for=", PROXY),
            ("for=203.0.113.7, for=\"10.0.0.2", PROXY),
            ("for=203.0.113.7, =10.0.0.2", PROXY),
            ("for=203.0.113.7, f(r=10.0.0.2", PROXY),
            ("for=203.0.113.7, for=10.0.0.2 x", PROXY),
            ("for=203.0.113.7, for=10.0.0.2\"x\"", PROXY),
            ("for=203.0.113.7, for=\"10.0.0.2\"x", PROXY),
            ("203.0.113.7", PROXY),
        ];
        for (value, expected) in cases {
            let found = client_ip(ip(PROXY), &headers(&[("forwarded", value)]), &trusted);
            assert_eq!(found, ip(expected), "Forwarded: {value}");
        }
    }

    #[test]
    fn a_quote_the_client_leaves_open_cannot_swallow_the_proxys_entry() {
        // The client sends an open quote; a proxy appends its element to the same line.
        for value in [
            "for=\"198.51.100.1, for=203.0.113.7",
            "for=\"198.51.100.1\\\", for=\"203.0.113.7\"",
            "for=\"x, for=\"[2001:db8::7]:1\"",
        ] {
            let found = client_ip(ip(PROXY), &headers(&[("forwarded", value)]), &lan());
            assert_eq!(found, ip(PROXY), "Forwarded: {value}");
        }
    }

    #[test]
    fn when_the_two_headers_disagree_neither_is_believed() {
        let trusted = lan();
        // The proxy writes X-Forwarded-For and passes the client's own Forwarded through.
        let spoof = headers(&[
            ("forwarded", "for=198.51.100.1"),
            ("x-forwarded-for", "203.0.113.7"),
        ]);
        assert_eq!(client_ip(ip(PROXY), &spoof, &trusted), ip(PROXY));
        // And the other way round.
        let spoof = headers(&[
            ("x-forwarded-for", "198.51.100.1"),
            ("forwarded", "for=203.0.113.7"),
        ]);
        assert_eq!(client_ip(ip(PROXY), &spoof, &trusted), ip(PROXY));
        // A proxy that writes both writes the same client.
        let both = headers(&[
            ("x-forwarded-for", "198.51.100.1, 203.0.113.7"),
            ("forwarded", "for=198.51.100.1, for=203.0.113.7"),
        ]);
        assert_eq!(client_ip(ip(PROXY), &both, &trusted), ip(CLIENT));
        // An empty header names nobody and so does not disagree.
        let empty = headers(&[("x-forwarded-for", " , "), ("forwarded", "for=203.0.113.7")]);
        assert_eq!(client_ip(ip(PROXY), &empty, &trusted), ip(CLIENT));
    }

    #[test]
    fn the_work_is_bounded() {
        let trusted = lan();
        // More trusted hops than the walk reads: it stops at the last one it read.
        let chain: Vec<String> = (1..=40).map(|i| format!("10.0.0.{i}")).collect();
        let value = format!("{CLIENT}, {}", chain.join(", "));
        let found = client_ip(ip(PROXY), &headers(&[("x-forwarded-for", &value)]), &trusted);
        assert_eq!(found, ip("10.0.0.9"), "the 32nd hop from the right");
        // The same across lines.
        let mut map = HeaderMap::new();
        for hop in &chain {
            map.append(X_FORWARDED_FOR, HeaderValue::from_str(hop).unwrap());
        }
        assert_eq!(client_ip(ip(PROXY), &map, &trusted), ip("10.0.0.9"));
        let elements: Vec<String> = chain.iter().map(|hop| format!("for={hop}")).collect();
        let value = format!("for={CLIENT}, {}", elements.join(", "));
        let found = client_ip(ip(PROXY), &headers(&[("forwarded", &value)]), &trusted);
        assert_eq!(found, ip("10.0.0.9"));
        // A header longer than the limit is not read at all, even when its end looks fine.
        let padding = "1.1.1.1, ".repeat(FORWARDING_HEADER_BYTES_MAX / 9 + 1);
        let value = format!("{padding}{CLIENT}");
        let found = client_ip(ip(PROXY), &headers(&[("x-forwarded-for", &value)]), &trusted);
        assert_eq!(found, ip(PROXY));
        let just_under = format!(
            "{}{CLIENT}",
            " ".repeat(FORWARDING_HEADER_BYTES_MAX - CLIENT.len() - 1)
        );
        let found = client_ip(ip(PROXY), &headers(&[("x-forwarded-for", &just_under)]), &trusted);
        assert_eq!(found, ip(CLIENT), "the limit itself is allowed");
    }

    #[test]
    fn ipv4_mapped_peers_and_hops_count_as_ipv4() {
        let found = client_ip(
            ip("::ffff:10.0.0.5"),
            &headers(&[("x-forwarded-for", "203.0.113.7, ::ffff:10.0.0.2")]),
            &lan(),
        );
        assert_eq!(found, ip(CLIENT));
        let found = client_ip(
            ip("::1"),
            &headers(&[("forwarded", "for=\"[::ffff:203.0.113.7]:80\"")]),
            &lan(),
        );
        assert_eq!(found, ip(CLIENT));
    }

    #[test]
    fn a_header_that_is_not_text_is_unreadable() {
        let mut map = HeaderMap::new();
        map.append(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"203.0.113.7, 10.0.0.2").unwrap(),
        );
        map.append(X_FORWARDED_FOR, HeaderValue::from_bytes(b"\xff10.0.0.3").unwrap());
        assert_eq!(client_ip(ip(PROXY), &map, &lan()), ip(PROXY));
    }

    /// Whatever the client writes before the entry a trusted proxy appends, the answer is the
    /// proxy's entry or the proxy itself: never something the client chose.
    #[test]
    fn no_client_prefix_changes_the_answer_to_a_chosen_address() {
        const PIECES: [&str; 16] = [
            "\"",
            ",",
            ";",
            "=",
            "[",
            "]",
            ":",
            "\\",
            " ",
            "for",
            "For",
            "198.51.100.1",
            "2001:db8::66",
            "_x",
            "unknown",
            "proto",
        ];
        let trusted = lan();
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            // xorshift64: deterministic, so a failure reproduces.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..5_000 {
            let length = (next() % 12) as usize;
            let prefix: String = (0..length).map(|_| PIECES[(next() % 16) as usize]).collect();
            for (name, appended, real) in [
                ("x-forwarded-for", ", 203.0.113.7", CLIENT),
                ("forwarded", ", for=203.0.113.7", CLIENT),
                ("forwarded", ", for=\"[2001:db8::7]:4711\"", "2001:db8::7"),
                ("forwarded", ", for=203.0.113.7;proto=https", CLIENT),
            ] {
                let value = format!("{prefix}{appended}");
                let found = client_ip(ip(PROXY), &headers(&[(name, &value)]), &trusted);
                assert!(
                    found == ip(real) || found == ip(PROXY),
                    "{name}: {value} gave {found}"
                );
            }
        }
    }

    #[test]
    fn trusted_proxies_parse_with_the_position_of_a_bad_entry() {
        let trusted = TrustedProxies::parse(["10.0.0.0/8", "::1/128", "127.0.0.1"]).unwrap();
        assert_eq!(trusted.networks().len(), 3);
        assert!(trusted.contains(ip("127.0.0.1")) && !trusted.contains(ip("127.0.0.2")));
        let error = TrustedProxies::parse(["10.0.0.0/8", "10.0.0.1/8"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "trusted proxy #2: `10.0.0.1/8` has bits set past the /8 prefix; the network is 10.0.0.0/8"
        );
        assert!(TrustedProxies::parse(["localhost"]).is_err());
        let from_config: TrustedProxies = serde_json::from_str(r#"["10.0.0.0/8", "::1"]"#).unwrap();
        assert_eq!(from_config, lan());
        assert!(serde_json::from_str::<TrustedProxies>(r#"["10.0.0.0/99"]"#).is_err());
        assert!(TrustedProxies::default().is_empty());
    }
}
