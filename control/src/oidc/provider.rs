//! The provider over HTTP: its metadata (discovery), its keys (JWKS) and the code exchange.
//! Thin: every answer is bounded in time and size, then handed to the sans-IO checks.
//!
//! Metadata and keys are cached for [`CACHE_TTL`]. A token under a `kid` the cached keys lack
//! makes one refetch of the keys (a rotation at the provider), at most once per
//! [`KEYS_REFETCH_MIN_INTERVAL`], so a provider that signs with a key it does not publish
//! cannot turn every login into a request for its keys.

use super::config::secure_or_loopback;
use super::id_token::{ProviderKey, parse_jwks};
use serde::Deserialize;
use std::time::{Duration, Instant};

/// How long metadata and keys are used before they are fetched again.
pub const CACHE_TTL: Duration = Duration::from_secs(3600);
/// Least time between two fetches of the keys for an unknown `kid`.
pub const KEYS_REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(60);
/// Whole-request bound for every call to the provider.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read from the provider (metadata, keys, token response).
pub const RESPONSE_MAX_BYTES: usize = 256 * 1024;

/// The parts of the provider's metadata a login needs (OpenID Connect Discovery §3).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
}

/// What the provider answered the code exchange with.
#[derive(Debug, Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

pub struct ProviderClient {
    issuer: String,
    http: reqwest::Client,
    metadata: Option<(Metadata, Instant)>,
    keys: Vec<ProviderKey>,
    keys_fetched: Option<Instant>,
    /// The last refetch for an unknown `kid`.
    keys_refetched: Option<Instant>,
}

async fn read_bounded(mut response: reqwest::Response, what: &str) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| format!("reading the provider's {what}: {err}"))?
    {
        if body.len() + chunk.len() > RESPONSE_MAX_BYTES {
            return Err(format!(
                "the provider's {what} is larger than {RESPONSE_MAX_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn endpoint(what: &str, value: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(value)
        .map_err(|err| format!("the provider's {what} {value:?} is not a URL: {err}"))?;
    if secure_or_loopback(&url) {
        Ok(())
    } else {
        Err(format!("the provider's {what} {value:?} is not https://"))
    }
}

impl ProviderClient {
    pub fn new(issuer: &str) -> Result<Self, String> {
        let loopback = reqwest::Url::parse(issuer)
            .ok()
            .is_some_and(|url| url.scheme() == "http");
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            // The provider's answers are read from where it said they are; a redirect is an error.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("bridgemesh/", env!("CARGO_PKG_VERSION")));
        if loopback {
            // A provider on this machine: no HTTP proxy of the environment in between.
            builder = builder.no_proxy();
        }
        Ok(Self {
            issuer: issuer.to_owned(),
            http: builder
                .build()
                .map_err(|err| format!("cannot build the HTTP client: {err}"))?,
            metadata: None,
            keys: Vec::new(),
            keys_fetched: None,
            keys_refetched: None,
        })
    }

    async fn get_json(&self, url: &str, what: &str) -> Result<serde_json::Value, String> {
        let response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|err| format!("cannot fetch the provider's {what} from {url}: {err}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the provider's {what} at {url} answered HTTP {status}"));
        }
        let body = read_bounded(response, what).await?;
        serde_json::from_slice(&body).map_err(|err| format!("the provider's {what} is not JSON: {err}"))
    }

    /// The metadata, fetched when missing or older than [`CACHE_TTL`]; a failed refetch keeps
    /// using the old copy (the provider's endpoints rarely move).
    pub async fn metadata(&mut self) -> Result<Metadata, String> {
        if let Some((metadata, at)) = &self.metadata
            && at.elapsed() < CACHE_TTL
        {
            return Ok(metadata.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let fetched = async {
            let document = self.get_json(&url, "metadata").await?;
            let metadata: Metadata = serde_json::from_value(document)
                .map_err(|err| format!("the provider's metadata at {url} lacks what a login needs: {err}"))?;
            // Discovery §4.3: the metadata's issuer is exactly the one configured.
            if metadata.issuer != self.issuer {
                return Err(format!(
                    "the provider at {url} says its issuer is {:?}, not the configured {:?}",
                    metadata.issuer, self.issuer
                ));
            }
            endpoint("authorization_endpoint", &metadata.authorization_endpoint)?;
            endpoint("token_endpoint", &metadata.token_endpoint)?;
            endpoint("jwks_uri", &metadata.jwks_uri)?;
            Ok(metadata)
        }
        .await;
        match (fetched, &self.metadata) {
            (Ok(metadata), _) => {
                self.metadata = Some((metadata.clone(), Instant::now()));
                Ok(metadata)
            }
            (Err(err), Some((stale, _))) => {
                tracing::warn!(%err, "OIDC: keeping the provider's older metadata");
                Ok(stale.clone())
            }
            (Err(err), None) => Err(err),
        }
    }

    async fn fetch_keys(&mut self) -> Result<(), String> {
        let metadata = self.metadata().await?;
        self.keys_fetched = Some(Instant::now());
        let document = self.get_json(&metadata.jwks_uri, "keys (JWKS)").await?;
        let keys = parse_jwks(&document);
        if keys.is_empty() {
            return Err(format!(
                "the provider's JWKS at {} has no signing key",
                metadata.jwks_uri
            ));
        }
        self.keys = keys;
        Ok(())
    }

    /// The provider's keys, fetched when missing or older than [`CACHE_TTL`].
    pub async fn keys(&mut self) -> Result<&[ProviderKey], String> {
        let stale = self.keys_fetched.is_none_or(|at| at.elapsed() >= CACHE_TTL);
        if stale && let Err(err) = self.fetch_keys().await {
            if self.keys.is_empty() {
                return Err(err);
            }
            tracing::warn!(%err, "OIDC: keeping the provider's older keys");
        }
        Ok(&self.keys)
    }

    /// Fetches the keys again for a token under an unknown `kid`, unless that was done less
    /// than [`KEYS_REFETCH_MIN_INTERVAL`] ago. Whether anything was fetched.
    pub async fn refetch_keys_for_unknown_kid(&mut self) -> Result<bool, String> {
        if !may_refetch(self.keys_refetched, Instant::now()) {
            return Ok(false);
        }
        self.keys_refetched = Some(Instant::now());
        self.fetch_keys().await.map(|()| true)
    }

    /// The HTTP client (cheap to clone), for the code exchange outside the cache's lock.
    pub fn http(&self) -> reqwest::Client {
        self.http.clone()
    }
}

/// Whether the keys may be fetched again for an unknown `kid`, the last such refetch being at
/// `last`.
fn may_refetch(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|last| now.saturating_duration_since(last) >= KEYS_REFETCH_MIN_INTERVAL)
}

/// Trades the authorization code for the ID token (client_secret_basic, with the PKCE
/// verifier).
pub async fn exchange_code(
    http: &reqwest::Client,
    token_endpoint: &str,
    client_id: &str,
    client_secret: &str,
    redirect_url: &str,
    code: &str,
    pkce_verifier: &str,
) -> Result<String, String> {
    // RFC 6749 §2.3.1: the credentials are form-encoded before they go into Basic.
    let encode = |value: &str| url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>();
    let response = http
        .post(token_endpoint)
        .basic_auth(encode(client_id), Some(encode(client_secret)))
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_url),
            ("code_verifier", pkce_verifier),
        ])
        .send()
        .await
        .map_err(|err| format!("cannot reach the provider's token endpoint: {err}"))?;
    let status = response.status();
    let body = read_bounded(response, "token response").await?;
    let answer: TokenResponse = serde_json::from_slice(&body)
        .map_err(|_| format!("the provider's token endpoint answered HTTP {status} without JSON"))?;
    if let Some(error) = answer.error {
        let text: String = format!(
            "the provider refused the code: {error} {}",
            answer.error_description.unwrap_or_default()
        )
        .chars()
        .take(400)
        .collect();
        return Err(text.trim_end().to_owned());
    }
    if !status.is_success() {
        return Err(format!("the provider's token endpoint answered HTTP {status}"));
    }
    answer.id_token.ok_or_else(|| {
        "the provider's token response has no id_token (is `openid` a scope of the client?)".into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_kids_refetch_the_keys_at_most_once_a_minute() {
        let start = Instant::now();
        assert!(may_refetch(None, start));
        assert!(!may_refetch(Some(start), start));
        assert!(!may_refetch(
            Some(start),
            start + KEYS_REFETCH_MIN_INTERVAL - Duration::from_millis(1)
        ));
        assert!(may_refetch(Some(start), start + KEYS_REFETCH_MIN_INTERVAL));
    }
}
