//! Property tests of what control reads from untrusted requests (issue 17): the forwarding
//! headers that name a client's address and the join tokens. Any header or token is read or
//! refused, never a panic; a request from an untrusted peer is never believed about its address,
//! and a token not signed with the configured key never admits anyone.
//! `PROPTEST_CASES=100000 cargo test -p bridgemesh-control --test client_address_and_tokens_hold_on_any_input`
//! runs the long version; CI runs proptest's default of 256 cases per property.

use axum::http::{HeaderMap, HeaderValue};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bridgemesh_control::auth::{AuthConfig, Secret, TokenVerifier};
use bridgemesh_control::client_ip::{TrustedProxies, client_ip};
use bridgemesh_proto::RoomId;
use proptest::prelude::*;
use std::net::IpAddr;

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

/// Header values built from the pieces forwarding headers are made of, so the parsers get past
/// their first character.
fn forwarding_header_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("for=".to_owned()),
        Just("\"[2001:db8::1]:443\"".to_owned()),
        Just("198.51.100.7".to_owned()),
        Just("unknown".to_owned()),
        Just("_hidden".to_owned()),
        Just(", ".to_owned()),
        Just(";".to_owned()),
        Just("proto=https".to_owned()),
        Just("10.0.0.1".to_owned()),
        Just("\"".to_owned()),
        "[ -~]{0,12}",
    ];
    proptest::collection::vec(piece, 0..10).prop_map(|pieces| pieces.concat())
}

fn headers(x_forwarded_for: &str, forwarded: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [("x-forwarded-for", x_forwarded_for), ("forwarded", forwarded)] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.append(name, value);
        }
    }
    headers
}

fn verifier() -> TokenVerifier {
    TokenVerifier::new(&AuthConfig {
        accepted_issuers: vec!["my_app".into()],
        accepted_audiences: vec!["jitsi".into()],
        hs256_secret: Some(Secret::new(SECRET)),
        ..AuthConfig::default()
    })
    .expect("a valid configuration")
}

/// Three dot-separated base64url parts of JSON-ish text: the shape of a token.
fn token_like() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        Just(r#"{"alg":"HS256","typ":"JWT"}"#.to_owned()),
        Just(r#"{"alg":"none"}"#.to_owned()),
        Just(r#"{"alg":"RS256","kid":"x"}"#.to_owned()),
        Just(r#"{"iss":"my_app","aud":"jitsi","sub":"*","room":"*","exp":99999999999}"#.to_owned()),
        "[ -~]{0,40}",
    ];
    (part.clone(), part, proptest::collection::vec(any::<u8>(), 0..48)).prop_map(
        |(header, claims, signature)| {
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(claims),
                URL_SAFE_NO_PAD.encode(signature)
            )
        },
    )
}

proptest! {
    #[test]
    fn an_untrusted_peer_is_its_own_address_whatever_it_sends(
        x_forwarded_for in forwarding_header_like(),
        forwarded in forwarding_header_like(),
        peer in any::<[u8; 4]>(),
    ) {
        let trusted = TrustedProxies::parse(["10.9.0.0/16"]).unwrap();
        let peer = IpAddr::from(peer);
        let headers = headers(&x_forwarded_for, &forwarded);
        let seen = client_ip(peer, &headers, &trusted);
        if !trusted.contains(peer) {
            prop_assert_eq!(seen, peer);
        }
    }

    #[test]
    fn a_trusted_proxy_yields_the_proxy_or_an_address_from_the_headers(
        x_forwarded_for in forwarding_header_like(),
        forwarded in forwarding_header_like(),
    ) {
        let trusted = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let seen = client_ip(peer, &headers(&x_forwarded_for, &forwarded), &trusted);
        let named = |ip: IpAddr| {
            let text = ip.to_string();
            x_forwarded_for.contains(&text) || forwarded.contains(&text)
        };
        prop_assert!(seen == peer || named(seen), "{seen} from {x_forwarded_for:?} / {forwarded:?}");
    }

    #[test]
    fn a_token_not_signed_with_the_key_admits_nobody(
        token in prop_oneof![token_like(), "[ -~]{0,200}"],
    ) {
        let room = RoomId::new("room").unwrap();
        prop_assert!(verifier().verify(&token, &room, 1_750_000_000).is_err());
    }
}
