//! Tokens minted for operators and tests.

use super::*;

pub(super) fn mint_request() -> MintRequest {
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
