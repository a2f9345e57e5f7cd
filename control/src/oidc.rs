//! Single sign-on for hosts through an OpenID Connect provider (docs/hosts.md#single-sign-on):
//! the authorization code flow with PKCE; the ID token verified against the provider's keys;
//! the operator's groups or e-mail domains deciding who is a host; then the same host session a
//! password login gives.
//!
//! # Layout
//! - [`config`]: [`OidcConfig`], `[auth.oidc]` of the control configuration.
//! - [`flow`]: sans-IO. The authorization request, the sealed cookie that carries `state`,
//!   `nonce` and the PKCE verifier to whichever control node the browser comes back to, and
//!   the callback's checks.
//! - [`id_token`]: sans-IO. The ID token's signature and claims, and [`id_token::decide`]: host or
//!   not, and as whom.
//! - [`provider`]: the thin HTTP driver: metadata, keys (cached, refetched once for an unknown
//!   `kid`), the code exchange.
//! - [`Oidc`]: what a control node holds; `http/oidc.rs` calls it.

pub mod config;
pub mod flow;
pub mod id_token;
pub mod provider;
#[cfg(test)]
mod tests;

pub use config::{CALLBACK_PATH, OidcConfig};
pub use flow::{CallbackQuery, FLOW_COOKIE, FLOW_COOKIE_PATH, FLOW_TTL_S};
pub use id_token::SsoHost;

use crate::auth::Secret;
use flow::FlowKeys;
use id_token::IdTokenError;
use provider::ProviderClient;

/// Code exchanges in flight at once on one node; more wait for none and are told to retry.
pub const EXCHANGES_AT_ONCE: usize = 16;

/// Why a login through the provider did not make a host; the message is for the user's page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SsoError {
    /// The callback itself is wrong: no flow, wrong state, the provider's own refusal.
    #[error("{0}")]
    Callback(#[from] flow::CallbackRefusal),
    /// The provider could not be asked, or answered nonsense.
    #[error("the single sign-on provider cannot be used right now: {0}")]
    Provider(String),
    #[error("{0}")]
    IdToken(#[from] IdTokenError),
    #[error("{0}")]
    NotAHost(#[from] id_token::NotAHost),
    #[error("too many single sign-on logins at once; try again in a moment")]
    Busy,
}

impl SsoError {
    /// The HTTP status of the page that says it.
    pub fn status(&self) -> u16 {
        match self {
            Self::Callback(_) => 400,
            Self::Provider(_) => 502,
            Self::IdToken(_) | Self::NotAHost(_) => 403,
            Self::Busy => 503,
        }
    }
}

/// The OIDC client of one control node.
pub struct Oidc {
    config: OidcConfig,
    client_secret: Secret,
    redirect_url: String,
    flow: FlowKeys,
    provider: tokio::sync::Mutex<ProviderClient>,
    exchanges: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.config.issuer)
            .field("client_id", &self.config.client_id)
            .field("redirect_url", &self.redirect_url)
            .finish_non_exhaustive()
    }
}

impl Oidc {
    /// Checks `config`, reads the client secret's file, and derives the cookie key from the
    /// cluster secret (so every control node finishes logins any of them started).
    pub fn new(config: OidcConfig, cluster_secret: &[u8]) -> Result<Self, String> {
        config.validate()?;
        let redirect_url = config.redirect_url().ok_or(
            "auth.oidc.public_url is required: the address users open (https://meet.example.org); \
             the redirect URL to register is it followed by /api/v1/oidc/callback",
        )?;
        let client_secret = match (&config.client_secret, &config.client_secret_file) {
            (Some(secret), _) => secret.clone(),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|err| {
                    format!(
                        "cannot read auth.oidc.client_secret_file {}: {err}",
                        path.display()
                    )
                })?;
                let secret = text.trim();
                if secret.is_empty() {
                    return Err(format!(
                        "auth.oidc.client_secret_file {} is empty",
                        path.display()
                    ));
                }
                Secret::new(secret)
            }
            (None, None) => unreachable!("validate() requires a secret"),
        };
        Ok(Self {
            provider: tokio::sync::Mutex::new(ProviderClient::new(&config.issuer)?),
            flow: FlowKeys::derive(cluster_secret),
            exchanges: tokio::sync::Semaphore::new(EXCHANGES_AT_ONCE),
            client_secret,
            redirect_url,
            config,
        })
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// A new login: where to send the browser, and the cookie to set.
    pub async fn start(
        &self,
        return_to: Option<&str>,
        now_unix_s: u64,
    ) -> Result<(String, String), SsoError> {
        let metadata = self
            .provider
            .lock()
            .await
            .metadata()
            .await
            .map_err(SsoError::Provider)?;
        let (flow, cookie) = self.flow.start(&mut rand::rng(), return_to, now_unix_s);
        let url = flow::authorization_url(
            &metadata.authorization_endpoint,
            &self.config.client_id,
            &self.redirect_url,
            &self.config.scopes,
            &flow,
        )
        .map_err(SsoError::Provider)?;
        Ok((url.into(), cookie))
    }

    /// The provider sent the browser back: checks the callback, trades the code for the ID
    /// token, verifies it and applies the host rule. Gives the host and the page to return to.
    pub async fn finish(
        &self,
        query: &CallbackQuery,
        cookie: Option<&str>,
        now_unix_s: u64,
    ) -> Result<(SsoHost, String), SsoError> {
        let (flow, code) = self.flow.check_callback(query, cookie, now_unix_s)?;
        let _permit = self.exchanges.try_acquire().map_err(|_| SsoError::Busy)?;
        let (metadata, http) = {
            let mut provider = self.provider.lock().await;
            (
                provider.metadata().await.map_err(SsoError::Provider)?,
                provider.http(),
            )
        };
        let id_token = provider::exchange_code(
            &http,
            &metadata.token_endpoint,
            &self.config.client_id,
            self.client_secret.expose(),
            &self.redirect_url,
            &code,
            &flow.pkce_verifier,
        )
        .await
        .map_err(SsoError::Provider)?;
        let claims = {
            let mut provider = self.provider.lock().await;
            let verify = |keys: &[id_token::ProviderKey]| {
                id_token::verify(
                    &id_token,
                    keys,
                    &self.config.issuer,
                    &self.config.client_id,
                    &flow.nonce,
                    now_unix_s,
                )
            };
            let keys = provider.keys().await.map_err(SsoError::Provider)?;
            match verify(keys) {
                Err(IdTokenError::UnknownKey(kid)) => {
                    // The provider may have rotated its keys since we fetched them.
                    if provider
                        .refetch_keys_for_unknown_kid()
                        .await
                        .map_err(SsoError::Provider)?
                    {
                        tracing::info!(?kid, "OIDC: fetched the provider's keys again for an unknown kid");
                        verify(provider.keys().await.map_err(SsoError::Provider)?)
                    } else {
                        Err(IdTokenError::UnknownKey(kid))
                    }
                }
                other => other,
            }
        }?;
        let host = id_token::decide(&self.config, &claims)?;
        Ok((host, flow.return_to))
    }
}
