//! Routing datagrams on the one media port to the participant they belong to.
//!
//! A datagram from an address we have not seen is routed by the USERNAME of its STUN binding
//! request: ICE puts `<our ufrag>:<their ufrag>` there, and each participant's connection has its own
//! ufrag. The request's MESSAGE-INTEGRITY is checked with that connection's ICE password before a
//! route is installed, so only the real peer can add (and so evict) routes; after that the 4-tuple
//! route is used. Routes per participant are capped as well.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::RwLock;

/// Where a participant lives: the shard that owns its room and its key there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    pub shard: usize,
    pub key: ParticipantKey,
}

/// Shard-local handle of a participant's connection; cheap to hash on the packet path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantKey(pub u64);

/// Most remote addresses one participant may have routes for (ICE may try a few before it settles).
pub const ROUTES_PER_PARTICIPANT_MAX: usize = 8;

const STUN_HEADER_LEN: usize = 20;
const STUN_MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const STUN_BINDING_REQUEST: u16 = 0x0001;
const STUN_ATTR_USERNAME: u16 = 0x0006;
const STUN_ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const STUN_MESSAGE_INTEGRITY_LEN: usize = 20;
/// RFC 8489 caps USERNAME at 513 bytes.
const STUN_USERNAME_MAX: usize = 513;

/// Attributes of a well-formed STUN binding request, as (type, offset of the value, value).
fn binding_request_attributes(datagram: &[u8]) -> Option<impl Iterator<Item = (u16, usize, &[u8])>> {
    if datagram.len() < STUN_HEADER_LEN || datagram[0] & 0xC0 != 0 {
        return None;
    }
    let message_type = u16::from_be_bytes([datagram[0], datagram[1]]);
    let length = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    if message_type != STUN_BINDING_REQUEST
        || datagram[4..8] != STUN_MAGIC_COOKIE
        || length % 4 != 0
        || STUN_HEADER_LEN + length > datagram.len()
    {
        return None;
    }
    let end = STUN_HEADER_LEN + length;
    let mut offset = STUN_HEADER_LEN;
    Some(std::iter::from_fn(move || {
        let header = datagram.get(offset..offset + 4).filter(|_| offset + 4 <= end)?;
        let attr_type = u16::from_be_bytes([header[0], header[1]]);
        let attr_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let value_at = offset + 4;
        let value = datagram
            .get(value_at..value_at + attr_len)
            .filter(|_| value_at + attr_len <= end)?;
        offset = value_at + attr_len.div_ceil(4) * 4;
        Some((attr_type, value_at, value))
    }))
}

/// Whether the binding request's MESSAGE-INTEGRITY (RFC 8489 §14.5: HMAC-SHA1 over the message up
/// to the attribute, with the header length counting through it) verifies with `password`.
pub fn stun_integrity_ok(datagram: &[u8], password: &[u8]) -> bool {
    let Some(mut attributes) = binding_request_attributes(datagram) else {
        return false;
    };
    let Some((_, value_at, value)) = attributes.find(|(t, _, _)| *t == STUN_ATTR_MESSAGE_INTEGRITY) else {
        return false;
    };
    if value.len() != STUN_MESSAGE_INTEGRITY_LEN {
        return false;
    }
    let covered_len = (value_at + STUN_MESSAGE_INTEGRITY_LEN - STUN_HEADER_LEN) as u16;
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(password) else {
        return false;
    };
    mac.update(&datagram[..2]);
    mac.update(&covered_len.to_be_bytes());
    mac.update(&datagram[4..value_at - 4]);
    mac.verify_slice(value).is_ok()
}

/// The local (our) ufrag from a STUN binding request's USERNAME, or `None` if `datagram` is not a
/// well-formed binding request with a USERNAME.
pub fn stun_local_ufrag(datagram: &[u8]) -> Option<&str> {
    let (_, _, value) = binding_request_attributes(datagram)?.find(|(t, _, _)| *t == STUN_ATTR_USERNAME)?;
    if value.len() > STUN_USERNAME_MAX {
        return None;
    }
    let (local, _remote) = std::str::from_utf8(value).ok()?.split_once(':')?;
    (!local.is_empty()).then_some(local)
}

/// Shared by every shard: which participant a remote address or a ufrag belongs to.
#[derive(Default)]
pub struct RouteTable {
    by_addr: RwLock<HashMap<SocketAddr, Route>>,
    by_ufrag: RwLock<HashMap<String, UfragEntry>>,
}

struct UfragEntry {
    route: Route,
    ice_password: String,
    addrs: Vec<SocketAddr>,
}

impl RouteTable {
    /// Route for `datagram` from `from`: by address if known, else by the STUN USERNAME (which
    /// installs the address route).
    pub fn resolve(&self, from: SocketAddr, datagram: &[u8]) -> Option<Route> {
        if let Some(route) = self.by_addr.read().expect("route table lock").get(&from) {
            return Some(*route);
        }
        let ufrag = stun_local_ufrag(datagram)?;
        let mut by_ufrag = self.by_ufrag.write().expect("route table lock");
        let entry = by_ufrag.get_mut(ufrag)?;
        if !stun_integrity_ok(datagram, entry.ice_password.as_bytes()) {
            return None;
        }
        let mut by_addr = self.by_addr.write().expect("route table lock");
        if entry.addrs.len() >= ROUTES_PER_PARTICIPANT_MAX {
            let oldest = entry.addrs.remove(0);
            by_addr.remove(&oldest);
        }
        entry.addrs.push(from);
        by_addr.insert(from, entry.route);
        Some(entry.route)
    }

    pub fn add_participant(&self, ufrag: String, ice_password: String, route: Route) {
        let entry = UfragEntry {
            route,
            ice_password,
            addrs: Vec::new(),
        };
        let previous = self
            .by_ufrag
            .write()
            .expect("route table lock")
            .insert(ufrag, entry);
        assert!(previous.is_none(), "ufrags are unique per connection");
    }

    /// Forgets a participant's ufrag and every address routed to it.
    pub fn remove_participant(&self, ufrag: &str) {
        let Some(entry) = self.by_ufrag.write().expect("route table lock").remove(ufrag) else {
            return;
        };
        let mut by_addr = self.by_addr.write().expect("route table lock");
        for addr in entry.addrs {
            if by_addr.get(&addr) == Some(&entry.route) {
                by_addr.remove(&addr);
            }
        }
    }

    pub fn address_route_count(&self) -> usize {
        self.by_addr.read().expect("route table lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "bridge-ice-password";

    fn unsigned_binding_request(username: &[u8]) -> Vec<u8> {
        let padded = username.len().div_ceil(4) * 4;
        let mut msg = Vec::new();
        msg.extend_from_slice(&STUN_BINDING_REQUEST.to_be_bytes());
        msg.extend_from_slice(&((4 + padded) as u16).to_be_bytes());
        msg.extend_from_slice(&STUN_MAGIC_COOKIE);
        msg.extend_from_slice(&[7; 12]);
        msg.extend_from_slice(&STUN_ATTR_USERNAME.to_be_bytes());
        msg.extend_from_slice(&(username.len() as u16).to_be_bytes());
        msg.extend_from_slice(username);
        msg.resize(20 + 4 + padded, 0);
        msg
    }

    /// A binding request signed as RFC 8489 says, written independently of `stun_integrity_ok`.
    fn signed_binding_request(username: &[u8], password: &str) -> Vec<u8> {
        let mut msg = unsigned_binding_request(username);
        let body_len = msg.len() - 20 + 24;
        msg[2..4].copy_from_slice(&(body_len as u16).to_be_bytes());
        let mut mac = Hmac::<Sha1>::new_from_slice(password.as_bytes()).unwrap();
        mac.update(&msg);
        let tag = mac.finalize().into_bytes();
        msg.extend_from_slice(&STUN_ATTR_MESSAGE_INTEGRITY.to_be_bytes());
        msg.extend_from_slice(&20u16.to_be_bytes());
        msg.extend_from_slice(&tag);
        msg
    }

    fn binding_request(username: &[u8]) -> Vec<u8> {
        signed_binding_request(username, PASSWORD)
    }

    #[test]
    fn message_integrity_is_verified_with_the_connection_password() {
        let signed = signed_binding_request(b"u1:x", PASSWORD);
        assert!(stun_integrity_ok(&signed, PASSWORD.as_bytes()));
        assert!(!stun_integrity_ok(&signed, b"another password"));
        assert!(!stun_integrity_ok(
            &unsigned_binding_request(b"u1:x"),
            PASSWORD.as_bytes()
        ));
        let mut tampered = signed.clone();
        tampered[9] ^= 1; // transaction id
        assert!(!stun_integrity_ok(&tampered, PASSWORD.as_bytes()));
        let mut bad_tag = signed;
        *bad_tag.last_mut().unwrap() ^= 1;
        assert!(!stun_integrity_ok(&bad_tag, PASSWORD.as_bytes()));
    }

    #[test]
    fn forged_checks_without_the_password_install_no_route() {
        let table = RouteTable::default();
        let route = Route {
            shard: 0,
            key: ParticipantKey(1),
        };
        table.add_participant("u1".into(), PASSWORD.into(), route);
        let from: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        assert_eq!(table.resolve(from, &unsigned_binding_request(b"u1:x")), None);
        assert_eq!(
            table.resolve(from, &signed_binding_request(b"u1:x", "guess")),
            None
        );
        assert_eq!(table.address_route_count(), 0);
        assert_eq!(table.resolve(from, &binding_request(b"u1:x")), Some(route));
    }

    #[test]
    fn extracts_local_ufrag_from_binding_request() {
        assert_eq!(
            stun_local_ufrag(&binding_request(b"bridgeufrag:peer")),
            Some("bridgeufrag")
        );
        assert_eq!(stun_local_ufrag(&binding_request(b"abc:d")), Some("abc"));
    }

    #[test]
    fn rejects_what_is_not_a_binding_request_with_username() {
        assert_eq!(stun_local_ufrag(&unsigned_binding_request(b"no-colon")), None);
        assert_eq!(stun_local_ufrag(&unsigned_binding_request(b":remote")), None);
        let mut wrong_cookie = unsigned_binding_request(b"a:b");
        wrong_cookie[4] = 0;
        assert_eq!(stun_local_ufrag(&wrong_cookie), None);
        let mut truncated = unsigned_binding_request(b"a:b");
        truncated.truncate(22);
        assert_eq!(stun_local_ufrag(&truncated), None);
        // An RTP packet (version 2 => top bits 10) is never taken for STUN.
        assert_eq!(
            stun_local_ufrag(&[0x80, 0x60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
            None
        );
        assert_eq!(stun_local_ufrag(&[]), None);
    }

    #[test]
    fn lying_length_fields_do_not_panic() {
        let mut msg = unsigned_binding_request(b"a:b");
        msg[22] = 0xFF; // attribute length far past the end
        msg[23] = 0xFF;
        assert_eq!(stun_local_ufrag(&msg), None);
        for len in 0..msg.len() {
            let _ = stun_local_ufrag(&msg[..len]);
        }
    }

    #[test]
    fn routes_by_ufrag_then_by_address_and_forgets_on_removal() {
        let table = RouteTable::default();
        let route = Route {
            shard: 1,
            key: ParticipantKey(9),
        };
        table.add_participant("u1".into(), PASSWORD.into(), route);
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(table.resolve(from, b"not stun"), None);
        assert_eq!(table.resolve(from, &binding_request(b"u1:x")), Some(route));
        assert_eq!(table.resolve(from, b"now any datagram"), Some(route));
        assert_eq!(table.resolve(from, &binding_request(b"unknown:x")), Some(route));
        table.remove_participant("u1");
        assert_eq!(table.resolve(from, b"now any datagram"), None);
        assert_eq!(table.address_route_count(), 0);
    }

    #[test]
    fn address_routes_per_participant_are_capped() {
        let table = RouteTable::default();
        table.add_participant(
            "u1".into(),
            PASSWORD.into(),
            Route {
                shard: 0,
                key: ParticipantKey(1),
            },
        );
        for port in 0..100u16 {
            let from = SocketAddr::from(([127, 0, 0, 1], 6000 + port));
            assert!(table.resolve(from, &binding_request(b"u1:x")).is_some());
        }
        assert_eq!(table.address_route_count(), ROUTES_PER_PARTICIPANT_MAX);
    }
}
