//! Admission: the guest policy, tokens given or not, the bearer header.

use super::*;

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
    // Host accounts without tokens: the policy still decides about everyone without a login.
    for (policy, opened, expected) in [
        (
            GuestPolicy::AfterModerator,
            false,
            Err(ErrorCode::GuestNotAllowed),
        ),
        (GuestPolicy::AfterModerator, true, Ok(())),
        (GuestPolicy::None, true, Err(ErrorCode::TokenRequired)),
    ] {
        let verifier = TokenVerifier::new(&AuthConfig {
            guest_policy: Some(policy),
            ..AuthConfig::default()
        })
        .unwrap();
        assert_eq!(
            verifier
                .admit(None, &room("standup"), opened, NOW)
                .map(drop)
                .map_err(|err| err.code()),
            expected,
            "{policy:?}"
        );
    }
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
