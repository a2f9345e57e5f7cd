//! Where the session goes and with what: control nodes' URLs and the session's configuration.

use super::*;

/// A control node's bridge-session endpoint on its cluster listener (mutual TLS),
/// `wss://host:port[/prefix]/api/v1/bridges/session`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionUrl(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionUrlError {
    #[error("a control URL is at most {SESSION_URL_MAX_BYTES} bytes")]
    TooLong,
    #[error("a control URL is https://host:port (or wss://), not {0}://")]
    Scheme(String),
    #[error(
        "control's cluster listener speaks only mutual TLS: give its address as https://host:port (the cluster port, 7701 by default)"
    )]
    PlainText,
    #[error("a control URL needs a host")]
    NoHost,
    #[error("a control URL may not hold credentials, a query, a fragment or spaces")]
    Malformed,
}

impl SessionUrl {
    /// A control node's cluster address (`https://host:port`, `wss://host:port`, `host:port`, optionally
    /// under a path prefix) or its full session URL, as the session URL.
    pub fn parse(text: &str) -> Result<Self, SessionUrlError> {
        let text = text.trim();
        if text.len() > SESSION_URL_MAX_BYTES {
            return Err(SessionUrlError::TooLong);
        }
        let rest = match text.split_once("://") {
            Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
                "https" | "wss" => rest,
                "http" | "ws" => return Err(SessionUrlError::PlainText),
                other => return Err(SessionUrlError::Scheme(other.to_owned())),
            },
            None => text,
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(SessionUrlError::NoHost);
        }
        let host_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']');
        let path_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '~' | '/' | '%');
        if !authority.chars().all(host_char) || !path.chars().all(path_char) {
            return Err(SessionUrlError::Malformed);
        }
        let prefix = path.trim_end_matches('/');
        let url = if prefix.ends_with(BRIDGE_SESSION_PATH) {
            format!("wss://{authority}{prefix}")
        } else {
            format!("wss://{authority}{prefix}{BRIDGE_SESSION_PATH}")
        };
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `host:port` to open the TCP connection to (port 443 when the URL has none).
    pub fn host_port(&self) -> String {
        let rest = self.0.strip_prefix("wss://").unwrap_or(&self.0);
        let authority = rest.split('/').next().unwrap_or(rest);
        let has_port = match authority.rfind(']') {
            Some(bracket) => authority[bracket..].contains(':'),
            None => authority.contains(':'),
        };
        if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:443")
        }
    }
}

impl fmt::Display for SessionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionUrl({})", self.0)
    }
}

#[derive(Debug, Clone)]
pub struct ControlSessionConfig {
    /// Control nodes, any of them, in the order to try.
    pub control_urls: Vec<SessionUrl>,
    pub registration: BridgeRegistration,
    /// Random per process start (see [`BridgeToControl::Register`]).
    pub instance: String,
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    pub register_timeout_ms: u64,
    /// Seeds the backoff jitter, so a run can be replayed.
    pub jitter_seed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionConfigError {
    #[error("no control URL: give at least one control node")]
    NoControlUrls,
    #[error("at most {CONTROL_URLS_MAX} control URLs")]
    TooManyControlUrls,
    #[error("the instance id must be 1 to {INSTANCE_MAX_BYTES} bytes")]
    Instance,
    #[error("backoff_min_ms must be positive and at most backoff_max_ms")]
    Backoff,
    #[error("register_timeout_ms must be positive")]
    RegisterTimeout,
}

impl ControlSessionConfig {
    /// Default backoff and registration timeout.
    pub fn new(
        control_urls: Vec<SessionUrl>,
        registration: BridgeRegistration,
        instance: String,
        jitter_seed: u64,
    ) -> Self {
        Self {
            control_urls,
            registration,
            instance,
            backoff_min_ms: BACKOFF_MIN_MS_DEFAULT,
            backoff_max_ms: BACKOFF_MAX_MS_DEFAULT,
            register_timeout_ms: REGISTER_TIMEOUT_MS_DEFAULT,
            jitter_seed,
        }
    }

    pub fn validate(&self) -> Result<(), SessionConfigError> {
        if self.control_urls.is_empty() {
            return Err(SessionConfigError::NoControlUrls);
        }
        if self.control_urls.len() > CONTROL_URLS_MAX {
            return Err(SessionConfigError::TooManyControlUrls);
        }
        if self.instance.is_empty() || self.instance.len() > INSTANCE_MAX_BYTES {
            return Err(SessionConfigError::Instance);
        }
        if self.backoff_min_ms == 0 || self.backoff_min_ms > self.backoff_max_ms {
            return Err(SessionConfigError::Backoff);
        }
        if self.register_timeout_ms == 0 {
            return Err(SessionConfigError::RegisterTimeout);
        }
        Ok(())
    }
}
