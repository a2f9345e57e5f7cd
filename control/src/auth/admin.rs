//! The admin API's bearer secret.

use super::*;

/// The admin API's credential: one bearer secret, separate from every join token and key, so a
/// leaked app secret cannot drain bridges and an admin secret grants nothing in rooms.
pub struct AdminAuth {
    secret: Secret,
}

impl fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminAuth").field("secret", &self.secret).finish()
    }
}

impl AdminAuth {
    pub fn new(secret: Secret) -> Result<Self, AuthConfigError> {
        let bytes = secret.expose().len();
        if bytes < ADMIN_SECRET_MIN_BYTES {
            return Err(AuthConfigError::AdminSecretTooShort { bytes });
        }
        Ok(Self { secret })
    }

    /// 32 random bytes as 64 hex digits: for the binary when the operator configured none (it
    /// then stores or shows the secret once; this module never logs it).
    pub fn generate<R: rand::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        Self {
            secret: Secret::new(hex),
        }
    }

    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// Checks an `Authorization` header value. The comparison takes the same time wherever the
    /// first wrong byte is (it still reveals a length mismatch, which says nothing about a
    /// fixed-length random secret).
    pub fn check_admin(&self, authorization: Option<&str>) -> Result<(), AuthError> {
        let presented = bearer(authorization)
            .ok()
            .flatten()
            .ok_or(AuthError::AdminUnauthorized)?;
        if bool::from(presented.as_bytes().ct_eq(self.secret.expose().as_bytes())) {
            Ok(())
        } else {
            Err(AuthError::AdminUnauthorized)
        }
    }
}
