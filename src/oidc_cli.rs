//! `bridgemesh up --oidc-*`: single sign-on for hosts through an OpenID Connect provider
//! (docs/hosts.md#single-sign-on). A control cluster sets the same in `[auth.oidc]`.

use bridgemesh_control::oidc::OidcConfig;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug, Default)]
pub struct OidcArgs {
    /// Hosts log in through this OpenID Connect provider (its issuer URL, e.g.
    /// https://sso.example.org/realms/main). Register the redirect URL
    /// <public URL>/api/v1/oidc/callback with it.
    #[arg(long, env = "BRIDGEMESH_OIDC_ISSUER")]
    oidc_issuer: Option<String>,
    /// The client id registered at the provider.
    #[arg(long, env = "BRIDGEMESH_OIDC_CLIENT_ID", requires = "oidc_issuer")]
    oidc_client_id: Option<String>,
    /// A file holding the client's secret.
    #[arg(long, env = "BRIDGEMESH_OIDC_CLIENT_SECRET_FILE", requires = "oidc_issuer")]
    oidc_client_secret_file: Option<PathBuf>,
    /// Users in this group are hosts (repeat for more groups).
    #[arg(long = "oidc-allowed-group", value_name = "GROUP", requires = "oidc_issuer")]
    oidc_allowed_groups: Vec<String>,
    /// Users with a verified e-mail address in this domain are hosts (repeat for more).
    #[arg(
        long = "oidc-allowed-email-domain",
        value_name = "DOMAIN",
        requires = "oidc_issuer"
    )]
    oidc_allowed_email_domains: Vec<String>,
    /// Every user the provider logs in is a host.
    #[arg(long, requires = "oidc_issuer")]
    oidc_allow_any_user: bool,
    /// The ID token claim with the user's groups (default: groups).
    #[arg(long, requires = "oidc_issuer")]
    oidc_groups_claim: Option<String>,
    /// Scopes asked for besides openid (default: email profile; repeat; add `groups` where
    /// the provider needs it for the groups claim).
    #[arg(long = "oidc-scope", value_name = "SCOPE", requires = "oidc_issuer")]
    oidc_scopes: Vec<String>,
}

impl OidcArgs {
    /// The `[auth.oidc]` these flags make; none without `--oidc-issuer`. The public URL is
    /// `up`'s own.
    pub fn config(self) -> anyhow::Result<Option<OidcConfig>> {
        let Some(issuer) = self.oidc_issuer else {
            return Ok(None);
        };
        let defaults = OidcConfig::default();
        let config = OidcConfig {
            issuer,
            client_id: self.oidc_client_id.unwrap_or_default(),
            client_secret_file: self.oidc_client_secret_file,
            allowed_groups: self.oidc_allowed_groups,
            allowed_email_domains: self.oidc_allowed_email_domains,
            allow_any_user: self.oidc_allow_any_user,
            groups_claim: self.oidc_groups_claim.unwrap_or(defaults.groups_claim.clone()),
            scopes: if self.oidc_scopes.is_empty() {
                defaults.scopes.clone()
            } else {
                self.oidc_scopes
            },
            ..defaults
        };
        config
            .validate()
            .map_err(|err| anyhow::anyhow!("{}", err.replace("auth.oidc.", "--oidc-").replace('_', "-")))?;
        Ok(Some(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        oidc: OidcArgs,
    }

    #[test]
    fn flags_make_the_oidc_section_and_bad_ones_say_what_is_wrong() {
        let cli = Cli::try_parse_from([
            "up",
            "--oidc-issuer",
            "https://sso.example.org/realms/main",
            "--oidc-client-id",
            "bridgemesh",
            "--oidc-client-secret-file",
            "/etc/bridgemesh/oidc-secret",
            "--oidc-allowed-group",
            "hosts",
            "--oidc-allowed-group",
            "admins",
        ])
        .unwrap();
        let config = cli.oidc.config().unwrap().unwrap();
        assert_eq!(config.allowed_groups, ["hosts", "admins"]);
        assert_eq!(config.scopes, ["email", "profile"]);
        assert!(
            Cli::try_parse_from(["up"])
                .unwrap()
                .oidc
                .config()
                .unwrap()
                .is_none()
        );
        let err = Cli::try_parse_from([
            "up",
            "--oidc-issuer",
            "https://sso.example.org",
            "--oidc-client-id",
            "bridgemesh",
            "--oidc-client-secret-file",
            "/s",
        ])
        .unwrap()
        .oidc
        .config()
        .unwrap_err();
        assert!(err.to_string().contains("nobody is a host"), "{err}");
        assert!(Cli::try_parse_from(["up", "--oidc-allowed-group", "hosts"]).is_err());
    }

    #[test]
    fn a_control_file_takes_the_same_as_an_auth_oidc_section() {
        use bridgemesh::control_node::ControlFile;
        let file: ControlFile = toml::from_str(
            r#"
            [auth]
            guest_policy = "after_moderator"
            [auth.oidc]
            issuer = "https://sso.example.org/realms/main"
            client_id = "bridgemesh"
            client_secret_file = "/etc/bridgemesh/oidc-client-secret"
            public_url = "https://meet.example.org"
            allowed_groups = ["meeting-hosts"]
            "#,
        )
        .unwrap();
        file.auth.validate().unwrap();
        let oidc = file.auth.oidc.unwrap();
        assert_eq!(
            oidc.redirect_url().unwrap(),
            "https://meet.example.org/api/v1/oidc/callback"
        );
        assert_eq!(oidc.groups_claim, "groups", "unset keys keep their defaults");
        assert!(toml::from_str::<ControlFile>("[auth.oidc]\nissuer_url = \"https://x\"").is_err());
        let nobody: ControlFile = toml::from_str(
            "[auth.oidc]\nissuer = \"https://sso.example.org\"\nclient_id = \"b\"\nclient_secret = \"s\"",
        )
        .unwrap();
        let err = nobody.auth.validate().unwrap_err().to_string();
        assert!(err.contains("nobody is a host"), "{err}");
    }
}
