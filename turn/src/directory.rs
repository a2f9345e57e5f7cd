//! What a credential issuer (control) needs to hand out TURN servers in join responses: each
//! node's TURN URLs, the shared secret and the credential lifetime. Data only, so control can keep
//! it in its state and replicate it like any other record.

use crate::config::Redacted;
use crate::credentials::rest_credential;

/// One node's TURN server as clients reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnEndpoint {
    /// The bridge this TURN server runs beside (its id), if any; standalone servers have none.
    pub bridge: Option<String>,
    /// `turn:host:port?transport=udp`, `turn:host:port?transport=tcp`, `turns:...`.
    pub urls: Vec<String>,
}

/// `Debug` is written by hand: it prints the secret's length, never the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnDirectory {
    pub secret: Vec<u8>,
    pub credential_ttl_s: u64,
    pub endpoints: Vec<TurnEndpoint>,
}

impl std::fmt::Debug for TurnDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            secret,
            credential_ttl_s,
            endpoints,
        } = self;
        f.debug_struct("TurnDirectory")
            .field("secret", &Redacted(secret))
            .field("credential_ttl_s", credential_ttl_s)
            .field("endpoints", endpoints)
            .finish()
    }
}

/// An `RTCIceServer` with REST credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredential {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

/// Servers handed to one participant: its own bridge's and one more.
pub const ICE_SERVERS_PER_JOIN_MAX: usize = 2;

impl TurnDirectory {
    /// The TURN servers for a participant `user` placed on `bridge`: that bridge's TURN first,
    /// then one other. Regions do not exist yet, so "another" is the first other endpoint in
    /// configuration order; once bridges carry regions this is where the nearest one is picked.
    pub fn ice_servers(&self, bridge: &str, user: &str, now_unix_s: u64) -> Vec<IceCredential> {
        let (username, credential) = rest_credential(&self.secret, user, now_unix_s + self.credential_ttl_s);
        let own = self
            .endpoints
            .iter()
            .filter(|e| e.bridge.as_deref() == Some(bridge));
        let others = self
            .endpoints
            .iter()
            .filter(|e| e.bridge.as_deref() != Some(bridge));
        own.chain(others)
            .filter(|e| !e.urls.is_empty())
            .take(ICE_SERVERS_PER_JOIN_MAX)
            .map(|e| IceCredential {
                urls: e.urls.clone(),
                username: username.clone(),
                credential: credential.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::rest_password;

    fn endpoint(bridge: Option<&str>, url: &str) -> TurnEndpoint {
        TurnEndpoint {
            bridge: bridge.map(str::to_owned),
            urls: vec![url.to_owned()],
        }
    }

    #[test]
    fn the_participants_bridge_comes_first_then_one_other() {
        let directory = TurnDirectory {
            secret: b"0123456789abcdef".to_vec(),
            credential_ttl_s: 3600,
            endpoints: vec![
                endpoint(Some("b1"), "turn:b1"),
                endpoint(None, "turn:standalone"),
                endpoint(Some("b2"), "turn:b2"),
            ],
        };
        let servers = directory.ice_servers("b2", "p-1", 1000);
        let urls: Vec<_> = servers.iter().map(|s| s.urls[0].as_str()).collect();
        assert_eq!(urls, ["turn:b2", "turn:b1"]);
        assert_eq!(servers[0].username, "4600:p-1");
        assert_eq!(
            servers[0].credential,
            rest_password(b"0123456789abcdef", "4600:p-1")
        );
        assert_eq!(directory.ice_servers("unknown", "p", 0).len(), 2);
        let empty = TurnDirectory {
            endpoints: vec![],
            ..directory
        };
        assert!(empty.ice_servers("b1", "p", 0).is_empty());
    }

    #[test]
    fn debug_output_does_not_show_the_secret() {
        let directory = TurnDirectory {
            secret: b"s3cr3t-value-0123".to_vec(),
            credential_ttl_s: 3600,
            endpoints: vec![endpoint(Some("b1"), "turn:b1")],
        };
        let text = format!("{directory:?}");
        assert!(!text.contains("s3cr3t") && !text.contains("115, 51"), "{text}");
        assert!(text.contains("17 bytes") && text.contains("turn:b1"), "{text}");
    }
}
