//! Token verification: signatures, algorithms, keys, time claims, audiences, issuers, claim types.

use super::*;

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
