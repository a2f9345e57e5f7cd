//! The ID token verifier and the host rule, against tokens made here with jsonwebtoken: one
//! provider key, and a foreign key that signs the same claims under the same `kid`.

use super::id_token::{IdTokenError, NotAHost, ProviderKey, decide, parse_jwks, verify};
use super::*;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const NOW: u64 = 1_800_000_000;
const ISSUER: &str = "https://sso.example.org/realms/main";
const CLIENT: &str = "bridgemesh";
const NONCE: &str = "the-nonce-of-this-login";

fn ed_key(seed: u8) -> EncodingKey {
    let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    EncodingKey::from_ed_der(key.to_pkcs8_der().unwrap().as_bytes())
}

fn jwks(entries: &[(u8, &str)]) -> Value {
    let keys: Vec<Value> = entries
        .iter()
        .map(|(seed, kid)| {
            let public = ed25519_dalek::SigningKey::from_bytes(&[*seed; 32]).verifying_key();
            let x = base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                public.as_bytes(),
            );
            json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"})
        })
        .collect();
    json!({ "keys": keys })
}

fn provider_keys() -> Vec<ProviderKey> {
    parse_jwks(&jwks(&[(1, "k1")]))
}

fn claims() -> Value {
    json!({
        "iss": ISSUER, "sub": "248289761001", "aud": CLIENT, "exp": NOW + 300, "iat": NOW,
        "nonce": NONCE, "email": "Alice@Example.org", "email_verified": true,
        "preferred_username": "Alice", "groups": ["staff", "bridgemesh-hosts"],
    })
}

fn sign(seed: u8, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &ed_key(seed)).unwrap()
}

fn check(token: &str) -> Result<id_token::IdClaims, IdTokenError> {
    verify(token, &provider_keys(), ISSUER, CLIENT, NONCE, NOW)
}

fn with(change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut claims = claims();
    change(claims.as_object_mut().unwrap());
    claims
}

#[test]
fn a_token_from_the_provider_passes() {
    let verified = check(&sign(1, Some("k1"), &claims())).unwrap();
    assert_eq!(verified.subject, "248289761001");
}

#[test]
fn a_token_signed_by_another_key_is_refused() {
    // The same claims and kid, signed by a key the provider never published.
    assert_eq!(
        check(&sign(2, Some("k1"), &claims())),
        Err(IdTokenError::BadSignature)
    );
    // Under a kid the provider does not publish: worth one refetch of the keys, then refused.
    assert_eq!(
        check(&sign(2, Some("k9"), &claims())),
        Err(IdTokenError::UnknownKey(Some("k9".into())))
    );
}

#[test]
fn symmetric_and_unsigned_tokens_are_refused_even_with_a_published_secret() {
    // A JWKS that (wrongly) publishes a symmetric key: the key is skipped, and HS256 refused.
    let document =
        json!({"keys": [{"kty": "oct", "kid": "k1", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}]});
    assert!(parse_jwks(&document).is_empty());
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let hs = jsonwebtoken::encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(b"secretsecretsecretsecretsecret"),
    )
    .unwrap();
    assert!(matches!(check(&hs), Err(IdTokenError::Algorithm(_))));
    // alg "none" is not a JWT jsonwebtoken parses as one of ours.
    let none = format!(
        "{}.{}.",
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"alg":"none","kid":"k1"}"#
        ),
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            claims().to_string()
        )
    );
    assert!(matches!(check(&none), Err(IdTokenError::Malformed(_))));
}

#[test]
fn issuer_audience_expiry_and_nonce_are_checked() {
    let cases = [
        (
            with(|c| {
                c.insert("iss".into(), json!("https://evil.example"));
            }),
            "issuer",
        ),
        (
            with(|c| {
                c.insert("aud".into(), json!("another-client"));
            }),
            "audience",
        ),
        (
            with(|c| {
                c.insert("aud".into(), json!([CLIENT, "another"]));
            }),
            "azp missing",
        ),
        (
            with(|c| {
                c.insert("azp".into(), json!("another"));
            }),
            "azp other",
        ),
        (
            with(|c| {
                c.insert("exp".into(), json!(NOW - 61));
            }),
            "expired",
        ),
        (
            with(|c| {
                c.insert("iat".into(), json!(NOW + 3600));
            }),
            "future",
        ),
        (
            with(|c| {
                c.insert("nonce".into(), json!("another login's nonce"));
            }),
            "nonce",
        ),
        (
            with(|c| {
                c.remove("nonce");
            }),
            "no nonce",
        ),
        (
            with(|c| {
                c.remove("sub");
            }),
            "no sub",
        ),
    ];
    for (claims, what) in cases {
        let result = check(&sign(1, Some("k1"), &claims));
        let expected = match what {
            "issuer" => matches!(result, Err(IdTokenError::Issuer { .. })),
            "audience" | "azp missing" | "azp other" => result == Err(IdTokenError::Audience),
            "expired" => result == Err(IdTokenError::Expired),
            "future" => result == Err(IdTokenError::IssuedInFuture),
            "nonce" | "no nonce" => result == Err(IdTokenError::Nonce),
            _ => matches!(result, Err(IdTokenError::Claims(_))),
        };
        assert!(expected, "{what}: {result:?}");
    }
    // Several audiences with azp = us pass; a little clock skew passes.
    let several = with(|c| {
        c.insert("aud".into(), json!([CLIENT, "another"]));
        c.insert("azp".into(), json!(CLIENT));
        c.insert("exp".into(), json!(NOW - 30));
    });
    check(&sign(1, Some("k1"), &several)).unwrap();
}

#[test]
fn a_rotated_key_set_verifies_by_kid() {
    let keys = parse_jwks(&jwks(&[(1, "old"), (3, "new")]));
    verify(
        &sign(3, Some("new"), &claims()),
        &keys,
        ISSUER,
        CLIENT,
        NONCE,
        NOW,
    )
    .unwrap();
    verify(
        &sign(1, Some("old"), &claims()),
        &keys,
        ISSUER,
        CLIENT,
        NONCE,
        NOW,
    )
    .unwrap();
    // Without a kid only a single published key is unambiguous.
    assert!(matches!(
        verify(&sign(1, None, &claims()), &keys, ISSUER, CLIENT, NONCE, NOW),
        Err(IdTokenError::UnknownKey(None))
    ));
    check(&sign(1, None, &claims())).unwrap();
}

fn rule(groups: &[&str], domains: &[&str]) -> OidcConfig {
    OidcConfig {
        issuer: ISSUER.into(),
        client_id: CLIENT.into(),
        client_secret: Some(crate::auth::Secret::new("s")),
        allowed_groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        allowed_email_domains: domains.iter().map(|d| (*d).to_owned()).collect(),
        ..OidcConfig::default()
    }
}

fn verified(claims: &Value) -> id_token::IdClaims {
    check(&sign(1, Some("k1"), claims)).unwrap()
}

#[test]
fn groups_and_verified_email_domains_make_hosts() {
    let alice = verified(&claims());
    let host = decide(&rule(&["bridgemesh-hosts"], &[]), &alice).unwrap();
    assert_eq!(host.name.as_str(), "alice");
    assert!(
        host.user_id.starts_with("sso:") && host.user_id.len() == 36,
        "{}",
        host.user_id
    );
    decide(&rule(&[], &["example.org"]), &alice).unwrap();
    let refused = decide(&rule(&["admins"], &["example.net"]), &alice);
    assert!(
        matches!(refused, Err(NotAHost::NotAllowed { ref who }) if who == "Alice@Example.org"),
        "{refused:?}"
    );
    // An unverified address counts for nothing.
    let unverified = verified(&with(|c| {
        c.insert("email_verified".into(), json!(false));
    }));
    assert!(decide(&rule(&[], &["example.org"]), &unverified).is_err());
    // A groups claim under another name, and as a single string.
    let mut config = rule(&["hosts"], &[]);
    config.groups_claim = "roles".into();
    decide(
        &config,
        &verified(&with(|c| {
            c.insert("roles".into(), json!("hosts"));
        })),
    )
    .unwrap();
    assert!(decide(&config, &alice).is_err());
    // The same subject at another issuer is another user.
    let mut elsewhere = alice.clone();
    elsewhere.issuer = "https://other.example".into();
    let config = rule(&["bridgemesh-hosts"], &[]);
    assert_ne!(
        decide(&config, &alice).unwrap().user_id,
        decide(&config, &elsewhere).unwrap().user_id
    );
}

#[test]
fn names_fall_back_to_the_email_then_a_placeholder() {
    let config = rule(&["bridgemesh-hosts"], &[]);
    let odd = verified(&with(|c| {
        c.insert("preferred_username".into(), json!("Alice Smith"));
    }));
    assert_eq!(decide(&config, &odd).unwrap().name.as_str(), "alice");
    let nothing = verified(&with(|c| {
        c.remove("preferred_username");
        c.remove("email");
        c.insert("sub".into(), json!("A|B"));
    }));
    assert_eq!(decide(&config, &nothing).unwrap().name.as_str(), "sso-user");
}

#[test]
fn the_configuration_is_checked() {
    let ok = rule(&["hosts"], &[]);
    ok.validate().unwrap();
    let bad = |change: &dyn Fn(&mut OidcConfig), words: &str| {
        let mut config = ok.clone();
        change(&mut config);
        let err = config.validate().unwrap_err();
        assert!(err.contains(words), "{err}");
    };
    bad(
        &|c| c.issuer = "http://sso.example.org".into(),
        "must be https://",
    );
    bad(&|c| c.issuer = "not a url".into(), "is not a URL");
    bad(&|c| c.client_id.clear(), "client_id is empty");
    bad(&|c| c.client_secret = None, "client_secret or client_secret_file");
    bad(&|c| c.client_secret_file = Some("/etc/secret".into()), "not both");
    bad(&|c| c.allowed_groups.clear(), "nobody is a host");
    bad(&|c| c.allow_any_user = true, "contradicts");
    bad(
        &|c| c.public_url = Some("https://meet.example.org/app".into()),
        "without a path",
    );
    bad(
        &|c| c.allowed_email_domains = vec!["a@example.org".into()],
        "domains",
    );
    let mut loopback = ok.clone();
    loopback.issuer = "http://127.0.0.1:4000".into();
    loopback.public_url = Some("https://meet.example.org".into());
    loopback.validate().unwrap();
    assert_eq!(
        loopback.redirect_url().unwrap(),
        "https://meet.example.org/api/v1/oidc/callback"
    );
}

proptest::proptest! {
    /// Whatever the provider's token endpoint hands over, the verifier answers without panicking,
    /// and nothing but our key's signature passes.
    #[test]
    fn any_id_token_text_is_refused_cleanly(token in ".{0,600}", dots in proptest::collection::vec("[A-Za-z0-9_-]{0,80}", 3)) {
        proptest::prop_assert!(check(&token).is_err());
        proptest::prop_assert!(check(&dots.join(".")).is_err());
    }

    /// Whatever comes back to the callback (query and cookie), the checks answer without panicking
    /// and never pass without our cookie.
    #[test]
    fn any_callback_is_checked_cleanly(
        code in proptest::option::of(".{0,64}"),
        state in proptest::option::of(".{0,64}"),
        error in proptest::option::of(".{0,64}"),
        description in proptest::option::of(".{0,400}"),
        cookie in proptest::option::of(".{0,300}"),
    ) {
        let keys = flow::FlowKeys::derive(b"cluster secret");
        let query = CallbackQuery { code, state, error, error_description: description };
        proptest::prop_assert!(keys.check_callback(&query, cookie.as_deref(), NOW).is_err());
    }
}
