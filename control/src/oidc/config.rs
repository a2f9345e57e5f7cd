//! `[auth.oidc]`: which OpenID Connect provider hosts log in through, and who of its users count
//! as hosts.

use crate::auth::Secret;
use serde::Deserialize;
use std::path::PathBuf;

/// The path of the callback on every control node; the redirect URL to register with the
/// provider is the public URL followed by this.
pub const CALLBACK_PATH: &str = "/api/v1/oidc/callback";
/// Most entries in `allowed_groups` or `allowed_email_domains` (each is compared per login).
pub const ALLOWED_ENTRIES_MAX: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer URL, exactly as its ID tokens say it (`iss`); its metadata is at
    /// `<issuer>/.well-known/openid-configuration`. HTTPS, or HTTP to a loopback address (tests).
    pub issuer: String,
    pub client_id: String,
    /// The client secret; or `client_secret_file`, a file holding it (one of the two).
    pub client_secret: Option<Secret>,
    pub client_secret_file: Option<PathBuf>,
    /// The address users open (`https://meet.example.org`); the redirect URL is this plus
    /// [`CALLBACK_PATH`]. `bridgemesh up` fills it in from the address it serves.
    pub public_url: Option<String>,
    /// Scopes asked for besides `openid` (which is always asked for).
    pub scopes: Vec<String>,
    /// The ID token claim that lists the user's groups (Keycloak and Authentik: `groups`).
    pub groups_claim: String,
    /// Users in any of these groups are hosts.
    pub allowed_groups: Vec<String>,
    /// Users with a verified e-mail address in any of these domains are hosts.
    pub allowed_email_domains: Vec<String>,
    /// Every user the provider logs in is a host (a provider of your own with only your users).
    pub allow_any_user: bool,
    /// The words on the web client's button.
    pub button_label: String,
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            client_id: String::new(),
            client_secret: None,
            client_secret_file: None,
            public_url: None,
            scopes: vec!["email".into(), "profile".into()],
            groups_claim: "groups".into(),
            allowed_groups: Vec::new(),
            allowed_email_domains: Vec::new(),
            allow_any_user: false,
            button_label: "Log in with SSO".into(),
        }
    }
}

/// Whether `url` is HTTPS, or HTTP to this machine (a provider for tests or on the same host).
pub(super) fn secure_or_loopback(url: &reqwest::Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(url::Host::Domain(name)) => name == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

fn web_url(field: &str, value: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(value)
        .map_err(|err| format!("auth.oidc.{field} {value:?} is not a URL: {err}"))?;
    if !secure_or_loopback(&url) {
        return Err(format!(
            "auth.oidc.{field} {value:?} must be https:// (http:// only to a loopback address)"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!(
            "auth.oidc.{field} {value:?} must have no query, fragment or user name"
        ));
    }
    Ok(url)
}

impl OidcConfig {
    /// Checks what can be checked without files or the network.
    pub fn validate(&self) -> Result<(), String> {
        if self.issuer.is_empty() {
            return Err("auth.oidc.issuer is empty (the provider's issuer URL, e.g. https://sso.example.org/realms/main)".into());
        }
        web_url("issuer", &self.issuer)?;
        if self.client_id.is_empty() {
            return Err(
                "auth.oidc.client_id is empty (the client registered for bridgemesh at the provider)".into(),
            );
        }
        match (&self.client_secret, &self.client_secret_file) {
            (Some(_), Some(_)) => {
                return Err("set auth.oidc.client_secret or auth.oidc.client_secret_file, not both".into());
            }
            (None, None) => {
                return Err(
                    "auth.oidc needs client_secret or client_secret_file (a confidential client)".into(),
                );
            }
            (Some(secret), None) if secret.expose().is_empty() => {
                return Err("auth.oidc.client_secret is empty".into());
            }
            _ => {}
        }
        if let Some(public_url) = &self.public_url {
            let url = web_url("public_url", public_url)?;
            if url.path() != "/" {
                return Err(format!(
                    "auth.oidc.public_url {public_url:?} must be an origin without a path (https://meet.example.org)"
                ));
            }
        }
        for scope in &self.scopes {
            if scope.is_empty()
                || !scope
                    .chars()
                    .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
            {
                return Err(format!("auth.oidc.scopes has an invalid scope {scope:?}"));
            }
        }
        if self.groups_claim.is_empty() {
            return Err("auth.oidc.groups_claim is empty (Keycloak and Authentik say \"groups\")".into());
        }
        for (field, entries) in [
            ("allowed_groups", &self.allowed_groups),
            ("allowed_email_domains", &self.allowed_email_domains),
        ] {
            if entries.len() > ALLOWED_ENTRIES_MAX {
                return Err(format!(
                    "auth.oidc.{field} has more than {ALLOWED_ENTRIES_MAX} entries"
                ));
            }
            if entries.iter().any(String::is_empty) {
                return Err(format!("auth.oidc.{field} contains an empty string"));
            }
        }
        if self.allowed_email_domains.iter().any(|d| d.contains('@')) {
            return Err("auth.oidc.allowed_email_domains are domains (example.org), not addresses".into());
        }
        let restricted = !self.allowed_groups.is_empty() || !self.allowed_email_domains.is_empty();
        if restricted == self.allow_any_user {
            return Err(if restricted {
                "auth.oidc: allow_any_user = true contradicts allowed_groups / allowed_email_domains; keep one".into()
            } else {
                "auth.oidc says nobody is a host: set allowed_groups, allowed_email_domains, or allow_any_user = true".into()
            });
        }
        if self.button_label.trim().is_empty() || self.button_label.chars().count() > 64 {
            return Err("auth.oidc.button_label must have 1 to 64 characters".into());
        }
        Ok(())
    }

    /// The redirect URL to register at the provider.
    pub fn redirect_url(&self) -> Option<String> {
        let public = self.public_url.as_deref()?;
        Some(format!("{}{CALLBACK_PATH}", public.trim_end_matches('/')))
    }

    /// Whether cookies of the flow get `Secure` (the public URL is HTTPS).
    pub fn secure_cookies(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|url| url.starts_with("https://"))
    }
}
