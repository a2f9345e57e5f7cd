use super::*;
use serde_json::json;

mod admin;
mod admission;
mod config;
mod mint;
mod verify;

use mint::mint_request;

const NOW: u64 = 1_750_000_000;
const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
const SECOND_SECRET: &str = "another-test-secret-32-bytes-long!!!";
const RS_PRIVATE: &str = include_str!("../../tests/data/rs256-private.pem");
const RS_PUBLIC: &str = include_str!("../../tests/data/rs256-public.pem");
const RS_OTHER_PRIVATE: &str = include_str!("../../tests/data/rs256-other-private.pem");
const RS_1024_PUBLIC: &str = include_str!("../../tests/data/rs1024-public.pem");
const ED_PRIVATE: &str = include_str!("../../tests/data/ed25519-private.pem");
const ED_PUBLIC: &str = include_str!("../../tests/data/ed25519-public.pem");

fn config() -> AuthConfig {
    AuthConfig {
        accepted_issuers: vec!["my_app".into(), "other_app".into()],
        accepted_audiences: vec!["jitsi".into()],
        hs256_secret: Some(Secret::new(SECRET)),
        hs256_secrets: BTreeMap::from([("hs-2".into(), Secret::new(SECOND_SECRET))]),
        public_keys: BTreeMap::from([
            (
                "rs-1".into(),
                PublicKeyConfig {
                    algorithm: PublicKeyAlgorithm::Rs256,
                    pem: RS_PUBLIC.into(),
                },
            ),
            (
                "ed-1".into(),
                PublicKeyConfig {
                    algorithm: PublicKeyAlgorithm::EdDsa,
                    pem: ED_PUBLIC.into(),
                },
            ),
        ]),
        guest_policy: Some(GuestPolicy::None),
        ..AuthConfig::default()
    }
}

fn verifier() -> TokenVerifier {
    TokenVerifier::new(&config()).unwrap()
}

fn room(name: &str) -> RoomId {
    RoomId::new(name).unwrap()
}

/// The payload of lib-jitsi-meet's doc/tokens.md example, with our issuer and times.
fn claims() -> Value {
    json!({
        "context": {
            "user": {
                "avatar": "https://gravatar.com/avatar/abc123",
                "name": "John Doe",
                "email": "jdoe@example.com",
                "id": "abcd:a1b2c3-d4e5f6-0abc1-23de-abcdef01fedcba"
            },
            "group": "a123-123-456-789"
        },
        "aud": "jitsi",
        "iss": "my_app",
        "sub": "meet.example.com",
        "room": "standup",
        "exp": NOW + 3600,
        "nbf": NOW - 5
    })
}

fn with(mut claims: Value, field: &str, value: Value) -> Value {
    claims[field] = value;
    claims
}

fn without(mut claims: Value, field: &str) -> Value {
    claims.as_object_mut().unwrap().remove(field);
    claims
}

fn sign(algorithm: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn hs(secret: &str, kid: Option<&str>, claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(secret.as_bytes()),
        kid,
        claims,
    )
}

fn rs_key(pem: &str) -> EncodingKey {
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem).unwrap();
    EncodingKey::from_rsa_der(key.to_pkcs1_der().unwrap().as_bytes())
}

fn ed_key() -> EncodingKey {
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(ED_PRIVATE).unwrap();
    EncodingKey::from_ed_der(key.to_pkcs8_der().unwrap().as_bytes())
}

/// A token assembled by hand: for headers jsonwebtoken will not write.
fn raw(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

fn verify(token: &str) -> Result<Identity, AuthError> {
    verifier().verify(token, &room("standup"), NOW)
}
