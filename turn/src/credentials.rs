//! coturn's "TURN REST API" credentials (draft-uberti-behave-turn-rest-00, coturn
//! `--use-auth-secret`): the username is `<expiry unix time>:<user>` and the password is
//! `base64(HMAC-SHA1(secret, username))`. The server stores nothing per user: it recomputes the
//! password from the username, so any node holding the secret accepts credentials any other node
//! (or control) issued, until they expire.

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use md5::{Digest as _, Md5};
use sha1::Sha1;

/// A (username, password) pair for `user`, valid until `expires_unix_s`.
pub fn rest_credential(secret: &[u8], user: &str, expires_unix_s: u64) -> (String, String) {
    let username = format!("{expires_unix_s}:{user}");
    let password = rest_password(secret, &username);
    (username, password)
}

/// The password the server expects for `username`.
pub fn rest_password(secret: &[u8], username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Why a username is refused before its MESSAGE-INTEGRITY is even checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsernameError {
    #[error("the username is not `<expiry unix time>:<user>`")]
    Malformed,
    #[error("the credential has expired")]
    Expired,
}

/// The user part and expiry of a REST username, checked against `now_unix_s`.
pub fn parse_username(username: &str, now_unix_s: u64) -> Result<(&str, u64), UsernameError> {
    let (user, expires_unix_s) = split_username(username)?;
    if expires_unix_s < now_unix_s {
        return Err(UsernameError::Expired);
    }
    Ok((user, expires_unix_s))
}

/// The user part and expiry of a REST username, expired or not.
pub fn split_username(username: &str) -> Result<(&str, u64), UsernameError> {
    // coturn puts the timestamp first; a username without one cannot be a REST credential.
    let (expiry, user) = username.split_once(':').ok_or(UsernameError::Malformed)?;
    let expires_unix_s: u64 = expiry.parse().map_err(|_| UsernameError::Malformed)?;
    if user.is_empty() {
        return Err(UsernameError::Malformed);
    }
    Ok((user, expires_unix_s))
}

/// The long-term credential key of RFC 5389 §15.4: MD5(username ":" realm ":" password).
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(username.as_bytes());
    md5.update(b":");
    md5.update(realm.as_bytes());
    md5.update(b":");
    md5.update(password.as_bytes());
    md5.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_coturns_documented_formula() {
        // Independently computed: printf '1700000000:ada' | openssl dgst -sha1 -hmac s3cret -binary | base64
        let (username, password) = rest_credential(b"s3cret", "ada", 1_700_000_000);
        assert_eq!(username, "1700000000:ada");
        assert_eq!(password, "yC+x5OTFzkPMvyC+iVIolM46yuE=");
    }

    #[test]
    fn usernames_are_parsed_and_expiry_enforced() {
        assert_eq!(parse_username("100:ada", 99), Ok(("ada", 100)));
        assert_eq!(parse_username("100:ada:x", 100), Ok(("ada:x", 100)));
        assert_eq!(parse_username("99:ada", 100), Err(UsernameError::Expired));
        for bad in ["ada", "x:ada", "100:", ":ada", ""] {
            assert_eq!(parse_username(bad, 0), Err(UsernameError::Malformed), "{bad:?}");
        }
    }
}
