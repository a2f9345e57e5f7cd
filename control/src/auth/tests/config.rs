//! Configuration: what is refused, what serde reads, what Debug hides.

use super::*;

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

    // Without keys, a restrictive policy is about host accounts; token settings are a mistake.
    let mut keyless = AuthConfig {
        guest_policy: Some(GuestPolicy::AfterModerator),
        ..AuthConfig::default()
    };
    assert_eq!(keyless.validate(), Ok(()));
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
