//! The settings of `bridgemesh up --domain`: a plain struct the binary fills from a TOML file,
//! `BRIDGEMESH_*` environment variables and flags (flags win, then the environment, then the file).

use crate::public::acme::{AcmeConfig, LETS_ENCRYPT_DIRECTORY};
use crate::public::renewal::RenewalPolicy;
use crate::public::state_dir::DEFAULT_STATE_DIR;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublicConfig {
    /// The name participants open, `https://<domain>/<room>`; its DNS A record must point here.
    pub domain: String,
    /// Where the public listeners, media and TURN bind.
    pub bind_ip: IpAddr,
    /// The address in ICE candidates and TURN relays. Default: what `domain` resolves to.
    pub public_ip: Option<IpAddr>,
    /// HTTPS, WSS and TURN over TLS. 0 picks a free port (tests).
    pub https_port: u16,
    /// ACME http-01 and the redirect to https. 0 picks a free port (tests).
    pub http_port: u16,
    pub state_dir: PathBuf,
    /// A certificate chain and key from files instead of ACME (both or neither).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// How often the certificate files are checked for a renewal done by another tool.
    pub tls_files_check_s: u64,
    /// The ACME directory URL; Let's Encrypt's by default.
    pub acme_directory: String,
    /// A PEM CA certificate to trust for the ACME directory's HTTPS (a private ACME server).
    pub acme_ca_file: Option<PathBuf>,
    /// Contact for the ACME account (expiry notices).
    pub acme_email: Option<String>,
    /// Renew this long before expiry (at most a third of the certificate's lifetime).
    pub acme_renew_before_s: u64,
    /// Serve TURN over TLS on the HTTPS port, for networks that allow nothing but TCP 443.
    pub turn_tls: bool,
}

impl Default for PublicConfig {
    fn default() -> Self {
        Self {
            domain: String::new(),
            bind_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            public_ip: None,
            https_port: 443,
            http_port: 80,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            tls_cert: None,
            tls_key: None,
            tls_files_check_s: 60,
            acme_directory: LETS_ENCRYPT_DIRECTORY.to_owned(),
            acme_ca_file: None,
            acme_email: None,
            acme_renew_before_s: RenewalPolicy::default().renew_before.as_secs(),
            turn_tls: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublicConfigError {
    #[error("domain {0:?} is not a DNS name (letters, digits, '-' and dots, e.g. meet.example.org)")]
    Domain(String),
    #[error("--tls-cert and --tls-key go together")]
    HalfCertificate,
    #[error("the ACME directory must be an https:// URL, not {0:?}")]
    AcmeDirectory(String),
    #[error("the HTTPS and HTTP ports must differ")]
    SamePorts,
    #[error("public_ip {0} is not an address participants can reach")]
    PublicIp(IpAddr),
    #[error("acme_renew_before_s must be positive")]
    RenewBefore,
    #[error("tls_files_check_s must be positive")]
    FilesCheck,
}

impl PublicConfig {
    pub fn validate(&self) -> Result<(), PublicConfigError> {
        if !is_dns_name(&self.domain) {
            return Err(PublicConfigError::Domain(self.domain.clone()));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(PublicConfigError::HalfCertificate);
        }
        if !self.acme_directory.starts_with("https://") {
            return Err(PublicConfigError::AcmeDirectory(self.acme_directory.clone()));
        }
        if self.https_port != 0 && self.https_port == self.http_port {
            return Err(PublicConfigError::SamePorts);
        }
        if let Some(ip) = self.public_ip
            && (ip.is_unspecified() || ip.is_multicast())
        {
            return Err(PublicConfigError::PublicIp(ip));
        }
        if self.acme_renew_before_s == 0 {
            return Err(PublicConfigError::RenewBefore);
        }
        if self.tls_files_check_s == 0 {
            return Err(PublicConfigError::FilesCheck);
        }
        Ok(())
    }

    pub fn acme(&self) -> AcmeConfig {
        AcmeConfig {
            directory_url: self.acme_directory.clone(),
            ca_file: self.acme_ca_file.clone(),
            contact_email: self.acme_email.clone(),
            renewal: RenewalPolicy {
                renew_before: Duration::from_secs(self.acme_renew_before_s),
                ..RenewalPolicy::default()
            },
        }
    }

    /// Whether certificates come from ACME (rather than files).
    pub fn uses_acme(&self) -> bool {
        self.tls_cert.is_none()
    }
}

/// A host name browsers and ACME accept: dot-separated labels of letters, digits and inner
/// hyphens, not all digits (an IP address is not a domain), at most 253 bytes.
fn is_dns_name(name: &str) -> bool {
    let labels_ok = name.split('.').all(|label| {
        (1..=63).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    let numeric = name.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    !name.is_empty() && name.len() <= 253 && labels_ok && !numeric
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_domain(domain: &str) -> PublicConfig {
        PublicConfig {
            domain: domain.to_owned(),
            ..PublicConfig::default()
        }
    }

    #[test]
    fn the_default_with_a_domain_is_valid() {
        assert_eq!(with_domain("meet.example.org").validate(), Ok(()));
    }

    #[test]
    fn bad_settings_are_refused_with_the_reason() {
        for domain in [
            "",
            "198.51.100.1",
            "-a.example",
            "a..example",
            "a_b.example",
            "https://x.example",
        ] {
            assert!(
                matches!(with_domain(domain).validate(), Err(PublicConfigError::Domain(_))),
                "{domain:?}"
            );
        }
        let half = PublicConfig {
            tls_cert: Some("cert.pem".into()),
            ..with_domain("meet.example.org")
        };
        assert_eq!(half.validate(), Err(PublicConfigError::HalfCertificate));
        let plain = PublicConfig {
            acme_directory: "http://acme.example/dir".into(),
            ..with_domain("meet.example.org")
        };
        assert!(matches!(
            plain.validate(),
            Err(PublicConfigError::AcmeDirectory(_))
        ));
        let same = PublicConfig {
            http_port: 443,
            ..with_domain("meet.example.org")
        };
        assert_eq!(same.validate(), Err(PublicConfigError::SamePorts));
    }

    #[test]
    fn a_toml_file_fills_what_it_names_and_refuses_unknown_keys() {
        let config: PublicConfig = toml::from_str(
            "domain = \"meet.example.org\"\nacme_email = \"ops@example.org\"\nhttps_port = 8443\n",
        )
        .unwrap();
        assert_eq!(config.domain, "meet.example.org");
        assert_eq!(config.https_port, 8443);
        assert_eq!(config.http_port, 80);
        assert_eq!(config.acme_directory, LETS_ENCRYPT_DIRECTORY);
        assert!(toml::from_str::<PublicConfig>("domian = \"x\"").is_err());
    }
}
