//! One login's round trip through the provider, without I/O: the authorization request (PKCE
//! S256, `state`, `nonce`), the sealed cookie that carries them to whichever control node the
//! provider sends the browser back to, and the callback's checks.
//!
//! The cookie is an HS256 token under a key derived from the cluster secret, so every control
//! node opens it and nobody else can make one. It holds the PKCE verifier in the clear for the
//! browser that started the login (HttpOnly keeps it from scripts); the verifier only matters
//! to whoever intercepts the code, who does not have that browser's cookie.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// The cookie's name; its path is `/api/v1/oidc`, so no other request carries it.
pub const FLOW_COOKIE: &str = "bridgemesh_oidc";
pub const FLOW_COOKIE_PATH: &str = "/api/v1/oidc";
/// How long a login may take at the provider (typing a password, a second factor).
pub const FLOW_TTL_S: u64 = 600;
const FLOW_AUDIENCE: &str = "bridgemesh-oidc-flow";
/// Longest cookie value looked at (ours are about 500 bytes).
const FLOW_COOKIE_MAX_BYTES: usize = 2 * 1024;
/// Longest page path a login returns to.
pub const RETURN_TO_MAX_CHARS: usize = 256;

/// What the cookie carries from the start of a login to its callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowState {
    aud: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    /// The page to go back to (a path of this site).
    pub return_to: String,
    pub exp: u64,
}

/// Why a callback is refused before the provider is asked anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallbackRefusal {
    #[error("the provider refused the login: {0}")]
    Provider(String),
    #[error(
        "this login was not started here, took longer than {FLOW_TTL_S} s, or the browser blocks cookies; start it again"
    )]
    NoFlow,
    #[error("the login's state does not match this browser's; start it again")]
    StateMismatch,
    #[error("the provider's answer has no authorization code")]
    NoCode,
}

/// The callback's query string, as the provider sends it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// 32 random bytes, base64url: a `state`, `nonce` or PKCE verifier (RFC 7636 asks 43-128 chars).
pub fn random_token(rng: &mut impl rand::RngCore) -> String {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 7636 S256: base64url(SHA-256(verifier)).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// `requested` if it is a path (and query) of this site worth returning to, else `/`. A login must not be
/// a way to send a browser elsewhere (`//evil.example`, `/\evil.example`, `https://...`).
pub fn safe_return_to(requested: Option<&str>) -> String {
    let Some(path) = requested else {
        return "/".into();
    };
    let ok = path.starts_with('/')
        && !path.starts_with("//")
        && path.chars().count() <= RETURN_TO_MAX_CHARS
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-_.~%?=&+".contains(c));
    if ok { path.to_owned() } else { "/".into() }
}

/// Seals and opens [`FlowState`] cookies.
pub struct FlowKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl FlowKeys {
    pub fn derive(cluster_secret: &[u8]) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(cluster_secret).expect("HMAC takes any key length");
        mac.update(b"bridgemesh oidc flow v1");
        let key = mac.finalize().into_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[FLOW_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "aud"]);
        // `exp` is checked against the caller's clock below.
        validation.validate_exp = false;
        Self {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            validation,
        }
    }

    /// A new login: its state and the cookie value that carries it.
    pub fn start(
        &self,
        rng: &mut impl rand::RngCore,
        return_to: Option<&str>,
        now_unix_s: u64,
    ) -> (FlowState, String) {
        let flow = FlowState {
            aud: FLOW_AUDIENCE.into(),
            state: random_token(rng),
            nonce: random_token(rng),
            pkce_verifier: random_token(rng),
            return_to: safe_return_to(return_to),
            exp: now_unix_s + FLOW_TTL_S,
        };
        let sealed = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &flow, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail");
        (flow, sealed)
    }

    /// The login a cookie carries, if we sealed it and it is not too old.
    pub fn open(&self, cookie: &str, now_unix_s: u64) -> Option<FlowState> {
        if cookie.len() > FLOW_COOKIE_MAX_BYTES {
            return None;
        }
        let flow = jsonwebtoken::decode::<FlowState>(cookie, &self.decoding, &self.validation)
            .ok()?
            .claims;
        (now_unix_s < flow.exp).then_some(flow)
    }

    /// The callback's checks before any request to the provider: our cookie, the `state` it was
    /// sent with, the provider's own refusal, a code. Gives the flow and the code.
    pub fn check_callback(
        &self,
        query: &CallbackQuery,
        cookie: Option<&str>,
        now_unix_s: u64,
    ) -> Result<(FlowState, String), CallbackRefusal> {
        let flow = cookie
            .and_then(|cookie| self.open(cookie, now_unix_s))
            .ok_or(CallbackRefusal::NoFlow)?;
        let state = query.state.as_deref().unwrap_or("");
        if !bool::from(state.as_bytes().ct_eq(flow.state.as_bytes())) {
            return Err(CallbackRefusal::StateMismatch);
        }
        // Only now: a made-up link to the callback cannot put words on our page.
        if let Some(error) = &query.error {
            let description = query.error_description.as_deref().unwrap_or("");
            let text: String = format!("{error} {description}").chars().take(300).collect();
            return Err(CallbackRefusal::Provider(text.trim_end().to_owned()));
        }
        let code = query.code.clone().filter(|c| !c.is_empty() && c.len() <= 2048);
        let code = code.ok_or(CallbackRefusal::NoCode)?;
        Ok((flow, code))
    }
}

/// The authorization request to send the browser to.
pub fn authorization_url(
    authorization_endpoint: &str,
    client_id: &str,
    redirect_url: &str,
    scopes: &[String],
    flow: &FlowState,
) -> Result<reqwest::Url, String> {
    let mut url = reqwest::Url::parse(authorization_endpoint)
        .map_err(|err| format!("the provider's authorization_endpoint is not a URL: {err}"))?;
    let mut scope = String::from("openid");
    for extra in scopes.iter().filter(|s| s.as_str() != "openid") {
        scope.push(' ');
        scope.push_str(extra);
    }
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_url)
        .append_pair("scope", &scope)
        .append_pair("state", &flow.state)
        .append_pair("nonce", &flow.nonce)
        .append_pair("code_challenge", &pkce_challenge(&flow.pkce_verifier))
        .append_pair("code_challenge_method", "S256");
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    const NOW: u64 = 1_800_000_000;

    fn started() -> (FlowKeys, FlowState, String) {
        let keys = FlowKeys::derive(b"cluster secret");
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (flow, cookie) = keys.start(&mut rng, Some("/standup"), NOW);
        (keys, flow, cookie)
    }

    fn answer(state: &str) -> CallbackQuery {
        CallbackQuery {
            code: Some("the-code".into()),
            state: Some(state.into()),
            ..CallbackQuery::default()
        }
    }

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn a_callback_with_our_cookie_and_its_state_passes() {
        let (keys, flow, cookie) = started();
        let (opened, code) = keys
            .check_callback(&answer(&flow.state), Some(&cookie), NOW + 30)
            .unwrap();
        assert_eq!((opened, code.as_str()), (flow, "the-code"));
    }

    #[test]
    fn a_wrong_state_is_refused() {
        let (keys, flow, cookie) = started();
        let mut other = flow.state.clone();
        other.replace_range(0..1, if other.starts_with('A') { "B" } else { "A" });
        for state in [other.as_str(), "", "x"] {
            assert_eq!(
                keys.check_callback(&answer(state), Some(&cookie), NOW),
                Err(CallbackRefusal::StateMismatch)
            );
        }
        let mut missing = answer(&flow.state);
        missing.state = None;
        assert_eq!(
            keys.check_callback(&missing, Some(&cookie), NOW),
            Err(CallbackRefusal::StateMismatch)
        );
    }

    #[test]
    fn no_cookie_an_old_one_or_another_clusters_is_no_flow() {
        let (keys, flow, cookie) = started();
        let query = answer(&flow.state);
        assert_eq!(
            keys.check_callback(&query, None, NOW),
            Err(CallbackRefusal::NoFlow)
        );
        assert_eq!(
            keys.check_callback(&query, Some(&cookie), NOW + FLOW_TTL_S),
            Err(CallbackRefusal::NoFlow)
        );
        let other = FlowKeys::derive(b"another cluster");
        assert_eq!(
            other.check_callback(&query, Some(&cookie), NOW),
            Err(CallbackRefusal::NoFlow)
        );
        // A cookie edited by the browser's owner (say, to another return path) is not ours.
        let mut edited = cookie.clone();
        edited.insert(cookie.len() - 3, 'A');
        assert_eq!(
            keys.check_callback(&query, Some(&edited), NOW),
            Err(CallbackRefusal::NoFlow)
        );
    }

    #[test]
    fn the_providers_refusal_and_a_missing_code_are_said() {
        let (keys, flow, cookie) = started();
        let refused = CallbackQuery {
            state: Some(flow.state.clone()),
            error: Some("access_denied".into()),
            error_description: Some("End-User aborted interaction".into()),
            ..CallbackQuery::default()
        };
        assert_eq!(
            keys.check_callback(&refused, Some(&cookie), NOW),
            Err(CallbackRefusal::Provider(
                "access_denied End-User aborted interaction".into()
            ))
        );
        // Long words from the provider are cut at a character, not a byte.
        let long = CallbackQuery {
            error_description: Some("é".repeat(400)),
            ..refused.clone()
        };
        let Err(CallbackRefusal::Provider(text)) = keys.check_callback(&long, Some(&cookie), NOW) else {
            panic!("refused");
        };
        assert_eq!(text.chars().count(), 300);
        // Without this browser's state, the words are not shown.
        let forged = CallbackQuery {
            state: Some("forged".into()),
            ..refused.clone()
        };
        assert_eq!(
            keys.check_callback(&forged, Some(&cookie), NOW),
            Err(CallbackRefusal::StateMismatch)
        );
        let mut no_code = answer(&flow.state);
        no_code.code = None;
        assert_eq!(
            keys.check_callback(&no_code, Some(&cookie), NOW),
            Err(CallbackRefusal::NoCode)
        );
    }

    #[test]
    fn logins_return_only_to_paths_of_this_site() {
        assert_eq!(safe_return_to(Some("/standup")), "/standup");
        assert_eq!(safe_return_to(Some("/team%20a")), "/team%20a");
        assert_eq!(safe_return_to(Some("/standup?name=Ada")), "/standup?name=Ada");
        for bad in [
            "//evil.example",
            "https://evil.example/",
            "/\\evil.example",
            "standup",
            "/a b",
            "/a#b",
        ] {
            assert_eq!(safe_return_to(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_return_to(None), "/");
    }

    #[test]
    fn the_authorization_request_asks_for_code_with_pkce_state_and_nonce() {
        let (_, flow, _) = started();
        let url = authorization_url(
            "https://sso.example.org/auth?tenant=x",
            "bridgemesh",
            "https://meet.example.org/api/v1/oidc/callback",
            &["email".into(), "groups".into()],
            &flow,
        )
        .unwrap();
        let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(query["tenant"], "x");
        assert_eq!(query["response_type"], "code");
        assert_eq!(query["scope"], "openid email groups");
        assert_eq!(query["state"], flow.state);
        assert_eq!(query["nonce"], flow.nonce);
        assert_eq!(query["code_challenge_method"], "S256");
        assert_eq!(query["code_challenge"], pkce_challenge(&flow.pkce_verifier));
        assert_ne!(flow.state, flow.nonce);
        assert!(flow.pkce_verifier.len() >= 43);
    }
}
