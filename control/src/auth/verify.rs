//! Token verification: keys parsed once, the claims checked one by one.

use super::*;

/// One configured key, with the only algorithm a token under it may use.
struct VerifyKey {
    algorithm: Algorithm,
    key: DecodingKey,
    /// Signature and algorithm only: the claims are checked by hand below, so that each failure
    /// gets its own error and the room check sits with the others.
    validation: Validation,
}

impl VerifyKey {
    fn new(algorithm: Algorithm, key: DecodingKey) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.required_spec_claims = HashSet::new();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        Self {
            algorithm,
            key,
            validation,
        }
    }
}

/// Checks join tokens. Build it once (it parses every key) and share it.
pub struct TokenVerifier {
    default_key: Option<VerifyKey>,
    keys_by_kid: HashMap<String, VerifyKey>,
    accepted_issuers: Vec<String>,
    accepted_audiences: Vec<String>,
    leeway_s: u64,
    guest_policy: GuestPolicy,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<(&str, Algorithm)> = self
            .keys_by_kid
            .iter()
            .map(|(kid, key)| (kid.as_str(), key.algorithm))
            .collect();
        kids.sort_unstable_by_key(|(kid, _)| *kid);
        f.debug_struct("TokenVerifier")
            .field("default_hs256_secret", &self.default_key.is_some())
            .field("keys_by_kid", &kids)
            .field("accepted_issuers", &self.accepted_issuers)
            .field("accepted_audiences", &self.accepted_audiences)
            .field("leeway_s", &self.leeway_s)
            .field("guest_policy", &self.guest_policy)
            .finish()
    }
}

fn hs256_key(secret: &Secret, kid: Option<&str>) -> Result<VerifyKey, AuthConfigError> {
    let bytes = secret.expose().len();
    if bytes < HS256_SECRET_MIN_BYTES {
        return Err(AuthConfigError::SecretTooShort {
            kid: kid.map(str::to_owned),
            bytes,
        });
    }
    Ok(VerifyKey::new(
        Algorithm::HS256,
        DecodingKey::from_secret(secret.expose().as_bytes()),
    ))
}

fn public_key(kid: &str, config: &PublicKeyConfig) -> Result<VerifyKey, AuthConfigError> {
    let bad = |reason: String| AuthConfigError::BadPublicKey {
        kid: kid.to_owned(),
        algorithm: config.algorithm,
        reason,
    };
    match config.algorithm {
        PublicKeyAlgorithm::Rs256 => {
            let key = rsa::RsaPublicKey::from_public_key_pem(&config.pem)
                .or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(&config.pem))
                .map_err(|err| bad(err.to_string()))?;
            let bits = key.n().bits();
            if bits < RSA_BITS_MIN {
                return Err(AuthConfigError::RsaKeyTooSmall {
                    kid: kid.to_owned(),
                    bits,
                });
            }
            let der = key.to_pkcs1_der().map_err(|err| bad(err.to_string()))?;
            Ok(VerifyKey::new(
                Algorithm::RS256,
                DecodingKey::from_rsa_der(der.as_bytes()),
            ))
        }
        PublicKeyAlgorithm::EdDsa => {
            let key = ed25519_dalek::VerifyingKey::from_public_key_pem(&config.pem)
                .map_err(|err| bad(err.to_string()))?;
            // jsonwebtoken's rust_crypto EdDSA verifier takes the raw 32-byte public key.
            Ok(VerifyKey::new(
                Algorithm::EdDSA,
                DecodingKey::from_ed_der(key.as_bytes()),
            ))
        }
    }
}

/// The part of the JOSE header we read before choosing a key. Parsed by hand rather than with
/// `jsonwebtoken::decode_header` because that one fails on `"alg": "none"` with a generic JSON
/// error, and `none` deserves its own answer.
#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    /// RFC 7515 §4.1.11: extensions the recipient must understand. We understand none.
    #[serde(default)]
    crit: Option<Value>,
}

fn echo(value: &str) -> String {
    value.chars().take(ECHO_MAX_CHARS).collect()
}

fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::HS256 => "HS256",
        Algorithm::RS256 => "RS256",
        Algorithm::EdDSA => "EdDSA",
        // Only the three above are ever configured.
        _ => "another algorithm",
    }
}

/// A NumericDate claim (RFC 7519 §2): seconds, possibly fractional. Fractions are rounded toward
/// refusal: `exp` down, `nbf` up.
fn numeric_date(
    claims: &Map<String, Value>,
    claim: &'static str,
    round_up: bool,
) -> Result<Option<u64>, AuthError> {
    let invalid = AuthError::InvalidClaim { claim };
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => {
            if let Some(seconds) = number.as_u64() {
                return Ok(Some(seconds));
            }
            let seconds = number.as_f64().ok_or(invalid.clone())?;
            if !seconds.is_finite() || seconds < 0.0 {
                return Err(invalid);
            }
            let rounded = if round_up { seconds.ceil() } else { seconds.floor() };
            // `as` saturates at u64::MAX, which is the right reading of an absurdly far date.
            Ok(Some(rounded as u64))
        }
        Some(_) => Err(invalid),
    }
}

fn required_str<'a>(claims: &'a Map<String, Value>, claim: &'static str) -> Result<&'a str, AuthError> {
    match claims.get(claim) {
        None | Some(Value::Null) => Err(AuthError::MissingClaim { claim }),
        Some(Value::String(value)) => Ok(value),
        Some(_) => Err(AuthError::InvalidClaim { claim }),
    }
}

fn optional_str(
    object: &Map<String, Value>,
    field: &str,
    claim: &'static str,
) -> Result<Option<String>, AuthError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(AuthError::InvalidClaim { claim }),
    }
}

fn optional_object<'a>(
    object: &'a Map<String, Value>,
    field: &str,
    claim: &'static str,
) -> Result<Option<&'a Map<String, Value>>, AuthError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(inner)) => Ok(Some(inner)),
        Some(_) => Err(AuthError::InvalidClaim { claim }),
    }
}

/// A moderator flag as generators write it: JSON `true`/`false`, or the strings `"true"`/`"false"`
/// (JaaS's documentation and many Jitsi generators emit the string). Anything else is refused
/// rather than read as "not a moderator", so a generator bug shows up as an error naming the claim.
fn flag(value: Option<&Value>, claim: &'static str) -> Result<bool, AuthError> {
    match value {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(flag)) => Ok(*flag),
        Some(Value::String(text)) if text.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(text)) if text.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(AuthError::InvalidClaim { claim }),
    }
}

impl TokenVerifier {
    pub fn new(config: &AuthConfig) -> Result<Self, AuthConfigError> {
        if config.leeway_s > LEEWAY_S_MAX {
            return Err(AuthConfigError::LeewayTooLarge {
                leeway_s: config.leeway_s,
            });
        }
        for (field, entries) in [
            ("accepted_issuers", &config.accepted_issuers),
            ("accepted_audiences", &config.accepted_audiences),
        ] {
            if entries.iter().any(String::is_empty) {
                return Err(AuthConfigError::EmptyEntry { field });
            }
        }
        let policy = config.guest_policy();
        if config.tokens_enabled() {
            if config.accepted_issuers.is_empty() {
                return Err(AuthConfigError::NoIssuers);
            }
            if config.accepted_audiences.is_empty() {
                return Err(AuthConfigError::NoAudiences);
            }
        } else {
            if !config.accepted_issuers.is_empty() || !config.accepted_audiences.is_empty() {
                return Err(AuthConfigError::SettingsWithoutKeys);
            }
            // Without keys, `after_moderator` and `none` are about host accounts: a logged-in
            // host (docs/hosts.md) is the moderator guests wait for, or the only one let in.
        }
        let default_key = config
            .hs256_secret
            .as_ref()
            .map(|secret| hs256_key(secret, None))
            .transpose()?;
        let mut keys_by_kid = HashMap::new();
        for (kid, secret) in &config.hs256_secrets {
            if kid.is_empty() {
                return Err(AuthConfigError::EmptyKid);
            }
            keys_by_kid.insert(kid.clone(), hs256_key(secret, Some(kid))?);
        }
        for (kid, key) in &config.public_keys {
            if kid.is_empty() {
                return Err(AuthConfigError::EmptyKid);
            }
            if keys_by_kid.contains_key(kid) {
                return Err(AuthConfigError::DuplicateKid { kid: kid.clone() });
            }
            keys_by_kid.insert(kid.clone(), public_key(kid, key)?);
        }
        Ok(Self {
            default_key,
            keys_by_kid,
            accepted_issuers: config.accepted_issuers.clone(),
            accepted_audiences: config.accepted_audiences.clone(),
            leeway_s: config.leeway_s,
            guest_policy: policy,
        })
    }

    pub fn tokens_enabled(&self) -> bool {
        self.default_key.is_some() || !self.keys_by_kid.is_empty()
    }

    pub fn guest_policy(&self) -> GuestPolicy {
        self.guest_policy
    }

    /// The whole join decision. `token` is what [`bearer`] returned; `room_opened_by_moderator` is
    /// as in [`guest_admission`].
    ///
    /// A token that is present is always verified, whatever the guest policy: a forged or expired
    /// token is refused, never quietly downgraded to a guest (Jitsi does the same). With no key
    /// configured (`bridgemesh up`), tokens are not looked at and everyone is a guest, admitted by
    /// the guest policy (host logins are checked before this, in `node/hosts.rs`).
    pub fn admit(
        &self,
        token: Option<&str>,
        room: &RoomId,
        room_opened_by_moderator: bool,
        now_unix_s: u64,
    ) -> Result<Admission, AuthError> {
        if !self.tokens_enabled() {
            // Tokens are not read; the policy still applies to everyone without a host login.
            return guest_admission(self.guest_policy, room_opened_by_moderator).map(|()| Admission::Guest);
        }
        match token {
            Some(token) => self.verify(token, room, now_unix_s).map(Admission::Token),
            None => guest_admission(self.guest_policy, room_opened_by_moderator).map(|()| Admission::Guest),
        }
    }

    /// Verifies `token` for `room` at `now_unix_s`.
    ///
    /// Order: shape → header (`alg: none`, key by `kid`, the key's algorithm) → signature → claims
    /// (`iss`, `aud`, `exp`, `nbf`, `room`, then the user context). Nothing in the claims is looked
    /// at before the signature verifies, so an unsigned token learns nothing about our settings.
    pub fn verify(&self, token: &str, room: &RoomId, now_unix_s: u64) -> Result<Identity, AuthError> {
        if token.len() > TOKEN_MAX_BYTES {
            return Err(AuthError::Malformed {
                reason: "longer than any token we issue or accept",
            });
        }
        let mut parts = token.split('.');
        let (Some(header), Some(_claims), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed {
                reason: "a JWT has exactly three dot-separated parts",
            });
        };
        let header = URL_SAFE_NO_PAD.decode(header).map_err(|_| AuthError::Malformed {
            reason: "the header is not base64url",
        })?;
        let header: JoseHeader = serde_json::from_slice(&header).map_err(|_| AuthError::Malformed {
            reason: "the header is not a JSON object with a string `alg`",
        })?;
        if header.alg.is_empty() || header.alg.eq_ignore_ascii_case("none") {
            return Err(AuthError::AlgorithmNotAllowed {
                alg: echo(&header.alg),
                expected: None,
            });
        }
        if header.crit.is_some() {
            return Err(AuthError::Malformed {
                reason: "the header lists critical extensions (crit), none of which we implement",
            });
        }
        let key = match &header.kid {
            Some(kid) => self.keys_by_kid.get(kid),
            None => self.default_key.as_ref(),
        }
        .ok_or_else(|| AuthError::UnknownKey {
            kid: header.kid.as_deref().map(echo),
        })?;
        if header.alg != algorithm_name(key.algorithm) {
            return Err(AuthError::AlgorithmNotAllowed {
                alg: echo(&header.alg),
                expected: Some(algorithm_name(key.algorithm)),
            });
        }
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &key.validation)
            .map_err(|err| match err.kind() {
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidAlgorithmName
                | ErrorKind::MissingAlgorithm => AuthError::AlgorithmNotAllowed {
                    alg: echo(&header.alg),
                    expected: Some(algorithm_name(key.algorithm)),
                },
                ErrorKind::Base64(_) => AuthError::Malformed {
                    reason: "a part is not base64url",
                },
                ErrorKind::Json(_) | ErrorKind::Utf8(_) => AuthError::Malformed {
                    reason: "the header or the claims are not JSON of the expected shape",
                },
                ErrorKind::InvalidToken => AuthError::Malformed { reason: "not a JWT" },
                // Key errors cannot happen with keys parsed at start; anything else the library
                // adds later is, from the client's side, a token that does not verify.
                _ => AuthError::BadSignature,
            })?
            .claims;
        self.check_claims(&claims, room, now_unix_s)
    }

    fn check_claims(
        &self,
        claims: &Map<String, Value>,
        room: &RoomId,
        now_unix_s: u64,
    ) -> Result<Identity, AuthError> {
        let issuer = required_str(claims, "iss")?;
        if !self.accepted_issuers.iter().any(|accepted| accepted == issuer) {
            return Err(AuthError::WrongIssuer);
        }

        // RFC 7519 §4.1.3: `aud` is a string or an array of strings; any accepted one will do.
        // (Jitsi compares a string only; accepting the array form too costs nothing.)
        let audiences: Vec<&str> = match claims.get("aud") {
            None | Some(Value::Null) => return Err(AuthError::MissingClaim { claim: "aud" }),
            Some(Value::String(aud)) => vec![aud.as_str()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().ok_or(AuthError::InvalidClaim { claim: "aud" }))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(AuthError::InvalidClaim { claim: "aud" }),
        };
        let any_audience = self.accepted_audiences.iter().any(|accepted| accepted == "*");
        if !any_audience
            && !audiences
                .iter()
                .any(|aud| self.accepted_audiences.iter().any(|accepted| accepted == aud))
        {
            return Err(AuthError::WrongAudience);
        }

        // RFC 7519 §4.1.4: valid only while now < exp. Jitsi requires `exp`; so do we.
        let exp = numeric_date(claims, "exp", false)?.ok_or(AuthError::MissingClaim { claim: "exp" })?;
        if now_unix_s >= exp.saturating_add(self.leeway_s) {
            return Err(AuthError::Expired {
                exp_unix_s: exp,
                now_unix_s,
                leeway_s: self.leeway_s,
            });
        }
        // RFC 7519 §4.1.5: valid only once now >= nbf. Optional, as in Jitsi.
        if let Some(nbf) = numeric_date(claims, "nbf", true)?
            && now_unix_s.saturating_add(self.leeway_s) < nbf
        {
            return Err(AuthError::NotYetValid {
                nbf_unix_s: nbf,
                now_unix_s,
                leeway_s: self.leeway_s,
            });
        }

        // Jitsi lower-cases the claim and compares it with the room name (ASCII, as Lua's
        // string.lower does); our room ids are already lower-case ASCII.
        let room_claim = required_str(claims, "room")?;
        if room_claim != "*" && !room_claim.eq_ignore_ascii_case(room.as_str()) {
            return Err(AuthError::WrongRoom);
        }

        let subject = match claims.get("sub") {
            None | Some(Value::Null) => None,
            Some(Value::String(sub)) => Some(sub.clone()),
            Some(_) => return Err(AuthError::InvalidClaim { claim: "sub" }),
        };
        let context = optional_object(claims, "context", "context")?;
        let user = match context {
            Some(context) => optional_object(context, "user", "context.user")?,
            None => None,
        };
        let empty = Map::new();
        let user = user.unwrap_or(&empty);
        let user_id = match user.get("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => Some(id.clone()),
            // Generators often put a database id here as a number.
            Some(Value::Number(id)) => Some(id.to_string()),
            Some(_) => {
                return Err(AuthError::InvalidClaim {
                    claim: "context.user.id",
                });
            }
        };
        // Moderator: `context.user.moderator` (Jitsi/JaaS), a top-level `moderator` (common in
        // self-hosted generators), or `context.user.affiliation` of owner/moderator/teacher (what
        // jitsi-contrib's token_affiliation reads and the jitok generator writes). Any one grants it.
        let affiliation = optional_str(user, "affiliation", "context.user.affiliation")?;
        let moderator = flag(user.get("moderator"), "context.user.moderator")?
            | flag(claims.get("moderator"), "moderator")?
            | matches!(affiliation.as_deref(), Some("owner" | "moderator" | "teacher"));
        Ok(Identity {
            issuer: issuer.to_owned(),
            subject,
            user_id,
            name: optional_str(user, "name", "context.user.name")?,
            email: optional_str(user, "email", "context.user.email")?,
            avatar: optional_str(user, "avatar", "context.user.avatar")?,
            moderator,
            expires_at_unix_s: exp,
        })
    }
}
