use super::*;
use serde_json::json;

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

#[test]
fn accepts_a_jitsi_hs256_token_without_kid_and_reads_the_user() {
    let identity = verify(&hs(SECRET, None, &claims())).unwrap();
    assert_eq!(
        identity,
        Identity {
            issuer: "my_app".into(),
            subject: Some("meet.example.com".into()),
            user_id: Some("abcd:a1b2c3-d4e5f6-0abc1-23de-abcdef01fedcba".into()),
            name: Some("John Doe".into()),
            email: Some("jdoe@example.com".into()),
            avatar: Some("https://gravatar.com/avatar/abc123".into()),
            moderator: false,
            expires_at_unix_s: NOW + 3600,
        }
    );
}

#[test]
fn accepts_hs256_rs256_and_eddsa_tokens_under_their_kids() {
    let tokens = [
        hs(SECOND_SECRET, Some("hs-2"), &claims()),
        sign(Algorithm::RS256, &rs_key(RS_PRIVATE), Some("rs-1"), &claims()),
        sign(Algorithm::EdDSA, &ed_key(), Some("ed-1"), &claims()),
    ];
    for token in tokens {
        assert_eq!(verify(&token).unwrap().name.as_deref(), Some("John Doe"));
    }
}

#[test]
fn accepts_a_token_without_context_sub_or_nbf() {
    let bare = without(without(without(claims(), "context"), "sub"), "nbf");
    let identity = verify(&hs(SECRET, None, &bare)).unwrap();
    assert_eq!(
        (identity.name, identity.subject, identity.moderator),
        (None, None, false)
    );
}

#[test]
fn room_star_admits_any_room_and_a_named_room_only_itself() {
    let any = hs(SECRET, None, &with(claims(), "room", json!("*")));
    for name in ["standup", "other", "x"] {
        assert!(verifier().verify(&any, &room(name), NOW).is_ok(), "{name}");
    }
    let one = hs(SECRET, None, &claims());
    assert_eq!(
        verifier().verify(&one, &room("other"), NOW),
        Err(AuthError::WrongRoom)
    );
    assert_eq!(
        verifier().verify(&one, &room("standup2"), NOW),
        Err(AuthError::WrongRoom)
    );
    // Jitsi compares the claim lower-cased.
    let mixed = hs(SECRET, None, &with(claims(), "room", json!("StandUp")));
    assert!(verify(&mixed).is_ok());
}

#[test]
fn moderator_flag_is_read_from_every_place_generators_put_it() {
    let user_flag = |value: Value| {
        let mut claims = claims();
        claims["context"]["user"]["moderator"] = value;
        claims
    };
    let affiliation = |value: &str| {
        let mut claims = claims();
        claims["context"]["user"]["affiliation"] = json!(value);
        claims
    };
    let cases = [
        (user_flag(json!(true)), true),
        (user_flag(json!("true")), true),
        (user_flag(json!("TRUE")), true),
        (user_flag(json!(false)), false),
        (user_flag(json!("false")), false),
        (user_flag(Value::Null), false),
        (with(claims(), "moderator", json!(true)), true),
        (with(claims(), "moderator", json!("true")), true),
        (with(claims(), "moderator", json!(false)), false),
        (affiliation("owner"), true),
        (affiliation("moderator"), true),
        (affiliation("member"), false),
        (claims(), false),
    ];
    for (claims, moderator) in cases {
        let identity = verify(&hs(SECRET, None, &claims)).unwrap();
        assert_eq!(identity.moderator, moderator, "{claims}");
    }
    for bad in [user_flag(json!("yes")), user_flag(json!(1))] {
        assert_eq!(
            verify(&hs(SECRET, None, &bad)),
            Err(AuthError::InvalidClaim {
                claim: "context.user.moderator"
            })
        );
    }
    assert_eq!(
        verify(&hs(SECRET, None, &with(claims(), "moderator", json!("maybe")))),
        Err(AuthError::InvalidClaim { claim: "moderator" })
    );
}

#[test]
fn wrong_signatures_are_refused() {
    assert_eq!(
        verify(&hs("not-the-secret-but-32-bytes-long!!!!", None, &claims())),
        Err(AuthError::BadSignature)
    );
    // The default secret's token presented under another HS kid.
    assert_eq!(
        verify(&hs(SECRET, Some("hs-2"), &claims())),
        Err(AuthError::BadSignature)
    );
    let other_rsa = sign(
        Algorithm::RS256,
        &rs_key(RS_OTHER_PRIVATE),
        Some("rs-1"),
        &claims(),
    );
    assert_eq!(verify(&other_rsa), Err(AuthError::BadSignature));
    // A valid token whose claims were edited after signing (room "*" for one room).
    let token = hs(SECRET, None, &claims());
    let parts: Vec<&str> = token.split('.').collect();
    let forged_claims = URL_SAFE_NO_PAD.encode(with(claims(), "room", json!("*")).to_string());
    let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
    assert_eq!(verify(&forged), Err(AuthError::BadSignature));
    let truncated = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..40]);
    assert_eq!(verify(&truncated), Err(AuthError::BadSignature));
}

#[test]
fn alg_none_is_refused_whatever_its_case_and_kid() {
    for (alg, kid) in [
        ("none", None),
        ("None", None),
        ("NONE", Some("hs-2")),
        ("none", Some("rs-1")),
        ("", None),
    ] {
        let mut header = json!({"alg": alg, "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = json!(kid);
        }
        for signature in [&b""[..], b"anything"] {
            let error = verify(&raw(&header, &claims(), signature)).unwrap_err();
            assert_eq!(
                error.code(),
                ErrorCode::TokenAlgorithmNotAllowed,
                "{alg:?} {kid:?}"
            );
        }
    }
}

#[test]
fn the_key_decides_the_algorithm_not_the_header() {
    // Classic HS/RS confusion: HMAC keyed with the published RSA public key, under its kid.
    let confused = hs(RS_PUBLIC, Some("rs-1"), &claims());
    assert_eq!(
        verify(&confused),
        Err(AuthError::AlgorithmNotAllowed {
            alg: "HS256".into(),
            expected: Some("RS256")
        })
    );
    // The same without a kid lands on the default secret, where it cannot verify.
    assert_eq!(
        verify(&hs(RS_PUBLIC, None, &claims())),
        Err(AuthError::BadSignature)
    );
    // An RS256 token without kid (default key is HS256), an EdDSA token under an RSA kid, an
    // RS256 token under an HS kid, and HS384 under the HS256 secret.
    let rs_no_kid = sign(Algorithm::RS256, &rs_key(RS_PRIVATE), None, &claims());
    let ed_as_rs = sign(Algorithm::EdDSA, &ed_key(), Some("rs-1"), &claims());
    let rs_as_hs = sign(Algorithm::RS256, &rs_key(RS_PRIVATE), Some("hs-2"), &claims());
    let hs384 = sign(
        Algorithm::HS384,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        None,
        &claims(),
    );
    for token in [rs_no_kid, ed_as_rs, rs_as_hs, hs384] {
        assert_eq!(
            verify(&token).unwrap_err().code(),
            ErrorCode::TokenAlgorithmNotAllowed
        );
    }
}

#[test]
fn unknown_kid_is_refused_and_no_kid_needs_a_default_secret() {
    assert_eq!(
        verify(&hs(SECRET, Some("nope"), &claims())),
        Err(AuthError::UnknownKey {
            kid: Some("nope".into())
        })
    );
    let mut no_default = config();
    no_default.hs256_secret = None;
    let verifier = TokenVerifier::new(&no_default).unwrap();
    assert_eq!(
        verifier.verify(&hs(SECRET, None, &claims()), &room("standup"), NOW),
        Err(AuthError::UnknownKey { kid: None })
    );
    // A long attacker-chosen kid is not echoed whole.
    let long_kid = "k".repeat(1000);
    let AuthError::UnknownKey { kid: Some(echoed) } =
        verify(&hs(SECRET, Some(&long_kid), &claims())).unwrap_err()
    else {
        panic!("expected UnknownKey");
    };
    assert_eq!(echoed.len(), ECHO_MAX_CHARS);
}

#[test]
fn exp_is_enforced_with_the_leeway_and_no_more() {
    let leeway = LEEWAY_S_DEFAULT;
    let at = |exp: u64| verify(&hs(SECRET, None, &with(claims(), "exp", json!(exp))));
    assert!(at(NOW + 1).is_ok());
    assert!(at(NOW - leeway + 1).is_ok(), "inside the leeway");
    assert_eq!(
        at(NOW - leeway),
        Err(AuthError::Expired {
            exp_unix_s: NOW - leeway,
            now_unix_s: NOW,
            leeway_s: leeway
        })
    );
    assert_eq!(at(NOW - 3600).unwrap_err().code(), ErrorCode::TokenExpired);
    // Fractional dates are rounded toward refusal.
    let fractional = verify(&hs(
        SECRET,
        None,
        &with(claims(), "exp", json!((NOW - leeway) as f64 + 0.9)),
    ));
    assert_eq!(fractional.unwrap_err().code(), ErrorCode::TokenExpired);
}

#[test]
fn nbf_is_enforced_with_the_leeway_and_no_more() {
    let leeway = LEEWAY_S_DEFAULT;
    let at = |nbf: u64| verify(&hs(SECRET, None, &with(claims(), "nbf", json!(nbf))));
    assert!(at(NOW).is_ok());
    assert!(at(NOW + leeway).is_ok(), "inside the leeway");
    assert_eq!(
        at(NOW + leeway + 1),
        Err(AuthError::NotYetValid {
            nbf_unix_s: NOW + leeway + 1,
            now_unix_s: NOW,
            leeway_s: leeway
        })
    );
    let fractional = verify(&hs(
        SECRET,
        None,
        &with(claims(), "nbf", json!((NOW + leeway) as f64 + 0.1)),
    ));
    assert_eq!(fractional.unwrap_err().code(), ErrorCode::TokenNotYetValid);
}

#[test]
fn zero_leeway_is_exact() {
    let mut strict = config();
    strict.leeway_s = 0;
    let verifier = TokenVerifier::new(&strict).unwrap();
    let check = |claims: Value| verifier.verify(&hs(SECRET, None, &claims), &room("standup"), NOW);
    assert_eq!(
        check(with(claims(), "exp", json!(NOW))).unwrap_err().code(),
        ErrorCode::TokenExpired
    );
    assert!(check(with(claims(), "exp", json!(NOW + 1))).is_ok());
    assert_eq!(
        check(with(claims(), "nbf", json!(NOW + 1))).unwrap_err().code(),
        ErrorCode::TokenNotYetValid
    );
    assert!(check(with(claims(), "nbf", json!(NOW))).is_ok());
}

#[test]
fn audience_must_be_accepted() {
    assert_eq!(
        verify(&hs(SECRET, None, &with(claims(), "aud", json!("someone-else")))),
        Err(AuthError::WrongAudience)
    );
    assert_eq!(
        verify(&hs(SECRET, None, &with(claims(), "aud", json!([])))),
        Err(AuthError::WrongAudience)
    );
    assert!(verify(&hs(SECRET, None, &with(claims(), "aud", json!(["x", "jitsi"])))).is_ok());
    assert_eq!(
        verify(&hs(SECRET, None, &with(claims(), "aud", json!(["x", 3])))),
        Err(AuthError::InvalidClaim { claim: "aud" })
    );
    let mut any = config();
    any.accepted_audiences = vec!["*".into()];
    let verifier = TokenVerifier::new(&any).unwrap();
    let token = hs(SECRET, None, &with(claims(), "aud", json!("someone-else")));
    assert!(verifier.verify(&token, &room("standup"), NOW).is_ok());
}

#[test]
fn issuer_must_be_accepted_exactly() {
    assert!(verify(&hs(SECRET, None, &with(claims(), "iss", json!("other_app")))).is_ok());
    for iss in ["not_my_app", "MY_APP", "*", ""] {
        assert_eq!(
            verify(&hs(SECRET, None, &with(claims(), "iss", json!(iss)))),
            Err(AuthError::WrongIssuer),
            "{iss}"
        );
    }
}

#[test]
fn missing_required_claims_are_named() {
    for claim in ["iss", "aud", "exp", "room"] {
        assert_eq!(
            verify(&hs(SECRET, None, &without(claims(), claim))),
            Err(AuthError::MissingClaim { claim }),
        );
        assert_eq!(
            verify(&hs(SECRET, None, &with(claims(), claim, Value::Null))),
            Err(AuthError::MissingClaim { claim }),
        );
    }
}

#[test]
fn claims_of_the_wrong_type_are_named() {
    let user = |field: &str, value: Value| {
        let mut claims = claims();
        claims["context"]["user"][field] = value;
        claims
    };
    let cases = [
        (with(claims(), "exp", json!("17")), "exp"),
        (with(claims(), "exp", json!(-5)), "exp"),
        (with(claims(), "nbf", json!(true)), "nbf"),
        (with(claims(), "iss", json!(7)), "iss"),
        (with(claims(), "aud", json!({"a": 1})), "aud"),
        (with(claims(), "room", json!(["standup"])), "room"),
        (with(claims(), "sub", json!(1)), "sub"),
        (with(claims(), "context", json!("user")), "context"),
        (with(claims(), "context", json!({"user": 5})), "context.user"),
        (user("name", json!(5)), "context.user.name"),
        (user("email", json!(["a"])), "context.user.email"),
        (user("id", json!({})), "context.user.id"),
    ];
    for (claims, claim) in cases {
        assert_eq!(
            verify(&hs(SECRET, None, &claims)),
            Err(AuthError::InvalidClaim { claim }),
            "{claims}"
        );
    }
    // A numeric user id is common and accepted.
    let numeric = verify(&hs(SECRET, None, &user("id", json!(42)))).unwrap();
    assert_eq!(numeric.user_id.as_deref(), Some("42"));
}

#[test]
fn malformed_tokens_are_refused_before_any_key_is_chosen() {
    let good = hs(SECRET, None, &claims());
    let header_part = good.split('.').next().unwrap();
    let cases = [
        String::new(),
        "abc".into(),
        "a.b".into(),
        format!("{good}.extra.parts"),
        "!!!.e30.sig".into(),
        format!("{}.e30.sig", URL_SAFE_NO_PAD.encode("not json")),
        format!("{}.e30.sig", URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT"}"#)),
        format!("{}.e30.sig", URL_SAFE_NO_PAD.encode(r#"["HS256"]"#)),
        raw(&json!({"alg": "HS256", "crit": ["exp"]}), &claims(), b"x"),
        format!("{header_part}.{}", "A".repeat(TOKEN_MAX_BYTES)),
    ];
    for token in cases {
        assert_eq!(
            verify(&token).unwrap_err().code(),
            ErrorCode::TokenMalformed,
            "{}",
            &token[..token.len().min(60)]
        );
    }
    // Claims that are validly signed but not a JSON object.
    let array = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        None,
        &json!(["iss"]),
    );
    assert_eq!(verify(&array).unwrap_err().code(), ErrorCode::TokenMalformed);
}

#[test]
fn every_failure_has_its_own_code_and_status() {
    let errors = [
        AuthError::TokenRequired,
        AuthError::Malformed { reason: "x" },
        AuthError::BadSignature,
        AuthError::AlgorithmNotAllowed {
            alg: "none".into(),
            expected: None,
        },
        AuthError::UnknownKey { kid: None },
        AuthError::Expired {
            exp_unix_s: 0,
            now_unix_s: 0,
            leeway_s: 0,
        },
        AuthError::NotYetValid {
            nbf_unix_s: 0,
            now_unix_s: 0,
            leeway_s: 0,
        },
        AuthError::WrongAudience,
        AuthError::WrongIssuer,
        AuthError::WrongRoom,
        AuthError::MissingClaim { claim: "exp" },
        AuthError::InvalidClaim { claim: "exp" },
        AuthError::GuestNotAllowed,
        AuthError::AdminUnauthorized,
    ];
    let codes: HashSet<ErrorCode> = errors.iter().map(AuthError::code).collect();
    assert_eq!(codes.len(), errors.len());
    for error in &errors {
        let expected = if *error == AuthError::GuestNotAllowed {
            403
        } else {
            401
        };
        assert_eq!(error.code().http_status(), expected, "{error:?}");
    }
}

#[test]
fn guest_admission_follows_the_policy() {
    use GuestPolicy::*;
    assert_eq!(guest_admission(Open, false), Ok(()));
    assert_eq!(guest_admission(Open, true), Ok(()));
    assert_eq!(
        guest_admission(AfterModerator, false),
        Err(AuthError::GuestNotAllowed)
    );
    assert_eq!(guest_admission(AfterModerator, true), Ok(()));
    assert_eq!(guest_admission(None, false), Err(AuthError::TokenRequired));
    assert_eq!(guest_admission(None, true), Err(AuthError::TokenRequired));
}

#[test]
fn admit_verifies_any_token_given_and_applies_the_guest_policy_otherwise() {
    let standup = room("standup");
    let moderator_token = hs(SECRET, None, &with(claims(), "moderator", json!(true)));
    for policy in [GuestPolicy::None, GuestPolicy::AfterModerator, GuestPolicy::Open] {
        let mut config = config();
        config.guest_policy = Some(policy);
        let verifier = TokenVerifier::new(&config).unwrap();
        let admitted = verifier
            .admit(Some(&moderator_token), &standup, false, NOW)
            .unwrap();
        assert!(admitted.is_moderator());
        // A bad token is never downgraded to a guest, even where guests are welcome.
        let forged = hs("not-the-secret-but-32-bytes-long!!!!", None, &claims());
        assert_eq!(
            verifier.admit(Some(&forged), &standup, true, NOW),
            Err(AuthError::BadSignature)
        );
        let guest = verifier.admit(None, &standup, false, NOW);
        let guest_after_moderator = verifier.admit(None, &standup, true, NOW);
        match policy {
            GuestPolicy::None => {
                assert_eq!(guest, Err(AuthError::TokenRequired));
                assert_eq!(guest_after_moderator, Err(AuthError::TokenRequired));
            }
            GuestPolicy::AfterModerator => {
                assert_eq!(guest, Err(AuthError::GuestNotAllowed));
                assert_eq!(guest_after_moderator, Ok(Admission::Guest));
            }
            GuestPolicy::Open => {
                assert_eq!(guest, Ok(Admission::Guest));
                assert_eq!(guest_after_moderator, Ok(Admission::Guest));
            }
        }
    }
}

#[test]
fn without_keys_everyone_is_a_guest_and_tokens_are_not_read() {
    let config = AuthConfig::default();
    assert_eq!(config.validate(), Ok(()));
    assert_eq!(config.guest_policy(), GuestPolicy::Open);
    let verifier = TokenVerifier::new(&config).unwrap();
    assert!(!verifier.tokens_enabled());
    for token in [None, Some("garbage"), Some(hs(SECRET, None, &claims()).as_str())] {
        assert_eq!(
            verifier.admit(token, &room("standup"), false, NOW),
            Ok(Admission::Guest)
        );
    }
}

#[test]
fn configuring_a_key_requires_tokens_unless_guests_are_allowed_explicitly() {
    let mut config = config();
    config.guest_policy = Option::None;
    assert_eq!(config.guest_policy(), GuestPolicy::None);
    config.guest_policy = Some(GuestPolicy::Open);
    assert_eq!(config.guest_policy(), GuestPolicy::Open);
}

#[test]
fn config_mistakes_are_refused() {
    let refused = |change: &dyn Fn(&mut AuthConfig)| {
        let mut config = config();
        change(&mut config);
        config.validate().unwrap_err()
    };
    assert_eq!(
        refused(&|c| c.accepted_issuers.clear()),
        AuthConfigError::NoIssuers
    );
    assert_eq!(
        refused(&|c| c.accepted_audiences.clear()),
        AuthConfigError::NoAudiences
    );
    assert_eq!(
        refused(&|c| c.accepted_issuers.push(String::new())),
        AuthConfigError::EmptyEntry {
            field: "accepted_issuers"
        }
    );
    assert_eq!(
        refused(&|c| c.leeway_s = LEEWAY_S_MAX + 1),
        AuthConfigError::LeewayTooLarge {
            leeway_s: LEEWAY_S_MAX + 1
        }
    );
    assert_eq!(
        refused(&|c| c.hs256_secret = Some(Secret::new("short"))),
        AuthConfigError::SecretTooShort { kid: None, bytes: 5 }
    );
    assert_eq!(
        refused(&|c| {
            c.hs256_secrets.insert("rs-1".into(), Secret::new(SECOND_SECRET));
        }),
        AuthConfigError::DuplicateKid { kid: "rs-1".into() }
    );
    assert_eq!(
        refused(&|c| {
            c.hs256_secrets.insert(String::new(), Secret::new(SECOND_SECRET));
        }),
        AuthConfigError::EmptyKid
    );
    fn public_key(algorithm: PublicKeyAlgorithm, pem: &'static str) -> impl Fn(&mut AuthConfig) {
        move |c: &mut AuthConfig| {
            c.public_keys.insert(
                "k".into(),
                PublicKeyConfig {
                    algorithm,
                    pem: pem.into(),
                },
            );
        }
    }
    assert!(matches!(
        refused(&public_key(PublicKeyAlgorithm::Rs256, ED_PUBLIC)),
        AuthConfigError::BadPublicKey { .. }
    ));
    assert!(matches!(
        refused(&public_key(PublicKeyAlgorithm::EdDsa, RS_PUBLIC)),
        AuthConfigError::BadPublicKey { .. }
    ));
    assert!(matches!(
        refused(&public_key(PublicKeyAlgorithm::Rs256, "not a pem")),
        AuthConfigError::BadPublicKey { .. }
    ));
    assert_eq!(
        refused(&public_key(PublicKeyAlgorithm::Rs256, RS_1024_PUBLIC)),
        AuthConfigError::RsaKeyTooSmall {
            kid: "k".into(),
            bits: 1024
        }
    );

    // Without keys: a policy that needs tokens, or token settings, are mistakes.
    let mut keyless = AuthConfig {
        guest_policy: Some(GuestPolicy::AfterModerator),
        ..AuthConfig::default()
    };
    assert_eq!(
        keyless.validate(),
        Err(AuthConfigError::PolicyNeedsKeys {
            policy: GuestPolicy::AfterModerator
        })
    );
    keyless.guest_policy = Option::None;
    keyless.accepted_issuers = vec!["my_app".into()];
    assert_eq!(keyless.validate(), Err(AuthConfigError::SettingsWithoutKeys));
}

#[test]
fn config_reads_from_serde_with_snake_case_names() {
    let config: AuthConfig = serde_json::from_value(json!({
        "accepted_issuers": ["my_app"],
        "accepted_audiences": ["jitsi"],
        "hs256_secret": SECRET,
        "public_keys": {"ed-1": {"algorithm": "eddsa", "pem": ED_PUBLIC}},
        "guest_policy": "after_moderator"
    }))
    .unwrap();
    assert_eq!(config.guest_policy(), GuestPolicy::AfterModerator);
    assert_eq!(config.leeway_s, LEEWAY_S_DEFAULT);
    assert_eq!(config.public_keys["ed-1"].algorithm, PublicKeyAlgorithm::EdDsa);
    assert_eq!(config.validate(), Ok(()));
    assert!(serde_json::from_value::<AuthConfig>(json!({"secret": "x"})).is_err());
    assert!(serde_json::from_value::<AuthConfig>(json!({"guest_policy": "sometimes"})).is_err());
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let mut config = config();
    config
        .hs256_secrets
        .insert("hs-3".into(), Secret::new("third-secret-which-is-32-bytes-long!"));
    let shown = format!("{config:?} {:?}", TokenVerifier::new(&config).unwrap());
    for secret in [SECRET, SECOND_SECRET, "third-secret"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    let admin = AdminAuth::generate(&mut rand::rng());
    assert!(!format!("{admin:?}").contains(admin.secret().expose()));
    let request = MintRequest {
        key: MintKey::Hs256(Secret::new(SECRET)),
        ..mint_request()
    };
    assert!(!format!("{request:?}").contains(SECRET));
}

#[test]
fn bearer_reads_the_authorization_header() {
    assert_eq!(bearer(Option::None), Ok(Option::None));
    assert_eq!(bearer(Some("Bearer abc.def.ghi")), Ok(Some("abc.def.ghi")));
    assert_eq!(bearer(Some("bearer   abc ")), Ok(Some("abc")));
    for bad in ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "abc.def.ghi"] {
        assert_eq!(
            bearer(Some(bad)).unwrap_err().code(),
            ErrorCode::TokenMalformed,
            "{bad:?}"
        );
    }
}

#[test]
fn admin_credential_is_checked() {
    let admin = AdminAuth::new(Secret::new("an-admin-secret-of-32-bytes-or-more")).unwrap();
    assert_eq!(
        admin.check_admin(Some("Bearer an-admin-secret-of-32-bytes-or-more")),
        Ok(())
    );
    for bad in [
        Option::None,
        Some(""),
        Some("Bearer"),
        Some("Bearer an-admin-secret-of-32-bytes-or-morE"),
        Some("Bearer an-admin-secret-of-32-bytes-or-mor"),
        Some("Bearer an-admin-secret-of-32-bytes-or-more-and-more"),
        Some("Basic an-admin-secret-of-32-bytes-or-more"),
    ] {
        assert_eq!(
            admin.check_admin(bad),
            Err(AuthError::AdminUnauthorized),
            "{bad:?}"
        );
    }
    assert_eq!(
        AdminAuth::new(Secret::new("short")).unwrap_err(),
        AuthConfigError::AdminSecretTooShort { bytes: 5 }
    );
    let first = AdminAuth::generate(&mut rand::rng());
    let second = AdminAuth::generate(&mut rand::rng());
    assert_eq!(first.secret().expose().len(), 64);
    assert!(first.secret().expose().chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(first.secret(), second.secret());
    let header = format!("Bearer {}", first.secret().expose());
    assert_eq!(first.check_admin(Some(&header)), Ok(()));
    assert_eq!(
        second.check_admin(Some(&header)),
        Err(AuthError::AdminUnauthorized)
    );
}

fn mint_request() -> MintRequest {
    MintRequest {
        key: MintKey::Hs256(Secret::new(SECRET)),
        kid: Option::None,
        iss: "my_app".into(),
        aud: "jitsi".into(),
        sub: "*".into(),
        room: "standup".into(),
        user: TokenUser {
            id: Some("u-1".into()),
            name: Some("Ada".into()),
            email: Some("ada@example.com".into()),
            avatar: Option::None,
        },
        moderator: true,
        nbf_unix_s: Option::None,
        ttl_s: 3600,
    }
}

#[test]
fn minted_tokens_verify_with_every_key_type() {
    let requests = [
        mint_request(),
        MintRequest {
            key: MintKey::Hs256(Secret::new(SECOND_SECRET)),
            kid: Some("hs-2".into()),
            ..mint_request()
        },
        MintRequest {
            key: MintKey::Rs256 {
                private_key_pem: Secret::new(RS_PRIVATE),
            },
            kid: Some("rs-1".into()),
            ..mint_request()
        },
        MintRequest {
            key: MintKey::EdDsa {
                private_key_pem: Secret::new(ED_PRIVATE),
            },
            kid: Some("ed-1".into()),
            ..mint_request()
        },
    ];
    for request in requests {
        let token = mint(&request, NOW).unwrap();
        let identity = verifier().verify(&token, &room("standup"), NOW).unwrap();
        assert_eq!(
            identity,
            Identity {
                issuer: "my_app".into(),
                subject: Some("*".into()),
                user_id: Some("u-1".into()),
                name: Some("Ada".into()),
                email: Some("ada@example.com".into()),
                avatar: Option::None,
                moderator: true,
                expires_at_unix_s: NOW + 3600,
            },
            "{:?}",
            request.kid
        );
    }
}

#[test]
fn minted_validity_window_follows_nbf_and_ttl() {
    let request = MintRequest {
        nbf_unix_s: Some(NOW + 600),
        ttl_s: 60,
        moderator: false,
        ..mint_request()
    };
    let token = mint(&request, NOW).unwrap();
    let at = |now| verifier().verify(&token, &room("standup"), now);
    assert_eq!(at(NOW).unwrap_err().code(), ErrorCode::TokenNotYetValid);
    assert!(!at(NOW + 600).unwrap().moderator);
    assert_eq!(
        at(NOW + 660 + LEEWAY_S_DEFAULT).unwrap_err().code(),
        ErrorCode::TokenExpired
    );
    let payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(
        (payload["nbf"].as_u64(), payload["exp"].as_u64()),
        (Some(NOW + 600), Some(NOW + 660))
    );
    assert_eq!(payload["context"]["user"]["moderator"], json!(false));
    assert!(payload["context"]["user"].get("avatar").is_none());
}

#[test]
fn minting_refuses_bad_input() {
    assert_eq!(
        mint(
            &MintRequest {
                ttl_s: 0,
                ..mint_request()
            },
            NOW
        ),
        Err(MintError::ZeroTtl)
    );
    assert_eq!(
        mint(
            &MintRequest {
                key: MintKey::Hs256(Secret::new("")),
                ..mint_request()
            },
            NOW
        ),
        Err(MintError::EmptySecret)
    );
    for key in [
        MintKey::Rs256 {
            private_key_pem: Secret::new(ED_PRIVATE),
        },
        MintKey::EdDsa {
            private_key_pem: Secret::new(RS_PRIVATE),
        },
        MintKey::Rs256 {
            private_key_pem: Secret::new(RS_PUBLIC),
        },
    ] {
        let error = mint(
            &MintRequest {
                key,
                ..mint_request()
            },
            NOW,
        )
        .unwrap_err();
        assert!(matches!(error, MintError::BadPrivateKey { .. }), "{error:?}");
    }
}
