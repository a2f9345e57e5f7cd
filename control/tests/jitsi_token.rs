//! Tokens made the way Jitsi's documentation makes them — PyJWT, HS256, the claims of
//! lib-jitsi-meet's doc/tokens.md — are accepted; the classic forgeries are not.
//!
//! Needs PyJWT (Debian: python3-jwt; `scripts/test` installs it). Without it this test fails
//! rather than skipping: a compatibility test that silently does nothing is worse than none.

use bridgemesh_control::auth::{
    AuthConfig, GuestPolicy, PublicKeyAlgorithm, PublicKeyConfig, Secret, TokenVerifier,
};
use bridgemesh_proto::RoomId;
use bridgemesh_proto::api::ErrorCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::collections::BTreeMap;
use std::process::Command;

const NOW: u64 = 1_750_000_000;
const APP_SECRET: &str = "example_app_secret_of_32_bytes_or_more";
const RS_PUBLIC: &str = include_str!("data/rs256-public.pem");

/// The Jitsi token example, written as a Jitsi operator would with PyJWT. argv: secret, exp,
/// room, then an optional moderator value as JSON ("true" string in JaaS's documentation).
const PYJWT_SCRIPT: &str = r#"
import json, sys
import jwt

secret, exp, room = sys.argv[1], int(sys.argv[2]), sys.argv[3]
payload = {
    "context": {
        "user": {
            "avatar": "https://gravatar.com/avatar/abc123",
            "name": "John Doe",
            "email": "jdoe@example.com",
            "id": "abcd:a1b2c3-d4e5f6-0abc1-23de-abcdef01fedcba",
        },
        "group": "a123-123-456-789",
    },
    "aud": "jitsi",
    "iss": "my_client",
    "sub": "meet.jit.si",
    "room": room,
    "exp": exp,
}
if len(sys.argv) > 4:
    payload["context"]["user"]["moderator"] = json.loads(sys.argv[4])
algorithm = "none" if secret == "" else "HS256"
token = jwt.encode(payload, secret or None, algorithm=algorithm)
# PyJWT 1.x returns bytes, 2.x str.
print(token.decode() if isinstance(token, bytes) else token)
"#;

/// `python3` on PATH first; then Debian's own, which is where `apt-get install python3-jwt` puts
/// PyJWT when PATH leads to another Python (pyenv, a venv).
fn python_with_pyjwt() -> String {
    for python in ["python3", "/usr/bin/python3"] {
        let found = Command::new(python)
            .args(["-c", "import jwt"])
            .output()
            .is_ok_and(|output| output.status.success());
        if found {
            return python.to_owned();
        }
    }
    panic!("PyJWT is not installed: run scripts/test, or `apt-get install python3-jwt`");
}

fn pyjwt(secret: &str, exp: u64, room: &str, moderator: Option<&str>) -> String {
    let exp = exp.to_string();
    let mut args = vec!["-c", PYJWT_SCRIPT, secret, &exp, room];
    args.extend(moderator);
    let output = Command::new(python_with_pyjwt()).args(&args).output().unwrap();
    assert!(
        output.status.success(),
        "PyJWT failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// A Jitsi server's settings in our terms: app_id "my_client", audience "jitsi", app_secret,
/// plus one RSA key so the confusion attack has a public key to abuse.
fn verifier() -> TokenVerifier {
    TokenVerifier::new(&AuthConfig {
        accepted_issuers: vec!["my_client".into()],
        accepted_audiences: vec!["jitsi".into()],
        hs256_secret: Some(Secret::new(APP_SECRET)),
        public_keys: BTreeMap::from([(
            "jitsi/custom_key_name".into(),
            PublicKeyConfig {
                algorithm: PublicKeyAlgorithm::Rs256,
                pem: RS_PUBLIC.into(),
            },
        )]),
        guest_policy: Some(GuestPolicy::None),
        ..AuthConfig::default()
    })
    .unwrap()
}

fn room(name: &str) -> RoomId {
    RoomId::new(name).unwrap()
}

#[test]
fn pyjwt_token_from_jitsi_docs_is_accepted_and_read() {
    let token = pyjwt(APP_SECRET, NOW + 3600, "*", Some(r#""true""#));
    let identity = verifier().verify(&token, &room("any-room"), NOW).unwrap();
    assert_eq!(identity.name.as_deref(), Some("John Doe"));
    assert_eq!(identity.email.as_deref(), Some("jdoe@example.com"));
    assert_eq!(identity.issuer, "my_client");
    assert_eq!(identity.subject.as_deref(), Some("meet.jit.si"));
    assert!(identity.moderator, "\"moderator\": \"true\" makes a moderator");

    let boolean = pyjwt(APP_SECRET, NOW + 3600, "*", Some("true"));
    assert!(
        verifier()
            .verify(&boolean, &room("any-room"), NOW)
            .unwrap()
            .moderator
    );
}

#[test]
fn pyjwt_token_for_one_room_admits_that_room_only_and_no_moderator() {
    let token = pyjwt(APP_SECRET, NOW + 3600, "standup", None);
    let identity = verifier().verify(&token, &room("standup"), NOW).unwrap();
    assert!(!identity.moderator);
    let elsewhere = verifier().verify(&token, &room("board"), NOW).unwrap_err();
    assert_eq!(elsewhere.code(), ErrorCode::TokenWrongRoom);
    assert_eq!(elsewhere.code().http_status(), 401);
}

#[test]
fn pyjwt_tokens_that_must_fail() {
    let expired = pyjwt(APP_SECRET, NOW - 3600, "*", None);
    assert_eq!(
        verifier()
            .verify(&expired, &room("standup"), NOW)
            .unwrap_err()
            .code(),
        ErrorCode::TokenExpired
    );
    let other_secret = pyjwt("some_other_secret_of_32_bytes_or_more", NOW + 3600, "*", None);
    assert_eq!(
        verifier()
            .verify(&other_secret, &room("standup"), NOW)
            .unwrap_err()
            .code(),
        ErrorCode::TokenBadSignature
    );
    // PyJWT's own `algorithm="none"`: an unsigned token.
    let unsigned = pyjwt("", NOW + 3600, "*", Some("true"));
    assert!(
        unsigned.ends_with('.'),
        "an unsigned JWT has an empty signature: {unsigned}"
    );
    assert_eq!(
        verifier()
            .verify(&unsigned, &room("standup"), NOW)
            .unwrap_err()
            .code(),
        ErrorCode::TokenAlgorithmNotAllowed
    );
}

/// The RS/HS confusion: the attacker takes the server's published RSA public key and uses its
/// PEM bytes as an HMAC secret, claiming HS256 under the RSA key's kid. A verifier that lets the
/// header pick the algorithm would check the HMAC with those same bytes and accept it. (PyJWT
/// refuses to make this token, so it is made here.)
#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let claims = serde_json::json!({
        "aud": "jitsi", "iss": "my_client", "sub": "meet.jit.si", "room": "*",
        "exp": NOW + 3600, "context": {"user": {"name": "Mallory", "moderator": true}}
    });
    let key = EncodingKey::from_secret(RS_PUBLIC.as_bytes());
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("jitsi/custom_key_name".into());
    let under_rsa_kid = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    assert_eq!(
        verifier()
            .verify(&under_rsa_kid, &room("standup"), NOW)
            .unwrap_err()
            .code(),
        ErrorCode::TokenAlgorithmNotAllowed
    );
    // Without a kid it is checked against the app secret, and fails there.
    let without_kid = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap();
    assert_eq!(
        verifier()
            .verify(&without_kid, &room("standup"), NOW)
            .unwrap_err()
            .code(),
        ErrorCode::TokenBadSignature
    );
}
