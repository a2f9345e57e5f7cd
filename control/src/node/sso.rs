//! Single sign-on on a node: the OIDC client it holds (`oidc.rs`), and the host session a
//! successful login through the provider gives.

use super::*;
use crate::oidc::{CallbackQuery, Oidc, SsoError};
use bridgemesh_proto::hosts::{HOST_SESSION_TTL_S, HostLogin};

impl ControlNode {
    /// Turns single sign-on on (`[auth.oidc]`), before the node is shared.
    pub fn set_oidc(&mut self, oidc: Oidc) {
        self.oidc = Some(oidc);
    }

    pub fn oidc(&self) -> Option<&Oidc> {
        self.oidc.as_ref()
    }

    /// Finishes a login through the provider: a host session like a password login's, naming
    /// the user's stable identity instead of a local account. Gives it and the page to return to.
    pub async fn sso_login(
        &self,
        query: &CallbackQuery,
        cookie: Option<&str>,
    ) -> Result<(HostLogin, String), SsoError> {
        let oidc = self
            .oidc
            .as_ref()
            .ok_or_else(|| SsoError::Provider("single sign-on is not configured here".into()))?;
        let now_s = now_unix_ms() / 1000;
        let (host, return_to) = oidc.finish(query, cookie, now_s).await?;
        tracing::info!(host = %host.name, user_id = %host.user_id, "host logged in through single sign-on");
        let token = self.host_keys.issue_sso_session(&host.name, &host.user_id, now_s);
        Ok((
            HostLogin {
                username: host.name,
                token,
                expires_in_s: HOST_SESSION_TTL_S,
            },
            return_to,
        ))
    }
}
