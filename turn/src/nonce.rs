//! Stateless nonces: the server keeps no nonce table at all, so a flood of unauthenticated
//! requests cannot grow one (the `turn` crate's nonce map does). A nonce is its expiry time and a
//! MAC over that expiry and the client's IP under a key that lives only in this process; checking
//! one is recomputing the MAC.

use hmac::{Hmac, Mac as _};
use sha1::Sha1;
use std::fmt::Write as _;
use std::net::IpAddr;

/// 16 hex digits of expiry + 24 hex digits of MAC.
const NONCE_LEN: usize = 40;

pub struct NonceKey {
    key: [u8; 32],
    lifetime_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    Valid,
    /// Well formed and ours, but expired: the client retries with the fresh one (438).
    Stale,
    /// Not one we issued (or issued to another address).
    Invalid,
}

impl NonceKey {
    pub fn new(key: [u8; 32], lifetime_s: u64) -> Self {
        Self { key, lifetime_s }
    }

    pub fn issue(&self, client: IpAddr, now_unix_s: u64) -> String {
        let expiry = now_unix_s + self.lifetime_s;
        let mut nonce = String::with_capacity(NONCE_LEN);
        let _ = write!(nonce, "{expiry:016x}");
        for b in &self.mac(client, expiry)[..12] {
            let _ = write!(nonce, "{b:02x}");
        }
        nonce
    }

    pub fn check(&self, nonce: &str, client: IpAddr, now_unix_s: u64) -> NonceCheck {
        if nonce.len() != NONCE_LEN || !nonce.is_ascii() {
            return NonceCheck::Invalid;
        }
        let Ok(expiry) = u64::from_str_radix(&nonce[..16], 16) else {
            return NonceCheck::Invalid;
        };
        let mac = self.mac(client, expiry);
        let mut expected = String::with_capacity(24);
        for b in &mac[..12] {
            let _ = write!(expected, "{b:02x}");
        }
        if expected != nonce[16..] {
            NonceCheck::Invalid
        } else if expiry < now_unix_s {
            NonceCheck::Stale
        } else {
            NonceCheck::Valid
        }
    }

    fn mac(&self, client: IpAddr, expiry: u64) -> [u8; 20] {
        let mut mac = Hmac::<Sha1>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(&expiry.to_be_bytes());
        match client {
            IpAddr::V4(ip) => mac.update(&ip.octets()),
            IpAddr::V6(ip) => mac.update(&ip.octets()),
        }
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_bound_to_the_client_and_expire() {
        let key = NonceKey::new([9; 32], 60);
        let ada: IpAddr = "127.0.0.1".parse().unwrap();
        let nonce = key.issue(ada, 1000);
        assert_eq!(key.check(&nonce, ada, 1000), NonceCheck::Valid);
        assert_eq!(key.check(&nonce, ada, 1060), NonceCheck::Valid);
        assert_eq!(key.check(&nonce, ada, 1061), NonceCheck::Stale);
        assert_eq!(
            key.check(&nonce, "127.0.0.3".parse().unwrap(), 1000),
            NonceCheck::Invalid
        );
        assert_eq!(
            NonceKey::new([8; 32], 60).check(&nonce, ada, 1000),
            NonceCheck::Invalid
        );
        assert_eq!(key.check("short", ada, 0), NonceCheck::Invalid);
        let mut forged = nonce.clone();
        forged.replace_range(..16, &format!("{:016x}", 5000));
        assert_eq!(
            key.check(&forged, ada, 1000),
            NonceCheck::Invalid,
            "a later expiry"
        );
    }
}
