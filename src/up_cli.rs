//! `bridgemesh up --domain` settings: flags, `BRIDGEMESH_*` environment variables and a TOML
//! file (`--config`), in that order of precedence, into a [`PublicConfig`].

use anyhow::Context as _;
use bridgemesh::public::PublicConfig;
use clap::Args;
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Args, Debug, Default)]
pub struct PublicArgs {
    /// Face the internet under this name: HTTPS/WSS and TURN over TLS on TCP 443 with a
    /// certificate from ACME (Let's Encrypt by default), TCP 80 for ACME and redirects, media on
    /// the public interfaces. Without it (and without `domain` in --config), `up` stays on 127.0.0.1.
    #[arg(long, env = "BRIDGEMESH_DOMAIN")]
    domain: Option<String>,
    /// TOML file with these settings (keys as the flags, with `_`: domain, state_dir, acme_email...).
    #[arg(long = "config", env = "BRIDGEMESH_CONFIG", value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// Keeps the certificate, the ACME account, the secrets and the Raft data [default: /var/lib/bridgemesh].
    #[arg(long, env = "BRIDGEMESH_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// The address participants reach media and TURN at [default: what the domain resolves to].
    #[arg(long, env = "BRIDGEMESH_PUBLIC_IP")]
    public_ip: Option<IpAddr>,
    /// Where the public listeners, media and TURN bind [default: 0.0.0.0].
    #[arg(long, env = "BRIDGEMESH_BIND_IP")]
    bind_ip: Option<IpAddr>,
    /// HTTPS, WSS and TURN over TLS [default: 443].
    #[arg(long, env = "BRIDGEMESH_HTTPS_PORT")]
    https_port: Option<u16>,
    /// ACME http-01 and the redirect to https [default: 80].
    #[arg(long, env = "BRIDGEMESH_ACME_HTTP_PORT")]
    acme_http_port: Option<u16>,
    /// A certificate chain (PEM, leaf first) instead of ACME; with --tls-key.
    #[arg(long, env = "BRIDGEMESH_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    #[arg(long, env = "BRIDGEMESH_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// ACME directory URL [default: Let's Encrypt's].
    #[arg(long, env = "BRIDGEMESH_ACME_DIRECTORY")]
    acme_directory: Option<String>,
    /// A PEM CA certificate to trust for the ACME directory's HTTPS (a private ACME server).
    #[arg(long, env = "BRIDGEMESH_ACME_CA_FILE")]
    acme_ca_file: Option<PathBuf>,
    /// Contact e-mail for the ACME account.
    #[arg(long, env = "BRIDGEMESH_ACME_EMAIL")]
    acme_email: Option<String>,
    /// Renew this many seconds before expiry (at most a third of the lifetime) [default: 30 days].
    #[arg(long, env = "BRIDGEMESH_ACME_RENEW_BEFORE_S")]
    acme_renew_before_s: Option<u64>,
    /// No TURN over TLS on the HTTPS port.
    #[arg(long, env = "BRIDGEMESH_NO_TURN_TLS")]
    no_turn_tls: bool,
}

impl PublicArgs {
    /// The public settings, or `None` for the loopback setup.
    pub fn config(self) -> anyhow::Result<Option<PublicConfig>> {
        let mut config = match &self.config_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                toml::from_str::<PublicConfig>(&text).with_context(|| format!("{}", path.display()))?
            }
            None => PublicConfig::default(),
        };
        let from_file = self.config_file.is_some();
        if let Some(domain) = self.domain {
            config.domain = domain;
        }
        if config.domain.is_empty() && !from_file {
            let stray = self.state_dir.is_some()
                || self.tls_cert.is_some()
                || self.acme_directory.is_some()
                || self.public_ip.is_some();
            if stray {
                anyhow::bail!("these settings need --domain");
            }
            return Ok(None);
        }
        let Self {
            state_dir,
            public_ip,
            bind_ip,
            https_port,
            acme_http_port,
            tls_cert,
            tls_key,
            acme_directory,
            acme_ca_file,
            acme_email,
            acme_renew_before_s,
            no_turn_tls,
            ..
        } = self;
        config.state_dir = state_dir.unwrap_or(config.state_dir);
        config.public_ip = public_ip.or(config.public_ip);
        config.bind_ip = bind_ip.unwrap_or(config.bind_ip);
        config.https_port = https_port.unwrap_or(config.https_port);
        config.http_port = acme_http_port.unwrap_or(config.http_port);
        config.tls_cert = tls_cert.or(config.tls_cert);
        config.tls_key = tls_key.or(config.tls_key);
        config.acme_directory = acme_directory.unwrap_or(config.acme_directory);
        config.acme_ca_file = acme_ca_file.or(config.acme_ca_file);
        config.acme_email = acme_email.or(config.acme_email);
        config.acme_renew_before_s = acme_renew_before_s.unwrap_or(config.acme_renew_before_s);
        if no_turn_tls {
            config.turn_tls = false;
        }
        config.validate()?;
        Ok(Some(config))
    }
}

/// What an operator needs after `up --domain` started: the URL, the firewall, the secrets.
pub fn print_public(running: &bridgemesh::up::Running, config: &PublicConfig) {
    println!("bridgemesh is up: open {}/ in a browser", running.control_url);
    if let Some(front) = &running.public {
        if let Some(took) = front.first_order {
            println!("certificate issued by ACME in {} ms", took.as_millis());
        }
        if let Some(certificate) = front.certificates.borrow().as_ref() {
            let remaining = certificate
                .validity
                .not_after
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            println!(
                "certificate valid {} more days{}",
                remaining.as_secs() / 86_400,
                if config.uses_acme() {
                    ", renewed automatically"
                } else {
                    ""
                }
            );
        }
    }
    println!("open in the firewall (inbound):");
    for line in running.firewall() {
        println!("  {line}");
    }
    println!(
        "admin API: {}/api/v1/admin/... with the bearer token in {}",
        running.control_url,
        config.state_dir.join("admin-token").display()
    );
    println!(
        "metrics: {}/metrics (and /bridges/<id>/metrics) with the bearer token in {}",
        running.control_url,
        config.state_dir.join("metrics-token").display()
    );
    println!(
        "state (certificate, secrets, Raft data): {}",
        config.state_dir.display()
    );
    println!("press Ctrl-C to stop");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        public: PublicArgs,
    }

    fn parse(args: &[&str]) -> anyhow::Result<Option<PublicConfig>> {
        let mut all = vec!["up"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all)?.public.config()
    }

    #[test]
    fn without_a_domain_up_stays_on_loopback() {
        assert_eq!(parse(&[]).unwrap(), None);
        let err = parse(&["--tls-cert", "c.pem"]).unwrap_err();
        assert!(err.to_string().contains("--domain"), "{err}");
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("up.toml");
        std::fs::write(
            &file,
            "domain = \"file.example.org\"\nacme_email = \"ops@example.org\"\nhttps_port = 8443\n",
        )
        .unwrap();
        let file = file.to_str().unwrap();
        let from_file = parse(&["--config", file]).unwrap().unwrap();
        assert_eq!(from_file.domain, "file.example.org");
        assert_eq!(from_file.https_port, 8443);
        assert_eq!(from_file.http_port, 80);
        let overridden = parse(&[
            "--config",
            file,
            "--domain",
            "flag.example.org",
            "--https-port",
            "9443",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(overridden.domain, "flag.example.org");
        assert_eq!(overridden.https_port, 9443);
        assert_eq!(overridden.acme_email.as_deref(), Some("ops@example.org"));
    }

    #[test]
    fn bad_settings_are_refused_at_start() {
        assert!(parse(&["--domain", "not a name"]).is_err());
        assert!(parse(&["--domain", "meet.example.org", "--tls-cert", "c.pem"]).is_err());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("up.toml");
        std::fs::write(&file, "domian = \"typo.example.org\"\n").unwrap();
        let err = parse(&["--config", file.to_str().unwrap()]).unwrap_err();
        assert!(format!("{err:#}").contains("domian"), "{err:#}");
    }
}
