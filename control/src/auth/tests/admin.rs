//! The admin API's credential.

use super::*;

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
